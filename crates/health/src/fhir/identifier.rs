//! Business identifiers (`identifier`) on clinical resources: the source
//! system's own id of a record (an order or message number), which makes a
//! retried create recognisable. Persons' identifiers are the PII guard's
//! business (`pii::scan_resource`); this is their shape.

use serde_json::{Map, Value};

use super::error::{FhirError, rule, structure};

/// Most business identifiers on one resource.
pub const MAX_IDENTIFIERS: usize = 8;
/// Longest identifier system, characters.
const MAX_SYSTEM: usize = 256;
/// Longest identifier value, characters.
const MAX_VALUE: usize = 128;
/// Identifier.use codes (R4).
const USES: &[&str] = &["usual", "official", "temp", "secondary", "old"];
/// Elements an identifier may have here: no `assigner` (a Reference that
/// could name a person) and no `period`.
const ELEMENTS: &[&str] = &["system", "value", "use", "type"];

/// Whether `s` is an absolute URI as identifier systems are written.
fn is_system_uri(s: &str) -> bool {
    (s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with("urn:oid:")
        || s.starts_with("urn:uuid:"))
        && s.len() <= MAX_SYSTEM
        && s.chars().all(|c| c.is_ascii_graphic())
}

/// The `(system, value)` of each business identifier of a resource, in
/// order, after checking their shape: an array of at most
/// [`MAX_IDENTIFIERS`] objects, each with an absolute `system` URI and a
/// non-empty `value` of at most 128 characters, optionally `use` and
/// `type`, nothing else.
pub(super) fn business_identifiers(
    obj: &Map<String, Value>,
    rt: &str,
) -> Result<Vec<(String, String)>, FhirError> {
    let Some(v) = obj.get("identifier") else {
        return Ok(Vec::new());
    };
    let path = format!("{rt}.identifier");
    let Value::Array(ids) = v else {
        return Err(structure(&path, format!("{path} must be an array")));
    };
    if ids.len() > MAX_IDENTIFIERS {
        return Err(rule(
            "value",
            &path,
            format!("at most {MAX_IDENTIFIERS} business identifiers"),
        ));
    }
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Value::Object(m) = id else {
            return Err(structure(&at, format!("{at} must be an object")));
        };
        if let Some(k) = m.keys().find(|k| !ELEMENTS.contains(&k.as_str())) {
            return Err(rule(
                "not-supported",
                format!("{at}.{k}"),
                format!("an identifier here has only system, value, use and type, not {k}"),
            ));
        }
        let system = match m.get("system") {
            Some(Value::String(s)) if is_system_uri(s) => s,
            _ => {
                return Err(rule(
                    "required",
                    format!("{at}.system"),
                    format!(
                        "{at}.system is required: an absolute URI (http, https, urn:oid, urn:uuid) of at most {MAX_SYSTEM} characters"
                    ),
                ));
            }
        };
        let value = match m.get("value") {
            Some(Value::String(s))
                if !s.trim().is_empty() && s.chars().count() <= MAX_VALUE && !s.contains('|') =>
            {
                s
            }
            _ => {
                return Err(rule(
                    "required",
                    format!("{at}.value"),
                    format!(
                        "{at}.value is required: a string of 1 to {MAX_VALUE} characters without |"
                    ),
                ));
            }
        };
        match m.get("use") {
            None => {}
            Some(Value::String(u)) if USES.contains(&u.as_str()) => {}
            Some(_) => {
                return Err(rule(
                    "value",
                    format!("{at}.use"),
                    format!("{at}.use must be one of: {}", USES.join(", ")),
                ));
            }
        }
        if m.get("type").is_some_and(|t| !t.is_object()) {
            return Err(structure(
                format!("{at}.type"),
                format!("{at}.type must be a CodeableConcept"),
            ));
        }
        out.push((system.clone(), value.clone()));
    }
    Ok(out)
}
