//! Test support: a small seeded generator for property tests, and FHIR
//! resources for the rules to judge.

use serde_json::{Value, json};

/// SplitMix64: deterministic, seedable, good enough to pick test cases.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One of `items`.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// `n` random decimal digits.
    pub(crate) fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

/// The pseudonym the FHIR fixtures refer to.
pub(crate) const PSEUDO: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";

/// A US Core heart rate Observation with the subject rewritten to a
/// pseudonym.
pub(crate) fn heart_rate() -> Value {
    serde_json::from_str(
        r#"{"resourceType":"Observation","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-heart-rate"]},"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital Signs"}],"text":"Vital Signs"}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart rate"},"subject":{"reference":"Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA"},"effectiveDateTime":"2026-01-01T09:00:00Z","valueQuantity":{"value":77,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}}"#,
    )
    .unwrap()
}

/// An Observation with one LOINC code and a valueQuantity.
pub(crate) fn observation(loinc: &str, unit: &str, value: f64) -> Value {
    let mut v = heart_rate();
    v["code"] = json!({"coding": [{"system": "http://loinc.org", "code": loinc}]});
    v["valueQuantity"] =
        json!({"value": value, "system": "http://unitsofmeasure.org", "code": unit});
    v.as_object_mut().unwrap().remove("category");
    v
}

/// A blood pressure panel with a systolic and a diastolic component.
pub(crate) fn blood_pressure(systolic: f64, diastolic: f64) -> Value {
    let mut v = heart_rate();
    let obj = v.as_object_mut().unwrap();
    obj.remove("valueQuantity");
    obj.insert(
        "code".into(),
        json!({"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel with all children optional"}]}),
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

/// An active, confirmed Condition coded `code` in `system`.
pub(crate) fn condition(system: &str, code: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": format!("Patient/{PSEUDO}")},
        "onsetDateTime": "2026-01-02T10:00:00+01:00",
        "recordedDate": "2026-01-03"
    })
}

/// A completed influenza Immunization.
pub(crate) fn immunization() -> Value {
    json!({
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140", "display": "Influenza, seasonal, injectable, preservative free"}]},
        "patient": {"reference": format!("Patient/{PSEUDO}")},
        "occurrenceDateTime": "2026-10-01T08:30:00Z",
        "primarySource": true
    })
}
