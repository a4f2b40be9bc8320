//! What the FHIR facade answers with: OperationOutcomes, the
//! `transaction-response`, `batch-response` and `searchset` Bundles, the
//! CapabilityStatement, and a stored resource as readers get it.

use medledger_health::calendar;
use medledger_health::fhir::{self, BundleType, FhirError};
use serde_json::{Map, Value, json};

/// The date the capability statement's content was last changed.
const CAPABILITY_DATE: &str = "2026-11-24";

/// The result of one Bundle entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EntryOutcome {
    /// The resource was stored.
    Created {
        /// Its resourceType.
        resource_type: &'static str,
        /// Its new id.
        id: String,
    },
    /// A conditional create matched this resource; nothing was written.
    Existing {
        /// Its resourceType.
        resource_type: &'static str,
        /// Its id.
        id: String,
    },
    /// The entry was refused.
    Failed(FhirError),
}

/// The HTTP status line used in `entry.response.status`.
fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => return status.to_string(),
    };
    format!("{status} {reason}")
}

/// A `transaction-response` or `batch-response` Bundle with one entry per
/// outcome, in order: `201 Created` with `location`
/// `Type/<id>/_history/1`, or the error's status with its OperationOutcome.
pub(crate) fn transaction_response(kind: BundleType, entries: Vec<EntryOutcome>) -> Value {
    let ty = match kind {
        BundleType::Transaction => "transaction-response",
        BundleType::Batch => "batch-response",
    };
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|e| match e {
            EntryOutcome::Created { resource_type, id } => json!({"response": {
                "status": status_line(201),
                "location": format!("{resource_type}/{id}/_history/1"),
                "etag": "W/\"1\"",
            }}),
            EntryOutcome::Existing { resource_type, id } => json!({"response": {
                "status": status_line(200),
                "location": format!("{resource_type}/{id}/_history/1"),
                "etag": "W/\"1\"",
            }}),
            EntryOutcome::Failed(err) => json!({"response": {
                "status": status_line(err.status),
                "outcome": outcome(&err),
            }}),
        })
        .collect();
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("type".into(), json!(ty));
    if !entries.is_empty() {
        bundle.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(bundle)
}

/// `link` made absolute against `base` (which has no trailing slash).
fn absolute(base: &str, link: &str) -> String {
    if link.starts_with("http://") || link.starts_with("https://") {
        link.to_owned()
    } else {
        format!("{base}/{}", link.trim_start_matches('/'))
    }
}

/// A `searchset` Bundle.
///
/// `base_url` is the facade's absolute base, e.g. `https://node/fhir`.
/// `self_link` and `next_link` are relative to it (`Observation?code=...`;
/// a leading `/` is ignored, absolute URLs are kept). Each resource becomes
/// an entry with `fullUrl` `base_url/Type/id` (when it has both) and
/// `search.mode` `match`.
pub(crate) fn searchset(
    base_url: &str,
    self_link: &str,
    next_link: Option<&str>,
    total: Option<u64>,
    resources: Vec<Value>,
    outcome: Option<Value>,
) -> Value {
    let base = base_url.trim_end_matches('/');
    let mut links = vec![json!({"relation": "self", "url": absolute(base, self_link)})];
    if let Some(next) = next_link {
        links.push(json!({"relation": "next", "url": absolute(base, next)}));
    }
    let outcome = outcome.map(|o| json!({"resource": o, "search": {"mode": "outcome"}}));
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let full_url = match (
                r.get("resourceType").and_then(Value::as_str),
                r.get("id").and_then(Value::as_str),
            ) {
                (Some(t), Some(id)) => Some(format!("{base}/{t}/{id}")),
                _ => None,
            };
            let mut e = Map::new();
            if let Some(u) = full_url {
                e.insert("fullUrl".into(), Value::String(u));
            }
            e.insert("resource".into(), r);
            e.insert("search".into(), json!({"mode": "match"}));
            Value::Object(e)
        })
        .chain(outcome)
        .collect();
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("type".into(), json!("searchset"));
    if let Some(t) = total {
        bundle.insert("total".into(), json!(t));
    }
    bundle.insert("link".into(), Value::Array(links));
    if !entries.is_empty() {
        bundle.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(bundle)
}

fn interactions(codes: &[&str]) -> Value {
    Value::Array(codes.iter().map(|c| json!({"code": c})).collect())
}

/// The types stored, each with its search parameters from the table the
/// search code uses (`fhir::search_params`), so the two cannot drift.
const STORED_TYPES: [&str; 5] = [
    "Observation",
    "Condition",
    "Immunization",
    "MedicationRequest",
    "MedicationDispense",
];

fn stored_type(ty: &str) -> Value {
    let params: Vec<Value> = fhir::search_params(ty)
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "definition": p.definition,
                "type": p.ty.as_str(),
                "documentation": p.documentation,
            })
        })
        .collect();
    json!({
        "type": ty,
        "interaction": interactions(&["read", "search-type", "create"]),
        "conditionalCreate": true,
        "searchParam": params,
    })
}

/// The server's CapabilityStatement (R4 4.0.1, JSON only). `token_url`
/// is the SMART Backend Services token endpoint.
pub(crate) fn capability_statement(
    base_url: &str,
    token_url: &str,
    software_version: &str,
) -> Value {
    let base = base_url.trim_end_matches('/');
    let mut resources: Vec<Value> = STORED_TYPES.iter().map(|t| stored_type(t)).collect();
    resources.push(json!({
        "type": "Patient",
        "interaction": interactions(&["read"]),
        "operation": [{
            "name": "everything",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        }],
    }));
    let results: Vec<String> = fhir::RESULT_PARAMS
        .iter()
        .map(|(n, _, doc)| format!("{n}: {doc}"))
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": CAPABILITY_DATE,
        "kind": "instance",
        "software": {"name": "medledger", "version": software_version},
        "implementation": {
            "description": "medledger FHIR R4 facade over a tamper-evident ledger of pseudonymized health data",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "documentation": format!(
                "Every search takes {}. A comma is OR, a repeated parameter AND; unknown parameters are refused unless Prefer: handling=lenient.",
                results.join("; ")
            ),
            "security": {
                "cors": false,
                "service": [{
                    "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }],
                    "text": "SMART Backend Services (client_credentials with a private_key_jwt assertion, EdDSA)",
                }],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": token_url}],
                }],
                "description": "Bearer tokens from the SMART Backend Services token endpoint (see .well-known/smart-configuration), or participant tokens; reads are decided per record by role, purpose of use and the patient's consent, and logged on the ledger.",
            },
            "resource": resources,
            "interaction": interactions(&["transaction", "batch"]),
        }],
    })
}

/// A stored payload made into the resource returned to readers: `id` set to
/// `id`, `meta.versionId` to `"1"` and `meta.lastUpdated` to the instant
/// `last_updated_ms` (milliseconds since the Unix epoch, e.g.
/// `2026-11-24T15:30:00.123Z`). Everything else is left as stored; a payload
/// that is not an object is returned unchanged.
pub(crate) fn as_read(payload: &Value, id: &str, last_updated_ms: u64) -> Value {
    let mut v = payload.clone();
    if let Value::Object(obj) = &mut v {
        obj.insert("id".into(), Value::String(id.to_owned()));
        let meta = obj
            .entry("meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        if let Value::Object(m) = meta {
            m.insert("versionId".into(), json!("1"));
            m.insert("lastUpdated".into(), json!(instant(last_updated_ms)));
        }
    }
    v
}

/// `ms` since the Unix epoch as an RFC 3339 UTC instant with milliseconds
/// (past the largest `i64`, the instant of the largest).
fn instant(ms: u64) -> String {
    calendar::instant_of_ms(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// An OperationOutcome with one issue per error. With no errors it is an
/// informational outcome saying so.
pub(crate) fn outcome_of(errors: &[FhirError]) -> Value {
    if errors.is_empty() {
        return informational_outcome("no issues");
    }
    let issues: Vec<Value> = errors.iter().map(issue).collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

/// An OperationOutcome with one issue of severity `information` and code
/// `informational`.
fn informational_outcome(text: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": text}]
    })
}

/// An OperationOutcome with one issue of severity `warning` and code
/// `not-supported`, as a lenient search reports what it ignored.
pub(crate) fn warning_outcome(text: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "warning", "code": "not-supported", "diagnostics": text}]
    })
}

/// `e` as an OperationOutcome with one issue.
fn outcome(e: &FhirError) -> Value {
    outcome_of(std::slice::from_ref(e))
}

/// The OperationOutcome issue of `e`.
fn issue(e: &FhirError) -> Value {
    let mut issue = Map::new();
    issue.insert("severity".into(), json!("error"));
    issue.insert("code".into(), json!(e.code));
    issue.insert("diagnostics".into(), json!(e.diagnostics));
    if let Some(x) = &e.expression {
        issue.insert("expression".into(), json!([x]));
    }
    Value::Object(issue)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A US Core heart rate Observation of a pseudonymized patient.
    fn heart_rate() -> Value {
        json!({
            "resourceType": "Observation",
            "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-heart-rate"]},
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA"},
            "effectiveDateTime": "2026-01-01T09:00:00Z",
            "valueQuantity": {"value": 77, "system": "http://unitsofmeasure.org", "code": "/min"}
        })
    }

    /// Why the heart rate is refused once the element at `pointer` is `value`.
    fn refusal(pointer: &str, value: &str) -> FhirError {
        let mut v = heart_rate();
        if let Some(x) = v.pointer_mut(pointer) {
            *x = json!(value);
        }
        fhir::validate(&v).expect_err("expected a refusal")
    }

    // --- outcomes --------------------------------------------------------

    #[test]
    fn operation_outcomes() {
        let e = refusal("/valueQuantity/code", "/s");
        let o = outcome(&e);
        assert_eq!(o["resourceType"], "OperationOutcome");
        assert_eq!(o["issue"].as_array().unwrap().len(), 1);
        assert_eq!(o["issue"][0]["severity"], "error");
        assert_eq!(o["issue"][0]["code"], "value");
        assert_eq!(o["issue"][0]["diagnostics"], json!(e.diagnostics));
        assert_eq!(
            o["issue"][0]["expression"],
            json!(["Observation.valueQuantity.code"])
        );
        assert_eq!(e.to_string(), e.diagnostics);

        let plain = FhirError {
            status: 404,
            code: "processing",
            diagnostics: "not found".into(),
            expression: None,
        };
        let o = outcome_of(&[e.clone(), plain]);
        assert_eq!(o["issue"].as_array().unwrap().len(), 2);
        assert!(o["issue"][1].get("expression").is_none());

        let info = informational_outcome("stored");
        assert_eq!(info["issue"][0]["severity"], "information");
        assert_eq!(info["issue"][0]["code"], "informational");
        assert_eq!(info["issue"][0]["diagnostics"], "stored");
        assert_eq!(outcome_of(&[])["issue"][0]["severity"], "information");
    }

    #[test]
    fn transaction_response_shape() {
        let failure = refusal("/code/coding/0/code", "1234-5");
        let r = transaction_response(
            BundleType::Transaction,
            vec![
                EntryOutcome::Created {
                    resource_type: "Observation",
                    id: "abc".into(),
                },
                EntryOutcome::Failed(failure.clone()),
            ],
        );
        assert_eq!(r["resourceType"], "Bundle");
        assert_eq!(r["type"], "transaction-response");
        assert_eq!(r["entry"][0]["response"]["status"], "201 Created");
        assert_eq!(
            r["entry"][0]["response"]["location"],
            "Observation/abc/_history/1"
        );
        assert!(r["entry"][0]["response"].get("outcome").is_none());
        assert_eq!(
            r["entry"][1]["response"]["status"],
            "422 Unprocessable Entity"
        );
        assert_eq!(r["entry"][1]["response"]["outcome"], outcome(&failure));
        assert!(r["entry"][1]["response"].get("location").is_none());

        let r = transaction_response(BundleType::Batch, vec![]);
        assert_eq!(r["type"], "batch-response");
        assert!(r.get("entry").is_none());
        let bad = FhirError {
            status: 400,
            code: "structure",
            diagnostics: "x".into(),
            expression: None,
        };
        let r = transaction_response(BundleType::Batch, vec![EntryOutcome::Failed(bad)]);
        assert_eq!(r["entry"][0]["response"]["status"], "400 Bad Request");
    }

    // --- search and capability -------------------------------------------

    #[test]
    fn searchset_links_and_entries() {
        let read = as_read(&heart_rate(), "obs1", 0);
        let b = searchset(
            "https://node.example/fhir/",
            "Observation?code=8867-4&_count=1",
            Some("/Observation?code=8867-4&_count=1&_page=2"),
            Some(2),
            vec![read.clone(), json!({"resourceType": "Observation"})],
            None,
        );
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], "searchset");
        assert_eq!(b["total"], 2);
        assert_eq!(
            b["link"],
            json!([
                {"relation": "self", "url": "https://node.example/fhir/Observation?code=8867-4&_count=1"},
                {"relation": "next", "url": "https://node.example/fhir/Observation?code=8867-4&_count=1&_page=2"}
            ])
        );
        assert_eq!(
            b["entry"][0]["fullUrl"],
            "https://node.example/fhir/Observation/obs1"
        );
        assert_eq!(b["entry"][0]["resource"], read);
        assert_eq!(b["entry"][0]["search"]["mode"], "match");
        assert!(b["entry"][1].get("fullUrl").is_none());

        let b = searchset(
            "https://node.example/fhir",
            "https://other.example/fhir/Condition",
            None,
            None,
            vec![],
            Some(warning_outcome("ignored x")),
        );
        assert_eq!(b["link"].as_array().unwrap().len(), 1);
        assert_eq!(b["link"][0]["url"], "https://other.example/fhir/Condition");
        assert!(b.get("total").is_none());
        assert_eq!(b["entry"][0]["search"]["mode"], "outcome");
        assert_eq!(b["entry"][0]["resource"]["issue"][0]["severity"], "warning");
    }

    #[test]
    fn capability_statement_lists_the_resources() {
        let c = capability_statement(
            "https://node.example/fhir",
            "https://node.example/v1/token",
            "0.1.0",
        );
        assert_eq!(c["resourceType"], "CapabilityStatement");
        assert_eq!(c["fhirVersion"], "4.0.1");
        assert_eq!(c["status"], "active");
        assert_eq!(c["kind"], "instance");
        assert_eq!(c["format"], json!(["json"]));
        assert_eq!(c["software"]["version"], "0.1.0");
        let rest = &c["rest"][0];
        assert_eq!(rest["mode"], "server");
        assert_eq!(
            rest["interaction"],
            json!([{"code": "transaction"}, {"code": "batch"}])
        );
        assert_eq!(
            rest["security"]["service"][0]["coding"][0]["code"],
            "SMART-on-FHIR"
        );
        assert_eq!(
            rest["security"]["extension"][0]["extension"][0]["valueUri"],
            "https://node.example/v1/token"
        );
        let resources = rest["resource"].as_array().unwrap();
        let find = |t: &str| resources.iter().find(|r| r["type"] == t).unwrap();
        for t in STORED_TYPES {
            let declared: Vec<(String, String)> = find(t)["searchParam"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap().to_owned(),
                        p["type"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let table: Vec<(String, String)> = fhir::search_params(t)
                .iter()
                .map(|p| (p.name.to_owned(), p.ty.as_str().to_owned()))
                .collect();
            assert_eq!(declared, table, "{t}");
            assert_eq!(find(t)["conditionalCreate"], true);
        }
        let names = |t: &str| -> Vec<String> {
            find(t)["searchParam"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert!(names("Condition").contains(&"date".to_owned()));
        assert!(names("Immunization").contains(&"date".to_owned()));
        assert!(names("Immunization").contains(&"vaccine-code".to_owned()));
        for t in ["MedicationRequest", "MedicationDispense"] {
            assert_eq!(
                names(t),
                ["subject", "patient", "code", "date", "identifier"]
            );
        }
        assert_eq!(find("Patient")["operation"][0]["name"], "everything");
    }

    // --- read and storage forms ------------------------------------------

    #[test]
    fn as_read_sets_id_and_meta() {
        let v = as_read(&heart_rate(), "abc", 1_795_534_200_123);
        assert_eq!(v["id"], "abc");
        assert_eq!(v["meta"]["versionId"], "1");
        assert_eq!(v["meta"]["lastUpdated"], "2026-11-24T15:30:00.123Z");
        assert_eq!(v["meta"]["profile"], heart_rate()["meta"]["profile"]);
        assert_eq!(v["valueQuantity"], heart_rate()["valueQuantity"]);
        assert_eq!(fhir::for_storage(&v), heart_rate());

        let mut bare = heart_rate();
        bare["meta"] = json!("junk");
        let v = as_read(&bare, "x", 0);
        assert_eq!(
            v["meta"],
            json!({"versionId": "1", "lastUpdated": "1970-01-01T00:00:00.000Z"})
        );
        assert_eq!(as_read(&json!([1]), "x", 0), json!([1]));
    }

    #[test]
    fn instants() {
        assert_eq!(instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(instant(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(instant(253_402_300_799_000), "9999-12-31T23:59:59.000Z");
        assert_eq!(instant(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert!(!instant(u64::MAX).is_empty());
        for ms in [0, 951_782_400_000, 1_709_251_199_999, 1_795_534_200_123] {
            assert_eq!(fhir::date_range(&instant(ms)).map(|r| r.0), Some(ms as i64));
        }
    }

    #[test]
    fn garbage_does_not_panic() {
        for g in [
            json!(null),
            json!(5),
            json!("Observation"),
            json!([]),
            json!({}),
            json!({"resourceType": "Observation", "meta": []}),
            json!({"resourceType": "Patient", "name": null}),
        ] {
            let _ = as_read(&g, "x", u64::MAX);
        }
        let e = fhir::validate(&json!({"resourceType": "Observation", "code": 5})).unwrap_err();
        assert_eq!(outcome(&e)["issue"][0]["code"], "structure");
    }
}
