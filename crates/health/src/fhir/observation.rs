//! Observation rules: the accepted LOINC measurements (vital signs and
//! blood glucose), their categories, UCUM units and plausible ranges, and
//! the blood pressure panel's components.

use serde_json::{Map, Value};

use super::dates::{check_date_time, date_range};
use super::elements::{
    Coding, Quantity, Ref, ValueSlot, Walk, check_status, code_pairs, codeable_concept,
    common_rules, get_arr, get_obj, get_str, opt_cc, opt_ref, patient_reference, refuse_contained,
    single_choice, value_slot,
};
use super::error::{FhirError, rule, structure};
use super::storage::{KIND_OBSERVATION, Summary};

pub(super) const LOINC: &str = "http://loinc.org";
pub(super) const UCUM: &str = "http://unitsofmeasure.org";

/// A quantity's `system` must be UCUM: missing is `required`, another one
/// is `value`.
pub(super) fn check_ucum_system(system: Option<&str>, path: &str) -> Result<(), FhirError> {
    if system == Some(UCUM) {
        return Ok(());
    }
    Err(rule(
        if system.is_none() {
            "required"
        } else {
            "value"
        },
        format!("{path}.system"),
        format!("{path}.system must be {UCUM}"),
    ))
}
pub(super) const OBSERVATION_CATEGORY: &str =
    "http://terminology.hl7.org/CodeSystem/observation-category";

pub(super) const OBSERVATION_STATUS: &[&str] = &[
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
];

/// What an accepted LOINC code measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Measure {
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

pub(super) const ACCEPTED_LOINC: &[(&str, Measure)] = &[
    ("8867-4", Measure::HeartRate),
    ("9279-1", Measure::RespiratoryRate),
    ("8310-5", Measure::BodyTemperature),
    ("2708-6", Measure::OxygenSaturation),
    ("59408-5", Measure::OxygenSaturation),
    ("85354-9", Measure::BloodPressure),
    ("2339-0", Measure::GlucoseMass),
    ("15074-8", Measure::GlucoseMoles),
];

pub(crate) const SYSTOLIC: &str = "8480-6";
pub(crate) const DIASTOLIC: &str = "8462-4";

/// The accepted measurement a valid Observation's `summary` names, if any.
pub(crate) fn measure_of(summary: &Summary) -> Option<Measure> {
    summary
        .codes
        .iter()
        .filter(|(system, _)| system == LOINC)
        .find_map(|(_, code)| {
            ACCEPTED_LOINC
                .iter()
                .find(|(c, _)| c == code)
                .map(|&(_, m)| m)
        })
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

pub(super) fn validate_observation(obj: &Map<String, Value>) -> Result<Summary, FhirError> {
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
        identifiers: Vec::new(),
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
    check_ucum_system(q.system, path)?;
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
