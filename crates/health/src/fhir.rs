//! FHIR R4 rules for the `/fhir` facade.
//!
//! FHIR resources are stored as transaction payloads (the resource JSON
//! itself) under the kinds [`KIND_OBSERVATION`], [`KIND_CONDITION`] and
//! [`KIND_IMMUNIZATION`]. This module decides which resources are accepted
//! ([`validate`]), extracts what the indexes need ([`Summary`]), parses
//! transaction and batch Bundles, and builds the JSON the facade answers with
//! (OperationOutcome, CapabilityStatement, searchset Bundles).
//!
//! Everything here is a pure, deterministic function of its input: the
//! ledger's state machine re-runs [`validate`] on every stored FHIR payload
//! when it verifies a chain.
//!
//! Patients appear only as `Patient/<pseudonym>` references. Error messages
//! never repeat a submitted reference or free-text value, so an identifier
//! put in the wrong place does not end up in a response or a log.

use serde_json::{Map, Value, json};

use crate::pseudonym;

/// Ledger kind of a stored Observation.
pub const KIND_OBSERVATION: &str = "fhir.observation";
/// Ledger kind of a stored Condition.
pub const KIND_CONDITION: &str = "fhir.condition";
/// Ledger kind of a stored Immunization.
pub const KIND_IMMUNIZATION: &str = "fhir.immunization";

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
const ICD10_CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const CONDITION_VER_STATUS: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";

/// The date the capability statement's content was last changed.
const CAPABILITY_DATE: &str = "2026-11-24";

/// Deepest JSON nesting a resource may have.
const MAX_DEPTH: usize = 64;

const OBSERVATION_STATUS: &[&str] = &[
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
];
const IMMUNIZATION_STATUS: &[&str] = &["completed", "entered-in-error", "not-done"];
const CLINICAL_STATUS: &[&str] = &[
    "active",
    "recurrence",
    "relapse",
    "inactive",
    "remission",
    "resolved",
];
const VERIFICATION_STATUS: &[&str] = &[
    "unconfirmed",
    "provisional",
    "differential",
    "confirmed",
    "refuted",
    "entered-in-error",
];

/// Patient elements that identify a person.
const IDENTIFYING_PATIENT_ELEMENTS: &[&str] = &[
    "name",
    "identifier",
    "telecom",
    "address",
    "birthDate",
    "photo",
    "contact",
];

const MS_PER_DAY: i64 = 86_400_000;

// ---------------------------------------------------------------------------
// Errors and OperationOutcome
// ---------------------------------------------------------------------------

/// FHIR issue severity/code pair plus HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{diagnostics}")]
pub struct FhirError {
    /// HTTP status: 400 when the body does not parse or is structurally not
    /// the resource, 422 when it breaks a rule.
    pub status: u16,
    /// FHIR IssueType code: `structure`, `required`, `value`, `invalid`,
    /// `code-invalid`, `not-supported`, `business-rule`, `security` or
    /// `processing`.
    pub code: &'static str,
    /// Human-readable explanation. Never repeats submitted identifiers or
    /// free-text values.
    pub diagnostics: String,
    /// FHIRPath-like location of the problem, e.g.
    /// `Observation.valueQuantity.code`.
    pub expression: Option<String>,
}

impl FhirError {
    /// An error with `status`, FHIR issue `code`, location and text.
    pub fn new(
        status: u16,
        code: &'static str,
        expression: Option<String>,
        diagnostics: impl Into<String>,
    ) -> Self {
        FhirError {
            status,
            code,
            diagnostics: diagnostics.into(),
            expression,
        }
    }

    /// This error as an OperationOutcome with one issue.
    pub fn outcome(&self) -> Value {
        outcome_of(std::slice::from_ref(self))
    }

    fn issue(&self) -> Value {
        let mut issue = Map::new();
        issue.insert("severity".into(), json!("error"));
        issue.insert("code".into(), json!(self.code));
        issue.insert("diagnostics".into(), json!(self.diagnostics));
        if let Some(e) = &self.expression {
            issue.insert("expression".into(), json!([e]));
        }
        Value::Object(issue)
    }
}

/// An OperationOutcome with one issue per error. With no errors it is an
/// informational outcome saying so.
pub fn outcome_of(errors: &[FhirError]) -> Value {
    if errors.is_empty() {
        return informational_outcome("no issues");
    }
    let issues: Vec<Value> = errors.iter().map(FhirError::issue).collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

/// An OperationOutcome with one issue of severity `information` and code
/// `informational`.
pub fn informational_outcome(text: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": text}]
    })
}

/// 400 `structure` at `path`.
fn structure(path: impl Into<String>, msg: impl Into<String>) -> FhirError {
    FhirError::new(400, "structure", Some(path.into()), msg)
}

/// 422 with `code` at `path`.
fn rule(code: &'static str, path: impl Into<String>, msg: impl Into<String>) -> FhirError {
    FhirError::new(422, code, Some(path.into()), msg)
}

// ---------------------------------------------------------------------------
// Kinds
// ---------------------------------------------------------------------------

/// The ledger kind for a resourceType name, or `None` if not accepted.
pub fn kind_of(resource_type: &str) -> Option<&'static str> {
    match resource_type {
        "Observation" => Some(KIND_OBSERVATION),
        "Condition" => Some(KIND_CONDITION),
        "Immunization" => Some(KIND_IMMUNIZATION),
        _ => None,
    }
}

/// The resourceType for a ledger kind, or `None` if the kind is not a FHIR
/// kind.
pub fn resource_type_of(kind: &str) -> Option<&'static str> {
    match kind {
        KIND_OBSERVATION => Some("Observation"),
        KIND_CONDITION => Some("Condition"),
        KIND_IMMUNIZATION => Some("Immunization"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// What the ledger indexes from a valid resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// One of the `KIND_*` constants.
    pub kind: &'static str,
    /// `Observation`, `Condition` or `Immunization`.
    pub resource_type: &'static str,
    /// The pseudonym from the `Patient/<pseudonym>` subject or patient
    /// reference.
    pub patient: String,
    /// The clinically relevant time as given (a validated FHIR dateTime):
    /// `effectiveDateTime` or `effectivePeriod.start` (Observation),
    /// `onsetDateTime` or else `recordedDate` (Condition),
    /// `occurrenceDateTime` (Immunization).
    pub date: Option<String>,
    /// `(system, code)` of every coding of the main code that has both
    /// (`Observation.code`, `Condition.code`, `Immunization.vaccineCode`),
    /// in document order.
    pub codes: Vec<(String, String)>,
    /// `vital-signs` or `laboratory` for Observations, `None` otherwise.
    pub category: Option<&'static str>,
}

/// Validates a resource to be stored (create). `v` is the parsed JSON.
///
/// Returns what the indexes need, or the first problem found: a 400 error
/// when an element has the wrong JSON type, a 422 error when a rule is
/// broken. Structural problems are reported before rule violations.
pub fn validate(v: &Value) -> Result<Summary, FhirError> {
    let Some(obj) = v.as_object() else {
        return Err(FhirError::new(
            400,
            "structure",
            None,
            "a resource is a JSON object",
        ));
    };
    let rt = match obj.get("resourceType") {
        Some(Value::String(s)) => s.as_str(),
        _ => {
            return Err(FhirError::new(
                400,
                "structure",
                Some("resourceType".into()),
                "resourceType is required and must be a string",
            ));
        }
    };
    match rt {
        "Observation" => validate_observation(obj),
        "Condition" => validate_condition(obj),
        "Immunization" => validate_immunization(obj),
        "Patient" => Err(patient_refusal(obj)),
        other => Err(unsupported_type(other)),
    }
}

/// Why a Patient resource is refused.
fn patient_refusal(obj: &Map<String, Value>) -> FhirError {
    match IDENTIFYING_PATIENT_ELEMENTS
        .iter()
        .find(|k| obj.contains_key(**k))
    {
        Some(k) => rule(
            "security",
            format!("Patient.{k}"),
            "Patient resources that carry names or identifiers are refused; refer to patients as Patient/<pseudonym>",
        ),
        None => rule(
            "not-supported",
            "Patient",
            "Patient resources are not stored; refer to the patient as Patient/<pseudonym>",
        ),
    }
}

/// Whether `s` looks like a FHIR resource type name.
fn is_type_name(s: &str) -> bool {
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

/// Refusal of a resource type the ledger does not store.
fn unsupported_type(rt: &str) -> FhirError {
    let what = if is_type_name(rt) {
        format!("{rt} resources are not accepted")
    } else {
        "this resourceType is not accepted".to_owned()
    };
    rule(
        "not-supported",
        "resourceType",
        format!("{what}; the ledger stores Observation, Condition and Immunization"),
    )
}

// --- typed access to JSON elements (wrong type -> 400) ---------------------

fn get_str<'a>(
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

fn get_obj<'a>(
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

fn get_arr<'a>(
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
struct Coding<'a> {
    system: &'a str,
    code: &'a str,
}

fn codeable_concept<'a>(v: &'a Value, path: &str) -> Result<Vec<Coding<'a>>, FhirError> {
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

fn opt_cc<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<Vec<Coding<'a>>>, FhirError> {
    obj.get(key)
        .map(|v| codeable_concept(v, &format!("{path}.{key}")))
        .transpose()
}

/// `(system, code)` of the codings that have both.
fn code_pairs(codings: Option<&[Coding<'_>]>) -> Vec<(String, String)> {
    codings
        .unwrap_or_default()
        .iter()
        .filter(|c| !c.system.is_empty() && !c.code.is_empty())
        .map(|c| (c.system.to_owned(), c.code.to_owned()))
        .collect()
}

/// A Reference element, reduced to what the rules look at.
struct Ref<'a> {
    reference: Option<&'a str>,
    display: bool,
    identifier: bool,
}

fn opt_ref<'a>(
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
struct Quantity<'a> {
    value: Option<f64>,
    system: Option<&'a str>,
    code: Option<&'a str>,
}

fn quantity<'a>(v: &'a Value, path: &str) -> Result<Quantity<'a>, FhirError> {
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
struct ValueSlot<'a> {
    quantity: Option<Quantity<'a>>,
    /// The name of a value[x] element of another type.
    other: Option<&'a str>,
    absent: bool,
}

impl ValueSlot<'_> {
    fn has_value(&self) -> bool {
        self.quantity.is_some() || self.other.is_some()
    }
}

fn value_slot<'a>(obj: &'a Map<String, Value>, path: &str) -> Result<ValueSlot<'a>, FhirError> {
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
fn single_choice(obj: &Map<String, Value>, prefix: &str, path: &str) -> Result<(), FhirError> {
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
fn patient_reference(rt: &str, key: &str, r: Option<&Ref<'_>>) -> Result<String, FhirError> {
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
struct Walk {
    /// First element of the wrong type (a `reference` that is not a string,
    /// nesting too deep).
    structure: Option<FhirError>,
    /// First reference that breaks a rule.
    rule: Option<FhirError>,
}

impl Walk {
    fn of(obj: &Map<String, Value>, rt: &str) -> Walk {
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
fn common_rules(obj: &Map<String, Value>, rt: &str) -> Result<(), FhirError> {
    get_str(obj, "id", rt)?;
    get_obj(obj, "meta", rt)?;
    get_obj(obj, "text", rt)?;
    Ok(())
}

fn refuse_contained(obj: &Map<String, Value>, rt: &str) -> Result<(), FhirError> {
    if obj.contains_key("contained") {
        return Err(rule(
            "not-supported",
            format!("{rt}.contained"),
            "contained resources are not accepted",
        ));
    }
    Ok(())
}

fn check_status(status: Option<&str>, allowed: &[&str], path: &str) -> Result<(), FhirError> {
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

/// Checks a dateTime element and returns it as given.
fn check_date_time(s: Option<&str>, path: &str) -> Result<Option<String>, FhirError> {
    match s {
        None => Ok(None),
        Some(s) if parse_date_time(s).is_some() => Ok(Some(s.to_owned())),
        Some(_) => Err(rule(
            "value",
            path,
            format!(
                "{path} must be a FHIR dateTime: YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm)"
            ),
        )),
    }
}

// --- Observation -------------------------------------------------------------

/// What an accepted LOINC code measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measure {
    HeartRate,
    RespiratoryRate,
    BodyTemperature,
    OxygenSaturation,
    BloodPressure,
    GlucoseMass,
    GlucoseMoles,
}

/// A UCUM unit and the plausible range of values in it, inclusive.
struct UnitRule {
    code: &'static str,
    min: f64,
    max: f64,
}

const fn unit(code: &'static str, min: f64, max: f64) -> UnitRule {
    UnitRule { code, min, max }
}

const ACCEPTED_LOINC: &[(&str, Measure)] = &[
    ("8867-4", Measure::HeartRate),
    ("9279-1", Measure::RespiratoryRate),
    ("8310-5", Measure::BodyTemperature),
    ("2708-6", Measure::OxygenSaturation),
    ("59408-5", Measure::OxygenSaturation),
    ("85354-9", Measure::BloodPressure),
    ("2339-0", Measure::GlucoseMass),
    ("15074-8", Measure::GlucoseMoles),
];

const SYSTOLIC: &str = "8480-6";
const DIASTOLIC: &str = "8462-4";

/// The vital-sign readings of a valid Observation (one that passed
/// [`validate`], whose `summary` is given) in the compact form NEWS2 is
/// scored from: heart rate, respiratory rate, temperature (in °C), SpO2,
/// blood pressure and glucose (in mmol/L). `None` for an Observation
/// without a value, without an instant (`effectiveDateTime` or
/// `effectivePeriod.start` with a time), or of another kind.
pub fn vital_signs_of(v: &Value, summary: &Summary) -> Option<crate::records::VitalSigns> {
    let time = summary.date.clone().filter(|d| d.contains('T'))?;
    let measure = summary
        .codes
        .iter()
        .filter(|(system, _)| system == LOINC)
        .find_map(|(_, code)| {
            ACCEPTED_LOINC
                .iter()
                .find(|(c, _)| c == code)
                .map(|&(_, m)| m)
        })?;
    let value = |q: &Value| -> Option<(f64, String)> {
        let q = q.get("valueQuantity")?;
        Some((
            q.get("value")?.as_f64()?,
            q.get("code")?.as_str()?.to_owned(),
        ))
    };
    let mut out = crate::records::VitalSigns::at(summary.patient.clone(), time);
    match measure {
        Measure::BloodPressure => {
            for c in v.get("component")?.as_array()? {
                let code = c.pointer("/code/coding/0/code").and_then(Value::as_str);
                let reading = value(c).map(|(x, _)| x);
                match code {
                    Some(SYSTOLIC) => out.systolic_bp = reading,
                    Some(DIASTOLIC) => out.diastolic_bp = reading,
                    _ => {}
                }
            }
        }
        m => {
            let (x, unit) = value(v)?;
            match m {
                Measure::HeartRate => out.pulse = Some(x),
                Measure::RespiratoryRate => out.respiratory_rate = Some(x),
                Measure::OxygenSaturation => out.spo2 = Some(x),
                Measure::BodyTemperature if unit == "[degF]" => {
                    out.temperature = Some((x - 32.0) * 5.0 / 9.0);
                }
                Measure::BodyTemperature => out.temperature = Some(x),
                // 1 mmol/L of glucose is 18.016 mg/dL.
                Measure::GlucoseMass => out.glucose = Some(x / 18.016),
                Measure::GlucoseMoles => out.glucose = Some(x),
                Measure::BloodPressure => {}
            }
        }
    }
    (out.systolic_bp.is_some()
        || out.diastolic_bp.is_some()
        || out.pulse.is_some()
        || out.respiratory_rate.is_some()
        || out.spo2.is_some()
        || out.temperature.is_some()
        || out.glucose.is_some())
    .then_some(out)
}

impl Measure {
    fn name(self) -> &'static str {
        match self {
            Measure::HeartRate => "heart rate",
            Measure::RespiratoryRate => "respiratory rate",
            Measure::BodyTemperature => "body temperature",
            Measure::OxygenSaturation => "oxygen saturation",
            Measure::BloodPressure => "blood pressure panel",
            Measure::GlucoseMass => "glucose [mass/volume] in blood",
            Measure::GlucoseMoles => "glucose [moles/volume] in blood",
        }
    }

    fn category(self) -> &'static str {
        match self {
            Measure::GlucoseMass | Measure::GlucoseMoles => "laboratory",
            _ => "vital-signs",
        }
    }

    /// Units of the value; for the blood pressure panel, of each component.
    fn units(self) -> &'static [UnitRule] {
        match self {
            Measure::HeartRate => HEART_RATE_UNITS,
            Measure::RespiratoryRate => RESPIRATORY_RATE_UNITS,
            Measure::BodyTemperature => TEMPERATURE_UNITS,
            Measure::OxygenSaturation => SATURATION_UNITS,
            Measure::BloodPressure => PRESSURE_UNITS,
            Measure::GlucoseMass => GLUCOSE_MASS_UNITS,
            Measure::GlucoseMoles => GLUCOSE_MOLES_UNITS,
        }
    }
}

const HEART_RATE_UNITS: &[UnitRule] = &[unit("/min", 0.0, 350.0)];
const RESPIRATORY_RATE_UNITS: &[UnitRule] = &[unit("/min", 0.0, 150.0)];
const TEMPERATURE_UNITS: &[UnitRule] = &[unit("Cel", 20.0, 46.0), unit("[degF]", 68.0, 115.0)];
const SATURATION_UNITS: &[UnitRule] = &[unit("%", 0.0, 100.0)];
const PRESSURE_UNITS: &[UnitRule] = &[unit("mm[Hg]", 0.0, 400.0)];
const GLUCOSE_MASS_UNITS: &[UnitRule] = &[unit("mg/dL", 0.0, 2000.0)];
const GLUCOSE_MOLES_UNITS: &[UnitRule] = &[unit("mmol/L", 0.0, 120.0)];

fn accepted_loinc_list() -> String {
    ACCEPTED_LOINC
        .iter()
        .map(|(code, m)| format!("{code} ({})", m.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One element of `Observation.component`.
struct ComponentParts<'a> {
    code: Option<Vec<Coding<'a>>>,
    value: ValueSlot<'a>,
}

/// The Observation elements the rules look at, type-checked.
struct ObservationParts<'a> {
    status: Option<&'a str>,
    code: Option<Vec<Coding<'a>>>,
    category: Vec<Vec<Coding<'a>>>,
    subject: Option<Ref<'a>>,
    effective_date_time: Option<&'a str>,
    /// `effectivePeriod` start and end.
    period: Option<(Option<&'a str>, Option<&'a str>)>,
    value: ValueSlot<'a>,
    components: Option<Vec<ComponentParts<'a>>>,
}

fn observation_parts(obj: &Map<String, Value>) -> Result<ObservationParts<'_>, FhirError> {
    const RT: &str = "Observation";
    common_rules(obj, RT)?;
    let mut category = Vec::new();
    for (i, c) in get_arr(obj, "category", RT)?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        category.push(codeable_concept(c, &format!("{RT}.category[{i}]"))?);
    }
    single_choice(obj, "effective", RT)?;
    let period = match get_obj(obj, "effectivePeriod", RT)? {
        Some(p) => {
            let path = format!("{RT}.effectivePeriod");
            Some((get_str(p, "start", &path)?, get_str(p, "end", &path)?))
        }
        None => None,
    };
    let components = match get_arr(obj, "component", RT)? {
        Some(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, c) in items.iter().enumerate() {
                let path = format!("{RT}.component[{i}]");
                let Some(c) = c.as_object() else {
                    return Err(structure(&path, format!("{path} must be an object")));
                };
                out.push(ComponentParts {
                    code: opt_cc(c, "code", &path)?,
                    value: value_slot(c, &path)?,
                });
            }
            Some(out)
        }
        None => None,
    };
    Ok(ObservationParts {
        status: get_str(obj, "status", RT)?,
        code: opt_cc(obj, "code", RT)?,
        category,
        subject: opt_ref(obj, "subject", RT)?,
        effective_date_time: get_str(obj, "effectiveDateTime", RT)?,
        period,
        value: value_slot(obj, RT)?,
        components,
    })
}

fn validate_observation(obj: &Map<String, Value>) -> Result<Summary, FhirError> {
    const RT: &str = "Observation";
    let parts = observation_parts(obj)?;
    let walk = Walk::of(obj, RT);
    if let Some(e) = walk.structure {
        return Err(e);
    }
    refuse_contained(obj, RT)?;
    let patient = patient_reference(RT, "subject", parts.subject.as_ref())?;
    check_status(parts.status, OBSERVATION_STATUS, "Observation.status")?;
    let measure = observation_measure(parts.code.as_deref())?;
    check_category(&parts.category, measure)?;
    let date = observation_date(&parts)?;
    if measure == Measure::BloodPressure {
        blood_pressure_values(&parts)?;
    } else {
        if parts.components.is_some() {
            return Err(rule(
                "not-supported",
                "Observation.component",
                "components are accepted only on the blood pressure panel (LOINC 85354-9)",
            ));
        }
        check_value_slot(&parts.value, measure, RT)?;
    }
    if let Some(e) = walk.rule {
        return Err(e);
    }
    Ok(Summary {
        kind: KIND_OBSERVATION,
        resource_type: RT,
        patient,
        date,
        codes: code_pairs(parts.code.as_deref()),
        category: Some(measure.category()),
    })
}

/// The one measurement named by the accepted LOINC codings of `code`.
fn observation_measure(code: Option<&[Coding<'_>]>) -> Result<Measure, FhirError> {
    let Some(codings) = code else {
        return Err(rule(
            "required",
            "Observation.code",
            "Observation.code is required",
        ));
    };
    let mut found: Option<Measure> = None;
    for c in codings.iter().filter(|c| c.system == LOINC) {
        let Some((_, m)) = ACCEPTED_LOINC.iter().find(|(code, _)| *code == c.code) else {
            continue;
        };
        match found {
            Some(prev) if prev != *m => {
                return Err(rule(
                    "code-invalid",
                    "Observation.code",
                    "Observation.code names more than one accepted measurement",
                ));
            }
            _ => found = Some(*m),
        }
    }
    found.ok_or_else(|| {
        rule(
            "code-invalid",
            "Observation.code",
            format!(
                "Observation.code needs a LOINC coding (system http://loinc.org) with one of the accepted codes: {}",
                accepted_loinc_list()
            ),
        )
    })
}

fn check_category(categories: &[Vec<Coding<'_>>], measure: Measure) -> Result<(), FhirError> {
    let expected = measure.category();
    let ok = categories.is_empty()
        || categories
            .iter()
            .flatten()
            .any(|c| c.system == OBSERVATION_CATEGORY && c.code == expected);
    if ok {
        Ok(())
    } else {
        Err(rule(
            "value",
            "Observation.category",
            format!(
                "a {} observation must be categorized as {expected} ({OBSERVATION_CATEGORY})",
                measure.name()
            ),
        ))
    }
}

fn observation_date(parts: &ObservationParts<'_>) -> Result<Option<String>, FhirError> {
    if let Some(dt) = parts.effective_date_time {
        return check_date_time(Some(dt), "Observation.effectiveDateTime");
    }
    let Some((start, end)) = parts.period else {
        return Err(rule(
            "required",
            "Observation.effective[x]",
            "Observation needs effectiveDateTime or effectivePeriod.start",
        ));
    };
    let Some(start) = start else {
        return Err(rule(
            "required",
            "Observation.effectivePeriod.start",
            "Observation.effectivePeriod.start is required",
        ));
    };
    let date = check_date_time(Some(start), "Observation.effectivePeriod.start")?;
    if check_date_time(end, "Observation.effectivePeriod.end")?.is_some() {
        let starts = date_range(start).map(|r| r.0);
        let ends = end.and_then(date_range).map(|r| r.1);
        if let (Some(s), Some(e)) = (starts, ends)
            && e <= s
        {
            return Err(rule(
                "invalid",
                "Observation.effectivePeriod",
                "Observation.effectivePeriod ends before it starts",
            ));
        }
    }
    Ok(date)
}

/// The value rules shared by Observations and components.
fn check_value_slot(slot: &ValueSlot<'_>, measure: Measure, path: &str) -> Result<(), FhirError> {
    if let Some(k) = slot.other {
        return Err(rule(
            "value",
            format!("{path}.{k}"),
            format!("a {} is recorded as a valueQuantity", measure.name()),
        ));
    }
    match (&slot.quantity, slot.absent) {
        (Some(_), true) => Err(rule(
            "invalid",
            format!("{path}.dataAbsentReason"),
            format!("{path}.dataAbsentReason is allowed only when the value is missing"),
        )),
        (None, false) => Err(rule(
            "required",
            format!("{path}.value[x]"),
            format!("{path} needs a valueQuantity or a dataAbsentReason"),
        )),
        (None, true) => Ok(()),
        (Some(q), false) => check_quantity(q, measure, &format!("{path}.valueQuantity")),
    }
}

fn check_quantity(q: &Quantity<'_>, measure: Measure, path: &str) -> Result<(), FhirError> {
    let units = measure.units();
    let names = units
        .iter()
        .map(|u| format!("'{}'", u.code))
        .collect::<Vec<_>>()
        .join(" or ");
    let Some(value) = q.value else {
        return Err(rule(
            "required",
            format!("{path}.value"),
            format!("{path}.value is required"),
        ));
    };
    let Some(code) = q.code else {
        return Err(rule(
            "required",
            format!("{path}.code"),
            format!("{path}.code is required: {names} (UCUM)"),
        ));
    };
    let Some(u) = units.iter().find(|u| u.code == code) else {
        return Err(rule(
            "value",
            format!("{path}.code"),
            format!("a {} is recorded in UCUM unit {names}", measure.name()),
        ));
    };
    if q.system != Some(UCUM) {
        return Err(rule(
            if q.system.is_none() {
                "required"
            } else {
                "value"
            },
            format!("{path}.system"),
            format!("{path}.system must be {UCUM}"),
        ));
    }
    if !(u.min..=u.max).contains(&value) {
        return Err(rule(
            "value",
            format!("{path}.value"),
            format!(
                "a {} must be between {} and {} {} inclusive",
                measure.name(),
                u.min,
                u.max,
                u.code
            ),
        ));
    }
    Ok(())
}

fn blood_pressure_values(parts: &ObservationParts<'_>) -> Result<(), FhirError> {
    if parts.value.has_value() {
        return Err(rule(
            "value",
            "Observation.value[x]",
            "a blood pressure panel has no top-level value; systolic and diastolic go in Observation.component",
        ));
    }
    let missing = || {
        rule(
            "required",
            "Observation.component",
            format!(
                "a blood pressure panel needs a systolic ({SYSTOLIC}) and a diastolic ({DIASTOLIC}) component"
            ),
        )
    };
    let Some(components) = &parts.components else {
        return Err(missing());
    };
    let (mut systolic, mut diastolic) = (false, false);
    for (i, c) in components.iter().enumerate() {
        let path = format!("Observation.component[{i}]");
        let Some(codings) = &c.code else {
            return Err(rule(
                "required",
                format!("{path}.code"),
                format!("{path}.code is required"),
            ));
        };
        let loinc = |code: &str| codings.iter().any(|c| c.system == LOINC && c.code == code);
        let seen = match (loinc(SYSTOLIC), loinc(DIASTOLIC)) {
            (true, false) => &mut systolic,
            (false, true) => &mut diastolic,
            _ => {
                return Err(rule(
                    "code-invalid",
                    format!("{path}.code"),
                    format!(
                        "a blood pressure component is either systolic (LOINC {SYSTOLIC}) or diastolic (LOINC {DIASTOLIC})"
                    ),
                ));
            }
        };
        if *seen {
            return Err(rule(
                "value",
                path,
                "a blood pressure panel has one systolic and one diastolic component",
            ));
        }
        *seen = true;
        check_value_slot(&c.value, Measure::BloodPressure, &path)?;
    }
    if systolic && diastolic {
        Ok(())
    } else {
        Err(missing())
    }
}

// --- Condition ---------------------------------------------------------------

/// Whether `code` has the WHO ICD-10 shape: an uppercase letter, two digits,
/// and optionally a dot followed by one or two digits (`I10`, `J10.1`,
/// `E11.65`; two digits after the dot are national modifications).
pub fn is_icd10(code: &str) -> bool {
    let b = code.as_bytes();
    let head =
        b.len() >= 3 && b[0].is_ascii_uppercase() && b[1].is_ascii_digit() && b[2].is_ascii_digit();
    let tail = match b.get(3..) {
        Some([]) => true,
        Some([b'.', rest @ ..]) => {
            (1..=2).contains(&rest.len()) && rest.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    head && tail
}

fn validate_condition(obj: &Map<String, Value>) -> Result<Summary, FhirError> {
    const RT: &str = "Condition";
    common_rules(obj, RT)?;
    let code = opt_cc(obj, "code", RT)?;
    let subject = opt_ref(obj, "subject", RT)?;
    let clinical = opt_cc(obj, "clinicalStatus", RT)?;
    let verification = opt_cc(obj, "verificationStatus", RT)?;
    for (i, c) in get_arr(obj, "category", RT)?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        codeable_concept(c, &format!("{RT}.category[{i}]"))?;
    }
    single_choice(obj, "onset", RT)?;
    let onset = get_str(obj, "onsetDateTime", RT)?;
    let recorded = get_str(obj, "recordedDate", RT)?;
    let walk = Walk::of(obj, RT);
    if let Some(e) = walk.structure {
        return Err(e);
    }

    refuse_contained(obj, RT)?;
    let patient = patient_reference(RT, "subject", subject.as_ref())?;
    check_icd10_coding(code.as_deref())?;
    check_status_concept(
        clinical.as_deref(),
        CONDITION_CLINICAL,
        CLINICAL_STATUS,
        "Condition.clinicalStatus",
    )?;
    check_status_concept(
        verification.as_deref(),
        CONDITION_VER_STATUS,
        VERIFICATION_STATUS,
        "Condition.verificationStatus",
    )?;
    let onset = check_date_time(onset, "Condition.onsetDateTime")?;
    let recorded = check_date_time(recorded, "Condition.recordedDate")?;
    if let Some(e) = walk.rule {
        return Err(e);
    }
    Ok(Summary {
        kind: KIND_CONDITION,
        resource_type: RT,
        patient,
        date: onset.or(recorded),
        codes: code_pairs(code.as_deref()),
        category: None,
    })
}

fn check_icd10_coding(code: Option<&[Coding<'_>]>) -> Result<(), FhirError> {
    let Some(codings) = code else {
        return Err(rule(
            "required",
            "Condition.code",
            "Condition.code is required",
        ));
    };
    let mut found = false;
    for (i, c) in codings.iter().enumerate() {
        if c.system != ICD10 {
            continue;
        }
        if !is_icd10(c.code) {
            return Err(rule(
                "code-invalid",
                format!("Condition.code.coding[{i}].code"),
                "not an ICD-10 code: an uppercase letter, two digits, optionally a dot and one or two digits",
            ));
        }
        found = true;
    }
    if found {
        return Ok(());
    }
    let msg = if codings.iter().any(|c| c.system == ICD10_CM) {
        format!(
            "an ICD-10 (WHO) coding with system {ICD10} is required; ICD-10-CM codings alone are not accepted"
        )
    } else {
        format!("an ICD-10 (WHO) coding with system {ICD10} is required")
    };
    Err(rule("code-invalid", "Condition.code", msg))
}

/// Codings of `system` in a status concept must use one of `allowed`.
fn check_status_concept(
    concept: Option<&[Coding<'_>]>,
    system: &str,
    allowed: &[&str],
    path: &str,
) -> Result<(), FhirError> {
    let bad = concept
        .unwrap_or_default()
        .iter()
        .any(|c| c.system == system && !allowed.contains(&c.code));
    if bad {
        return Err(rule(
            "code-invalid",
            path,
            format!("{path} codes from {system} are: {}", allowed.join(", ")),
        ));
    }
    Ok(())
}

// --- Immunization ------------------------------------------------------------

fn validate_immunization(obj: &Map<String, Value>) -> Result<Summary, FhirError> {
    const RT: &str = "Immunization";
    common_rules(obj, RT)?;
    let status = get_str(obj, "status", RT)?;
    let vaccine = opt_cc(obj, "vaccineCode", RT)?;
    let patient = opt_ref(obj, "patient", RT)?;
    single_choice(obj, "occurrence", RT)?;
    let occurrence = get_str(obj, "occurrenceDateTime", RT)?;
    let walk = Walk::of(obj, RT);
    if let Some(e) = walk.structure {
        return Err(e);
    }

    refuse_contained(obj, RT)?;
    let patient = patient_reference(RT, "patient", patient.as_ref())?;
    check_status(status, IMMUNIZATION_STATUS, "Immunization.status")?;
    let Some(vaccine) = vaccine else {
        return Err(rule(
            "required",
            "Immunization.vaccineCode",
            "Immunization.vaccineCode is required",
        ));
    };
    let codes = code_pairs(Some(&vaccine));
    if codes.is_empty() {
        return Err(rule(
            "required",
            "Immunization.vaccineCode.coding",
            "Immunization.vaccineCode needs at least one coding with a system and a code",
        ));
    }
    let Some(date) = check_date_time(occurrence, "Immunization.occurrenceDateTime")? else {
        return Err(rule(
            "required",
            "Immunization.occurrenceDateTime",
            "Immunization.occurrenceDateTime is required",
        ));
    };
    if let Some(e) = walk.rule {
        return Err(e);
    }
    Ok(Summary {
        kind: KIND_IMMUNIZATION,
        resource_type: RT,
        patient,
        date: Some(date),
        codes,
        category: None,
    })
}

// ---------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------

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
        entries.push(BundleEntry {
            full_url,
            resource,
            method: method.to_owned(),
            url: url.to_owned(),
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
/// [`validate`].
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

/// The result of one Bundle entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryOutcome {
    /// The resource was stored.
    Created {
        /// Its resourceType.
        resource_type: &'static str,
        /// Its new id.
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
pub fn transaction_response(kind: BundleType, entries: Vec<EntryOutcome>) -> Value {
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
            EntryOutcome::Failed(err) => json!({"response": {
                "status": status_line(err.status),
                "outcome": err.outcome(),
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
pub fn searchset(
    base_url: &str,
    self_link: &str,
    next_link: Option<&str>,
    total: Option<u64>,
    resources: Vec<Value>,
) -> Value {
    let base = base_url.trim_end_matches('/');
    let mut links = vec![json!({"relation": "self", "url": absolute(base, self_link)})];
    if let Some(next) = next_link {
        links.push(json!({"relation": "next", "url": absolute(base, next)}));
    }
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

fn search_param(name: &str, ty: &str, documentation: &str) -> Value {
    json!({"name": name, "type": ty, "documentation": documentation})
}

fn interactions(codes: &[&str]) -> Value {
    Value::Array(codes.iter().map(|c| json!({"code": c})).collect())
}

/// The server's CapabilityStatement (R4 4.0.1, JSON only).
pub fn capability_statement(base_url: &str, software_version: &str) -> Value {
    let base = base_url.trim_end_matches('/');
    let subject = search_param("subject", "reference", "Patient/<pseudonym>");
    let patient = search_param("patient", "reference", "Patient/<pseudonym>");
    let code = search_param("code", "token", "system|code, or code");
    let date = search_param(
        "date",
        "date",
        "clinical date, with prefix eq, ne, lt, gt, le, ge, sa or eb",
    );
    let count = search_param("_count", "number", "page size");
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
            "resource": [
                {
                    "type": "Observation",
                    "interaction": interactions(&["read", "search-type", "create"]),
                    "searchParam": [subject.clone(), code.clone(), date, patient.clone(), count],
                },
                {
                    "type": "Condition",
                    "interaction": interactions(&["read", "search-type", "create"]),
                    "searchParam": [subject, patient.clone(), code],
                },
                {
                    "type": "Immunization",
                    "interaction": interactions(&["read", "search-type", "create"]),
                    "searchParam": [patient],
                },
                {
                    "type": "Patient",
                    "interaction": interactions(&["read"]),
                    "operation": [{
                        "name": "everything",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    }],
                },
            ],
            "interaction": interactions(&["transaction", "batch"]),
        }],
    })
}

// ---------------------------------------------------------------------------
// Read and storage forms
// ---------------------------------------------------------------------------

/// A stored payload made into the resource returned to readers: `id` set to
/// `id`, `meta.versionId` to `"1"` and `meta.lastUpdated` to the instant
/// `last_updated_ms` (milliseconds since the Unix epoch, e.g.
/// `2026-11-24T15:30:00.123Z`). Everything else is left as stored; a payload
/// that is not an object is returned unchanged.
pub fn as_read(payload: &Value, id: &str, last_updated_ms: u64) -> Value {
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

/// Prepares a client resource for storage: removes the server-assigned `id`,
/// `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta`
/// (profile, security, ...). A `meta` left empty is removed.
pub fn for_storage(v: &Value) -> Value {
    let mut out = v.clone();
    if let Value::Object(obj) = &mut out {
        obj.remove("id");
        let emptied = match obj.get_mut("meta") {
            Some(Value::Object(meta)) => {
                meta.remove("versionId");
                meta.remove("lastUpdated");
                meta.is_empty()
            }
            _ => false,
        };
        if emptied {
            obj.remove("meta");
        }
    }
    out
}

/// `ms` since the Unix epoch as an RFC 3339 UTC instant with milliseconds.
fn instant(ms: u64) -> String {
    let days = ms / 86_400_000;
    let rem = ms % 86_400_000;
    let (y, m, d) = crate::calendar::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

// ---------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------

/// A parsed FHIR date or dateTime.
enum Parsed {
    Year(i64),
    Month(i64, i64),
    Day(i64, i64, i64),
    Time {
        /// Start of the day, ms since the epoch, in the local time of the
        /// value.
        day_ms: i64,
        /// Time of day, ms.
        time_ms: i64,
        /// Width of the precision given, ms.
        width: i64,
        /// Offset from UTC, ms.
        offset_ms: i64,
    },
}

/// A fixed-width decimal number at `b[at..at + len]`.
fn digits(b: &[u8], at: usize, len: usize) -> Option<i64> {
    let s = b.get(at..at + len)?;
    s.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// Parses a FHIR date or dateTime: `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or
/// `YYYY-MM-DDThh:mm:ss[.fraction](Z|+hh:mm|-hh:mm)`.
fn parse_date_time(s: &str) -> Option<Parsed> {
    let b = s.as_bytes();
    let year = digits(b, 0, 4).filter(|y| *y >= 1)?;
    if b.len() == 4 {
        return Some(Parsed::Year(year));
    }
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    if !sep(4, b'-') {
        return None;
    }
    let month = digits(b, 5, 2).filter(|m| (1..=12).contains(m))?;
    if b.len() == 7 {
        return Some(Parsed::Month(year, month));
    }
    if !sep(7, b'-') {
        return None;
    }
    let day = digits(b, 8, 2)
        .filter(|d| (1..=crate::calendar::days_in_month(year, month)).contains(d))?;
    if b.len() == 10 {
        return Some(Parsed::Day(year, month, day));
    }
    if !(sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let hour = digits(b, 11, 2).filter(|h| *h <= 23)?;
    let minute = digits(b, 14, 2).filter(|m| *m <= 59)?;
    let second = digits(b, 17, 2).filter(|s| *s <= 60)?;
    let mut at = 19;
    let mut millis = 0;
    let mut width = 1000;
    if sep(at, b'.') {
        let n = b
            .get(at + 1..)?
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if !(1..=9).contains(&n) {
            return None;
        }
        let kept = n.min(3);
        millis = digits(b, at + 1, kept)?;
        for _ in kept..3 {
            millis *= 10;
        }
        width = match n {
            1 => 100,
            2 => 10,
            _ => 1,
        };
        at += 1 + n;
    }
    let offset_ms = match b.get(at..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let oh = digits(rest, 0, 2)?;
            let om = digits(rest, 3, 2).filter(|m| *m <= 59)?;
            if oh > 14 || (oh == 14 && om != 0) {
                return None;
            }
            let off = (oh * 60 + om) * 60_000;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    Some(Parsed::Time {
        day_ms: crate::calendar::days_from_civil(year, month, day) * MS_PER_DAY,
        time_ms: ((hour * 60 + minute) * 60 + second) * 1000 + millis,
        width,
        offset_ms,
    })
}

/// The UTC range `(start_ms, end_ms)` (start inclusive, end exclusive, ms
/// since the Unix epoch) a FHIR date or dateTime covers at its precision:
/// `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ss[.fraction]` with
/// `Z` or `±hh:mm`. Values without a time are taken as UTC. `None` if `s`
/// is not such a value.
pub fn date_range(s: &str) -> Option<(i64, i64)> {
    let day = |y, m, d| crate::calendar::days_from_civil(y, m, d) * MS_PER_DAY;
    Some(match parse_date_time(s)? {
        Parsed::Year(y) => (day(y, 1, 1), day(y + 1, 1, 1)),
        Parsed::Month(y, m) => {
            let start = day(y, m, 1);
            (
                start,
                start + crate::calendar::days_in_month(y, m) * MS_PER_DAY,
            )
        }
        Parsed::Day(y, m, d) => {
            let start = day(y, m, d);
            (start, start + MS_PER_DAY)
        }
        Parsed::Time {
            day_ms,
            time_ms,
            width,
            offset_ms,
        } => {
            let start = day_ms + time_ms - offset_ms;
            (start, start + width)
        }
    })
}

/// A prefix of a date search parameter.
#[derive(Clone, Copy)]
enum Prefix {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Sa,
    Eb,
}

/// Whether a resource date `value` satisfies the `date` search parameter
/// `param`, e.g. `ge2026-01-01`.
///
/// Both are compared as the ranges [`date_range`] gives. Prefixes: `eq`
/// (the default; the ranges overlap), `ne` (they do not), `lt` / `gt` (the
/// value has time before / after the parameter's range), `le` / `ge` (`lt`
/// / `gt` or `eq`), `sa` (the value starts after the parameter's range),
/// `eb` (the value ends before it). A malformed parameter, or the
/// unsupported `ap`, is a 400 error; a value that is not a date matches
/// nothing.
pub fn date_matches(param: &str, value: &str) -> Result<bool, FhirError> {
    let (prefix, rest) = match param.get(..2) {
        Some(p) if p.bytes().all(|c| c.is_ascii_lowercase()) => {
            let prefix = match p {
                "eq" => Prefix::Eq,
                "ne" => Prefix::Ne,
                "lt" => Prefix::Lt,
                "gt" => Prefix::Gt,
                "le" => Prefix::Le,
                "ge" => Prefix::Ge,
                "sa" => Prefix::Sa,
                "eb" => Prefix::Eb,
                _ => {
                    return Err(FhirError::new(
                        400,
                        "not-supported",
                        None,
                        "date search prefixes are eq, ne, lt, gt, le, ge, sa and eb",
                    ));
                }
            };
            (prefix, param.get(2..).unwrap_or_default())
        }
        _ => (Prefix::Eq, param),
    };
    let Some((ps, pe)) = date_range(rest) else {
        return Err(FhirError::new(
            400,
            "value",
            None,
            "a date search value is YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm), optionally prefixed",
        ));
    };
    let Some((rs, re)) = date_range(value) else {
        return Ok(false);
    };
    let overlaps = rs < pe && ps < re;
    Ok(match prefix {
        Prefix::Eq => overlaps,
        Prefix::Ne => !overlaps,
        Prefix::Lt => rs < ps,
        Prefix::Gt => re > pe,
        Prefix::Le => rs < pe,
        Prefix::Ge => re > ps,
        Prefix::Sa => rs >= pe,
        Prefix::Eb => re <= ps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PSEUDO: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";

    /// A US Core heart rate Observation with the subject rewritten to a
    /// pseudonym.
    fn heart_rate() -> Value {
        serde_json::from_str(
            r#"{"resourceType":"Observation","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-heart-rate"]},"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital Signs"}],"text":"Vital Signs"}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart rate"},"subject":{"reference":"Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA"},"effectiveDateTime":"2026-01-01T09:00:00Z","valueQuantity":{"value":77,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}}"#,
        )
        .unwrap()
    }

    /// An Observation with one LOINC code and a valueQuantity.
    fn observation(loinc: &str, unit: &str, value: f64) -> Value {
        let mut v = heart_rate();
        v["code"] = json!({"coding": [{"system": LOINC, "code": loinc}]});
        v["valueQuantity"] = json!({"value": value, "system": UCUM, "code": unit});
        v.as_object_mut().unwrap().remove("category");
        v
    }

    fn blood_pressure(systolic: f64, diastolic: f64) -> Value {
        let mut v = heart_rate();
        let obj = v.as_object_mut().unwrap();
        obj.remove("valueQuantity");
        obj.insert(
            "code".into(),
            json!({"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel with all children optional"}]}),
        );
        obj.insert(
            "component".into(),
            serde_json::from_str(
                r#"[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":139,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":84,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]"#,
            )
            .unwrap(),
        );
        v["component"][0]["valueQuantity"]["value"] = json!(systolic);
        v["component"][1]["valueQuantity"]["value"] = json!(diastolic);
        v
    }

    fn condition(system: &str, code: &str) -> Value {
        json!({
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": CONDITION_VER_STATUS, "code": "confirmed"}]},
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": format!("Patient/{PSEUDO}")},
            "onsetDateTime": "2026-01-02T10:00:00+01:00",
            "recordedDate": "2026-01-03"
        })
    }

    fn immunization() -> Value {
        json!({
            "resourceType": "Immunization",
            "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140", "display": "Influenza, seasonal, injectable, preservative free"}]},
            "patient": {"reference": format!("Patient/{PSEUDO}")},
            "occurrenceDateTime": "2026-10-01T08:30:00Z",
            "primarySource": true
        })
    }

    fn err(v: &Value) -> FhirError {
        validate(v).expect_err("expected a refusal")
    }

    fn assert_err(v: &Value, status: u16, code: &str, expression: Option<&str>) -> FhirError {
        let e = err(v);
        assert_eq!((e.status, e.code), (status, code), "{e:?}");
        if let Some(x) = expression {
            assert_eq!(e.expression.as_deref(), Some(x), "{e:?}");
        }
        e
    }

    // --- Observation -----------------------------------------------------

    #[test]
    fn us_core_heart_rate_fixture_is_accepted() {
        let s = validate(&heart_rate()).unwrap();
        assert_eq!(
            s,
            Summary {
                kind: KIND_OBSERVATION,
                resource_type: "Observation",
                patient: PSEUDO.into(),
                date: Some("2026-01-01T09:00:00Z".into()),
                codes: vec![(LOINC.into(), "8867-4".into())],
                category: Some("vital-signs"),
            }
        );
    }

    /// (LOINC, unit, min, max) for every accepted single-value code.
    const VALUE_CODES: &[(&str, &str, f64, f64)] = &[
        ("8867-4", "/min", 0.0, 350.0),
        ("9279-1", "/min", 0.0, 150.0),
        ("8310-5", "Cel", 20.0, 46.0),
        ("8310-5", "[degF]", 68.0, 115.0),
        ("2708-6", "%", 0.0, 100.0),
        ("59408-5", "%", 0.0, 100.0),
        ("2339-0", "mg/dL", 0.0, 2000.0),
        ("15074-8", "mmol/L", 0.0, 120.0),
    ];

    #[test]
    fn each_accepted_code_is_valid() {
        for &(code, unit, min, max) in VALUE_CODES {
            let s = validate(&observation(code, unit, (min + max) / 2.0))
                .unwrap_or_else(|e| panic!("{code} {unit}: {e:?}"));
            assert_eq!(s.codes, vec![(LOINC.to_owned(), code.to_owned())]);
            let lab = matches!(code, "2339-0" | "15074-8");
            let category = if lab { "laboratory" } else { "vital-signs" };
            assert_eq!(s.category, Some(category));
        }
        validate(&blood_pressure(120.0, 80.0)).unwrap();
    }

    #[test]
    fn each_wrong_unit_is_refused_at_the_unit_code() {
        for &(code, unit, min, _) in VALUE_CODES {
            for wrong in ["mg", "beats/minute", "/s", "K", "mm[Hg]", "%", "mg/dL"] {
                if wrong == unit || (code == "8310-5" && wrong == "[degF]") {
                    continue;
                }
                let e = assert_err(
                    &observation(code, wrong, min),
                    422,
                    "value",
                    Some("Observation.valueQuantity.code"),
                );
                assert!(e.diagnostics.contains(unit), "{e:?}");
            }
        }
        let mut bp = blood_pressure(120.0, 80.0);
        bp["component"][1]["valueQuantity"]["code"] = json!("kPa");
        assert_err(
            &bp,
            422,
            "value",
            Some("Observation.component[1].valueQuantity.code"),
        );
    }

    #[test]
    fn wrong_or_missing_unit_system_is_refused() {
        let mut v = heart_rate();
        v["valueQuantity"]["system"] = json!("http://example.org/units");
        assert_err(&v, 422, "value", Some("Observation.valueQuantity.system"));
        v["valueQuantity"].as_object_mut().unwrap().remove("system");
        assert_err(
            &v,
            422,
            "required",
            Some("Observation.valueQuantity.system"),
        );
        let mut v = heart_rate();
        v["valueQuantity"].as_object_mut().unwrap().remove("code");
        assert_err(&v, 422, "required", Some("Observation.valueQuantity.code"));
    }

    #[test]
    fn range_edges_are_inclusive() {
        for &(code, unit, min, max) in VALUE_CODES {
            validate(&observation(code, unit, min)).unwrap();
            validate(&observation(code, unit, max)).unwrap();
            for outside in [min - 0.001, max + 0.001, max + 1.0] {
                assert_err(
                    &observation(code, unit, outside),
                    422,
                    "value",
                    Some("Observation.valueQuantity.value"),
                );
            }
        }
        validate(&blood_pressure(0.0, 400.0)).unwrap();
        let e = assert_err(&blood_pressure(400.5, 80.0), 422, "value", None);
        assert_eq!(
            e.expression.as_deref(),
            Some("Observation.component[0].valueQuantity.value")
        );
        assert_err(
            &blood_pressure(120.0, -1.0),
            422,
            "value",
            Some("Observation.component[1].valueQuantity.value"),
        );
    }

    #[test]
    fn integer_values_are_numbers_too() {
        let mut v = heart_rate();
        v["valueQuantity"]["value"] = json!(350u64);
        validate(&v).unwrap();
        v["valueQuantity"]["value"] = json!(351i64);
        assert_err(&v, 422, "value", Some("Observation.valueQuantity.value"));
        v["valueQuantity"]["value"] = json!("77");
        assert_err(
            &v,
            400,
            "structure",
            Some("Observation.valueQuantity.value"),
        );
    }

    #[test]
    fn vital_signs_of_observations() {
        let read = |v: &Value| vital_signs_of(v, &validate(v).unwrap());
        let hr = read(&heart_rate()).unwrap();
        assert_eq!(
            (hr.pulse, hr.time.as_str()),
            (Some(77.0), "2026-01-01T09:00:00Z")
        );
        let bp = read(&blood_pressure(139.0, 84.0)).unwrap();
        assert_eq!((bp.systolic_bp, bp.diastolic_bp), (Some(139.0), Some(84.0)));
        let f = read(&observation("8310-5", "[degF]", 100.4)).unwrap();
        assert!((f.temperature.unwrap() - 38.0).abs() < 1e-9);
        let g = read(&observation("2339-0", "mg/dL", 180.16)).unwrap();
        assert!((g.glucose.unwrap() - 10.0).abs() < 1e-9);
        let mut day_only = heart_rate();
        day_only["effectiveDateTime"] = json!("2026-01-01");
        assert_eq!(read(&day_only), None);
    }

    #[test]
    fn blood_pressure_panel_needs_both_components() {
        for missing in [0, 1] {
            let mut v = blood_pressure(120.0, 80.0);
            v["component"].as_array_mut().unwrap().remove(missing);
            assert_err(&v, 422, "required", Some("Observation.component"));
        }
        let mut v = blood_pressure(120.0, 80.0);
        v.as_object_mut().unwrap().remove("component");
        assert_err(&v, 422, "required", Some("Observation.component"));

        let mut v = blood_pressure(120.0, 80.0);
        v["component"][1] = v["component"][0].clone();
        assert_err(&v, 422, "value", Some("Observation.component[1]"));

        let mut v = blood_pressure(120.0, 80.0);
        v["component"][1]["code"]["coding"][0]["code"] = json!("8867-4");
        assert_err(
            &v,
            422,
            "code-invalid",
            Some("Observation.component[1].code"),
        );

        let mut v = blood_pressure(120.0, 80.0);
        v["valueQuantity"] = json!({"value": 120, "system": UCUM, "code": "mm[Hg]"});
        assert_err(&v, 422, "value", Some("Observation.value[x]"));

        // A component may lack its value only with a dataAbsentReason.
        let mut v = blood_pressure(120.0, 80.0);
        v["component"][1]
            .as_object_mut()
            .unwrap()
            .remove("valueQuantity");
        assert_err(
            &v,
            422,
            "required",
            Some("Observation.component[1].value[x]"),
        );
        v["component"][1]["dataAbsentReason"] = json!({"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            "code": "not-performed"}]});
        validate(&v).unwrap();
    }

    #[test]
    fn components_only_on_the_blood_pressure_panel() {
        let mut v = heart_rate();
        v["component"] = blood_pressure(120.0, 80.0)["component"].clone();
        assert_err(&v, 422, "not-supported", Some("Observation.component"));
    }

    #[test]
    fn us_core_pulse_oximetry_with_both_codings() {
        let mut v = observation("2708-6", "%", 97.0);
        v["code"] = json!({"coding": [
            {"system": LOINC, "code": "2708-6", "display": "Oxygen saturation in Arterial blood"},
            {"system": LOINC, "code": "59408-5", "display": "Oxygen saturation in Arterial blood by Pulse oximetry"}
        ]});
        v["meta"] = json!({"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-pulse-oximetry"]});
        let s = validate(&v).unwrap();
        assert_eq!(
            s.codes,
            vec![
                (LOINC.to_owned(), "2708-6".to_owned()),
                (LOINC.to_owned(), "59408-5".to_owned())
            ]
        );
        assert_eq!(s.category, Some("vital-signs"));
    }

    #[test]
    fn codings_of_two_measurements_are_refused() {
        let mut v = heart_rate();
        v["code"]["coding"]
            .as_array_mut()
            .unwrap()
            .push(json!({"system": LOINC, "code": "9279-1"}));
        assert_err(&v, 422, "code-invalid", Some("Observation.code"));
    }

    #[test]
    fn lab_glucose_and_its_category() {
        let mut v = observation("2339-0", "mg/dL", 105.0);
        let s = validate(&v).unwrap();
        assert_eq!(s.category, Some("laboratory"));
        v["category"] =
            json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}]);
        validate(&v).unwrap();
        v["category"] = heart_rate()["category"].clone();
        assert_err(&v, 422, "value", Some("Observation.category"));
        let mut v = observation("15074-8", "mmol/L", 5.6);
        v["category"] =
            json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}]);
        assert_eq!(validate(&v).unwrap().category, Some("laboratory"));
        let mut v = heart_rate();
        v["category"] =
            json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}]);
        assert_err(&v, 422, "value", Some("Observation.category"));
    }

    #[test]
    fn unknown_loinc_lists_the_accepted_codes() {
        let v = observation("1234-5", "/min", 60.0);
        let e = assert_err(&v, 422, "code-invalid", Some("Observation.code"));
        for (code, _) in ACCEPTED_LOINC {
            assert!(e.diagnostics.contains(code), "{}", e.diagnostics);
        }
        assert!(!e.diagnostics.contains("1234-5"));
        let mut v = heart_rate();
        v["code"]["coding"][0]["system"] = json!("http://snomed.info/sct");
        assert_err(&v, 422, "code-invalid", Some("Observation.code"));
        let mut v = heart_rate();
        v.as_object_mut().unwrap().remove("code");
        assert_err(&v, 422, "required", Some("Observation.code"));
    }

    #[test]
    fn missing_value_needs_a_data_absent_reason() {
        let mut v = heart_rate();
        v.as_object_mut().unwrap().remove("valueQuantity");
        assert_err(&v, 422, "required", Some("Observation.value[x]"));
        v["dataAbsentReason"] = json!({"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            "code": "unknown"}]});
        validate(&v).unwrap();
        v["valueQuantity"] = heart_rate()["valueQuantity"].clone();
        assert_err(&v, 422, "invalid", Some("Observation.dataAbsentReason"));
        let mut v = heart_rate();
        v["valueQuantity"].as_object_mut().unwrap().remove("value");
        assert_err(&v, 422, "required", Some("Observation.valueQuantity.value"));
    }

    #[test]
    fn other_value_types_are_refused() {
        let mut v = heart_rate();
        v.as_object_mut().unwrap().remove("valueQuantity");
        v["valueString"] = json!("seventy-seven");
        let e = assert_err(&v, 422, "value", Some("Observation.valueString"));
        assert!(!e.diagnostics.contains("seventy"));
        v["valueQuantity"] = heart_rate()["valueQuantity"].clone();
        assert_err(&v, 400, "structure", Some("Observation.value[x]"));
    }

    #[test]
    fn observation_status_rules() {
        let mut v = heart_rate();
        for s in OBSERVATION_STATUS {
            v["status"] = json!(s);
            validate(&v).unwrap();
        }
        v["status"] = json!("done");
        assert_err(&v, 422, "value", Some("Observation.status"));
        v["status"] = json!(1);
        assert_err(&v, 400, "structure", Some("Observation.status"));
        v.as_object_mut().unwrap().remove("status");
        assert_err(&v, 422, "required", Some("Observation.status"));
    }

    #[test]
    fn observation_effective_time() {
        let mut v = heart_rate();
        v.as_object_mut().unwrap().remove("effectiveDateTime");
        assert_err(&v, 422, "required", Some("Observation.effective[x]"));
        v["effectivePeriod"] =
            json!({"start": "2026-01-01T09:00:00+02:00", "end": "2026-01-01T09:05:00+02:00"});
        assert_eq!(
            validate(&v).unwrap().date.as_deref(),
            Some("2026-01-01T09:00:00+02:00")
        );
        v["effectivePeriod"] = json!({"end": "2026-01-01"});
        assert_err(
            &v,
            422,
            "required",
            Some("Observation.effectivePeriod.start"),
        );
        v["effectivePeriod"] = json!({"start": "2026-01-02", "end": "2026-01-01"});
        assert_err(&v, 422, "invalid", Some("Observation.effectivePeriod"));
        v["effectivePeriod"] = json!({"start": "2026-01-01", "end": "2026-13"});
        assert_err(&v, 422, "value", Some("Observation.effectivePeriod.end"));
        v["effectiveDateTime"] = json!("2026-01-01");
        assert_err(&v, 400, "structure", Some("Observation.effective[x]"));

        let mut v = heart_rate();
        for bad in ["2026-02-30", "2026-01-01T09:00:00", "yesterday", "2026-1-1"] {
            v["effectiveDateTime"] = json!(bad);
            let e = assert_err(&v, 422, "value", Some("Observation.effectiveDateTime"));
            assert!(!e.diagnostics.contains(bad));
        }
        for good in [
            "2026",
            "2026-01",
            "2026-01-01",
            "2026-01-01T09:00:00.5-05:00",
        ] {
            v["effectiveDateTime"] = json!(good);
            assert_eq!(validate(&v).unwrap().date.as_deref(), Some(good));
        }
    }

    // --- references ------------------------------------------------------

    #[test]
    fn malformed_pseudonym_reference_is_refused_without_echo() {
        for bad in [
            "Patient/1234567890123",
            "Patient/mfrggzdfmztwq2lknnwg23tpoa",
            "Patient/MFRGGZDFMZTWQ2LKNNWG23TPO",
            "Patient/",
            "Patient Smith",
            "http://example.org/fhir/Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA",
        ] {
            let mut v = heart_rate();
            v["subject"]["reference"] = json!(bad);
            let e = assert_err(&v, 422, "value", Some("Observation.subject"));
            let echoed = bad.trim_start_matches("Patient/");
            if !echoed.is_empty() {
                assert!(!e.diagnostics.contains(echoed), "{e:?}");
                let outcome = e.outcome().to_string();
                assert!(!outcome.contains(echoed), "{outcome}");
            }
        }
    }

    #[test]
    fn subject_rules() {
        let mut v = heart_rate();
        v.as_object_mut().unwrap().remove("subject");
        assert_err(&v, 422, "required", Some("Observation.subject"));
        v["subject"] = json!({});
        assert_err(&v, 422, "required", Some("Observation.subject.reference"));
        v["subject"] = json!("Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA");
        assert_err(&v, 400, "structure", Some("Observation.subject"));
        v["subject"] = json!({"reference": 5});
        assert_err(&v, 400, "structure", Some("Observation.subject.reference"));
        v["subject"] = json!({"reference": "Group/g1"});
        assert_err(&v, 422, "not-supported", Some("Observation.subject"));
        v["subject"] = json!({"reference": format!("Patient/{PSEUDO}"), "display": "Jane Doe"});
        let e = assert_err(&v, 422, "security", Some("Observation.subject.display"));
        assert!(!e.diagnostics.contains("Jane"));
        v["subject"] = json!({"reference": format!("Patient/{PSEUDO}"),
            "identifier": {"system": "urn:oid:1.2.3", "value": "0101990710006"}});
        let e = assert_err(&v, 422, "security", Some("Observation.subject.identifier"));
        assert!(!e.diagnostics.contains("0101990710006"));
    }

    #[test]
    fn urn_uuid_references_are_unresolved() {
        let uuid = "urn:uuid:7b5d1a4c-6e0f-4f7e-9a4c-3d2f1e0a9b8c";
        let mut v = heart_rate();
        v["subject"]["reference"] = json!(uuid);
        let e = assert_err(&v, 422, "invalid", Some("Observation.subject"));
        assert!(e.diagnostics.contains("unresolved bundle-local reference"));
        assert!(!e.diagnostics.contains(uuid));
        let mut v = heart_rate();
        v["encounter"] = json!({"reference": uuid});
        assert_err(&v, 422, "invalid", Some("Observation.encounter.reference"));
        let mut v = immunization();
        v["performer"] = json!([{"actor": {"reference": uuid}}]);
        assert_err(
            &v,
            422,
            "invalid",
            Some("Immunization.performer[0].actor.reference"),
        );
    }

    #[test]
    fn other_references_must_be_relative() {
        let mut v = heart_rate();
        v["encounter"] = json!({"reference": "Encounter/x"});
        v["performer"] = json!([{"reference": "Practitioner/abc", "display": "Dr. Who"}]);
        validate(&v).unwrap();
        v["performer"] = json!([{"reference": "https://example.org/Practitioner/abc"}]);
        assert_err(
            &v,
            422,
            "invalid",
            Some("Observation.performer[0].reference"),
        );
        v["performer"] = json!([{"reference": "#p1"}]);
        assert_err(
            &v,
            422,
            "not-supported",
            Some("Observation.performer[0].reference"),
        );
        v["performer"] = json!([{"reference": "Patient/12345678901"}]);
        let e = assert_err(&v, 422, "value", Some("Observation.performer[0].reference"));
        assert!(!e.diagnostics.contains("12345678901"));
        v["performer"] = json!([{"reference": format!("Patient/{PSEUDO}")}]);
        validate(&v).unwrap();
        v["performer"] = json!([{"reference": ["Practitioner/abc"]}]);
        assert_err(
            &v,
            400,
            "structure",
            Some("Observation.performer[0].reference"),
        );
    }

    #[test]
    fn contained_resources_are_refused() {
        let mut v = heart_rate();
        v["contained"] =
            json!([{"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]}]);
        assert_err(&v, 422, "not-supported", Some("Observation.contained"));
        let mut v = condition(ICD10, "I10");
        v["contained"] = json!([]);
        assert_err(&v, 422, "not-supported", Some("Condition.contained"));
    }

    // --- Condition -------------------------------------------------------

    #[test]
    fn condition_needs_a_who_icd10_coding() {
        let s = validate(&condition(ICD10, "J10.1")).unwrap();
        assert_eq!(s.kind, KIND_CONDITION);
        assert_eq!(s.resource_type, "Condition");
        assert_eq!(s.patient, PSEUDO);
        assert_eq!(s.date.as_deref(), Some("2026-01-02T10:00:00+01:00"));
        assert_eq!(s.codes, vec![(ICD10.to_owned(), "J10.1".to_owned())]);
        assert_eq!(s.category, None);

        let e = assert_err(
            &condition(ICD10_CM, "E11.65"),
            422,
            "code-invalid",
            Some("Condition.code"),
        );
        assert!(e.diagnostics.contains("ICD-10 (WHO)"), "{e:?}");

        let mut both = condition(ICD10_CM, "E11.65");
        both["code"]["coding"]
            .as_array_mut()
            .unwrap()
            .push(json!({"system": ICD10, "code": "E11.6"}));
        assert_eq!(validate(&both).unwrap().codes.len(), 2);

        assert_err(
            &condition("http://snomed.info/sct", "44054006"),
            422,
            "code-invalid",
            Some("Condition.code"),
        );
        assert_err(
            &condition(ICD10, "j10.1"),
            422,
            "code-invalid",
            Some("Condition.code.coding[0].code"),
        );
    }

    #[test]
    fn condition_dates_and_statuses() {
        let mut v = condition(ICD10, "I10");
        v.as_object_mut().unwrap().remove("onsetDateTime");
        assert_eq!(validate(&v).unwrap().date.as_deref(), Some("2026-01-03"));
        v.as_object_mut().unwrap().remove("recordedDate");
        assert_eq!(validate(&v).unwrap().date, None);
        v["recordedDate"] = json!("2026-02-29");
        assert_err(&v, 422, "value", Some("Condition.recordedDate"));

        let mut v = condition(ICD10, "I10");
        v["clinicalStatus"] = json!("active");
        assert_err(&v, 400, "structure", Some("Condition.clinicalStatus"));
        v["clinicalStatus"] = json!({"coding": [{"system": CONDITION_CLINICAL, "code": "cured"}]});
        assert_err(&v, 422, "code-invalid", Some("Condition.clinicalStatus"));
        let mut v = condition(ICD10, "I10");
        v["verificationStatus"] = json!({"coding": {"code": "confirmed"}});
        assert_err(
            &v,
            400,
            "structure",
            Some("Condition.verificationStatus.coding"),
        );
        let mut v = condition(ICD10, "I10");
        v.as_object_mut().unwrap().remove("clinicalStatus");
        v.as_object_mut().unwrap().remove("verificationStatus");
        validate(&v).unwrap();
        v.as_object_mut().unwrap().remove("subject");
        assert_err(&v, 422, "required", Some("Condition.subject"));
    }

    #[test]
    fn icd10_shape() {
        for ok in ["J10.1", "U07.1", "I10", "E11.9", "E11.65", "A00", "Z99.89"] {
            assert!(is_icd10(ok), "{ok}");
        }
        for bad in [
            "j10.1", "J1", "J10.", "J10.123", "1J0", "", "J", "J10-1", "J1A", "JJ0.1", "J10.a",
            " J10", "J10 ", "É10", "J10..1",
        ] {
            assert!(!is_icd10(bad), "{bad}");
        }
    }

    // --- Immunization ----------------------------------------------------

    #[test]
    fn immunization_rules() {
        let s = validate(&immunization()).unwrap();
        assert_eq!(s.kind, KIND_IMMUNIZATION);
        assert_eq!(s.patient, PSEUDO);
        assert_eq!(s.date.as_deref(), Some("2026-10-01T08:30:00Z"));
        assert_eq!(
            s.codes,
            vec![("http://hl7.org/fhir/sid/cvx".to_owned(), "140".to_owned())]
        );

        let mut v = immunization();
        v["status"] = json!("given");
        assert_err(&v, 422, "value", Some("Immunization.status"));
        let mut v = immunization();
        v.as_object_mut().unwrap().remove("occurrenceDateTime");
        assert_err(&v, 422, "required", Some("Immunization.occurrenceDateTime"));
        v["occurrenceString"] = json!("last spring");
        assert_err(&v, 422, "required", Some("Immunization.occurrenceDateTime"));
        let mut v = immunization();
        v["occurrenceDateTime"] = json!("2026-10-01T08:30Z");
        assert_err(&v, 422, "value", Some("Immunization.occurrenceDateTime"));
        let mut v = immunization();
        v["vaccineCode"] = json!({"text": "flu shot"});
        assert_err(&v, 422, "required", Some("Immunization.vaccineCode.coding"));
        v["vaccineCode"] = json!({"coding": [{"code": "140"}]});
        assert_err(&v, 422, "required", Some("Immunization.vaccineCode.coding"));
        v.as_object_mut().unwrap().remove("vaccineCode");
        assert_err(&v, 422, "required", Some("Immunization.vaccineCode"));
        let mut v = immunization();
        v["patient"] = json!({"reference": "Patient/abc"});
        assert_err(&v, 422, "value", Some("Immunization.patient"));
        let mut v = immunization();
        v.as_object_mut().unwrap().remove("patient");
        v["subject"] = json!({"reference": format!("Patient/{PSEUDO}")});
        assert_err(&v, 422, "required", Some("Immunization.patient"));
    }

    // --- resource types --------------------------------------------------

    #[test]
    fn patient_resources_are_refused() {
        let named = json!({"resourceType": "Patient", "name": [{"family": "Petrović"}]});
        let e = assert_err(&named, 422, "security", Some("Patient.name"));
        assert_eq!(
            e.diagnostics,
            "Patient resources that carry names or identifiers are refused; refer to patients as Patient/<pseudonym>"
        );
        assert!(!e.outcome().to_string().contains("Petrovi"));
        for key in IDENTIFYING_PATIENT_ELEMENTS {
            let mut v = json!({"resourceType": "Patient", "gender": "female"});
            v[*key] = json!("x");
            assert_err(&v, 422, "security", None);
        }
        let bare = json!({"resourceType": "Patient", "id": PSEUDO, "gender": "female"});
        let e = assert_err(&bare, 422, "not-supported", None);
        assert_eq!(
            e.diagnostics,
            "Patient resources are not stored; refer to the patient as Patient/<pseudonym>"
        );
    }

    #[test]
    fn unsupported_types_are_named_only_when_they_look_like_types() {
        let e = assert_err(
            &json!({"resourceType": "Encounter"}),
            422,
            "not-supported",
            None,
        );
        assert!(e.diagnostics.contains("Encounter"));
        let e = assert_err(
            &json!({"resourceType": "Jane Doe 0101990710006"}),
            422,
            "not-supported",
            None,
        );
        assert!(!e.diagnostics.contains("Jane"));
    }

    #[test]
    fn kinds_round_trip() {
        for rt in ["Observation", "Condition", "Immunization"] {
            let kind = kind_of(rt).unwrap();
            assert_eq!(resource_type_of(kind), Some(rt));
        }
        assert_eq!(kind_of("Patient"), None);
        assert_eq!(kind_of("observation"), None);
        assert_eq!(resource_type_of("medical_report"), None);
    }

    #[test]
    fn garbage_does_not_panic() {
        let garbage = [
            json!(null),
            json!(5),
            json!("Observation"),
            json!([]),
            json!({}),
            json!({"resourceType": 5}),
            json!({"resourceType": null}),
            json!({"resourceType": "Observation"}),
            json!({"resourceType": "Observation", "code": 5}),
            json!({"resourceType": "Observation", "code": {"coding": 5}}),
            json!({"resourceType": "Observation", "code": {"coding": [5]}}),
            json!({"resourceType": "Observation", "code": {"coding": [{"system": 5}]}}),
            json!({"resourceType": "Observation", "category": {"coding": []}}),
            json!({"resourceType": "Observation", "category": [7]}),
            json!({"resourceType": "Observation", "subject": []}),
            json!({"resourceType": "Observation", "effectivePeriod": "2026"}),
            json!({"resourceType": "Observation", "effectivePeriod": {"start": 2026}}),
            json!({"resourceType": "Observation", "valueQuantity": []}),
            json!({"resourceType": "Observation", "valueQuantity": {"value": null}}),
            json!({"resourceType": "Observation", "component": {}}),
            json!({"resourceType": "Observation", "component": [[]]}),
            json!({"resourceType": "Observation", "component": [{"code": "x"}]}),
            json!({"resourceType": "Observation", "dataAbsentReason": true}),
            json!({"resourceType": "Observation", "meta": []}),
            json!({"resourceType": "Observation", "id": 1}),
            json!({"resourceType": "Condition", "code": []}),
            json!({"resourceType": "Condition", "onsetDateTime": {}}),
            json!({"resourceType": "Immunization", "vaccineCode": "x"}),
            json!({"resourceType": "Immunization", "patient": {"reference": {}}}),
            json!({"resourceType": "Immunization", "status": false}),
            json!({"resourceType": "Patient", "name": null}),
            json!({"resourceType": ""}),
        ];
        for g in &garbage {
            let _ = validate(g);
            let _ = parse_bundle(g);
            let _ = for_storage(g);
            let _ = as_read(g, "x", u64::MAX);
            let entry = BundleEntry {
                full_url: None,
                resource: g.clone(),
                method: "POST".into(),
                url: "Observation".into(),
            };
            let _ = check_entry(&entry);
        }
        let e = assert_err(
            &json!({"resourceType": "Observation", "code": 5}),
            400,
            "structure",
            Some("Observation.code"),
        );
        assert_eq!(e.outcome()["issue"][0]["code"], "structure");
        assert_err(&json!(5), 400, "structure", None);
        assert_err(&json!({"resourceType": 5}), 400, "structure", None);

        let mut deep = json!("leaf");
        for _ in 0..200 {
            deep = json!({"extension": [deep]});
        }
        let mut v = heart_rate();
        v["extension"] = json!([deep]);
        assert_err(&v, 400, "structure", None);

        for s in [
            "",
            "2",
            "20261",
            "2026-",
            "2026-00",
            "2026-01-0",
            "2026-01-01T",
            "2026-01-01T24:00:00Z",
            "2026-01-01T23:60:00Z",
            "2026-01-01T23:59:61Z",
            "2026-01-01T23:59:59.Z",
            "2026-01-01T23:59:59.1234567890Z",
            "2026-01-01T23:59:59+14:01",
            "2026-01-01T23:59:59+15:00",
            "2026-01-01T23:59:59+0100",
            "2026-01-01T23:59:59z",
            "0000",
            "é026",
            "2026-01-01T23:59:59Zjunk",
            "2026-01-01T23:59:59+01:00:00",
        ] {
            assert_eq!(date_range(s), None, "{s}");
        }
    }

    // --- outcomes --------------------------------------------------------

    #[test]
    fn operation_outcomes() {
        let e = err(&observation("8867-4", "/s", 60.0));
        let o = e.outcome();
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

    #[test]
    fn transaction_response_shape() {
        let failure = err(&observation("1234-5", "/min", 60.0));
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
        assert_eq!(r["entry"][1]["response"]["outcome"], failure.outcome());
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
        );
        assert_eq!(b["link"].as_array().unwrap().len(), 1);
        assert_eq!(b["link"][0]["url"], "https://other.example/fhir/Condition");
        assert!(b.get("total").is_none());
        assert!(b.get("entry").is_none());
    }

    #[test]
    fn capability_statement_lists_the_resources() {
        let c = capability_statement("https://node.example/fhir", "0.1.0");
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
        let resources = rest["resource"].as_array().unwrap();
        let find = |t: &str| resources.iter().find(|r| r["type"] == t).unwrap();
        let params = |t: &str| -> Vec<(String, String)> {
            find(t)["searchParam"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            (
                                p["name"].as_str().unwrap().to_owned(),
                                p["type"].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let interactions = |t: &str| -> Vec<String> {
            find(t)["interaction"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["code"].as_str().unwrap().to_owned())
                .collect()
        };
        for t in ["Observation", "Condition", "Immunization"] {
            assert_eq!(interactions(t), ["read", "search-type", "create"], "{t}");
        }
        let obs = params("Observation");
        for (n, ty) in [
            ("subject", "reference"),
            ("code", "token"),
            ("date", "date"),
            ("patient", "reference"),
            ("_count", "number"),
        ] {
            assert!(obs.contains(&(n.into(), ty.into())), "{n}");
        }
        let names = |t: &str| params(t).into_iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(names("Condition"), ["subject", "patient", "code"]);
        assert_eq!(names("Immunization"), ["patient"]);
        assert_eq!(interactions("Patient"), ["read"]);
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
        assert_eq!(for_storage(&v), heart_rate());

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
            assert_eq!(date_range(&instant(ms)).map(|r| r.0), Some(ms as i64));
        }
    }

    #[test]
    fn for_storage_strips_server_elements() {
        let mut v = heart_rate();
        v["id"] = json!("client-id");
        v["meta"]["versionId"] = json!("7");
        v["meta"]["lastUpdated"] = json!("2020-01-01T00:00:00Z");
        v["meta"]["security"] = json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]);
        let s = for_storage(&v);
        assert!(s.get("id").is_none());
        assert!(s["meta"].get("versionId").is_none());
        assert!(s["meta"].get("lastUpdated").is_none());
        assert_eq!(s["meta"]["profile"], v["meta"]["profile"]);
        assert_eq!(s["meta"]["security"], v["meta"]["security"]);
        validate(&s).unwrap();

        let v = json!({"resourceType": "Condition", "id": "1", "meta": {"versionId": "2"}});
        assert_eq!(for_storage(&v), json!({"resourceType": "Condition"}));
        assert_eq!(for_storage(&json!("x")), json!("x"));
    }

    // --- dates -----------------------------------------------------------

    const JAN_1_2026: i64 = 1_767_225_600_000;
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn date_range_at_each_precision() {
        assert_eq!(
            date_range("2026"),
            Some((JAN_1_2026, JAN_1_2026 + 365 * DAY))
        );
        assert_eq!(
            date_range("2024"),
            Some((JAN_1_2026 - 731 * DAY, JAN_1_2026 - 365 * DAY))
        );
        assert_eq!(
            date_range("2026-01"),
            Some((JAN_1_2026, JAN_1_2026 + 31 * DAY))
        );
        let feb_2024 = date_range("2024-02").unwrap();
        assert_eq!(feb_2024.1 - feb_2024.0, 29 * DAY);
        assert_eq!(
            date_range("2026-12"),
            Some((JAN_1_2026 + 334 * DAY, JAN_1_2026 + 365 * DAY))
        );
        assert_eq!(
            date_range("2026-01-01"),
            Some((JAN_1_2026, JAN_1_2026 + DAY))
        );
        assert_eq!(
            date_range("2026-01-01T09:00:00Z"),
            Some((JAN_1_2026 + 9 * HOUR, JAN_1_2026 + 9 * HOUR + 1000))
        );
        let t = JAN_1_2026 + 9 * HOUR + 123;
        assert_eq!(date_range("2026-01-01T09:00:00.123Z"), Some((t, t + 1)));
        assert_eq!(date_range("2026-01-01T09:00:00.123456Z"), Some((t, t + 1)));
        let t = JAN_1_2026 + 9 * HOUR + 100;
        assert_eq!(date_range("2026-01-01T09:00:00.1Z"), Some((t, t + 100)));
        let t = JAN_1_2026 + 9 * HOUR + 120;
        assert_eq!(date_range("2026-01-01T09:00:00.12Z"), Some((t, t + 10)));
        assert!(date_range("1969-12-31").unwrap().0 < 0);
        assert_eq!(date_range("0001-01-01").unwrap().0, -62_135_596_800_000);
    }

    #[test]
    fn date_range_timezone_offsets() {
        let utc = date_range("2026-01-01T09:00:00Z").unwrap();
        assert_eq!(date_range("2026-01-01T10:00:00+01:00"), Some(utc));
        assert_eq!(date_range("2026-01-01T04:30:00-04:30"), Some(utc));
        assert_eq!(date_range("2026-01-01T09:00:00+00:00"), Some(utc));
        assert_eq!(date_range("2026-01-01T09:00:00-00:00"), Some(utc));
        // Crossing a day and a year boundary.
        assert_eq!(
            date_range("2025-12-31T23:00:00-10:00").unwrap().0,
            JAN_1_2026 + 9 * HOUR
        );
        assert_eq!(
            date_range("2026-01-01T00:30:00+14:00").unwrap().0,
            JAN_1_2026 - 13 * HOUR - 30 * 60_000
        );
        assert_eq!(date_range("2026-01-01T09:00:00"), None);
        assert_eq!(date_range("2024-02-29T12:00:00Z").map(|_| ()), Some(()));
        assert_eq!(date_range("2023-02-29T12:00:00Z"), None);
        assert_eq!(date_range("1900-02-29"), None);
        assert_eq!(date_range("2000-02-29").map(|_| ()), Some(()));
        assert_eq!(date_range("2026-04-31"), None);
        assert_eq!(date_range("2026-13"), None);
    }

    #[test]
    fn date_matches_with_prefixes() {
        let at = "2026-01-15T09:00:00Z";
        let yes = |p: &str, v: &str| assert!(date_matches(p, v).unwrap(), "{p} vs {v}");
        let no = |p: &str, v: &str| assert!(!date_matches(p, v).unwrap(), "{p} vs {v}");
        yes("2026-01-15", at);
        yes("eq2026-01-15", at);
        yes("eq2026-01", at);
        yes("2026", at);
        no("2026-01-16", at);
        no("eq2026-01-14", at);
        yes("ne2026-01-14", at);
        no("ne2026-01-15", at);
        yes("lt2026-01-16", at);
        no("lt2026-01-15", at);
        yes("le2026-01-15", at);
        no("le2026-01-14", at);
        yes("gt2026-01-14", at);
        no("gt2026-01-15", at);
        yes("ge2026-01-15", at);
        yes("ge2026-01-01", at);
        no("ge2026-01-16", at);
        yes("sa2026-01-14", at);
        no("sa2026-01-15", at);
        yes("eb2026-01-16", at);
        no("eb2026-01-15", at);
        // Time zones: 09:00Z is 10:00 in +01:00.
        yes("eq2026-01-15T10:00:00+01:00", at);
        no("eq2026-01-15T09:00:00+01:00", at);
        yes("gt2026-01-15T09:00:00+01:00", at);
        // A less precise resource date overlaps a more precise parameter.
        yes("eq2026-01-15", "2026-01");
        yes("lt2026-01-15", "2026-01");
        yes("gt2026-01-15", "2026-01");
        no("sa2026-01-15", "2026-01");
        // An unusable stored date matches nothing.
        no("ne2026-01-15", "garbage");
        for bad in [
            "",
            "xx2026",
            "ap2026-01-01",
            "ge",
            "ge2026-1",
            "GE2026",
            "2026-01-01T09:00:00",
        ] {
            let e = date_matches(bad, at).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
    }
}
