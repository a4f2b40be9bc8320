//! Per-patient NEWS2 alerting over a stream of vital-sign records.
//!
//! Vital signs reach the ledger as many small [`VitalSigns`] records, each
//! carrying only some of the NEWS2 parameters, and not necessarily in the
//! order they were taken. [`PatientVitals`] keeps, for one patient, the
//! latest reading of every parameter by the time it was taken, and
//! [`PatientVitals::assess`] scores the readings that are recent enough with
//! [`news2::points`] into an [`Assessment`].
//!
//! Because a window may lack parameters, an assessment is a lower bound on
//! the patient's true score: every missing parameter scores 0 and is listed
//! in [`Assessment::missing`]. A complete assessment is the NEWS2 score.
//!
//! The state depends only on the set of records offered, never on their
//! arrival order, so every node that replays the same ledger reaches the
//! same alerts.

use serde::Serialize;

use crate::fhir;
use crate::news2::{self, Consciousness, Observations, Parameter, Risk, SpO2Scale};
use crate::records::VitalSigns;

/// A recorded value of one NEWS2 parameter, as the record gave it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// A numeric reading (respiration rate, SpO2, systolic blood pressure,
    /// pulse or temperature), unrounded.
    Number(f64),
    /// A level of consciousness.
    Consciousness(Consciousness),
    /// Whether the patient is on supplemental oxygen
    /// ([`Parameter::AirOrOxygen`]).
    OnOxygen(bool),
}

impl Value {
    /// The value in JSON: a number, the ACVPU name, or a boolean. A
    /// non-finite number, which JSON cannot hold, is `null`.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Value::Number(x) => serde_json::Number::from_f64(x)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Consciousness(c) => serde_json::to_value(c).unwrap_or(serde_json::Value::Null),
            Value::OnOxygen(b) => serde_json::Value::Bool(b),
        }
    }
}

/// One reading and where it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// The value recorded.
    pub value: Value,
    /// When it was taken, UTC milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The ledger leaf of the transaction that recorded it.
    pub leaf: u64,
}

/// The SpO2 scale prescribed for a patient and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prescription {
    /// The scale.
    pub scale: SpO2Scale,
    /// Time of the record that prescribed it, UTC milliseconds.
    pub time_ms: i64,
    /// The ledger leaf of the transaction that prescribed it.
    pub leaf: u64,
}

/// Whether a reading taken at `time_ms` in leaf `leaf` supersedes `held`:
/// the later reading wins, and of two taken at the same time the one in the
/// later leaf. A reading never supersedes itself, so replaying a record
/// changes nothing.
fn supersedes(time_ms: i64, leaf: u64, held: Option<(i64, u64)>) -> bool {
    held.is_none_or(|held| (time_ms, leaf) > held)
}

/// The latest NEWS2 readings of one patient.
///
/// Offer it every vital-sign record of the patient, in any order, with
/// [`record`](Self::record); it keeps for each [`Parameter`] the reading
/// taken last, and the SpO2 scale prescribed last. Routing records to the
/// right patient is the caller's business: the pseudonym in a record is not
/// checked. Diastolic blood pressure and glucose are not NEWS2 parameters
/// and are ignored.
#[derive(Clone, Debug, Default)]
pub struct PatientVitals {
    /// The latest reading of each parameter, indexed in [`Parameter::ALL`]
    /// order.
    latest: [Option<Reading>; 7],
    /// The latest SpO2 scale prescription, if any was ever given.
    prescription: Option<Prescription>,
}

impl PatientVitals {
    /// Takes the readings of `v`, recorded in ledger leaf `leaf`, at the time
    /// the record states.
    ///
    /// Returns `false`, and changes nothing, if `v.time` is not a FHIR
    /// date-time; see [`record_at`](Self::record_at) for the rest.
    pub fn record(&mut self, v: &VitalSigns, leaf: u64) -> bool {
        match fhir::date_range(&v.time) {
            Some((time_ms, _)) => {
                self.record_at(v, time_ms, leaf);
                true
            }
            None => false,
        }
    }

    /// Takes the readings of `v`, recorded in ledger leaf `leaf`, as taken at
    /// `time_ms` (UTC milliseconds); `v.time` is not read.
    ///
    /// Each reading replaces the one held for its parameter only if it is
    /// newer: taken later, or at the same time but in a later leaf. An older
    /// reading arriving late is dropped. The SpO2 scale, when given, follows
    /// the same rule.
    pub fn record_at(&mut self, v: &VitalSigns, time_ms: i64, leaf: u64) {
        let number = |x: Option<f64>| x.map(Value::Number);
        let readings = [
            (Parameter::RespiratoryRate, number(v.respiratory_rate)),
            (Parameter::SpO2, number(v.spo2)),
            (Parameter::AirOrOxygen, v.on_oxygen.map(Value::OnOxygen)),
            (Parameter::SystolicBp, number(v.systolic_bp)),
            (Parameter::Pulse, number(v.pulse)),
            (
                Parameter::Consciousness,
                v.consciousness.map(Value::Consciousness),
            ),
            (Parameter::Temperature, number(v.temperature)),
        ];
        for (parameter, value) in readings {
            let Some(value) = value else { continue };
            let slot = &mut self.latest[parameter as usize];
            if supersedes(time_ms, leaf, slot.map(|r| (r.time_ms, r.leaf))) {
                *slot = Some(Reading {
                    value,
                    time_ms,
                    leaf,
                });
            }
        }
        if let Some(scale) = v.spo2_scale
            && supersedes(
                time_ms,
                leaf,
                self.prescription.map(|p| (p.time_ms, p.leaf)),
            )
        {
            self.prescription = Some(Prescription {
                scale,
                time_ms,
                leaf,
            });
        }
    }

    /// The latest reading of `parameter`, however old.
    pub fn latest(&self, parameter: Parameter) -> Option<&Reading> {
        self.latest[parameter as usize].as_ref()
    }

    /// The latest SpO2 scale prescription, if any was ever given.
    pub fn prescription(&self) -> Option<&Prescription> {
        self.prescription.as_ref()
    }

    /// The SpO2 scale that applies: the latest prescribed, or scale 1.
    pub fn scale(&self) -> SpO2Scale {
        self.prescription.map_or(SpO2Scale::One, |p| p.scale)
    }

    /// The NEWS2 assessment of the readings taken within `window_ms` of the
    /// newest one, or `None` if no reading has been recorded.
    ///
    /// The window ends at the newest reading of any parameter and reaches
    /// back `window_ms` milliseconds, bounds included; a negative window is
    /// taken as zero. The latest reading of a parameter counts if it lies in
    /// the window; otherwise the parameter is missing. Missing parameters
    /// score 0 and are listed in [`Assessment::missing`], as are readings
    /// [`news2::points`] refuses (not finite, or physiologically
    /// impossible). SpO2 on scale 2 is scored as on air when air-or-oxygen
    /// is missing. The SpO2 scale is a prescription, not a reading: the
    /// latest one applies however old it is.
    pub fn assess(&self, window_ms: i64) -> Option<Assessment> {
        let newest = self.latest.iter().flatten().map(|r| r.time_ms).max()?;
        let since = newest.saturating_sub(window_ms.max(0));
        let current = self.latest.map(|r| r.filter(|r| r.time_ms >= since));
        let number = |parameter: Parameter, neutral: f64| match current[parameter as usize] {
            Some(Reading {
                value: Value::Number(x),
                ..
            }) => x,
            _ => neutral,
        };
        let on_oxygen = matches!(
            current[Parameter::AirOrOxygen as usize],
            Some(Reading {
                value: Value::OnOxygen(true),
                ..
            })
        );
        let consciousness = match current[Parameter::Consciousness as usize] {
            Some(Reading {
                value: Value::Consciousness(c),
                ..
            }) => c,
            _ => Consciousness::Alert,
        };
        let scale = self.scale();
        let obs = Observations {
            respiratory_rate: number(Parameter::RespiratoryRate, 16.0),
            spo2: number(Parameter::SpO2, 97.0),
            on_oxygen,
            scale,
            systolic_bp: number(Parameter::SystolicBp, 120.0),
            pulse: number(Parameter::Pulse, 70.0),
            consciousness,
            temperature: number(Parameter::Temperature, 37.0),
        };

        let mut parameters = Vec::new();
        let mut missing = Vec::new();
        for parameter in Parameter::ALL {
            let scored = current[parameter as usize]
                .and_then(|r| Some((r, news2::points(parameter, &obs).ok()?)));
            match scored {
                Some((reading, points)) => parameters.push(Scored {
                    parameter,
                    value: reading.value.to_json(),
                    points,
                    time_ms: reading.time_ms,
                    leaf: reading.leaf,
                }),
                None => missing.push(parameter),
            }
        }
        let total: u8 = parameters.iter().map(|s| s.points).sum();
        let any_three = parameters.iter().any(|s| s.points == 3);
        let spo2_scored = parameters.iter().any(|s| s.parameter == Parameter::SpO2);
        let scale_leaf = self
            .prescription
            .filter(|p| spo2_scored && p.scale == SpO2Scale::Two)
            .map(|p| p.leaf);
        Some(Assessment {
            time_ms: newest,
            total,
            risk: news2::risk(total, any_three),
            alert: total >= 1,
            complete: missing.is_empty(),
            parameters,
            missing,
            spo2_scale: scale,
            scale_leaf,
        })
    }
}

/// One parameter that was scored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scored {
    /// The parameter.
    pub parameter: Parameter,
    /// The reading as recorded, unrounded: a number, the ACVPU name
    /// (`"alert"`, `"new_confusion"`, ...), or for air-or-oxygen `true` when
    /// on supplemental oxygen.
    pub value: serde_json::Value,
    /// Its points on the chart, 0 to 3.
    pub points: u8,
    /// When the reading was taken, UTC milliseconds.
    pub time_ms: i64,
    /// The ledger leaf of the transaction that recorded it.
    pub leaf: u64,
}

/// The NEWS2 assessment of a patient's recent readings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assessment {
    /// Time of the newest reading, UTC milliseconds: the end of the window.
    pub time_ms: i64,
    /// Aggregate of the scored parameters. A lower bound on the NEWS2 score
    /// unless [`complete`](Self::complete).
    pub total: u8,
    /// Risk band of [`total`](Self::total), counting a 3 in any scored
    /// parameter.
    pub risk: Risk,
    /// Whether the assessment calls for attention: a total of 1 or more.
    pub alert: bool,
    /// The scored parameters, in [`Parameter`] order.
    pub parameters: Vec<Scored>,
    /// Parameters without a reading in the window, or whose reading cannot
    /// be scored, in [`Parameter`] order. They count 0 in the total.
    pub missing: Vec<Parameter>,
    /// Whether every parameter was scored, so the total is the NEWS2 score.
    pub complete: bool,
    /// The SpO2 scale that applied.
    pub spo2_scale: SpO2Scale,
    /// The leaf that prescribed scale 2, when SpO2 was scored on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_leaf: Option<u64>,
}

impl Assessment {
    /// The alert level: `None` for a total of 0, otherwise the
    /// [`risk`](Self::risk) band (low for 1-4, low-medium for a 3 in a
    /// single parameter with a total of at most 4, medium for 5-6, high for
    /// 7 or more).
    pub fn level(&self) -> Option<Risk> {
        self.alert.then_some(self.risk)
    }

    /// The ledger leaves of the readings scored, and of the scale 2
    /// prescription when SpO2 was scored on it: the transactions this
    /// assessment rests on. Sorted, without duplicates.
    pub fn leaves(&self) -> Vec<u64> {
        let mut leaves: Vec<u64> = self
            .parameters
            .iter()
            .map(|s| s.leaf)
            .chain(self.scale_leaf)
            .collect();
        leaves.sort_unstable();
        leaves.dedup();
        leaves
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    /// 2026-11-24T08:00:00Z in UTC milliseconds.
    const BASE_MS: i64 = 1_795_507_200_000;

    /// A record of `time` with no readings.
    fn empty(time: &str) -> VitalSigns {
        VitalSigns::at("p".into(), time.into())
    }

    /// A record of `time` with readings that score 0 in every parameter.
    fn normal(time: &str) -> VitalSigns {
        VitalSigns {
            respiratory_rate: Some(16.0),
            spo2: Some(97.0),
            on_oxygen: Some(false),
            systolic_bp: Some(120.0),
            pulse: Some(70.0),
            consciousness: Some(Consciousness::Alert),
            temperature: Some(37.0),
            ..empty(time)
        }
    }

    fn points_of(a: &Assessment, parameter: Parameter) -> Option<u8> {
        a.parameters
            .iter()
            .find(|s| s.parameter == parameter)
            .map(|s| s.points)
    }

    #[test]
    fn nothing_recorded_gives_no_assessment() {
        let mut vitals = PatientVitals::default();
        assert_eq!(vitals.assess(HOUR), None);
        let only_extras = VitalSigns {
            diastolic_bp: Some(80.0),
            glucose: Some(5.5),
            spo2_scale: Some(SpO2Scale::Two),
            ..empty("2026-11-24T08:00:00Z")
        };
        assert!(vitals.record(&only_extras, 1));
        assert_eq!(vitals.assess(HOUR), None);
        assert_eq!(vitals.scale(), SpO2Scale::Two);
    }

    #[test]
    fn unparseable_time_is_refused() {
        let mut vitals = PatientVitals::default();
        for time in ["", "yesterday", "2026-11-24T08:00:00", "2026-13-01"] {
            let v = VitalSigns {
                spo2_scale: Some(SpO2Scale::Two),
                ..normal(time)
            };
            assert!(!vitals.record(&v, 1), "{time}");
        }
        assert_eq!(vitals.assess(HOUR), None);
        assert_eq!(vitals.prescription(), None);
        assert!(vitals.record(&normal("2026-11-24T09:00:00+01:00"), 2));
        assert_eq!(vitals.assess(HOUR).unwrap().time_ms, BASE_MS);
    }

    #[test]
    fn out_of_order_arrival_keeps_the_newest_reading() {
        let newer = VitalSigns {
            pulse: Some(140.0),
            ..empty("2026-11-24T08:10:00Z")
        };
        let older = VitalSigns {
            pulse: Some(70.0),
            ..empty("2026-11-24T08:05:00Z")
        };
        let mut in_order = PatientVitals::default();
        in_order.record(&older, 1);
        in_order.record(&newer, 2);
        let mut late = PatientVitals::default();
        late.record(&newer, 2);
        late.record(&older, 1);
        for vitals in [in_order, late] {
            let pulse = vitals.latest(Parameter::Pulse).unwrap();
            assert_eq!(
                (pulse.value, pulse.time_ms, pulse.leaf),
                (Value::Number(140.0), BASE_MS + 10 * MINUTE, 2)
            );
            let a = vitals.assess(HOUR).unwrap();
            assert_eq!(points_of(&a, Parameter::Pulse), Some(3));
            assert_eq!(a.time_ms, BASE_MS + 10 * MINUTE);
        }
        // An older reading in a later leaf is still older.
        let mut vitals = PatientVitals::default();
        vitals.record(&newer, 1);
        vitals.record(&older, 2);
        assert_eq!(vitals.latest(Parameter::Pulse).unwrap().leaf, 1);
    }

    #[test]
    fn equal_times_go_to_the_later_leaf() {
        let time = "2026-11-24T08:00:00Z";
        let low = VitalSigns {
            respiratory_rate: Some(8.0),
            ..empty(time)
        };
        let high = VitalSigns {
            respiratory_rate: Some(16.0),
            ..empty(time)
        };
        for order in [[(&low, 7), (&high, 9)], [(&high, 9), (&low, 7)]] {
            let mut vitals = PatientVitals::default();
            for (v, leaf) in order {
                vitals.record(v, leaf);
            }
            let a = vitals.assess(0).unwrap();
            assert_eq!(points_of(&a, Parameter::RespiratoryRate), Some(0));
            assert_eq!(a.leaves(), vec![9]);
        }
        // Replaying the record that is held changes nothing.
        let mut vitals = PatientVitals::default();
        vitals.record(&low, 7);
        vitals.record(&high, 7);
        assert_eq!(
            vitals.latest(Parameter::RespiratoryRate).unwrap().value,
            Value::Number(8.0)
        );
    }

    #[test]
    fn window_bounds_are_inclusive() {
        let mut vitals = PatientVitals::default();
        vitals.record_at(
            &VitalSigns {
                pulse: Some(30.0),
                ..empty("")
            },
            BASE_MS,
            1,
        );
        vitals.record_at(
            &VitalSigns {
                respiratory_rate: Some(30.0),
                ..empty("")
            },
            BASE_MS - 1,
            2,
        );
        vitals.record_at(
            &VitalSigns {
                temperature: Some(34.0),
                ..empty("")
            },
            BASE_MS + HOUR,
            3,
        );
        let a = vitals.assess(HOUR).unwrap();
        assert_eq!(a.time_ms, BASE_MS + HOUR);
        assert_eq!(points_of(&a, Parameter::Pulse), Some(3));
        assert_eq!(points_of(&a, Parameter::RespiratoryRate), None);
        assert!(a.missing.contains(&Parameter::RespiratoryRate));
        assert_eq!((a.total, a.leaves()), (6, vec![1, 3]));
        let wider = vitals.assess(HOUR + 1).unwrap();
        assert_eq!((wider.total, wider.leaves()), (9, vec![1, 2, 3]));
        let narrower = vitals.assess(HOUR - 1).unwrap();
        assert_eq!((narrower.total, narrower.leaves()), (3, vec![3]));
        assert_eq!(vitals.assess(0), Some(narrower.clone()));
        assert_eq!(vitals.assess(-HOUR), Some(narrower));
        assert_eq!(vitals.assess(i64::MAX).unwrap().total, 9);
    }

    #[test]
    fn scale_persists_beyond_the_window() {
        let mut vitals = PatientVitals::default();
        assert_eq!(vitals.scale(), SpO2Scale::One);
        let prescribe = VitalSigns {
            spo2_scale: Some(SpO2Scale::Two),
            ..empty("2026-11-24T08:00:00Z")
        };
        vitals.record(&prescribe, 4);
        let reading = VitalSigns {
            spo2: Some(90.0),
            ..empty("2026-11-24T20:00:00Z")
        };
        vitals.record(&reading, 5);
        let a = vitals.assess(HOUR).unwrap();
        assert_eq!(a.spo2_scale, SpO2Scale::Two);
        assert_eq!(points_of(&a, Parameter::SpO2), Some(0));
        assert_eq!(a.leaves(), vec![4, 5]);
        // An older prescription arriving late does not replace it.
        let earlier = VitalSigns {
            spo2_scale: Some(SpO2Scale::One),
            ..empty("2026-11-24T07:00:00Z")
        };
        vitals.record(&earlier, 6);
        assert_eq!(vitals.prescription().unwrap().leaf, 4);
        // A newer one does; scale 1 adds no leaf.
        let later = VitalSigns {
            spo2_scale: Some(SpO2Scale::One),
            ..empty("2026-11-24T09:00:00Z")
        };
        vitals.record(&later, 7);
        let a = vitals.assess(HOUR).unwrap();
        assert_eq!(points_of(&a, Parameter::SpO2), Some(3));
        assert_eq!((a.spo2_scale, a.scale_leaf), (SpO2Scale::One, None));
        assert_eq!(a.leaves(), vec![5]);
    }

    #[test]
    fn scale_two_without_air_or_oxygen_scores_as_on_air() {
        let mut vitals = PatientVitals::default();
        vitals.record(
            &VitalSigns {
                spo2: Some(98.0),
                spo2_scale: Some(SpO2Scale::Two),
                ..empty("2026-11-24T08:00:00Z")
            },
            1,
        );
        let a = vitals.assess(HOUR).unwrap();
        assert_eq!(points_of(&a, Parameter::SpO2), Some(0));
        assert!(a.missing.contains(&Parameter::AirOrOxygen));
        assert_eq!(a.scale_leaf, Some(1));
        // On oxygen, 98 % on scale 2 scores 3, plus 2 for the oxygen.
        vitals.record(
            &VitalSigns {
                on_oxygen: Some(true),
                ..empty("2026-11-24T08:01:00Z")
            },
            2,
        );
        let a = vitals.assess(HOUR).unwrap();
        assert_eq!(points_of(&a, Parameter::SpO2), Some(3));
        assert_eq!((a.total, a.risk), (5, Risk::Medium));
        assert_eq!(a.leaves(), vec![1, 2]);
    }

    #[test]
    fn missing_parameters_are_listed() {
        let mut vitals = PatientVitals::default();
        vitals.record(
            &VitalSigns {
                respiratory_rate: Some(22.0),
                consciousness: Some(Consciousness::Alert),
                ..empty("2026-11-24T08:00:00Z")
            },
            1,
        );
        let a = vitals.assess(HOUR).unwrap();
        assert_eq!(
            a.missing,
            vec![
                Parameter::SpO2,
                Parameter::AirOrOxygen,
                Parameter::SystolicBp,
                Parameter::Pulse,
                Parameter::Temperature,
            ]
        );
        assert!(!a.complete);
        assert_eq!((a.total, a.risk, a.alert), (2, Risk::Low, true));
        assert_eq!(a.level(), Some(Risk::Low));
        vitals.record(&normal("2026-11-24T08:30:00Z"), 2);
        let a = vitals.assess(HOUR).unwrap();
        assert!(a.complete && a.missing.is_empty());
        assert_eq!((a.total, a.alert, a.level()), (0, false, None));
        assert_eq!(a.risk, Risk::Low);
    }

    #[test]
    fn unscorable_readings_are_missing() {
        let mut vitals = PatientVitals::default();
        vitals.record(
            &VitalSigns {
                spo2: Some(100.5),
                temperature: Some(f64::NAN),
                pulse: Some(-1.0),
                ..normal("2026-11-24T08:00:00Z")
            },
            1,
        );
        let a = vitals.assess(HOUR).unwrap();
        assert_eq!(
            a.missing,
            vec![Parameter::SpO2, Parameter::Pulse, Parameter::Temperature]
        );
        assert_eq!(a.parameters.len(), 4);
        assert_eq!(a.total, 0);
    }

    #[test]
    fn diastolic_and_glucose_are_ignored() {
        let time = "2026-11-24T08:00:00Z";
        let mut plain = PatientVitals::default();
        plain.record(&normal(time), 1);
        let mut extras = PatientVitals::default();
        extras.record(
            &VitalSigns {
                diastolic_bp: Some(20.0),
                glucose: Some(40.0),
                ..normal(time)
            },
            1,
        );
        extras.record(
            &VitalSigns {
                diastolic_bp: Some(150.0),
                glucose: Some(1.0),
                ..empty("2026-11-24T10:00:00Z")
            },
            2,
        );
        assert_eq!(extras.assess(HOUR), plain.assess(HOUR));
        assert_eq!(extras.assess(HOUR).unwrap().time_ms, BASE_MS);
    }

    #[test]
    fn supplemental_oxygen_scores_two() {
        let mut vitals = PatientVitals::default();
        vitals.record(
            &VitalSigns {
                on_oxygen: Some(true),
                ..normal("2026-11-24T08:00:00Z")
            },
            3,
        );
        let a = vitals.assess(HOUR).unwrap();
        assert_eq!(points_of(&a, Parameter::AirOrOxygen), Some(2));
        assert_eq!((a.total, a.risk, a.complete), (2, Risk::Low, true));
        let oxygen = a
            .parameters
            .iter()
            .find(|s| s.parameter == Parameter::AirOrOxygen)
            .unwrap();
        assert_eq!(oxygen.value, serde_json::json!(true));
    }

    #[test]
    fn a_three_in_one_parameter_is_low_medium() {
        let mut vitals = PatientVitals::default();
        vitals.record(
            &VitalSigns {
                consciousness: Some(Consciousness::NewConfusion),
                pulse: Some(95.0),
                ..normal("2026-11-24T08:00:00Z")
            },
            1,
        );
        let a = vitals.assess(HOUR).unwrap();
        assert_eq!((a.total, a.risk), (4, Risk::LowMedium));
        assert_eq!(a.level(), Some(Risk::LowMedium));
        // One more point makes it medium, three or no three.
        vitals.record(
            &VitalSigns {
                temperature: Some(38.5),
                ..empty("2026-11-24T08:01:00Z")
            },
            2,
        );
        assert_eq!(vitals.assess(HOUR).unwrap().risk, Risk::Medium);
    }

    #[test]
    fn serializes_in_snake_case() {
        let mut vitals = PatientVitals::default();
        vitals.record(
            &VitalSigns {
                consciousness: Some(Consciousness::NewConfusion),
                spo2: Some(90.5),
                ..empty("2026-11-24T08:00:00Z")
            },
            12,
        );
        let json = serde_json::to_value(vitals.assess(HOUR).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "time_ms": BASE_MS,
                "total": 6,
                "risk": "medium",
                "alert": true,
                "parameters": [
                    {"parameter": "spo2", "value": 90.5, "points": 3,
                     "time_ms": BASE_MS, "leaf": 12},
                    {"parameter": "consciousness", "value": "new_confusion",
                     "points": 3, "time_ms": BASE_MS, "leaf": 12},
                ],
                "missing": ["respiratory_rate", "air_or_oxygen", "systolic_bp",
                            "pulse", "temperature"],
                "complete": false,
                "spo2_scale": 1,
            })
        );
    }

    // ---- Property test against a brute-force reference ----

    /// A numeric reading as generated: an exact number of hundredths, which
    /// the record carries as the nearest `f64`, or not a number at all.
    #[derive(Clone, Copy, Debug)]
    enum Raw {
        Hundredths(i64),
        NotFinite,
    }

    impl Raw {
        fn to_f64(self) -> f64 {
            match self {
                Raw::Hundredths(h) => h as f64 / 100.0,
                Raw::NotFinite => f64::NAN,
            }
        }
    }

    /// A generated reading of one parameter.
    #[derive(Clone, Copy, Debug)]
    enum Truth {
        Raw(Raw),
        OnOxygen(bool),
        Acvpu(Consciousness),
    }

    /// A generated record: readings indexed in [`Parameter::ALL`] order.
    #[derive(Clone, Debug)]
    struct Spec {
        /// Milliseconds after `BASE_MS`.
        offset_ms: i64,
        /// Time zone offset the record's time is written in, minutes.
        zone_minutes: i64,
        leaf: u64,
        readings: [Option<Truth>; 7],
        scale: Option<SpO2Scale>,
        diastolic: Option<f64>,
        glucose: Option<f64>,
    }

    impl Spec {
        fn time_ms(&self) -> i64 {
            BASE_MS + self.offset_ms
        }

        /// The record, its time written as a FHIR instant.
        fn vital_signs(&self) -> VitalSigns {
            let local = 8 * HOUR + self.offset_ms + self.zone_minutes * MINUTE;
            let (h, m, s, ms) = (
                local / HOUR,
                local % HOUR / MINUTE,
                local % MINUTE / 1000,
                local % 1000,
            );
            let zone = match self.zone_minutes {
                0 => "Z".to_string(),
                z => format!(
                    "{}{:02}:{:02}",
                    if z < 0 { '-' } else { '+' },
                    z.abs() / 60,
                    z.abs() % 60
                ),
            };
            let fraction = if ms == 0 {
                String::new()
            } else {
                format!(".{ms:03}")
            };
            let time = format!("2026-11-24T{h:02}:{m:02}:{s:02}{fraction}{zone}");
            let number = |i: usize| match self.readings[i] {
                Some(Truth::Raw(raw)) => Some(raw.to_f64()),
                _ => None,
            };
            VitalSigns {
                respiratory_rate: number(0),
                spo2: number(1),
                on_oxygen: match self.readings[2] {
                    Some(Truth::OnOxygen(b)) => Some(b),
                    _ => None,
                },
                spo2_scale: self.scale,
                systolic_bp: number(3),
                diastolic_bp: self.diastolic,
                pulse: number(4),
                consciousness: match self.readings[5] {
                    Some(Truth::Acvpu(c)) => Some(c),
                    _ => None,
                },
                temperature: number(6),
                glucose: self.glucose,
                ..empty(&time)
            }
        }
    }

    /// Chart rows `(lowest, highest, points)` in whole units (tenths of a
    /// degree for temperature), per the RCP 2017 NEWS2 chart.
    type Row = &'static [(i64, i64, u8)];
    const OPEN: i64 = i64::MAX;
    const RESPIRATION: Row = &[
        (0, 8, 3),
        (9, 11, 1),
        (12, 20, 0),
        (21, 24, 2),
        (25, OPEN, 3),
    ];
    const SCALE_ONE: Row = &[(0, 91, 3), (92, 93, 2), (94, 95, 1), (96, 100, 0)];
    const SCALE_TWO_ON_AIR: Row = &[(0, 83, 3), (84, 85, 2), (86, 87, 1), (88, 100, 0)];
    const SCALE_TWO_ON_OXYGEN: Row = &[
        (0, 83, 3),
        (84, 85, 2),
        (86, 87, 1),
        (88, 92, 0),
        (93, 94, 1),
        (95, 96, 2),
        (97, 100, 3),
    ];
    const SYSTOLIC: Row = &[
        (0, 90, 3),
        (91, 100, 2),
        (101, 110, 1),
        (111, 219, 0),
        (220, OPEN, 3),
    ];
    const PULSE: Row = &[
        (0, 40, 3),
        (41, 50, 1),
        (51, 90, 0),
        (91, 110, 1),
        (111, 130, 2),
        (131, OPEN, 3),
    ];
    const TEMPERATURE_TENTHS: Row = &[
        (250, 350, 3),
        (351, 360, 1),
        (361, 380, 0),
        (381, 390, 1),
        (391, 450, 2),
    ];

    /// Points on `row` of a raw reading rounded to `unit` hundredths, halves
    /// away from zero; `None` if it is not finite, negative, or off the row.
    fn band(row: Row, unit: i64, raw: Raw) -> Option<u8> {
        let Raw::Hundredths(h) = raw else {
            return None;
        };
        if h < 0 {
            return None;
        }
        let rounded = (h + unit / 2) / unit;
        row.iter()
            .find(|&&(lo, hi, _)| lo <= rounded && rounded <= hi)
            .map(|&(_, _, p)| p)
    }

    /// What the reference expects of a patient's records.
    #[derive(Debug, PartialEq)]
    struct Expected {
        time_ms: i64,
        total: u8,
        risk: Risk,
        /// `(parameter, points, time, leaf)` of every scored parameter.
        scored: Vec<(Parameter, u8, i64, u64)>,
        missing: Vec<Parameter>,
        leaves: Vec<u64>,
    }

    /// The expected assessment, by brute force over all records.
    fn reference(specs: &[Spec], window_ms: i64) -> Option<Expected> {
        let latest = |i: usize| {
            specs
                .iter()
                .filter(|s| s.readings[i].is_some())
                .max_by_key(|s| (s.time_ms(), s.leaf))
        };
        let chosen: Vec<Option<&Spec>> = (0..7).map(latest).collect();
        let newest = chosen.iter().flatten().map(|s| s.time_ms()).max()?;
        let in_window: Vec<Option<(&Spec, Truth)>> = chosen
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.filter(|s| window_ms == i64::MAX || s.time_ms() >= newest - window_ms)
                    .map(|s| (s, s.readings[i].unwrap()))
            })
            .collect();
        let prescription = specs
            .iter()
            .filter(|s| s.scale.is_some())
            .max_by_key(|s| (s.time_ms(), s.leaf));
        let scale_two = prescription.is_some_and(|s| s.scale == Some(SpO2Scale::Two));
        let on_oxygen = matches!(in_window[2], Some((_, Truth::OnOxygen(true))));

        let mut expected = Expected {
            time_ms: newest,
            total: 0,
            risk: Risk::Low,
            scored: Vec::new(),
            missing: Vec::new(),
            leaves: Vec::new(),
        };
        for (i, parameter) in Parameter::ALL.into_iter().enumerate() {
            let points = in_window[i].and_then(|(_, truth)| match truth {
                Truth::Raw(raw) => match i {
                    0 => band(RESPIRATION, 100, raw),
                    1 if !scale_two => band(SCALE_ONE, 100, raw),
                    1 if on_oxygen => band(SCALE_TWO_ON_OXYGEN, 100, raw),
                    1 => band(SCALE_TWO_ON_AIR, 100, raw),
                    3 => band(SYSTOLIC, 100, raw),
                    4 => band(PULSE, 100, raw),
                    6 => band(TEMPERATURE_TENTHS, 10, raw),
                    _ => unreachable!(),
                },
                Truth::OnOxygen(b) => Some(if b { 2 } else { 0 }),
                Truth::Acvpu(c) => Some(if c == Consciousness::Alert { 0 } else { 3 }),
            });
            match (in_window[i], points) {
                (Some((s, _)), Some(p)) => {
                    expected.scored.push((parameter, p, s.time_ms(), s.leaf));
                    expected.leaves.push(s.leaf);
                    if i == 1 && scale_two {
                        expected.leaves.push(prescription.unwrap().leaf);
                    }
                }
                _ => expected.missing.push(parameter),
            }
        }
        expected.total = expected.scored.iter().map(|e| e.1).sum();
        let any_three = expected.scored.iter().any(|e| e.1 == 3);
        expected.risk = if expected.total >= 7 {
            Risk::High
        } else if expected.total >= 5 {
            Risk::Medium
        } else if any_three {
            Risk::LowMedium
        } else {
            Risk::Low
        };
        expected.leaves.sort_unstable();
        expected.leaves.dedup();
        Some(expected)
    }

    /// A whole-unit reading in hundredths: a band edge, a calm value, or any
    /// value in `lo..=hi`, plus an offset that rounds back to it.
    fn whole(
        rng: &mut Rng,
        calm: bool,
        edges: &[i64],
        normal: (i64, i64),
        lo: i64,
        hi: i64,
    ) -> Raw {
        let n = if calm {
            rng.between(normal.0, normal.1)
        } else if rng.below(2) == 0 {
            rng.pick(edges)
        } else {
            rng.between(lo, hi)
        };
        let offset = if n == 0 {
            rng.pick(&[0, 0, 1, 30, 49])
        } else {
            rng.pick(&[0, 0, 0, -50, -49, -1, 1, 30, 49])
        };
        Raw::Hundredths(100 * n + offset)
    }

    /// A numeric reading of `parameter` (index into [`Parameter::ALL`]).
    fn numeric(rng: &mut Rng, i: usize, calm: bool) -> Raw {
        const SPECIAL: [Raw; 8] = [
            Raw::Hundredths(2450),
            Raw::Hundredths(9050),
            Raw::Hundredths(3605),
            Raw::Hundredths(3505),
            Raw::Hundredths(3855),
            Raw::Hundredths(-40),
            Raw::Hundredths(10050),
            Raw::NotFinite,
        ];
        if !calm && rng.below(12) == 0 {
            return rng.pick(&SPECIAL);
        }
        match i {
            0 => whole(
                rng,
                calm,
                &[0, 8, 9, 11, 12, 20, 21, 24, 25, 150],
                (12, 20),
                0,
                60,
            ),
            1 => whole(
                rng,
                calm,
                &[0, 83, 84, 85, 86, 87, 88, 91, 92, 93, 94, 95, 96, 97, 100],
                (96, 100),
                70,
                100,
            ),
            3 => whole(
                rng,
                calm,
                &[0, 90, 91, 100, 101, 110, 111, 219, 220, 400],
                (111, 219),
                60,
                260,
            ),
            4 => whole(
                rng,
                calm,
                &[0, 40, 41, 50, 51, 90, 91, 110, 111, 130, 131, 350],
                (51, 90),
                30,
                200,
            ),
            _ => {
                let tenths = if calm {
                    rng.between(361, 380)
                } else if rng.below(2) == 0 {
                    rng.pick(&[250, 349, 350, 351, 360, 361, 380, 381, 390, 391, 450])
                } else {
                    rng.between(330, 420)
                };
                let offset = rng.pick(&[0, 0, -5, -4, -1, 1, 4]);
                Raw::Hundredths(10 * tenths + offset)
            }
        }
    }

    /// One patient's records: each with a random subset of readings, at
    /// random times within five hours, some at the same time, some sharing
    /// a leaf, all with distinct (time, leaf).
    fn patient(rng: &mut Rng, first_leaf: u64) -> Vec<Spec> {
        const LEVELS: [Consciousness; 4] = [
            Consciousness::NewConfusion,
            Consciousness::Voice,
            Consciousness::Pain,
            Consciousness::Unresponsive,
        ];
        // How often this patient's readings are abnormal, out of 8.
        let acuity = rng.pick(&[0, 1, 1, 2, 4, 8]);
        // A few patients have only readings NEWS2 does not score.
        let silent = rng.below(50) == 0;
        let count = rng.between(1, 40) as usize;
        let mut specs: Vec<Spec> = Vec::with_capacity(count);
        let mut next_leaf = first_leaf;
        for _ in 0..count {
            let offset_ms = match specs.last() {
                Some(previous) if rng.below(6) == 0 => previous.offset_ms,
                _ => rng.between(0, 300) * MINUTE + rng.pick(&[0, 0, 0, 1, 999, 500, 59_999]),
            };
            let leaf = match specs.last() {
                Some(previous) if rng.below(6) == 0 && previous.offset_ms != offset_ms => {
                    previous.leaf
                }
                _ => {
                    next_leaf += rng.between(1, 3) as u64;
                    next_leaf
                }
            };
            let share = match rng.below(10) {
                0..=2 => 8,
                3..=7 => 3,
                _ => 1,
            };
            let single = rng.below(7) as usize;
            let mut readings = [None; 7];
            for (i, slot) in readings.iter_mut().enumerate() {
                let carried = if share == 1 {
                    i == single
                } else {
                    rng.below(8) < share
                };
                if silent || !carried || rng.below(15) == 0 {
                    continue;
                }
                let calm = rng.below(8) >= acuity;
                *slot = Some(match i {
                    2 => Truth::OnOxygen(!calm && rng.below(2) == 0),
                    5 => Truth::Acvpu(if calm || rng.below(3) > 0 {
                        Consciousness::Alert
                    } else {
                        rng.pick(&LEVELS)
                    }),
                    _ => Truth::Raw(numeric(rng, i, calm)),
                });
            }
            specs.push(Spec {
                offset_ms,
                zone_minutes: rng.pick(&[0, 0, 0, 60, -60, 330]),
                leaf,
                readings,
                scale: match rng.below(12) {
                    0 => Some(SpO2Scale::One),
                    1 | 2 => Some(SpO2Scale::Two),
                    _ => None,
                },
                diastolic: (rng.below(3) == 0).then(|| rng.between(20, 150) as f64),
                glucose: (rng.below(4) == 0).then(|| rng.between(10, 300) as f64 / 10.0),
            });
        }
        specs
    }

    #[test]
    fn agrees_with_brute_force_reference() {
        const WINDOWS: [i64; 7] = [0, 1, 15 * MINUTE, HOUR, 2 * HOUR, 24 * HOUR, i64::MAX];
        let mut rng = Rng(0x0A1E_7254_4E45_5753);
        let mut risks = [0_usize; 4];
        let (mut none, mut complete, mut incomplete, mut quiet) = (0, 0, 0, 0);
        let (mut unscorable, mut scale_two, mut excluded) = (0, 0, 0);
        for p in 0..1_000 {
            let specs = patient(&mut rng, 1_000 * p);
            let mut arrival: Vec<&Spec> = specs.iter().collect();
            for i in (1..arrival.len()).rev() {
                arrival.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let mut vitals = PatientVitals::default();
            for spec in &arrival {
                let v = spec.vital_signs();
                assert!(vitals.record(&v, spec.leaf), "{}", v.time);
            }
            let window = rng.pick(&WINDOWS);
            let expected = reference(&specs, window);
            let actual = vitals.assess(window).map(|a| {
                assert_eq!(a.complete, a.missing.is_empty());
                assert_eq!(a.alert, a.total >= 1);
                assert_eq!(a.level(), (a.total >= 1).then_some(a.risk));
                let values_agree = a.parameters.iter().all(|s| {
                    let held = vitals.latest(s.parameter).unwrap();
                    s.value == held.value.to_json()
                        && held.time_ms == s.time_ms
                        && held.leaf == s.leaf
                });
                assert!(values_agree, "{a:?}");
                Expected {
                    time_ms: a.time_ms,
                    total: a.total,
                    risk: a.risk,
                    scored: a
                        .parameters
                        .iter()
                        .map(|s| (s.parameter, s.points, s.time_ms, s.leaf))
                        .collect(),
                    missing: a.missing.clone(),
                    leaves: a.leaves(),
                }
            });
            assert_eq!(actual, expected, "patient {p}, window {window}: {specs:#?}");

            let Some(e) = expected else {
                none += 1;
                continue;
            };
            risks[e.risk as usize] += 1;
            if e.missing.is_empty() {
                complete += 1;
            } else {
                incomplete += 1;
            }
            quiet += usize::from(e.total == 0);
            scale_two += usize::from(vitals.assess(window).unwrap().scale_leaf.is_some());
            let in_window = |t: i64| window == i64::MAX || t >= e.time_ms - window;
            let held = |q: Parameter| vitals.latest(q).map(|r| r.time_ms);
            unscorable += usize::from(e.missing.iter().any(|&q| held(q).is_some_and(in_window)));
            excluded += usize::from(
                Parameter::ALL
                    .iter()
                    .any(|&q| held(q).is_some_and(|t| !in_window(t))),
            );
        }
        let counts = (
            risks, none, complete, incomplete, quiet, unscorable, scale_two, excluded,
        );
        assert!(risks.iter().all(|&n| n >= 50), "{counts:?}");
        assert!(none >= 1, "{counts:?}");
        assert!(complete >= 100 && incomplete >= 100, "{counts:?}");
        assert!(quiet >= 30, "{counts:?}");
        assert!(
            unscorable >= 20 && scale_two >= 50 && excluded >= 100,
            "{counts:?}"
        );
    }
}
