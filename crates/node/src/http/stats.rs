//! Public epidemic and vaccination statistics: the counts in force (a
//! correction supersedes the report it corrects), filtered, grouped, and
//! published with small-cell suppression.

use crate::http::problem::Problem;
use crate::http::request::{Shared, blocking, query};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use medledger_health::records::is_date;
use medledger_health::suppression::{Table, publish};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};

/// Query of both statistics endpoints. Lists are comma-separated.
#[derive(Deserialize)]
pub(crate) struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
    region: Option<String>,
    disease: Option<String>,
    vaccine: Option<String>,
    dose: Option<String>,
    age_band: Option<String>,
    group_by: Option<String>,
    measure: Option<String>,
}

fn bad(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "bad_query", detail)
}

fn list(v: &Option<String>) -> Option<BTreeSet<String>> {
    v.as_ref()
        .map(|s| s.split(',').map(|x| x.trim().to_owned()).collect())
}

/// Dimensions to group by: 1 to 3 of `allowed`, `default` when not given.
fn group_by(q: &StatsQuery, allowed: &[&str], default: &str) -> Result<Vec<String>, Problem> {
    let dims: Vec<String> = q
        .group_by
        .as_deref()
        .unwrap_or(default)
        .split(',')
        .map(|d| d.trim().to_owned())
        .collect();
    if dims.is_empty() || dims.len() > 3 {
        return Err(bad("group_by names 1 to 3 dimensions"));
    }
    for d in &dims {
        if !allowed.contains(&d.as_str()) {
            return Err(bad(format!(
                "cannot group by {d:?}: one of {}",
                allowed.join(", ")
            )));
        }
    }
    if dims.iter().collect::<BTreeSet<_>>().len() != dims.len() {
        return Err(bad("group_by names a dimension twice"));
    }
    Ok(dims)
}

/// The day range of a query, inclusive.
fn days(q: &StatsQuery) -> Result<(String, String), Problem> {
    let day = |v: &Option<String>, name: &str, default: &str| -> Result<String, Problem> {
        match v {
            Some(d) if is_date(d) => Ok(d.clone()),
            Some(d) => Err(bad(format!("{name} must be a date, YYYY-MM-DD, not {d:?}"))),
            None => Ok(default.to_owned()),
        }
    };
    Ok((
        day(&q.from, "from", "0000-01-01")?,
        day(&q.to, "to", "9999-12-31")?,
    ))
}

/// One report's labels by dimension name, and its measures.
struct Row {
    labels: HashMap<&'static str, String>,
    measures: Vec<u64>,
}

/// Builds and publishes one table per measure.
fn tables(
    rows: &[Row],
    dims: &[String],
    measures: &[&str],
    selected: &[usize],
    k: u64,
) -> Result<Value, Problem> {
    let mut categories: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); dims.len()];
    for r in rows {
        for (i, d) in dims.iter().enumerate() {
            categories[i].insert(r.labels[d.as_str()].as_str());
        }
    }
    let mut out = Map::new();
    for &m in selected {
        if rows.is_empty() {
            out.insert(measures[m].to_owned(), Value::Null);
            continue;
        }
        let table = Table::new(
            dims.to_vec(),
            categories
                .iter()
                .map(|c| c.iter().map(|s| (*s).to_owned()).collect())
                .collect(),
            rows.iter().map(|r| {
                (
                    dims.iter()
                        .map(|d| r.labels[d.as_str()].as_str())
                        .collect::<Vec<_>>(),
                    r.measures[m],
                )
            }),
        )
        .map_err(|e| bad(e.to_string()))?;
        let published = publish(&table, k);
        out.insert(
            measures[m].to_owned(),
            serde_json::to_value(published).map_err(|e| Problem::internal(e.to_string()))?,
        );
    }
    Ok(Value::Object(out))
}

fn selected_measures(q: &StatsQuery, measures: &[&str]) -> Result<Vec<usize>, Problem> {
    match list(&q.measure) {
        None => Ok((0..measures.len()).collect()),
        Some(names) => names
            .iter()
            .map(|n| {
                measures.iter().position(|m| m == n).ok_or_else(|| {
                    bad(format!(
                        "unknown measure {n:?}: one of {}",
                        measures.join(", ")
                    ))
                })
            })
            .collect(),
    }
}

/// Publishes the matching `rows`' tables and answers with them.
fn answer(
    as_of: u64,
    k: u64,
    dims: &[String],
    rows: &[Row],
    measures: &[&str],
    selected: &[usize],
) -> Result<Response, Problem> {
    let tables = tables(rows, dims, measures, selected, k)?;
    Ok(Json(json!({
        "as_of": as_of,
        "k": k,
        "group_by": dims,
        "reports": rows.len(),
        "measures": tables,
    }))
    .into_response())
}

/// The rows dated from `from` to `to` whose label in each filtered
/// dimension is one the filter lists.
fn select(
    rows: impl Iterator<Item = Row>,
    (from, to): &(String, String),
    filters: &[(&str, Option<BTreeSet<String>>)],
) -> Vec<Row> {
    rows.filter(|r| {
        let date = &r.labels["date"];
        date >= from
            && date <= to
            && filters
                .iter()
                .all(|(dim, filter)| filter.as_ref().is_none_or(|f| f.contains(&r.labels[dim])))
    })
    .collect()
}

const EPIDEMIC_MEASURES: [&str; 4] = ["new_cases", "hospitalised", "on_respirator", "deaths"];

/// `GET /v1/stats/epidemic`: daily counts by region and disease.
pub(crate) async fn epidemic(
    State(state): State<Shared>,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = query(q)?;
    let dims = group_by(&q, &["date", "region", "disease"], "region")?;
    let range = days(&q)?;
    let selected = selected_measures(&q, &EPIDEMIC_MEASURES)?;
    let filters = [("region", list(&q.region)), ("disease", list(&q.disease))];
    let k = state.config.stats_k;
    blocking(move || {
        let views = &state.views;
        let as_of = views.applied();
        // The counts are read under the view's lock; the tables are built
        // after it is released.
        let rows = {
            let counts = views.counts();
            let rows = counts.epidemic.values().map(|r| Row {
                labels: HashMap::from([
                    ("date", r.date.clone()),
                    ("region", r.region.clone()),
                    ("disease", r.disease.clone()),
                ]),
                measures: vec![r.new_cases, r.hospitalised, r.on_respirator, r.deaths],
            });
            select(rows, &range, &filters)
        };
        answer(as_of, k, &dims, &rows, &EPIDEMIC_MEASURES, &selected)
    })
    .await
}

/// `GET /v1/stats/vaccination`: doses by vaccine, dose, age band and region.
pub(crate) async fn vaccination(
    State(state): State<Shared>,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = query(q)?;
    let dims = group_by(
        &q,
        &["date", "region", "vaccine", "dose", "age_band"],
        "region",
    )?;
    let range = days(&q)?;
    let selected = selected_measures(&q, &["doses"])?;
    let filters = [
        ("region", list(&q.region)),
        ("vaccine", list(&q.vaccine)),
        ("dose", list(&q.dose)),
        ("age_band", list(&q.age_band)),
    ];
    let k = state.config.stats_k;
    blocking(move || {
        let views = &state.views;
        let as_of = views.applied();
        // The counts are read under the view's lock; the tables are built
        // after it is released.
        let rows = {
            let counts = views.counts();
            let rows = counts.vaccination.values().map(|r| Row {
                labels: HashMap::from([
                    ("date", r.date.clone()),
                    ("region", r.region.clone()),
                    ("vaccine", r.vaccine.clone()),
                    ("dose", r.dose.to_string()),
                    ("age_band", r.age_band.clone()),
                ]),
                measures: vec![r.doses],
            });
            select(rows, &range, &filters)
        };
        answer(as_of, k, &dims, &rows, &["doses"], &selected)
    })
    .await
}
