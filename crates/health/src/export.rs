//! Research exports: which records of a kind a query selects, and the
//! bytes of each exported row.
//!
//! A query names one kind, an optional range of whole days (`from` and `to`,
//! both inclusive, in UTC) and an output format:
//!
//! - `csv`: a header row, then one row per record: `leaf,id,recorded` (log
//!   index, transaction id in hex, the author's timestamp in ms) followed by
//!   the kind's payload fields in a fixed order ([`columns`]); arrays are
//!   joined with `;`, absent fields are empty;
//! - `ndjson`: one JSON object per line,
//!   `{"leaf":…,"id":…,"recorded":…,"kind":…,"record":<payload>}`, where the
//!   payload is the canonical payload bytes exactly as committed;
//! - `fhir-ndjson` (FHIR kinds only): the stored resource with `id` set to
//!   the transaction id, one per line, in canonical JSON.
//!
//! A record is selected by the date it is about ([`record_date_ms`]), not by
//! when it was written. Rendering is a pure function of the kind, format,
//! leaf, id, time and payload bytes, so a verifier re-renders a row from the
//! ledger and compares it with the exported one byte for byte.
//!
//! Exports carry no direct identifiers. A row holds the payload's own
//! fields and nothing else from the transaction: never the author's key,
//! the salt or the signature. Patients appear only as the keyed pseudonyms
//! the payload holds, and the PII guard refused every payload with a direct
//! identifier before it was admitted to the ledger.

use crate::{fhir, records, registries};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::fmt;
use std::str::FromStr;

/// Kinds that can be exported.
pub const KINDS: [&str; 8] = [
    records::MEDICAL_REPORT,
    records::VITAL_SIGNS,
    registries::EPIDEMIC_REPORT,
    registries::VACCINATION_REPORT,
    registries::ORGAN_DONOR_DECISION,
    fhir::KIND_OBSERVATION,
    fhir::KIND_CONDITION,
    fhir::KIND_IMMUNIZATION,
];

/// Columns every CSV export starts with.
pub const CSV_PREFIX: [&str; 3] = ["leaf", "id", "recorded"];

/// Output format of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line, the payload under `record`.
    Ndjson,
    /// FHIR resources, one per line (FHIR kinds only).
    FhirNdjson,
}

impl Format {
    /// The name used in queries: `csv`, `ndjson` or `fhir-ndjson`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::FhirNdjson => "fhir-ndjson",
        }
    }

    /// The media type of an export in this format.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
            Format::FhirNdjson => "application/fhir+ndjson",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = ExportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "csv" => Ok(Format::Csv),
            "ndjson" => Ok(Format::Ndjson),
            "fhir-ndjson" => Ok(Format::FhirNdjson),
            other => Err(ExportError::UnknownFormat(other.to_owned())),
        }
    }
}

/// Why a query or a row is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The kind is not one of [`KINDS`].
    #[error(
        "kind {0:?} cannot be exported; one of medical_report, vital_signs, epidemic_report, \
         vaccination_report, organ_donor_decision, fhir.observation, fhir.condition, fhir.immunization"
    )]
    UnknownKind(String),
    /// The format is not one of `csv`, `ndjson`, `fhir-ndjson`.
    #[error("format {0:?} is not one of csv, ndjson, fhir-ndjson")]
    UnknownFormat(String),
    /// `from` or `to` is not a calendar date.
    #[error("{0} must be a date, YYYY-MM-DD")]
    BadDate(&'static str),
    /// `from` is after `to`.
    #[error("from {from} is after to {to}")]
    EmptyRange {
        /// The first day.
        from: String,
        /// The last day.
        to: String,
    },
    /// FHIR NDJSON of a kind that is not a FHIR resource.
    #[error(
        "fhir-ndjson exports only FHIR kinds (fhir.observation, fhir.condition, fhir.immunization), \
         not {0}; use csv or ndjson"
    )]
    NotFhir(String),
    /// A stored payload cannot be rendered (it does not fit its kind).
    #[error("record cannot be rendered: {0}")]
    Record(String),
}

/// What to export: a kind, a range of days and a format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// The transaction kind, one of [`KINDS`].
    pub kind: String,
    /// First day, `YYYY-MM-DD`, inclusive.
    #[serde(default)]
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD`, inclusive.
    #[serde(default)]
    pub to: Option<String>,
    /// Output format.
    pub format: Format,
}

/// A checked [`Query`]: selects records and renders rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    kind: &'static str,
    format: Format,
    /// Selected record dates, `[start, end)` in ms since the epoch.
    start: Option<i64>,
    end: Option<i64>,
}

fn day_bounds(day: Option<&str>, name: &'static str) -> Result<Option<(i64, i64)>, ExportError> {
    day.map(|d| {
        if !records::is_date(d) {
            return Err(ExportError::BadDate(name));
        }
        fhir::date_range(d).ok_or(ExportError::BadDate(name))
    })
    .transpose()
}

impl Query {
    /// Checks the query: a known kind, a format the kind has, real dates
    /// with `from` not after `to`.
    pub fn check(&self) -> Result<Export, ExportError> {
        let kind = KINDS
            .into_iter()
            .find(|k| *k == self.kind)
            .ok_or_else(|| ExportError::UnknownKind(self.kind.clone()))?;
        if self.format == Format::FhirNdjson && fhir::resource_type_of(kind).is_none() {
            return Err(ExportError::NotFhir(self.kind.clone()));
        }
        let from = day_bounds(self.from.as_deref(), "from")?;
        let to = day_bounds(self.to.as_deref(), "to")?;
        if let (Some(f), Some(t), Some(fs), Some(ts)) = (from, to, &self.from, &self.to)
            && f.0 > t.0
        {
            return Err(ExportError::EmptyRange {
                from: fs.clone(),
                to: ts.clone(),
            });
        }
        Ok(Export {
            kind,
            format: self.format,
            start: from.map(|r| r.0),
            end: to.map(|r| r.1),
        })
    }
}

impl Export {
    /// The kind exported.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The output format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether a record dated `date` (see [`record_date_ms`]) lies in the
    /// query's days. With no range every record is selected, dated or not;
    /// with a range, a record without a date is not.
    pub fn selects_date(&self, date: Option<i64>) -> bool {
        if self.start.is_none() && self.end.is_none() {
            return true;
        }
        date.is_some_and(|d| self.start.is_none_or(|s| d >= s) && self.end.is_none_or(|e| d < e))
    }

    /// Whether the record with canonical payload `payload` is selected.
    pub fn selects(&self, payload: &[u8]) -> bool {
        self.selects_date(record_date_ms(self.kind, payload))
    }

    /// The bytes before the first row: the CSV header row, nothing for the
    /// NDJSON formats.
    pub fn header(&self) -> Vec<u8> {
        match self.format {
            Format::Csv => csv_line(
                CSV_PREFIX
                    .iter()
                    .chain(columns(self.kind))
                    .map(|s| (*s).to_owned()),
            )
            .unwrap_or_default(),
            Format::Ndjson | Format::FhirNdjson => Vec::new(),
        }
    }

    /// One row, with its line ending; see [`render_row`].
    pub fn row(
        &self,
        leaf: u64,
        id_hex: &str,
        recorded_ms: u64,
        payload: &[u8],
    ) -> Result<Vec<u8>, ExportError> {
        render_row(self.kind, self.format, leaf, id_hex, recorded_ms, payload)
    }
}

/// The payload fields of `kind`'s CSV rows, in column order (after
/// [`CSV_PREFIX`]); empty for a kind that cannot be exported.
pub fn columns(kind: &str) -> &'static [&'static str] {
    match kind {
        records::MEDICAL_REPORT => &[
            "patient",
            "institution",
            "encounter_date",
            "diagnoses",
            "anamnesis",
            "findings",
            "therapy",
        ],
        records::VITAL_SIGNS => &[
            "patient",
            "time",
            "respiratory_rate",
            "spo2",
            "on_oxygen",
            "spo2_scale",
            "systolic_bp",
            "diastolic_bp",
            "pulse",
            "consciousness",
            "temperature",
            "glucose",
        ],
        registries::EPIDEMIC_REPORT => &[
            "date",
            "region",
            "disease",
            "new_cases",
            "hospitalised",
            "on_respirator",
            "deaths",
        ],
        registries::VACCINATION_REPORT => {
            &["date", "region", "vaccine", "dose", "age_band", "doses"]
        }
        registries::ORGAN_DONOR_DECISION => &["patient", "decision", "organs", "date"],
        fhir::KIND_OBSERVATION | fhir::KIND_CONDITION | fhir::KIND_IMMUNIZATION => {
            &["resource_type", "patient", "date", "codes", "resource"]
        }
        _ => &[],
    }
}

/// The date a record is about, in ms since the epoch (the start of the day
/// or instant, UTC): a report's `encounter_date`, the `time` of vital signs,
/// the `date` of counts and donor decisions, a FHIR resource's clinically
/// relevant date. `None` when the payload has none or it does not parse.
pub fn record_date_ms(kind: &str, payload: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Dates {
        encounter_date: Option<String>,
        time: Option<String>,
        date: Option<String>,
    }
    if fhir::resource_type_of(kind).is_some() {
        let v: Value = serde_json::from_slice(payload).ok()?;
        let date = fhir::validate(&v).ok()?.date?;
        return fhir::date_range(&date).map(|r| r.0);
    }
    let d: Dates = serde_json::from_slice(payload).ok()?;
    let field = match kind {
        records::MEDICAL_REPORT => d.encounter_date,
        records::VITAL_SIGNS => d.time,
        registries::EPIDEMIC_REPORT
        | registries::VACCINATION_REPORT
        | registries::ORGAN_DONOR_DECISION => d.date,
        _ => None,
    }?;
    fhir::date_range(&field).map(|r| r.0)
}

/// An NDJSON export row.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NdjsonRow<R> {
    /// Log index of the transaction.
    pub leaf: u64,
    /// Transaction id, hex.
    pub id: String,
    /// The author's timestamp, ms.
    pub recorded: u64,
    /// Transaction kind.
    pub kind: String,
    /// The canonical payload.
    pub record: R,
}

/// An NDJSON row as read back: the payload bytes are kept exactly.
pub type ParsedRow = NdjsonRow<Box<RawValue>>;

fn record_err(e: impl fmt::Display) -> ExportError {
    ExportError::Record(e.to_string())
}

fn csv_line(cells: impl IntoIterator<Item = String>) -> Result<Vec<u8>, ExportError> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(cells).map_err(record_err)?;
    w.into_inner().map_err(|e| record_err(e.error()))
}

/// A JSON value as a CSV cell: strings as they are, arrays joined with `;`,
/// absent and null empty, anything else as JSON.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| cell(Some(i)))
            .collect::<Vec<_>>()
            .join(";"),
        Some(other) => other.to_string(),
    }
}

/// One export row of the transaction at `leaf` (id `id_hex`, author time
/// `recorded_ms`, canonical payload `payload`), ending with `\n`.
///
/// FHIR NDJSON of a kind that is not a FHIR resource is refused
/// ([`ExportError::NotFhir`]), as is a kind that cannot be exported.
pub fn render_row(
    kind: &str,
    format: Format,
    leaf: u64,
    id_hex: &str,
    recorded_ms: u64,
    payload: &[u8],
) -> Result<Vec<u8>, ExportError> {
    if !KINDS.contains(&kind) {
        return Err(ExportError::UnknownKind(kind.to_owned()));
    }
    let mut out = match format {
        Format::Ndjson => {
            let record: &RawValue = serde_json::from_slice(payload).map_err(record_err)?;
            let row = NdjsonRow {
                leaf,
                id: id_hex.to_owned(),
                recorded: recorded_ms,
                kind: kind.to_owned(),
                record,
            };
            serde_json::to_vec(&row).map_err(record_err)?
        }
        Format::FhirNdjson => {
            if fhir::resource_type_of(kind).is_none() {
                return Err(ExportError::NotFhir(kind.to_owned()));
            }
            let mut resource: Value = serde_json::from_slice(payload).map_err(record_err)?;
            let obj = resource
                .as_object_mut()
                .ok_or_else(|| record_err("a FHIR resource is a JSON object"))?;
            obj.insert("id".into(), Value::String(id_hex.to_owned()));
            serde_jcs::to_vec(&resource).map_err(record_err)?
        }
        Format::Csv => {
            let payload_value: Value = serde_json::from_slice(payload).map_err(record_err)?;
            let mut cells = vec![leaf.to_string(), id_hex.to_owned(), recorded_ms.to_string()];
            if fhir::resource_type_of(kind).is_some() {
                let s = fhir::validate(&payload_value).map_err(|e| record_err(e.diagnostics))?;
                let codes: Vec<String> = s
                    .codes
                    .iter()
                    .map(|(system, code)| format!("{system}|{code}"))
                    .collect();
                let resource = String::from_utf8(payload.to_vec()).map_err(record_err)?;
                cells.extend([
                    s.resource_type.to_owned(),
                    s.patient,
                    s.date.unwrap_or_default(),
                    codes.join(";"),
                    resource,
                ]);
            } else {
                cells.extend(columns(kind).iter().map(|c| cell(payload_value.get(c))));
            }
            return csv_line(cells);
        }
    };
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const P: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";
    const ID: &str = "563a41f2b17a4d658fe159f7942dabff16177228e45a8a519e1a2ea3b713da98";

    fn jcs(v: &Value) -> Vec<u8> {
        serde_jcs::to_vec(v).unwrap()
    }

    fn report(date: &str) -> Vec<u8> {
        jcs(&json!({
            "patient": P,
            "institution": "Dom zdravlja Nis",
            "encounter_date": date,
            "diagnoses": ["J10.1", "I10"],
            "anamnesis": "Fever, \"dry\" cough,\nmyalgia.",
            "findings": "BP 150/95",
        }))
    }

    fn observation() -> Vec<u8> {
        jcs(&json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": format!("Patient/{P}")},
            "effectiveDateTime": "2026-11-24T23:30:00+01:00",
            "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
        }))
    }

    fn query(kind: &str, from: Option<&str>, to: Option<&str>, format: Format) -> Query {
        Query {
            kind: kind.into(),
            from: from.map(Into::into),
            to: to.map(Into::into),
            format,
        }
    }

    const DAY: i64 = 86_400_000;
    /// 2026-11-24T00:00:00Z.
    const NOV_24: i64 = 1_795_478_400_000;

    #[test]
    fn record_dates_per_kind() {
        assert_eq!(
            record_date_ms(records::MEDICAL_REPORT, &report("2026-11-24")),
            Some(NOV_24)
        );
        let vitals = jcs(&json!({"patient": P, "time": "2026-11-24T08:30:00Z", "pulse": 72}));
        assert_eq!(
            record_date_ms(records::VITAL_SIGNS, &vitals),
            Some(NOV_24 + 8 * 3_600_000 + 30 * 60_000)
        );
        let counts = jcs(
            &json!({"date": "2026-11-25", "region": "Nisavski", "disease": "U07.1",
            "new_cases": 1, "hospitalised": 0, "on_respirator": 0, "deaths": 0}),
        );
        assert_eq!(
            record_date_ms(registries::EPIDEMIC_REPORT, &counts),
            Some(NOV_24 + DAY)
        );
        // 23:30 at +01:00 is 22:30 UTC on the same day.
        assert_eq!(
            record_date_ms(fhir::KIND_OBSERVATION, &observation()),
            Some(NOV_24 + 22 * 3_600_000 + 30 * 60_000)
        );
        assert_eq!(record_date_ms(records::MEDICAL_REPORT, b"{}"), None);
        assert_eq!(record_date_ms("participant.register", &counts), None);
    }

    #[test]
    fn queries_are_checked() {
        let ok = query(
            records::MEDICAL_REPORT,
            Some("2026-11-24"),
            Some("2026-11-24"),
            Format::Csv,
        );
        let e = ok.check().unwrap();
        assert!(e.selects(&report("2026-11-24")));
        assert!(!e.selects(&report("2026-11-23")));
        assert!(!e.selects(&report("2026-11-25")));
        assert!(
            !e.selects(b"{}"),
            "a dated range leaves undated records out"
        );
        let open = query(records::MEDICAL_REPORT, None, None, Format::Ndjson);
        assert!(open.check().unwrap().selects(b"{}"));
        let after = query(
            records::MEDICAL_REPORT,
            Some("2026-11-24"),
            None,
            Format::Csv,
        );
        assert!(after.check().unwrap().selects(&report("2030-01-01")));
        for (q, want) in [
            (
                query("participant.register", None, None, Format::Csv),
                "cannot be exported",
            ),
            (
                query(records::MEDICAL_REPORT, None, None, Format::FhirNdjson),
                "only FHIR kinds",
            ),
            (
                query(
                    records::MEDICAL_REPORT,
                    Some("2026-02-30"),
                    None,
                    Format::Csv,
                ),
                "from must be a date",
            ),
            (
                query(
                    records::MEDICAL_REPORT,
                    None,
                    Some("24.11.2026"),
                    Format::Csv,
                ),
                "to must be a date",
            ),
            (
                query(
                    records::MEDICAL_REPORT,
                    Some("2026-11-25"),
                    Some("2026-11-24"),
                    Format::Csv,
                ),
                "is after",
            ),
        ] {
            let err = q.check().unwrap_err().to_string();
            assert!(err.contains(want), "{q:?}: {err}");
        }
        assert_eq!("fhir-ndjson".parse::<Format>(), Ok(Format::FhirNdjson));
        assert!("json".parse::<Format>().is_err());
    }

    #[test]
    fn csv_rows_have_a_fixed_header_and_quote_what_needs_it() {
        let e = query(records::MEDICAL_REPORT, None, None, Format::Csv)
            .check()
            .unwrap();
        assert_eq!(
            String::from_utf8(e.header()).unwrap(),
            "leaf,id,recorded,patient,institution,encounter_date,diagnoses,anamnesis,findings,therapy\n"
        );
        let row = e
            .row(7, ID, 1_700_000_000_000, &report("2026-11-24"))
            .unwrap();
        assert_eq!(
            String::from_utf8(row.clone()).unwrap(),
            format!(
                "7,{ID},1700000000000,{P},Dom zdravlja Nis,2026-11-24,J10.1;I10,\"Fever, \"\"dry\"\" cough,\nmyalgia.\",BP 150/95,\n"
            )
        );
        // The csv crate reads back what it wrote.
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(row.as_slice());
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(&rec[7], "Fever, \"dry\" cough,\nmyalgia.");
        let vitals = query(records::VITAL_SIGNS, None, None, Format::Csv)
            .check()
            .unwrap();
        let row = vitals
            .row(
                1,
                ID,
                2,
                &jcs(
                    &json!({"patient": P, "time": "2026-11-24T08:30:00Z", "pulse": 72,
                    "temperature": 36.8, "on_oxygen": false, "spo2_scale": 1}),
                ),
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(row).unwrap(),
            format!("1,{ID},2,{P},2026-11-24T08:30:00Z,,,false,1,,,72,,36.8,\n")
        );
    }

    #[test]
    fn ndjson_rows_carry_the_payload_bytes_exactly() {
        let payload = report("2026-11-24");
        let row = render_row(records::MEDICAL_REPORT, Format::Ndjson, 3, ID, 9, &payload).unwrap();
        assert_eq!(row.last(), Some(&b'\n'));
        assert_eq!(row.iter().filter(|b| **b == b'\n').count(), 1);
        let parsed: ParsedRow = serde_json::from_slice(&row).unwrap();
        assert_eq!(
            (
                parsed.leaf,
                parsed.id.as_str(),
                parsed.recorded,
                parsed.kind.as_str()
            ),
            (3, ID, 9, records::MEDICAL_REPORT)
        );
        assert_eq!(parsed.record.get().as_bytes(), payload.as_slice());
        let text = String::from_utf8(row).unwrap();
        assert!(
            text.starts_with(&format!(
                "{{\"leaf\":3,\"id\":\"{ID}\",\"recorded\":9,\"kind\":\"medical_report\",\"record\":{{"
            )),
            "{text}"
        );
    }

    #[test]
    fn fhir_rows_are_the_resource_with_the_transaction_id() {
        let row = render_row(
            fhir::KIND_OBSERVATION,
            Format::FhirNdjson,
            3,
            ID,
            9,
            &observation(),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&row).unwrap();
        assert_eq!(v["id"], ID);
        assert_eq!(v["resourceType"], "Observation");
        assert!(fhir::validate(&fhir::for_storage(&v)).is_ok());
        assert_eq!(
            render_row(records::MEDICAL_REPORT, Format::FhirNdjson, 3, ID, 9, b"{}"),
            Err(ExportError::NotFhir(records::MEDICAL_REPORT.into()))
        );
        let csv = render_row(
            fhir::KIND_OBSERVATION,
            Format::Csv,
            3,
            ID,
            9,
            &observation(),
        )
        .unwrap();
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(csv.as_slice());
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(&rec[3], "Observation");
        assert_eq!(&rec[4], P);
        assert_eq!(&rec[6], "http://loinc.org|8867-4");
        assert_eq!(rec[7].as_bytes(), observation().as_slice());
    }

    #[test]
    fn rows_never_carry_more_than_the_payload() {
        // Everything but the leaf, id and time comes from the payload: a
        // field it lacks is an empty cell, not something from elsewhere.
        let payload = jcs(
            &json!({"date": "2026-11-20", "region": "Beograd", "vaccine": "J07BX03",
            "dose": 2, "age_band": "65-74", "doses": 140}),
        );
        let row = render_row(
            registries::VACCINATION_REPORT,
            Format::Csv,
            1,
            ID,
            2,
            &payload,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(row).unwrap(),
            format!("1,{ID},2,2026-11-20,Beograd,J07BX03,2,65-74,140\n")
        );
        let donor = jcs(
            &json!({"patient": P, "decision": "opt_in", "organs": ["kidneys", "corneas"],
            "date": "2026-11-24"}),
        );
        let row = render_row(
            registries::ORGAN_DONOR_DECISION,
            Format::Csv,
            1,
            ID,
            2,
            &donor,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(row).unwrap(),
            format!("1,{ID},2,{P},opt_in,kidneys;corneas,2026-11-24\n")
        );
    }
}
