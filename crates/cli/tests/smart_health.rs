//! Wearable vitals through a real `medledger serve`: 1,000 simulated
//! patients, each with a device bound to them, stream readings through
//! `POST /v1/vitals` (out of order, with values on every band edge). The
//! node's NEWS2 alerts, read from `GET /v1/alerts` and followed on the
//! `GET /v1/alerts/stream` event stream, must be exactly what an
//! independent NEWS2 computation in this file gives from the same
//! readings, down to the transactions each alert rests on.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use medledger_formats::keys;
use medledger_formats::tx::Transaction;
use medledger_health::calendar::instant_of_ms;
use medledger_health::pseudonym::synthetic;
use medledger_ledger::{Role, kind, now_ms};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PATIENTS: u64 = 1000;
const WINDOW_MINUTES: i64 = 60;
/// 2026-11-24T06:00:00Z.
const START_MS: i64 = 1_795_478_400_000 + 6 * 3_600_000;

/// One reading record as sent, with the leaf it was committed at.
#[derive(Clone, Debug)]
struct Sent {
    time_ms: i64,
    leaf: u64,
    rr: Option<f64>,
    spo2: Option<f64>,
    on_oxygen: Option<bool>,
    scale2: bool,
    sbp: Option<f64>,
    pulse: Option<f64>,
    acvpu: Option<&'static str>,
    temp: Option<f64>,
}

const ACVPU: [&str; 5] = ["alert", "new_confusion", "voice", "pain", "unresponsive"];

/// A value near a band edge of the RCP chart, or anywhere in range.
fn pick(rng: &mut Rng, edges: &[f64], lo: f64, hi: f64) -> f64 {
    match rng.below(4) {
        0 => lo + (hi - lo) * (rng.below(10_000) as f64 / 10_000.0),
        1 => edges[rng.below(edges.len() as u64) as usize] + 0.5,
        2 => edges[rng.below(edges.len() as u64) as usize] - 0.5,
        _ => edges[rng.below(edges.len() as u64) as usize],
    }
    .clamp(lo, hi)
}

fn readings(rng: &mut Rng, time_ms: i64, first: bool, patient_scale2: bool) -> Sent {
    let mut s = Sent {
        time_ms,
        leaf: 0,
        rr: None,
        spo2: None,
        on_oxygen: None,
        scale2: first && patient_scale2,
        sbp: None,
        pulse: None,
        acvpu: None,
        temp: None,
    };
    // Most records carry a few parameters, some all seven.
    let full = rng.below(4) == 0;
    let mut any = false;
    for p in 0..7 {
        if !(full || rng.below(3) == 0) {
            continue;
        }
        any = true;
        match p {
            0 => {
                s.rr = Some(pick(
                    rng,
                    &[8.0, 9.0, 11.0, 12.0, 20.0, 21.0, 24.0, 25.0],
                    4.0,
                    40.0,
                ))
            }
            1 => {
                let edges = [
                    83.0, 84.0, 85.0, 86.0, 87.0, 88.0, 91.0, 92.0, 93.0, 94.0, 95.0, 96.0, 97.0,
                ];
                s.spo2 = Some(pick(rng, &edges, 70.0, 100.0));
            }
            2 => s.on_oxygen = Some(rng.below(3) == 0),
            3 => {
                let edges = [90.0, 91.0, 100.0, 101.0, 110.0, 111.0, 219.0, 220.0];
                s.sbp = Some(pick(rng, &edges, 60.0, 240.0));
            }
            4 => {
                let edges = [
                    40.0, 41.0, 50.0, 51.0, 90.0, 91.0, 110.0, 111.0, 130.0, 131.0,
                ];
                s.pulse = Some(pick(rng, &edges, 30.0, 170.0));
            }
            5 => {
                s.acvpu = Some(if rng.below(4) == 0 {
                    ACVPU[rng.below(5) as usize]
                } else {
                    "alert"
                })
            }
            _ => {
                let t = match rng.below(4) {
                    0 => 34.0 + rng.below(70) as f64 / 10.0,
                    1 => [35.0, 35.1, 36.0, 36.1, 38.0, 38.1, 39.0, 39.1][rng.below(8) as usize],
                    2 => [35.05, 36.05, 38.05, 39.05, 35.04, 38.96][rng.below(6) as usize],
                    _ => 36.0 + rng.below(30) as f64 / 10.0,
                };
                s.temp = Some(t);
            }
        }
    }
    if !any {
        s.pulse = Some(pick(rng, &[50.0, 51.0, 90.0, 91.0], 30.0, 170.0));
    }
    s
}

fn payload(patient: &str, s: &Sent) -> Value {
    let mut v = json!({"patient": patient, "time": instant_of_ms(s.time_ms)});
    let mut put = |k: &str, x: Option<Value>| {
        if let Some(x) = x {
            v[k] = x;
        }
    };
    put("respiratory_rate", s.rr.map(Value::from));
    put("spo2", s.spo2.map(Value::from));
    put("on_oxygen", s.on_oxygen.map(Value::from));
    put("spo2_scale", s.scale2.then(|| json!(2)));
    put("systolic_bp", s.sbp.map(Value::from));
    put("pulse", s.pulse.map(Value::from));
    put("consciousness", s.acvpu.map(Value::from));
    put("temperature", s.temp.map(Value::from));
    v
}

// ---- NEWS2, written out from the RCP 2017 chart ------------------------------

/// Chart points of a whole-number reading against `(upper bound, points)`
/// bands in increasing order; the last band is open-ended.
fn band(x: i64, bands: &[(i64, u8)]) -> u8 {
    bands
        .iter()
        .find(|(upper, _)| x <= *upper)
        .map_or(bands[bands.len() - 1].1, |b| b.1)
}

fn whole(x: f64) -> i64 {
    x.round() as i64
}

/// The expected alert: (score, level, complete, leaves), or None for score 0.
fn expected(sent: &[Sent]) -> Option<(u8, &'static str, bool, Vec<u64>)> {
    // The latest record holding each parameter, by (time, leaf).
    fn latest<T: Copy>(sent: &[Sent], f: impl Fn(&Sent) -> Option<T>) -> Option<(T, i64, u64)> {
        sent.iter()
            .filter_map(|s| f(s).map(|v| (v, s.time_ms, s.leaf)))
            .max_by_key(|&(_, t, l)| (t, l))
    }
    let rr = latest(sent, |s| s.rr);
    let spo2 = latest(sent, |s| s.spo2);
    let oxygen = latest(sent, |s| s.on_oxygen);
    let sbp = latest(sent, |s| s.sbp);
    let pulse = latest(sent, |s| s.pulse);
    let acvpu = latest(sent, |s| s.acvpu);
    let temp = latest(sent, |s| s.temp);
    let scale2 = latest(sent, |s| s.scale2.then_some(()));
    let times = [
        rr.map(|r| r.1),
        spo2.map(|r| r.1),
        oxygen.map(|r| r.1),
        sbp.map(|r| r.1),
        pulse.map(|r| r.1),
        acvpu.map(|r| r.1),
        temp.map(|r| r.1),
    ];
    let newest = times.iter().flatten().max().copied()?;
    let from = newest - WINDOW_MINUTES * 60_000;
    let within = |t: i64| t >= from;
    let rr = rr.filter(|r| within(r.1));
    let spo2 = spo2.filter(|r| within(r.1));
    let oxygen = oxygen.filter(|r| within(r.1));
    let sbp = sbp.filter(|r| within(r.1));
    let pulse = pulse.filter(|r| within(r.1));
    let acvpu = acvpu.filter(|r| within(r.1));
    let temp = temp.filter(|r| within(r.1));
    let on_o2 = oxygen.is_some_and(|o| o.0);
    let mut points = Vec::new();
    let mut leaves = Vec::new();
    let mut complete = true;
    let mut add = |p: Option<u8>, leaf: Option<u64>| match (p, leaf) {
        (Some(p), Some(l)) => {
            points.push(p);
            leaves.push(l);
        }
        _ => complete = false,
    };
    add(
        rr.map(|r| {
            band(
                whole(r.0),
                &[(8, 3), (11, 1), (20, 0), (24, 2), (i64::MAX, 3)],
            )
        }),
        rr.map(|r| r.2),
    );
    add(
        spo2.map(|r| {
            let x = whole(r.0);
            if scale2.is_some() {
                if x >= 93 && on_o2 {
                    band(x, &[(94, 1), (96, 2), (i64::MAX, 3)])
                } else {
                    band(x, &[(83, 3), (85, 2), (87, 1), (i64::MAX, 0)])
                }
            } else {
                band(x, &[(91, 3), (93, 2), (95, 1), (i64::MAX, 0)])
            }
        }),
        spo2.map(|r| r.2),
    );
    add(oxygen.map(|o| if o.0 { 2 } else { 0 }), oxygen.map(|o| o.2));
    add(
        sbp.map(|r| {
            band(
                whole(r.0),
                &[(90, 3), (100, 2), (110, 1), (219, 0), (i64::MAX, 3)],
            )
        }),
        sbp.map(|r| r.2),
    );
    add(
        pulse.map(|r| {
            band(
                whole(r.0),
                &[(40, 3), (50, 1), (90, 0), (110, 1), (130, 2), (i64::MAX, 3)],
            )
        }),
        pulse.map(|r| r.2),
    );
    add(
        acvpu.map(|a| if a.0 == "alert" { 0 } else { 3 }),
        acvpu.map(|a| a.2),
    );
    add(
        temp.map(|t| {
            let tenths = (t.0 * 10.0).round() as i64;
            band(
                tenths,
                &[(350, 3), (360, 1), (380, 0), (390, 1), (i64::MAX, 2)],
            )
        }),
        temp.map(|t| t.2),
    );
    if scale2.is_some() && spo2.is_some() {
        leaves.push(scale2.map(|s| s.2).unwrap_or_default());
    }
    let score: u8 = points.iter().sum();
    let level = match score {
        0 => return None,
        7.. => "high",
        5..=6 => "medium",
        _ if points.contains(&3) => "low_medium",
        _ => "low",
    };
    leaves.sort_unstable();
    leaves.dedup();
    Some((score, level, complete, leaves))
}

// ---- the node ------------------------------------------------------------------

fn sign(key: &SigningKey, kind: &str, payload: &Value) -> Transaction {
    Transaction::sign(key, kind, now_ms(), payload).expect("sign")
}

fn wire(tx: &Transaction) -> Value {
    serde_json::to_value(tx.to_wire().expect("wire")).expect("json")
}

/// Posts a batch to `path`; every item must be accepted. Returns the
/// results.
fn post_all(
    http: &reqwest::blocking::Client,
    s: &Server,
    path: &str,
    txs: &[Transaction],
) -> Vec<Value> {
    let body = Value::Array(txs.iter().map(wire).collect());
    let r = http.post(s.url(path)).json(&body).send().expect("post");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().expect("json");
    let results = v["results"].as_array().expect("results").clone();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["status"], 200, "{path} item {i}: {r}");
    }
    results
}

/// Reads `event:`/`data:` pairs off an SSE response until it ends.
fn follow_stream(resp: reqwest::blocking::Response, events: Arc<Mutex<Vec<(String, Value)>>>) {
    let mut event = String::new();
    for line in BufReader::new(resp).lines() {
        let Ok(line) = line else { return };
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_owned();
        } else if let Some(d) = line.strip_prefix("data:") {
            let v: Value = serde_json::from_str(d.trim()).expect("event data is JSON");
            events.lock().unwrap().push((event.clone(), v));
        }
    }
}

/// Patient → (score, level, complete, leaves) of the node's current alerts.
type Alerts = BTreeMap<String, (u8, String, bool, Vec<u64>)>;

fn alert_key(a: &Value) -> (String, (u8, String, bool, Vec<u64>)) {
    let leaves: Vec<u64> = a["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .map(|t| t["leaf"].as_u64().expect("leaf"))
        .collect();
    (
        a["patient"].as_str().expect("patient").to_owned(),
        (
            a["score"].as_u64().expect("score") as u8,
            a["level"].as_str().expect("level").to_owned(),
            a["complete"].as_bool().expect("complete"),
            leaves,
        ),
    )
}

#[test]
fn vitals_for_a_thousand_patients_raise_exactly_the_alerts_news2_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir);
    let admin = admin_key(&dir);
    let server = Server::start(
        &dir,
        &[(
            "MEDLEDGER_NEWS2_WINDOW_MINUTES",
            &WINDOW_MINUTES.to_string(),
        )],
    );
    let http = client();

    // A doctor to read alerts, and one device bound to each patient.
    let doctor = SigningKey::from_bytes(&[3; 32]);
    post_all(
        &http,
        &server,
        "/v1/transactions",
        &[register_tx(&admin, &doctor)],
    );
    let token = issue_token(&dir, &doctor);
    let devices: Vec<SigningKey> = (0..PATIENTS)
        .map(|i| {
            let mut seed = [9u8; 32];
            seed[..8].copy_from_slice(&i.to_be_bytes());
            SigningKey::from_bytes(&seed)
        })
        .collect();
    let registrations: Vec<Transaction> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            sign(
                &admin,
                kind::REGISTER,
                &json!({"key": keys::public_key(d), "role": Role::Device, "institution": "Klinicki centar Nis",
                    "label": format!("wearable {i}"), "patient": synthetic(i as u64)}),
            )
        })
        .collect();
    post_all(&http, &server, "/v1/transactions", &registrations);

    // Follow the event stream from before the first reading.
    let streamed = Arc::new(Mutex::new(Vec::new()));
    let stream = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap()
        .get(server.url("/v1/alerts/stream"))
        .bearer_auth(&token)
        .send()
        .expect("open the alert stream");
    assert_eq!(stream.status(), 200);
    let follower = {
        let events = streamed.clone();
        std::thread::spawn(move || follow_stream(stream, events))
    };

    // Every patient's records: times over three hours, sent out of order.
    let mut rng = Rng::new(seed("smart_health"));
    let mut sent: Vec<Vec<Sent>> = Vec::new();
    let mut queue: Vec<(usize, usize)> = Vec::new();
    for p in 0..PATIENTS as usize {
        let scale2 = rng.below(10) == 0;
        let n = 1 + rng.below(12) as usize;
        let records: Vec<Sent> = (0..n)
            .map(|j| {
                let t = START_MS + rng.below(3 * 3_600_000) as i64;
                readings(&mut rng, t, j == 0, scale2)
            })
            .collect();
        queue.extend((0..n).map(|j| (p, j)));
        sent.push(records);
    }
    for i in (1..queue.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        queue.swap(i, j);
    }
    for chunk in queue.chunks(1500) {
        let txs: Vec<Transaction> = chunk
            .iter()
            .map(|&(p, j)| {
                sign(
                    &devices[p],
                    kind::VITAL_SIGNS,
                    &payload(&synthetic(p as u64), &sent[p][j]),
                )
            })
            .collect();
        let results = post_all(&http, &server, "/v1/vitals", &txs);
        for (&(p, j), r) in chunk.iter().zip(&results) {
            sent[p][j].leaf = r["leaf"].as_u64().expect("leaf");
        }
    }
    let size = {
        let st: Value = http
            .get(server.url("/v1/status"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        st["log_size"].as_u64().expect("log_size")
    };

    // The node's alerts, once its views have read the whole log.
    let deadline = Instant::now() + Duration::from_secs(60);
    let listed: Alerts = loop {
        let mut all = Alerts::new();
        let mut offset = 0;
        let mut as_of = 0;
        loop {
            let page: Value = http
                .get(server.url(&format!("/v1/alerts?limit=1000&offset={offset}")))
                .bearer_auth(&token)
                .send()
                .unwrap()
                .json()
                .unwrap();
            as_of = as_of.max(page["as_of"].as_u64().unwrap());
            let alerts = page["alerts"].as_array().unwrap();
            all.extend(alerts.iter().map(alert_key));
            offset += alerts.len();
            if alerts.is_empty() || offset >= page["total"].as_u64().unwrap() as usize {
                break;
            }
        }
        if as_of >= size {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "alerts stuck at log size {as_of} < {size}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    // The independent computation.
    let want: Alerts = sent
        .iter()
        .enumerate()
        .filter_map(|(p, records)| {
            expected(records).map(|(score, level, complete, leaves)| {
                (
                    synthetic(p as u64),
                    (score, level.to_owned(), complete, leaves),
                )
            })
        })
        .collect();
    for (patient, w) in &want {
        assert_eq!(listed.get(patient), Some(w), "patient {patient}");
    }
    assert_eq!(
        listed.len(),
        want.len(),
        "alerts for patients NEWS2 scores 0"
    );
    // Coverage: every level and both complete and partial sets occur.
    for level in ["low", "low_medium", "medium", "high"] {
        let n = want.values().filter(|w| w.1 == level).count();
        assert!(n >= 20, "only {n} patients at level {level}");
    }
    assert!(want.values().any(|w| w.2) && want.values().any(|w| !w.2));

    // The stream, replayed, ends in the same state.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut state = Alerts::new();
        for (event, data) in streamed.lock().unwrap().iter() {
            match event.as_str() {
                "alert" => {
                    let (p, a) = alert_key(data);
                    state.insert(p, a);
                }
                "cleared" => {
                    state.remove(data["patient"].as_str().unwrap());
                }
                other => panic!("unexpected event {other}"),
            }
        }
        if state == listed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream ended in another state than GET /v1/alerts ({} vs {} alerts)",
            state.len(),
            listed.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    follower.join().expect("stream reader");
}
