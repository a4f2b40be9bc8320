//! Payload rules per transaction kind, and what the indexes take from a
//! payload.
//!
//! [`check`] is a pure function of the kind and the payload: the PII guard
//! over every field, then the kind's schema. The ledger's state machine
//! calls it for every transaction it admits or replays, so a record that
//! breaks a rule can enter no honest node's ledger.

use crate::fhir::{self, Measure};
use crate::pii;
use crate::prescription::{self, Cancel, Dispense, Prescription};
use crate::{access, pseudonym, redaction, registries};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::payload::{PayloadError, is_date};

/// Kind of a doctor's medical report.
pub const MEDICAL_REPORT: &str = "medical_report";
/// Longest free-text field of a report, in bytes.
pub const MAX_TEXT: usize = 16 * 1024;
/// Most diagnoses on one report.
pub const MAX_DIAGNOSES: usize = 20;

/// A doctor's medical report. The doctor is the transaction's signed
/// author (a registered participant with the doctor role), so the payload
/// does not repeat it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedicalReport {
    /// The patient's pseudonym.
    pub patient: String,
    /// The institution where the encounter took place; it must be the
    /// doctor's registered institution.
    pub institution: String,
    /// Date of the encounter, `YYYY-MM-DD`.
    pub encounter_date: String,
    /// ICD-10 codes in WHO format, most significant first.
    pub diagnoses: Vec<String>,
    /// History as told by the patient.
    #[serde(default)]
    pub anamnesis: String,
    /// Examination findings.
    #[serde(default)]
    pub findings: String,
    /// Therapy and advice.
    #[serde(default)]
    pub therapy: String,
}

/// Kind of a set of vital-sign readings (a wearable, a gateway, a ward).
pub const VITAL_SIGNS: &str = "vital_signs";

/// Vital-sign readings of one patient at one time, in the compact form
/// gateways send many of at once. Every reading is optional, but a record
/// holds at least one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitalSigns {
    /// The patient's pseudonym.
    pub patient: String,
    /// When the readings were taken: a FHIR instant with its time zone.
    pub time: String,
    /// Breaths per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respiratory_rate: Option<f64>,
    /// Oxygen saturation, %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spo2: Option<f64>,
    /// Whether the patient breathes supplemental oxygen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_oxygen: Option<bool>,
    /// The SpO2 scale prescribed for the patient (1, or 2 for hypercapnic
    /// respiratory failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spo2_scale: Option<crate::news2::SpO2Scale>,
    /// Systolic blood pressure, mmHg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systolic_bp: Option<f64>,
    /// Diastolic blood pressure, mmHg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diastolic_bp: Option<f64>,
    /// Heart rate, beats per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulse: Option<f64>,
    /// Level of consciousness, ACVPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consciousness: Option<crate::news2::Consciousness>,
    /// Body temperature, °C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Blood glucose, mmol/L.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glucose: Option<f64>,
}

impl VitalSigns {
    /// A record of `patient` at `time` with no readings yet.
    pub fn at(patient: String, time: String) -> Self {
        VitalSigns {
            patient,
            time,
            respiratory_rate: None,
            spo2: None,
            on_oxygen: None,
            spo2_scale: None,
            systolic_bp: None,
            diastolic_bp: None,
            pulse: None,
            consciousness: None,
            temperature: None,
            glucose: None,
        }
    }
}

/// Plausible ranges of the numeric readings: a value outside is a device
/// fault or a typing error, not a patient.
const VITAL_RANGES: [(&str, f64, f64); 7] = [
    ("respiratory_rate", 0.0, 150.0),
    ("spo2", 0.0, 100.0),
    ("systolic_bp", 0.0, 400.0),
    ("diastolic_bp", 0.0, 300.0),
    ("pulse", 0.0, 350.0),
    ("temperature", 25.0, 45.0),
    ("glucose", 0.0, 120.0),
];

fn vitals(v: VitalSigns) -> Result<VitalSigns, PayloadError> {
    let schema = |m: String| PayloadError::Schema(m);
    if !pseudonym::is_well_formed(&v.patient) {
        return Err(schema("patient must be a pseudonym".into()));
    }
    if fhir::date_range(&v.time).is_none() || !v.time.contains('T') {
        return Err(schema(
            "time must be an instant with a time zone, e.g. 2026-11-24T08:30:00Z".into(),
        ));
    }
    let values = [
        v.respiratory_rate,
        v.spo2,
        v.systolic_bp,
        v.diastolic_bp,
        v.pulse,
        v.temperature,
        v.glucose,
    ];
    for ((name, lo, hi), value) in VITAL_RANGES.iter().zip(values) {
        if let Some(x) = value
            && !(*lo..=*hi).contains(&x)
        {
            return Err(schema(format!("{name} must lie in {lo}..={hi}")));
        }
    }
    if values.iter().all(Option::is_none) && v.consciousness.is_none() && v.on_oxygen.is_none() {
        return Err(schema(
            "a vital-signs record holds at least one reading".into(),
        ));
    }
    Ok(v)
}

/// What [`check`] learned about a valid payload.
#[derive(Clone, Debug, PartialEq)]
pub enum Checked {
    /// A medical report.
    Report(MedicalReport),
    /// Vital-sign readings.
    Vitals(VitalSigns),
    /// A FHIR resource.
    Fhir(fhir::Summary),
    /// An organ-donor decision.
    Donor(registries::DonorDecision),
    /// A patient's choice of doctor.
    ChosenDoctor(registries::ChosenDoctor),
    /// A day's counts of one disease.
    Epidemic(registries::EpidemicReport),
    /// A day's doses of one vaccine.
    Vaccination(registries::VaccinationReport),
    /// A patient's consent directive.
    Consent(Box<access::Consent>),
    /// A logged read.
    Access(access::AccessSummary),
    /// The review of a break-glass read.
    Review(access::Review),
    /// The data-protection officer's order to erase records' payloads.
    Redaction(redaction::Redaction),
    /// A patient's request for erasure.
    ErasureRequest(redaction::ErasureRequest),
    /// An e-prescription: its FHIR summary and what the dispensing rules
    /// need.
    Prescription(Box<(fhir::Summary, Prescription)>),
    /// A dispense: its FHIR summary and what the dispensing rules need.
    Dispense(Box<(fhir::Summary, Dispense)>),
    /// A prescriber's cancellation of a prescription.
    PrescriptionCancel(Cancel),
    /// Any other kind: the PII guard passed; its schema is the state
    /// machine's business.
    Other,
}

impl Checked {
    /// The patient the payload is about, as its schema read it; `None` for
    /// kinds that are about no patient, and for [`Checked::Other`].
    pub fn patient(&self) -> Option<&str> {
        match self {
            Checked::Report(r) => Some(&r.patient),
            Checked::Vitals(v) => Some(&v.patient),
            Checked::Fhir(f) => Some(&f.patient),
            Checked::Donor(d) => Some(&d.patient),
            Checked::ChosenDoctor(c) => Some(&c.patient),
            Checked::Consent(c) => Some(c.patient()),
            Checked::Redaction(r) => r.patient.as_deref(),
            Checked::ErasureRequest(r) => Some(&r.patient),
            Checked::Prescription(p) => Some(&p.0.patient),
            Checked::Dispense(d) => Some(&d.0.patient),
            Checked::PrescriptionCancel(c) => Some(&c.patient),
            Checked::Epidemic(_)
            | Checked::Vaccination(_)
            | Checked::Access(_)
            | Checked::Review(_) => None,
            Checked::Other => None,
        }
    }

    /// What the indexes take from the payload, read from this verdict, so
    /// the payload is not parsed again at commit.
    pub fn into_terms(self) -> Terms {
        let mut accessed = Vec::new();
        // Business identifiers are indexed as `system|value` beside the
        // codes (a code holds no `|`), so a conditional create finds them.
        let fhir_terms = |f: fhir::Summary| {
            (
                Some(f.patient),
                f.codes
                    .into_iter()
                    .map(|(_, c)| c)
                    .chain(f.identifiers.into_iter().map(|(s, v)| format!("{s}|{v}")))
                    .collect(),
            )
        };
        let (patient, codes) = match self {
            Checked::Report(r) => (Some(r.patient), r.diagnoses),
            Checked::Vitals(v) => (Some(v.patient), Vec::new()),
            Checked::Fhir(f) => fhir_terms(f),
            Checked::Prescription(p) => fhir_terms(p.0),
            Checked::Dispense(d) => fhir_terms(d.0),
            Checked::PrescriptionCancel(c) => (Some(c.patient), Vec::new()),
            Checked::Donor(d) => (Some(d.patient), Vec::new()),
            Checked::ChosenDoctor(c) => (Some(c.patient), Vec::new()),
            Checked::Epidemic(e) => (None, vec![e.disease]),
            Checked::Vaccination(v) => (None, vec![v.vaccine]),
            Checked::Consent(c) => {
                let code = access::directive_code(c.patient());
                (Some(c.patient().to_owned()), vec![code])
            }
            Checked::Access(a) => {
                accessed = a.patients;
                (None, Vec::new())
            }
            // A review shows in the access logs of the entry's patients.
            Checked::Review(r) => {
                accessed = r.patients;
                (None, Vec::new())
            }
            // A redaction shows in the history of the patient it names.
            Checked::Redaction(r) => (r.patient, Vec::new()),
            Checked::ErasureRequest(r) => (Some(r.patient), Vec::new()),
            Checked::Other => (None, Vec::new()),
        };
        Terms {
            patient: patient.filter(|p| pseudonym::is_well_formed(p)),
            codes,
            accessed,
        }
    }
}

/// Checks `payload` (the parsed JSON of a transaction of `kind`).
/// `participant.*` and `ledger.genesis` payloads are keys and names of
/// institutions, checked by the state machine; only their free-text fields
/// go through the guard here.
pub fn check(kind: &str, payload: &Value) -> Result<Checked, PayloadError> {
    let bytes = serde_json::to_vec(payload).map_err(|e| PayloadError::Schema(e.to_string()))?;
    check_bytes(kind, &bytes)
}

/// [`check`] over a payload's JSON bytes (the canonical payload of a
/// transaction): the PII guard scans them as they are parsed and the
/// report schema reads them directly, with no document built in between.
pub fn check_bytes(kind: &str, payload: &[u8]) -> Result<Checked, PayloadError> {
    let parse = |b: &[u8]| -> Result<Value, PayloadError> {
        serde_json::from_slice(b).map_err(|e| PayloadError::Schema(e.to_string()))
    };
    match kind {
        "ledger.genesis" => Ok(Checked::Other),
        "participant.register" | "participant.revoke" => {
            let payload = parse(payload)?;
            for field in ["institution", "label", "reason"] {
                if let Some(v) = payload.get(field) {
                    pii::scan(v).map_err(|mut f| {
                        f.field = format!("/{field}{}", f.field);
                        PayloadError::Pii(f)
                    })?;
                }
            }
            Ok(Checked::Other)
        }
        fhir::KIND_OBSERVATION | fhir::KIND_CONDITION | fhir::KIND_IMMUNIZATION => {
            // Parsed first: a resource's business identifiers are judged by
            // their own rule (`pii::scan_resource`), not refused by name.
            let v = parse(payload)?;
            pii::scan_resource(&v).map_err(PayloadError::Pii)?;
            let summary = fhir::validate(&v).map_err(PayloadError::Fhir)?;
            if summary.kind != kind {
                return Err(PayloadError::Schema(format!(
                    "a {} resource cannot be stored as {kind}",
                    summary.resource_type
                )));
            }
            Ok(Checked::Fhir(summary))
        }
        fhir::KIND_PRESCRIPTION | fhir::KIND_DISPENSE => {
            let v = parse(payload)?;
            pii::scan_resource(&v).map_err(PayloadError::Pii)?;
            let (summary, facts) = fhir::validate_with_facts(&v).map_err(PayloadError::Fhir)?;
            match facts {
                Some(fhir::MedicationFacts::Request(p)) if kind == fhir::KIND_PRESCRIPTION => {
                    Ok(Checked::Prescription(Box::new((summary, p))))
                }
                Some(fhir::MedicationFacts::Dispense(d)) if kind == fhir::KIND_DISPENSE => {
                    Ok(Checked::Dispense(Box::new((summary, d))))
                }
                _ => Err(PayloadError::Schema(format!(
                    "a {} resource cannot be stored as {kind}",
                    summary.resource_type
                ))),
            }
        }
        _ => {
            pii::scan_json(payload).map_err(PayloadError::Pii)?;
            match kind {
                MEDICAL_REPORT => serde_json::from_slice::<MedicalReport>(payload)
                    .map_err(|e| PayloadError::Schema(e.to_string()))
                    .and_then(report)
                    .map(Checked::Report),
                VITAL_SIGNS => serde_json::from_slice::<VitalSigns>(payload)
                    .map_err(|e| PayloadError::Schema(e.to_string()))
                    .and_then(vitals)
                    .map(Checked::Vitals),
                registries::EPIDEMIC_REPORT => registries::epidemic(payload).map(Checked::Epidemic),
                registries::VACCINATION_REPORT => {
                    registries::vaccination(payload).map(Checked::Vaccination)
                }
                registries::ORGAN_DONOR_DECISION => registries::donor(payload).map(Checked::Donor),
                access::CONSENT_DIRECTIVE => {
                    access::consent(payload).map(|c| Checked::Consent(Box::new(c)))
                }
                access::ACCESS_ENTRY => access::access_entry(payload).map(Checked::Access),
                access::ACCESS_REVIEW => access::review(payload).map(Checked::Review),
                redaction::REDACTION => redaction::redaction(payload).map(Checked::Redaction),
                redaction::ERASURE_REQUEST => {
                    redaction::erasure_request(payload).map(Checked::ErasureRequest)
                }
                registries::CHOSEN_DOCTOR => {
                    registries::chosen_doctor(payload).map(Checked::ChosenDoctor)
                }
                prescription::PRESCRIPTION_CANCEL => {
                    prescription::cancel(payload).map(Checked::PrescriptionCancel)
                }
                _ => Ok(Checked::Other),
            }
        }
    }
}

fn report(r: MedicalReport) -> Result<MedicalReport, PayloadError> {
    let schema = |m: String| PayloadError::Schema(m);
    if !pseudonym::is_well_formed(&r.patient) {
        return Err(schema("patient must be a pseudonym".into()));
    }
    if r.institution.trim().is_empty() {
        return Err(schema("institution is required".into()));
    }
    if !is_date(&r.encounter_date) {
        return Err(schema("encounter_date must be a date, YYYY-MM-DD".into()));
    }
    if r.diagnoses.is_empty() || r.diagnoses.len() > MAX_DIAGNOSES {
        return Err(schema(format!(
            "diagnoses must hold 1 to {MAX_DIAGNOSES} ICD-10 codes"
        )));
    }
    if let Some((i, _)) = r
        .diagnoses
        .iter()
        .enumerate()
        .find(|(_, d)| !fhir::is_icd10(d))
    {
        return Err(schema(format!(
            "diagnoses[{i}] is not an ICD-10 code in WHO format (e.g. J10.1)"
        )));
    }
    for (name, text) in [
        ("anamnesis", &r.anamnesis),
        ("findings", &r.findings),
        ("therapy", &r.therapy),
    ] {
        if text.len() > MAX_TEXT {
            return Err(schema(format!("{name} is longer than {MAX_TEXT} bytes")));
        }
    }
    Ok(r)
}

/// The vital-sign readings of a valid Observation (one that passed
/// [`fhir::validate`], whose `summary` is given) in the compact form NEWS2 is
/// scored from: heart rate, respiratory rate, temperature (in °C), SpO2,
/// blood pressure and glucose (in mmol/L). `None` for an Observation
/// without a value, without an instant (`effectiveDateTime` or
/// `effectivePeriod.start` with a time), or of another kind.
pub fn vital_signs_of(v: &Value, summary: &fhir::Summary) -> Option<VitalSigns> {
    let time = summary.date.clone().filter(|d| d.contains('T'))?;
    let measure = fhir::measure_of(summary)?;
    let value = |q: &Value| -> Option<(f64, String)> {
        let q = q.get("valueQuantity")?;
        Some((
            q.get("value")?.as_f64()?,
            q.get("code")?.as_str()?.to_owned(),
        ))
    };
    let mut out = VitalSigns::at(summary.patient.clone(), time);
    match measure {
        Measure::BloodPressure => {
            for c in v.get("component")?.as_array()? {
                let code = c.pointer("/code/coding/0/code").and_then(Value::as_str);
                let reading = value(c).map(|(x, _)| x);
                match code {
                    Some(fhir::SYSTOLIC) => out.systolic_bp = reading,
                    Some(fhir::DIASTOLIC) => out.diastolic_bp = reading,
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

/// What the indexes take from a payload: the patient it is about and its
/// codes (ICD-10 diagnoses, LOINC or vaccine codes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Terms {
    /// The patient's pseudonym.
    pub patient: Option<String>,
    /// Codes, without their systems.
    pub codes: Vec<String>,
    /// The patients whose records an access entry logs a read of (or
    /// whose break-glass entry a review judges).
    pub accessed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{blood_pressure, heart_rate, observation};
    use serde_json::json;

    const P: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";

    fn report_json() -> Value {
        json!({
            "patient": P,
            "institution": "Dom zdravlja Nis",
            "encounter_date": "2026-11-24",
            "diagnoses": ["J10.1", "I10"],
            "anamnesis": "Fever 38.5 C for two days, dry cough, myalgia.",
            "findings": "Pharynx hyperaemic, lungs clear, BP 150/95.",
            "therapy": "Oseltamivir 75 mg twice daily for 5 days.",
        })
    }

    #[test]
    fn a_valid_report_passes_and_gives_its_terms() {
        let Checked::Report(r) = check(MEDICAL_REPORT, &report_json()).unwrap() else {
            panic!("not a report")
        };
        assert_eq!(r.diagnoses, ["J10.1", "I10"]);
        let t = Checked::Report(r).into_terms();
        assert_eq!(t.patient.as_deref(), Some(P));
        assert_eq!(t.codes, ["J10.1", "I10"]);
    }

    #[test]
    fn schema_violations_are_named() {
        let cases: [(&str, Value); 7] = [
            ("diagnoses[1]", json!(["J10.1", "flu"])),
            ("1 to 20", json!([])),
            ("encounter_date", json!("2026-02-30")),
            ("encounter_date", json!("24.11.2026")),
            ("institution", json!(" ")),
            ("unknown field", json!("x")),
            ("/patient", json!("P0000000000000000000000001")),
        ];
        for (i, (expect, value)) in cases.into_iter().enumerate() {
            let mut r = report_json();
            let field = match i {
                0 | 1 => "diagnoses",
                2 | 3 => "encounter_date",
                4 => "institution",
                5 => "extra",
                _ => "patient",
            };
            r[field] = value;
            let err = check(MEDICAL_REPORT, &r).unwrap_err();
            assert!(err.to_string().contains(expect), "{field}: {err}");
        }
        let mut r = report_json();
        r["therapy"] = json!("x".repeat(MAX_TEXT + 1));
        assert!(check(MEDICAL_REPORT, &r).is_err());
    }

    #[test]
    fn identifiers_in_free_text_are_refused_before_the_schema() {
        let mut r = report_json();
        r["anamnesis"] = json!("Kontakt: pera@example.rs");
        match check(MEDICAL_REPORT, &r) {
            Err(PayloadError::Pii(f)) => assert!(!f.to_string().contains("pera")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn register_checks_free_text_but_not_keys() {
        let ok = json!({"key": "0".repeat(64), "role": "doctor", "institution": "KC Nis", "label": "dr 7"});
        assert_eq!(check("participant.register", &ok), Ok(Checked::Other));
        let bad = json!({"key": "0".repeat(64), "role": "doctor", "institution": "KC Nis", "label": "dr@kcnis.rs"});
        assert!(matches!(
            check("participant.register", &bad),
            Err(PayloadError::Pii(f)) if f.field == "/label"
        ));
    }

    #[test]
    fn vital_signs_are_checked() {
        let ok = json!({"patient": P, "time": "2026-11-24T08:30:00Z", "pulse": 72, "spo2": 96,
            "on_oxygen": false, "spo2_scale": 1, "consciousness": "alert", "temperature": 36.8});
        assert!(
            matches!(check(VITAL_SIGNS, &ok), Ok(Checked::Vitals(v)) if v.patient == P),
            "a valid record passes with its readings"
        );
        let mut cases = Vec::new();
        for (field, value) in [
            ("pulse", json!(400)),
            ("temperature", json!(50.1)),
            ("spo2", json!(101)),
            ("spo2_scale", json!(3)),
            ("consciousness", json!("asleep")),
            ("time", json!("2026-11-24")),
            ("heart", json!(70)),
        ] {
            let mut v = ok.clone();
            v[field] = value;
            cases.push(v);
        }
        cases.push(json!({"patient": P, "time": "2026-11-24T08:30:00Z"}));
        for v in cases {
            assert!(
                matches!(check(VITAL_SIGNS, &v), Err(PayloadError::Schema(_))),
                "{v}"
            );
        }
    }

    #[test]
    fn vital_signs_of_observations() {
        let read = |v: &Value| vital_signs_of(v, &fhir::validate(v).unwrap());
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
}
