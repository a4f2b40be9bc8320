//! Transaction and batch Bundles: what the server takes from one, and
//! which entries it does.

use serde_json::Value;

use super::elements::{get_arr, get_obj, get_str};
use super::error::{FhirError, rule, structure};
use super::storage::kind_of;
use super::validate::{patient_refusal, unsupported_type};

/// The kind of a Bundle the server processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleType {
    /// All entries succeed or none is stored.
    Transaction,
    /// Each entry succeeds or fails on its own.
    Batch,
}

/// One entry of a transaction or batch Bundle.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleEntry {
    /// `entry.fullUrl`, e.g. a `urn:uuid:` the other entries refer to.
    pub full_url: Option<String>,
    /// `entry.resource`: an object, or `null` when the entry has none.
    pub resource: Value,
    /// `entry.request.method`, e.g. `POST`.
    pub method: String,
    /// `entry.request.url`, e.g. `Observation`.
    pub url: String,
    /// `entry.request.ifNoneExist`: the query of a conditional create.
    pub if_none_exist: Option<String>,
}

/// A parsed transaction or batch Bundle.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// Transaction or batch.
    pub kind: BundleType,
    /// The entries in order.
    pub entries: Vec<BundleEntry>,
}

/// Parses a transaction or batch Bundle.
///
/// Fails with status 400 for anything else: another resource, another
/// Bundle type, an entry without `request` (with `method` and `url`), or a
/// `resource` that is not an object. An entry without a resource parses
/// (its `resource` is `null`); [`check_entry`] refuses it.
pub fn parse_bundle(v: &Value) -> Result<Bundle, FhirError> {
    let Some(obj) = v.as_object() else {
        return Err(FhirError::new(
            400,
            "structure",
            None,
            "a Bundle is a JSON object",
        ));
    };
    match obj.get("resourceType") {
        Some(Value::String(s)) if s == "Bundle" => {}
        _ => {
            return Err(structure(
                "resourceType",
                "expected a Bundle of type transaction or batch",
            ));
        }
    }
    let kind = match get_str(obj, "type", "Bundle")? {
        Some("transaction") => BundleType::Transaction,
        Some("batch") => BundleType::Batch,
        Some(_) => {
            return Err(FhirError::new(
                400,
                "not-supported",
                Some("Bundle.type".into()),
                "only Bundles of type transaction or batch are processed",
            ));
        }
        None => {
            return Err(FhirError::new(
                400,
                "required",
                Some("Bundle.type".into()),
                "Bundle.type is required",
            ));
        }
    };
    let items = get_arr(obj, "entry", "Bundle")?.unwrap_or_default();
    let mut entries = Vec::with_capacity(items.len());
    for (i, e) in items.iter().enumerate() {
        let path = format!("Bundle.entry[{i}]");
        let Some(e) = e.as_object() else {
            return Err(structure(&path, format!("{path} must be an object")));
        };
        let full_url = get_str(e, "fullUrl", &path)?.map(str::to_owned);
        let resource = match e.get("resource") {
            None => Value::Null,
            Some(r @ Value::Object(_)) => r.clone(),
            Some(_) => {
                return Err(structure(
                    format!("{path}.resource"),
                    format!("{path}.resource must be a resource object"),
                ));
            }
        };
        let Some(request) = get_obj(e, "request", &path)? else {
            return Err(FhirError::new(
                400,
                "required",
                Some(format!("{path}.request")),
                format!("{path}.request is required in a transaction or batch"),
            ));
        };
        let rpath = format!("{path}.request");
        let required = |key: &str| {
            FhirError::new(
                400,
                "required",
                Some(format!("{rpath}.{key}")),
                format!("{rpath}.{key} is required"),
            )
        };
        let method = get_str(request, "method", &rpath)?.ok_or_else(|| required("method"))?;
        let url = get_str(request, "url", &rpath)?.ok_or_else(|| required("url"))?;
        let if_none_exist = get_str(request, "ifNoneExist", &rpath)?.map(str::to_owned);
        entries.push(BundleEntry {
            full_url,
            resource,
            method: method.to_owned(),
            url: url.to_owned(),
            if_none_exist,
        });
    }
    Ok(Bundle { kind, entries })
}

/// Whether an entry is something the server does: a POST (create) of an
/// accepted resource type to that type's URL.
///
/// A non-POST method or a type that is not stored fails with 422
/// `not-supported` (a Patient with names or identifiers with 422
/// `security`); a missing resource or a URL that does not name the
/// resource's type fails with 400. The resource itself is checked by
/// [`validate`](super::validate()).
pub fn check_entry(e: &BundleEntry) -> Result<(), FhirError> {
    if e.method != "POST" {
        return Err(rule(
            "not-supported",
            "Bundle.entry.request.method",
            "only POST (create) is supported in bundles",
        ));
    }
    let Some(obj) = e.resource.as_object() else {
        return Err(FhirError::new(
            400,
            "required",
            Some("Bundle.entry.resource".into()),
            "a create entry needs a resource",
        ));
    };
    let Some(Value::String(rt)) = obj.get("resourceType") else {
        return Err(structure(
            "Bundle.entry.resource.resourceType",
            "resourceType is required and must be a string",
        ));
    };
    if kind_of(rt).is_none() {
        return Err(if rt == "Patient" {
            patient_refusal(obj)
        } else {
            unsupported_type(rt)
        });
    }
    if e.url.trim_start_matches('/') != rt {
        return Err(FhirError::new(
            400,
            "invalid",
            Some("Bundle.entry.request.url".into()),
            format!("request.url of a create must be the resource type, {rt}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::condition::ICD10;
    use crate::testing::{condition, heart_rate, immunization};
    use serde_json::json;

    // --- bundles ---------------------------------------------------------

    fn bundle(ty: &str) -> Value {
        json!({
            "resourceType": "Bundle",
            "type": ty,
            "entry": [
                {"fullUrl": "urn:uuid:1", "resource": heart_rate(),
                 "request": {"method": "POST", "url": "Observation"}},
                {"resource": condition(ICD10, "I10"),
                 "request": {"method": "POST", "url": "Condition"}},
                {"request": {"method": "GET", "url": "Observation?code=8867-4"}}
            ]
        })
    }

    #[test]
    fn parses_transaction_and_batch_bundles() {
        let b = parse_bundle(&bundle("transaction")).unwrap();
        assert_eq!(b.kind, BundleType::Transaction);
        assert_eq!(b.entries.len(), 3);
        assert_eq!(b.entries[0].full_url.as_deref(), Some("urn:uuid:1"));
        assert_eq!(b.entries[0].resource, heart_rate());
        assert_eq!(b.entries[0].method, "POST");
        assert_eq!(b.entries[0].url, "Observation");
        assert_eq!(b.entries[1].full_url, None);
        assert_eq!(b.entries[2].resource, Value::Null);
        check_entry(&b.entries[0]).unwrap();
        check_entry(&b.entries[1]).unwrap();
        let e = check_entry(&b.entries[2]).unwrap_err();
        assert_eq!((e.status, e.code), (422, "not-supported"));

        let b = parse_bundle(&bundle("batch")).unwrap();
        assert_eq!(b.kind, BundleType::Batch);

        let empty = json!({"resourceType": "Bundle", "type": "batch"});
        assert!(parse_bundle(&empty).unwrap().entries.is_empty());
    }

    #[test]
    fn bundle_refusals_are_400() {
        for ty in [
            "collection",
            "searchset",
            "document",
            "transaction-response",
        ] {
            let e = parse_bundle(&bundle(ty)).unwrap_err();
            assert_eq!(e.status, 400, "{ty}");
        }
        let mut v = bundle("transaction");
        v.as_object_mut().unwrap().remove("type");
        assert_eq!(parse_bundle(&v).unwrap_err().status, 400);

        let mut v = bundle("transaction");
        v["entry"][1].as_object_mut().unwrap().remove("request");
        let e = parse_bundle(&v).unwrap_err();
        assert_eq!((e.status, e.code), (400, "required"));
        assert_eq!(e.expression.as_deref(), Some("Bundle.entry[1].request"));

        let mut v = bundle("batch");
        v["entry"][0]["request"]
            .as_object_mut()
            .unwrap()
            .remove("url");
        assert_eq!(parse_bundle(&v).unwrap_err().status, 400);
        let mut v = bundle("batch");
        v["entry"][0]["resource"] = json!("Observation");
        let e = parse_bundle(&v).unwrap_err();
        assert_eq!((e.status, e.code), (400, "structure"));
        let mut v = bundle("batch");
        v["entry"] = json!({});
        assert_eq!(parse_bundle(&v).unwrap_err().status, 400);
        assert_eq!(parse_bundle(&heart_rate()).unwrap_err().status, 400);
    }

    #[test]
    fn check_entry_rules() {
        let entry = |method: &str, url: &str, resource: Value| BundleEntry {
            full_url: None,
            resource,
            method: method.into(),
            url: url.into(),
            if_none_exist: None,
        };
        check_entry(&entry("POST", "Immunization", immunization())).unwrap();
        check_entry(&entry("POST", "/Observation", heart_rate())).unwrap();
        for method in ["PUT", "DELETE", "PATCH", "GET", "post"] {
            let e = check_entry(&entry(method, "Observation", heart_rate())).unwrap_err();
            assert_eq!((e.status, e.code), (422, "not-supported"), "{method}");
        }
        let named = json!({"resourceType": "Patient", "name": [{"family": "Doe"}]});
        let e = check_entry(&entry("POST", "Patient", named)).unwrap_err();
        assert_eq!((e.status, e.code), (422, "security"));
        let bare = json!({"resourceType": "Patient"});
        let e = check_entry(&entry("POST", "Patient", bare)).unwrap_err();
        assert_eq!((e.status, e.code), (422, "not-supported"));
        let org = json!({"resourceType": "Organization"});
        let e = check_entry(&entry("POST", "Organization", org)).unwrap_err();
        assert_eq!((e.status, e.code), (422, "not-supported"));
        let e = check_entry(&entry("POST", "Condition", heart_rate())).unwrap_err();
        assert_eq!(e.status, 400);
        let e = check_entry(&entry("POST", "Observation", Value::Null)).unwrap_err();
        assert_eq!((e.status, e.code), (400, "required"));
    }
}
