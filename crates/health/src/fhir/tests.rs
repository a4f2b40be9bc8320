//! The resource rules, tested through [`validate`].

use super::condition::{CONDITION_CLINICAL, ICD10, ICD10_CM};
use super::observation::{ACCEPTED_LOINC, LOINC, OBSERVATION_CATEGORY, OBSERVATION_STATUS, UCUM};
use super::validate::IDENTIFYING_PATIENT_ELEMENTS;
use super::*;
use crate::testing::{PSEUDO, blood_pressure, condition, heart_rate, immunization, observation};
use serde_json::{Value, json};

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
            identifiers: Vec::new(),
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
    v["category"] = json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}]);
    validate(&v).unwrap();
    v["category"] = heart_rate()["category"].clone();
    assert_err(&v, 422, "value", Some("Observation.category"));
    let mut v = observation("15074-8", "mmol/L", 5.6);
    v["category"] = json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}]);
    assert_eq!(validate(&v).unwrap().category, Some("laboratory"));
    let mut v = heart_rate();
    v["category"] = json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}]);
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
            // Every field an OperationOutcome is built from.
            let fields = format!("{e:?}");
            assert!(!fields.contains(echoed), "{fields}");
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
    v["contained"] = json!([{"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]}]);
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
    assert!(!format!("{e:?}").contains("Petrovi"));
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
        let entry = BundleEntry {
            full_url: None,
            resource: g.clone(),
            method: "POST".into(),
            url: "Observation".into(),
            if_none_exist: None,
        };
        let _ = check_entry(&entry);
    }
    assert_err(
        &json!({"resourceType": "Observation", "code": 5}),
        400,
        "structure",
        Some("Observation.code"),
    );

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
