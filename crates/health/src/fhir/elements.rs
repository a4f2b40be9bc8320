//! The JSON elements the resource rules read: typed access (an element of
//! the wrong JSON type is a 400), CodeableConcept, Reference, Quantity and
//! value[x], the reference rules, and the checks every resource shares.

use serde_json::{Map, Value};

use super::error::{FhirError, rule, structure};
use crate::pseudonym;

/// Deepest JSON nesting a resource may have.
const MAX_DEPTH: usize = 64;

/// Whether `s` looks like a FHIR resource type name.
pub(super) fn is_type_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_uppercase()
        && b.iter().all(u8::is_ascii_alphanumeric)
}

/// Whether `s` is a FHIR logical id.
fn is_fhir_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

// --- typed access to JSON elements (wrong type -> 400) ---------------------

pub(super) fn get_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, FhirError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(structure(
            format!("{path}.{key}"),
            format!("{path}.{key} must be a string"),
        )),
    }
}

pub(super) fn get_obj<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, FhirError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(structure(
            format!("{path}.{key}"),
            format!("{path}.{key} must be an object"),
        )),
    }
}

pub(super) fn get_arr<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a [Value]>, FhirError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(structure(
            format!("{path}.{key}"),
            format!("{path}.{key} must be an array"),
        )),
    }
}

/// One Coding; absent system or code are empty strings.
pub(super) struct Coding<'a> {
    pub(super) system: &'a str,
    pub(super) code: &'a str,
}

pub(super) fn codeable_concept<'a>(v: &'a Value, path: &str) -> Result<Vec<Coding<'a>>, FhirError> {
    let Some(cc) = v.as_object() else {
        return Err(structure(
            path,
            format!("{path} must be a CodeableConcept object"),
        ));
    };
    get_str(cc, "text", path)?;
    let mut out = Vec::new();
    for (i, c) in get_arr(cc, "coding", path)?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let p = format!("{path}.coding[{i}]");
        let Some(c) = c.as_object() else {
            return Err(structure(&p, format!("{p} must be a Coding object")));
        };
        get_str(c, "display", &p)?;
        get_str(c, "version", &p)?;
        if c.get("userSelected").is_some_and(|u| !u.is_boolean()) {
            return Err(structure(
                format!("{p}.userSelected"),
                format!("{p}.userSelected must be a boolean"),
            ));
        }
        out.push(Coding {
            system: get_str(c, "system", &p)?.unwrap_or(""),
            code: get_str(c, "code", &p)?.unwrap_or(""),
        });
    }
    Ok(out)
}

pub(super) fn opt_cc<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<Vec<Coding<'a>>>, FhirError> {
    obj.get(key)
        .map(|v| codeable_concept(v, &format!("{path}.{key}")))
        .transpose()
}

/// `(system, code)` of the codings that have both.
pub(super) fn code_pairs(codings: Option<&[Coding<'_>]>) -> Vec<(String, String)> {
    codings
        .unwrap_or_default()
        .iter()
        .filter(|c| !c.system.is_empty() && !c.code.is_empty())
        .map(|c| (c.system.to_owned(), c.code.to_owned()))
        .collect()
}

/// A Reference element, reduced to what the rules look at.
pub(super) struct Ref<'a> {
    reference: Option<&'a str>,
    display: bool,
    identifier: bool,
}

pub(super) fn opt_ref<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<Ref<'a>>, FhirError> {
    let Some(r) = get_obj(obj, key, path)? else {
        return Ok(None);
    };
    let p = format!("{path}.{key}");
    Ok(Some(Ref {
        reference: get_str(r, "reference", &p)?,
        display: r.contains_key("display"),
        identifier: r.contains_key("identifier"),
    }))
}

/// A Quantity element.
pub(super) struct Quantity<'a> {
    pub(super) value: Option<f64>,
    pub(super) system: Option<&'a str>,
    pub(super) code: Option<&'a str>,
}

pub(super) fn quantity<'a>(v: &'a Value, path: &str) -> Result<Quantity<'a>, FhirError> {
    let Some(q) = v.as_object() else {
        return Err(structure(path, format!("{path} must be a Quantity object")));
    };
    let value = match q.get("value") {
        None => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => Some(x),
            _ => {
                return Err(rule(
                    "value",
                    format!("{path}.value"),
                    format!("{path}.value must be a finite number"),
                ));
            }
        },
        Some(_) => {
            return Err(structure(
                format!("{path}.value"),
                format!("{path}.value must be a number"),
            ));
        }
    };
    get_str(q, "unit", path)?;
    get_str(q, "comparator", path)?;
    Ok(Quantity {
        value,
        system: get_str(q, "system", path)?,
        code: get_str(q, "code", path)?,
    })
}

/// The value[x] and dataAbsentReason of an Observation or a component.
pub(super) struct ValueSlot<'a> {
    pub(super) quantity: Option<Quantity<'a>>,
    /// The name of a value[x] element of another type.
    pub(super) other: Option<&'a str>,
    pub(super) absent: bool,
}

impl ValueSlot<'_> {
    pub(super) fn has_value(&self) -> bool {
        self.quantity.is_some() || self.other.is_some()
    }
}

pub(super) fn value_slot<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
) -> Result<ValueSlot<'a>, FhirError> {
    let mut slot = ValueSlot {
        quantity: None,
        other: None,
        absent: opt_cc(obj, "dataAbsentReason", path)?.is_some(),
    };
    let mut seen = false;
    for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("value")) {
        if seen {
            return Err(structure(
                format!("{path}.value[x]"),
                format!("{path} has more than one value[x]"),
            ));
        }
        seen = true;
        if k == "valueQuantity" {
            slot.quantity = Some(quantity(v, &format!("{path}.valueQuantity"))?);
        } else {
            slot.other = Some(k);
        }
    }
    Ok(slot)
}

/// Fails when more than one element named `prefix...` (a choice type) is
/// present.
pub(super) fn single_choice(
    obj: &Map<String, Value>,
    prefix: &str,
    path: &str,
) -> Result<(), FhirError> {
    if obj.keys().filter(|k| k.starts_with(prefix)).count() > 1 {
        return Err(structure(
            format!("{path}.{prefix}[x]"),
            format!("{path} has more than one {prefix}[x]"),
        ));
    }
    Ok(())
}

// --- references --------------------------------------------------------------

/// Splits a relative reference `Type/id`.
fn split_relative(s: &str) -> Option<(&str, &str)> {
    let (t, id) = s.split_once('/')?;
    (is_type_name(t) && is_fhir_id(id)).then_some((t, id))
}

fn is_bundle_local(s: &str) -> bool {
    s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

fn unresolved(path: String) -> FhirError {
    rule(
        "invalid",
        path,
        "unresolved bundle-local reference; urn: references must be rewritten to Type/id or removed before storing",
    )
}

/// Rules for any `reference` other than the subject's.
fn check_reference(s: &str, path: String) -> Result<(), FhirError> {
    if is_bundle_local(s) {
        return Err(unresolved(path));
    }
    if s.starts_with('#') {
        return Err(rule(
            "not-supported",
            path,
            "references to contained resources are not supported",
        ));
    }
    match split_relative(s) {
        Some(("Patient", id)) if !pseudonym::is_well_formed(id) => Err(rule(
            "value",
            path,
            "a patient is referenced only as Patient/<pseudonym>",
        )),
        Some(_) => Ok(()),
        None => Err(rule(
            "invalid",
            path,
            "only relative references such as Practitioner/abc are accepted",
        )),
    }
}

/// Checks the subject (or patient) reference and returns the pseudonym.
pub(super) fn patient_reference(
    rt: &str,
    key: &str,
    r: Option<&Ref<'_>>,
) -> Result<String, FhirError> {
    let path = format!("{rt}.{key}");
    let Some(r) = r else {
        return Err(rule(
            "required",
            &path,
            format!("{path} is required and must reference Patient/<pseudonym>"),
        ));
    };
    if r.identifier {
        return Err(rule(
            "security",
            format!("{path}.identifier"),
            format!(
                "{path}.identifier is refused; refer to the patient only as Patient/<pseudonym>"
            ),
        ));
    }
    if r.display {
        return Err(rule(
            "security",
            format!("{path}.display"),
            format!(
                "{path}.display is refused because it may carry the patient's name; refer to the patient only as Patient/<pseudonym>"
            ),
        ));
    }
    let Some(s) = r.reference else {
        return Err(rule(
            "required",
            format!("{path}.reference"),
            format!("{path}.reference is required and must be Patient/<pseudonym>"),
        ));
    };
    if is_bundle_local(s) {
        return Err(unresolved(path));
    }
    match split_relative(s) {
        Some(("Patient", id)) if pseudonym::is_well_formed(id) => Ok(id.to_owned()),
        Some((t, _)) if t != "Patient" => Err(rule(
            "not-supported",
            &path,
            format!("{path} must be a patient, referenced as Patient/<pseudonym>"),
        )),
        _ => Err(rule(
            "value",
            &path,
            format!(
                "{path} must be Patient/<pseudonym>, where the pseudonym is 26 base32 characters"
            ),
        )),
    }
}

/// Problems found by walking every element of a resource.
#[derive(Default)]
pub(super) struct Walk {
    /// First element of the wrong type (a `reference` that is not a string,
    /// nesting too deep).
    pub(super) structure: Option<FhirError>,
    /// First reference that breaks a rule.
    pub(super) rule: Option<FhirError>,
}

impl Walk {
    pub(super) fn of(obj: &Map<String, Value>, rt: &str) -> Walk {
        let mut walk = Walk::default();
        let mut path = rt.to_owned();
        walk.object(obj, &mut path, 0);
        walk
    }

    fn object(&mut self, obj: &Map<String, Value>, path: &mut String, depth: usize) {
        if let Some(r) = obj.get("reference") {
            match r {
                Value::String(s) => {
                    if self.rule.is_none() {
                        self.rule = check_reference(s, format!("{path}.reference")).err();
                    }
                }
                _ => {
                    self.structure = Some(structure(
                        format!("{path}.reference"),
                        format!("{path}.reference must be a string"),
                    ));
                    return;
                }
            }
        }
        for (k, child) in obj {
            let len = path.len();
            path.push('.');
            path.push_str(k);
            self.value(child, path, depth + 1);
            path.truncate(len);
            if self.structure.is_some() {
                return;
            }
        }
    }

    fn value(&mut self, v: &Value, path: &mut String, depth: usize) {
        if depth > MAX_DEPTH {
            self.structure = Some(structure(
                path.as_str(),
                "the resource is nested too deeply",
            ));
            return;
        }
        match v {
            Value::Object(m) => self.object(m, path, depth),
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.value(child, path, depth + 1);
                    path.truncate(len);
                    if self.structure.is_some() {
                        return;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Common checks before the resource-specific rules.
pub(super) fn common_rules(obj: &Map<String, Value>, rt: &str) -> Result<(), FhirError> {
    get_str(obj, "id", rt)?;
    get_obj(obj, "meta", rt)?;
    get_obj(obj, "text", rt)?;
    Ok(())
}

pub(super) fn refuse_contained(obj: &Map<String, Value>, rt: &str) -> Result<(), FhirError> {
    if obj.contains_key("contained") {
        return Err(rule(
            "not-supported",
            format!("{rt}.contained"),
            "contained resources are not accepted",
        ));
    }
    Ok(())
}

pub(super) fn check_status(
    status: Option<&str>,
    allowed: &[&str],
    path: &str,
) -> Result<(), FhirError> {
    match status {
        None => Err(rule("required", path, format!("{path} is required"))),
        Some(s) if allowed.contains(&s) => Ok(()),
        Some(_) => Err(rule(
            "value",
            path,
            format!("{path} must be one of: {}", allowed.join(", ")),
        )),
    }
}
