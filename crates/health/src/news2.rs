//! The National Early Warning Score 2 (NEWS2, Royal College of Physicians,
//! 2017), scored exactly as the RCP chart prescribes.
//!
//! Scoring is a pure, deterministic function of one complete set of latest
//! readings. Each reading is first rounded to the chart's resolution (see
//! [`round_reading`]) and then placed in its band. Readings that are not
//! finite or that no living patient can have are refused with a
//! [`ReadingError`] rather than scored, so a faulty sensor never produces a
//! reassuring score.
//!
//! NEWS2 is defined for adults (16 years and over); it is not validated for
//! children or in pregnancy.

use serde::{Deserialize, Serialize};

/// Level of consciousness, ACVPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consciousness {
    /// Alert.
    Alert,
    /// New confusion (new-onset disorientation, delirium or any reduction
    /// in the Glasgow Coma Scale).
    NewConfusion,
    /// Responds to voice.
    Voice,
    /// Responds to pain.
    Pain,
    /// Unresponsive.
    Unresponsive,
}

/// Which SpO2 scale applies to the patient (scale 2 only for hypercapnic
/// respiratory failure, prescribed by a clinician).
///
/// Serialized as the integer `1` or `2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum SpO2Scale {
    /// Scale 1, the default for all patients.
    One,
    /// Scale 2, target saturation 88-92 %, for hypercapnic respiratory
    /// failure.
    Two,
}

/// A number that names no SpO2 scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("SpO2 scale must be 1 or 2, not {0}")]
pub struct UnknownScale(pub u8);

impl From<SpO2Scale> for u8 {
    fn from(scale: SpO2Scale) -> u8 {
        match scale {
            SpO2Scale::One => 1,
            SpO2Scale::Two => 2,
        }
    }
}

impl TryFrom<u8> for SpO2Scale {
    type Error = UnknownScale;

    fn try_from(number: u8) -> Result<Self, UnknownScale> {
        match number {
            1 => Ok(SpO2Scale::One),
            2 => Ok(SpO2Scale::Two),
            other => Err(UnknownScale(other)),
        }
    }
}

/// The parameters NEWS2 scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parameter {
    /// Respiration rate, breaths per minute.
    RespiratoryRate,
    /// Oxygen saturation, percent, on the patient's [`SpO2Scale`].
    #[serde(rename = "spo2")]
    SpO2,
    /// Whether the patient breathes air or supplemental oxygen.
    AirOrOxygen,
    /// Systolic blood pressure, mmHg.
    SystolicBp,
    /// Pulse, beats per minute.
    Pulse,
    /// Level of consciousness, ACVPU.
    Consciousness,
    /// Temperature, °C.
    Temperature,
}

impl Parameter {
    /// Every parameter, in chart (and [`Ord`]) order.
    pub const ALL: [Parameter; 7] = [
        Parameter::RespiratoryRate,
        Parameter::SpO2,
        Parameter::AirOrOxygen,
        Parameter::SystolicBp,
        Parameter::Pulse,
        Parameter::Consciousness,
        Parameter::Temperature,
    ];
}

/// A complete set of latest readings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observations {
    /// Respiration rate, breaths per minute.
    pub respiratory_rate: f64,
    /// Oxygen saturation, percent.
    pub spo2: f64,
    /// Whether the patient is on supplemental oxygen (otherwise on air).
    pub on_oxygen: bool,
    /// The SpO2 scale prescribed for the patient.
    pub scale: SpO2Scale,
    /// Systolic blood pressure, mmHg.
    pub systolic_bp: f64,
    /// Pulse, beats per minute.
    pub pulse: f64,
    /// Level of consciousness.
    pub consciousness: Consciousness,
    /// Temperature, °C.
    pub temperature: f64,
}

/// Points of one parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Points {
    /// The parameter scored.
    pub parameter: Parameter,
    /// Its points on the chart, 0 to 3.
    pub points: u8,
}

/// Clinical risk band of an aggregate score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Aggregate 0-4 (including 0) without a 3 in any single parameter.
    Low,
    /// Aggregate 0-4 with a 3 in at least one single parameter.
    LowMedium,
    /// Aggregate 5-6.
    Medium,
    /// Aggregate 7 or more.
    High,
}

/// A NEWS2 score.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// Aggregate score, 0 to 20.
    pub total: u8,
    /// Points of every parameter, one per parameter, in [`Parameter`] order.
    pub points: Vec<Points>,
    /// Risk band of the aggregate.
    pub risk: Risk,
}

/// Why a reading cannot be scored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadingError {
    /// The reading is NaN or infinite.
    #[error("{0:?} reading is not a finite number")]
    NotFinite(Parameter),
    /// The reading is physiologically impossible: negative, SpO2 above
    /// 100 %, or temperature outside 25-45 °C after rounding.
    #[error("{0:?} reading is outside the physiologically possible range")]
    OutOfRange(Parameter),
}

/// `value` rounded to the chart's resolution: temperature to 0.1 °C, every
/// other parameter to a whole number, with halves rounded away from zero
/// ([`f64::round`] semantics), so 36.05 °C is 36.1 °C and 24.5 breaths per
/// minute is 25.
///
/// This is the value [`points`] places in a band. Non-finite input is
/// returned unchanged.
pub fn round_reading(parameter: Parameter, value: f64) -> f64 {
    match parameter {
        Parameter::Temperature => steps(parameter, value) / 10.0,
        _ => steps(parameter, value),
    }
}

/// `value` as a whole number of chart steps: tenths of a degree for
/// temperature, units for everything else.
fn steps(parameter: Parameter, value: f64) -> f64 {
    match parameter {
        Parameter::Temperature => (value * 10.0).round(),
        _ => value.round(),
    }
}

/// The reading in chart steps, if it is finite, not negative, and within
/// `lowest..=highest` steps after rounding.
fn checked(
    parameter: Parameter,
    value: f64,
    lowest: f64,
    highest: f64,
) -> Result<i64, ReadingError> {
    if !value.is_finite() {
        return Err(ReadingError::NotFinite(parameter));
    }
    let steps = steps(parameter, value);
    if value < 0.0 || !(lowest..=highest).contains(&steps) {
        return Err(ReadingError::OutOfRange(parameter));
    }
    Ok(steps as i64)
}

/// Points of `parameter` for the readings `obs`, per the RCP chart.
///
/// # Errors
///
/// [`ReadingError::NotFinite`] if the reading is NaN or infinite, and
/// [`ReadingError::OutOfRange`] if it is below zero (even if it would round
/// to zero), SpO2 is above 100 % after rounding, or temperature is outside
/// 25.0-45.0 °C after rounding. Rates and blood pressure have no upper
/// limit: any higher reading scores as the top band.
pub fn points(parameter: Parameter, obs: &Observations) -> Result<u8, ReadingError> {
    let points = match parameter {
        Parameter::RespiratoryRate => {
            match checked(parameter, obs.respiratory_rate, 0.0, f64::MAX)? {
                ..=8 => 3,
                9..=11 => 1,
                12..=20 => 0,
                21..=24 => 2,
                25.. => 3,
            }
        }
        Parameter::SpO2 => {
            let spo2 = checked(parameter, obs.spo2, 0.0, 100.0)?;
            match obs.scale {
                SpO2Scale::One => match spo2 {
                    ..=91 => 3,
                    92..=93 => 2,
                    94..=95 => 1,
                    96.. => 0,
                },
                SpO2Scale::Two => match (spo2, obs.on_oxygen) {
                    (..=83, _) => 3,
                    (84..=85, _) => 2,
                    (86..=87, _) => 1,
                    (88..=92, _) | (93.., false) => 0,
                    (93..=94, true) => 1,
                    (95..=96, true) => 2,
                    (97.., true) => 3,
                },
            }
        }
        Parameter::AirOrOxygen => {
            if obs.on_oxygen {
                2
            } else {
                0
            }
        }
        Parameter::SystolicBp => match checked(parameter, obs.systolic_bp, 0.0, f64::MAX)? {
            ..=90 => 3,
            91..=100 => 2,
            101..=110 => 1,
            111..=219 => 0,
            220.. => 3,
        },
        Parameter::Pulse => match checked(parameter, obs.pulse, 0.0, f64::MAX)? {
            ..=40 => 3,
            41..=50 => 1,
            51..=90 => 0,
            91..=110 => 1,
            111..=130 => 2,
            131.. => 3,
        },
        Parameter::Consciousness => match obs.consciousness {
            Consciousness::Alert => 0,
            Consciousness::NewConfusion
            | Consciousness::Voice
            | Consciousness::Pain
            | Consciousness::Unresponsive => 3,
        },
        Parameter::Temperature => match checked(parameter, obs.temperature, 250.0, 450.0)? {
            ..=350 => 3,
            351..=360 => 1,
            361..=380 => 0,
            381..=390 => 1,
            391.. => 2,
        },
    };
    Ok(points)
}

/// The NEWS2 score of a complete set of readings.
///
/// # Errors
///
/// The [`ReadingError`] of the first parameter, in [`Parameter`] order,
/// whose reading cannot be scored (see [`points`]).
pub fn score(obs: &Observations) -> Result<Score, ReadingError> {
    let scored = Parameter::ALL
        .iter()
        .map(|&parameter| {
            Ok(Points {
                parameter,
                points: points(parameter, obs)?,
            })
        })
        .collect::<Result<Vec<_>, ReadingError>>()?;
    let total = scored.iter().map(|p| p.points).sum();
    let any_three = scored.iter().any(|p| p.points == 3);
    Ok(Score {
        total,
        points: scored,
        risk: risk(total, any_three),
    })
}

/// The risk band of an aggregate score: 7 or more is high, 5-6 medium,
/// and 0-4 low, or low-medium if `any_three` (a single parameter scored 3).
/// Medium and high do not depend on `any_three`.
pub fn risk(total: u8, any_three: bool) -> Risk {
    match total {
        7.. => Risk::High,
        5..=6 => Risk::Medium,
        _ if any_three => Risk::LowMedium,
        _ => Risk::Low,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change to readings.
    type Change = fn(&mut Observations);
    /// Sets one reading to a value.
    type Set = fn(&mut Observations, f64);

    /// Readings that score 0 in every parameter.
    fn normal() -> Observations {
        Observations {
            respiratory_rate: 16.0,
            spo2: 97.0,
            on_oxygen: false,
            scale: SpO2Scale::One,
            systolic_bp: 120.0,
            pulse: 70.0,
            consciousness: Consciousness::Alert,
            temperature: 37.0,
        }
    }

    /// Points of `parameter` after `change` is applied to normal readings.
    fn with(parameter: Parameter, change: impl Fn(&mut Observations)) -> Result<u8, ReadingError> {
        let mut obs = normal();
        change(&mut obs);
        points(parameter, &obs)
    }

    fn check_edges(parameter: Parameter, set: Set, cases: &[(f64, u8)]) {
        for &(value, expected) in cases {
            assert_eq!(
                with(parameter, |o| set(o, value)),
                Ok(expected),
                "{parameter:?} {value}"
            );
        }
    }

    #[test]
    fn normal_readings_score_zero() {
        let s = score(&normal()).unwrap();
        assert_eq!(s.total, 0);
        assert_eq!(s.risk, Risk::Low);
        let order: Vec<Parameter> = s.points.iter().map(|p| p.parameter).collect();
        assert_eq!(order, Parameter::ALL.to_vec());
        assert!(s.points.iter().all(|p| p.points == 0));
    }

    #[test]
    fn respiratory_rate_edges() {
        check_edges(
            Parameter::RespiratoryRate,
            |o, v| o.respiratory_rate = v,
            &[
                (0.0, 3),
                (8.0, 3),
                (9.0, 1),
                (11.0, 1),
                (12.0, 0),
                (20.0, 0),
                (21.0, 2),
                (24.0, 2),
                (25.0, 3),
                (60.0, 3),
            ],
        );
    }

    #[test]
    fn spo2_scale_one_edges() {
        for on_oxygen in [false, true] {
            let set = if on_oxygen {
                |o: &mut Observations, v| {
                    o.spo2 = v;
                    o.on_oxygen = true;
                }
            } else {
                |o: &mut Observations, v| o.spo2 = v
            };
            check_edges(
                Parameter::SpO2,
                set,
                &[
                    (0.0, 3),
                    (91.0, 3),
                    (92.0, 2),
                    (93.0, 2),
                    (94.0, 1),
                    (95.0, 1),
                    (96.0, 0),
                    (100.0, 0),
                ],
            );
        }
    }

    #[test]
    fn spo2_scale_two_edges() {
        let on_air = |o: &mut Observations, v| {
            o.scale = SpO2Scale::Two;
            o.spo2 = v;
        };
        let on_oxygen = |o: &mut Observations, v| {
            o.scale = SpO2Scale::Two;
            o.on_oxygen = true;
            o.spo2 = v;
        };
        let either = [
            (0.0, 3),
            (83.0, 3),
            (84.0, 2),
            (85.0, 2),
            (86.0, 1),
            (87.0, 1),
            (88.0, 0),
            (92.0, 0),
        ];
        check_edges(Parameter::SpO2, on_air, &either);
        check_edges(Parameter::SpO2, on_oxygen, &either);
        check_edges(
            Parameter::SpO2,
            on_air,
            &[
                (93.0, 0),
                (94.0, 0),
                (95.0, 0),
                (96.0, 0),
                (97.0, 0),
                (100.0, 0),
            ],
        );
        check_edges(
            Parameter::SpO2,
            on_oxygen,
            &[
                (93.0, 1),
                (94.0, 1),
                (95.0, 2),
                (96.0, 2),
                (97.0, 3),
                (100.0, 3),
            ],
        );
    }

    #[test]
    fn air_or_oxygen() {
        assert_eq!(with(Parameter::AirOrOxygen, |_| {}), Ok(0));
        assert_eq!(with(Parameter::AirOrOxygen, |o| o.on_oxygen = true), Ok(2));
        let on_scale_two = |o: &mut Observations| {
            o.on_oxygen = true;
            o.scale = SpO2Scale::Two;
        };
        assert_eq!(with(Parameter::AirOrOxygen, on_scale_two), Ok(2));
    }

    #[test]
    fn systolic_bp_edges() {
        check_edges(
            Parameter::SystolicBp,
            |o, v| o.systolic_bp = v,
            &[
                (0.0, 3),
                (90.0, 3),
                (91.0, 2),
                (100.0, 2),
                (101.0, 1),
                (110.0, 1),
                (111.0, 0),
                (219.0, 0),
                (220.0, 3),
                (300.0, 3),
            ],
        );
    }

    #[test]
    fn pulse_edges() {
        check_edges(
            Parameter::Pulse,
            |o, v| o.pulse = v,
            &[
                (0.0, 3),
                (40.0, 3),
                (41.0, 1),
                (50.0, 1),
                (51.0, 0),
                (90.0, 0),
                (91.0, 1),
                (110.0, 1),
                (111.0, 2),
                (130.0, 2),
                (131.0, 3),
                (250.0, 3),
            ],
        );
    }

    #[test]
    fn consciousness_levels() {
        let cases = [
            (Consciousness::Alert, 0),
            (Consciousness::NewConfusion, 3),
            (Consciousness::Voice, 3),
            (Consciousness::Pain, 3),
            (Consciousness::Unresponsive, 3),
        ];
        for (level, expected) in cases {
            assert_eq!(
                with(Parameter::Consciousness, |o| o.consciousness = level),
                Ok(expected)
            );
        }
    }

    #[test]
    fn temperature_edges() {
        check_edges(
            Parameter::Temperature,
            |o, v| o.temperature = v,
            &[
                (25.0, 3),
                (35.0, 3),
                (35.1, 1),
                (36.0, 1),
                (36.1, 0),
                (38.0, 0),
                (38.1, 1),
                (39.0, 1),
                (39.1, 2),
                (45.0, 2),
            ],
        );
    }

    #[test]
    fn rounding() {
        assert_eq!(round_reading(Parameter::Temperature, 36.04), 36.0);
        assert_eq!(round_reading(Parameter::Temperature, 36.05), 36.1);
        assert_eq!(round_reading(Parameter::Temperature, 38.05), 38.1);
        assert_eq!(round_reading(Parameter::RespiratoryRate, 24.5), 25.0);
        assert_eq!(round_reading(Parameter::RespiratoryRate, 24.4), 24.0);
        assert_eq!(round_reading(Parameter::Pulse, -0.5), -1.0);
        assert!(round_reading(Parameter::Pulse, f64::NAN).is_nan());
        check_edges(
            Parameter::Temperature,
            |o, v| o.temperature = v,
            &[
                (36.04, 1),
                (36.05, 0),
                (35.04, 3),
                (35.05, 1),
                (38.04, 0),
                (38.05, 1),
                (39.04, 1),
                (39.05, 2),
                (24.95, 3),
                (45.04, 2),
            ],
        );
        check_edges(
            Parameter::RespiratoryRate,
            |o, v| o.respiratory_rate = v,
            &[(24.4, 2), (24.5, 3), (8.49, 3), (8.5, 1), (-0.0, 3)],
        );
        check_edges(
            Parameter::SpO2,
            |o, v| o.spo2 = v,
            &[(95.49, 1), (95.5, 0), (100.4, 0)],
        );
        check_edges(
            Parameter::SystolicBp,
            |o, v| o.systolic_bp = v,
            &[(90.49, 3), (90.5, 2), (219.49, 0), (219.5, 3)],
        );
        check_edges(
            Parameter::Pulse,
            |o, v| o.pulse = v,
            &[(40.5, 1), (130.49, 2), (130.5, 3)],
        );
    }

    /// Every temperature written with two decimals in 24.95-45.04 °C rounds
    /// to the tenth that decimal arithmetic gives, halves away from zero.
    #[test]
    fn temperature_rounds_like_decimals() {
        for hundredths in 2495_i64..=4504 {
            let value: f64 = format!("{}.{:02}", hundredths / 100, hundredths % 100)
                .parse()
                .unwrap();
            let tenths = (hundredths + 5) / 10;
            assert_eq!(
                round_reading(Parameter::Temperature, value),
                tenths as f64 / 10.0,
                "{value}"
            );
        }
    }

    #[test]
    fn risk_bands() {
        assert_eq!(risk(0, false), Risk::Low);
        assert_eq!(risk(4, false), Risk::Low);
        assert_eq!(risk(3, true), Risk::LowMedium);
        assert_eq!(risk(4, true), Risk::LowMedium);
        assert_eq!(risk(5, false), Risk::Medium);
        assert_eq!(risk(5, true), Risk::Medium);
        assert_eq!(risk(6, true), Risk::Medium);
        assert_eq!(risk(7, false), Risk::High);
        assert_eq!(risk(7, true), Risk::High);
        assert_eq!(risk(20, true), Risk::High);
        assert_eq!(risk(u8::MAX, false), Risk::High);
    }

    #[test]
    fn risk_of_scores() {
        let cases: [(Change, u8, Risk); 7] = [
            (|_| {}, 0, Risk::Low),
            (
                |o| {
                    o.respiratory_rate = 21.0;
                    o.systolic_bp = 95.0;
                },
                4,
                Risk::Low,
            ),
            (
                |o| o.consciousness = Consciousness::Voice,
                3,
                Risk::LowMedium,
            ),
            (
                |o| {
                    o.consciousness = Consciousness::NewConfusion;
                    o.on_oxygen = true;
                },
                5,
                Risk::Medium,
            ),
            (
                |o| {
                    o.pulse = 115.0;
                    o.respiratory_rate = 22.0;
                    o.spo2 = 93.0;
                },
                6,
                Risk::Medium,
            ),
            (
                |o| {
                    o.pulse = 135.0;
                    o.on_oxygen = true;
                    o.temperature = 39.5;
                },
                7,
                Risk::High,
            ),
            (
                |o| {
                    o.respiratory_rate = 5.0;
                    o.spo2 = 80.0;
                    o.on_oxygen = true;
                    o.systolic_bp = 80.0;
                    o.pulse = 30.0;
                    o.consciousness = Consciousness::Unresponsive;
                    o.temperature = 34.0;
                },
                20,
                Risk::High,
            ),
        ];
        for (change, total, band) in cases {
            let mut obs = normal();
            change(&mut obs);
            let s = score(&obs).unwrap();
            assert_eq!((s.total, s.risk), (total, band), "{obs:?}");
        }
    }

    #[test]
    fn invalid_readings_are_refused() {
        use ReadingError::{NotFinite, OutOfRange};
        let numeric: [(Parameter, Set); 5] = [
            (Parameter::RespiratoryRate, |o, v| o.respiratory_rate = v),
            (Parameter::SpO2, |o, v| o.spo2 = v),
            (Parameter::SystolicBp, |o, v| o.systolic_bp = v),
            (Parameter::Pulse, |o, v| o.pulse = v),
            (Parameter::Temperature, |o, v| o.temperature = v),
        ];
        for (parameter, set) in numeric {
            for (value, error) in [
                (f64::NAN, NotFinite(parameter)),
                (-f64::NAN, NotFinite(parameter)),
                (f64::INFINITY, NotFinite(parameter)),
                (f64::NEG_INFINITY, NotFinite(parameter)),
                (-1.0, OutOfRange(parameter)),
                (-0.4, OutOfRange(parameter)),
                (-f64::MIN_POSITIVE, OutOfRange(parameter)),
                (f64::MIN, OutOfRange(parameter)),
            ] {
                let mut obs = normal();
                set(&mut obs, value);
                assert_eq!(points(parameter, &obs), Err(error.clone()), "{value}");
                assert_eq!(score(&obs), Err(error), "{value}");
            }
        }
        let cases: [(Change, ReadingError); 8] = [
            (|o| o.spo2 = 101.0, OutOfRange(Parameter::SpO2)),
            (|o| o.spo2 = 100.5, OutOfRange(Parameter::SpO2)),
            (|o| o.spo2 = f64::MAX, OutOfRange(Parameter::SpO2)),
            (|o| o.temperature = 50.0, OutOfRange(Parameter::Temperature)),
            (
                |o| o.temperature = 45.05,
                OutOfRange(Parameter::Temperature),
            ),
            (
                |o| o.temperature = 24.94,
                OutOfRange(Parameter::Temperature),
            ),
            (
                |o| o.temperature = 1e300,
                OutOfRange(Parameter::Temperature),
            ),
            (
                |o| o.temperature = f64::MAX,
                OutOfRange(Parameter::Temperature),
            ),
        ];
        for (change, error) in cases {
            let mut obs = normal();
            change(&mut obs);
            assert_eq!(score(&obs), Err(error), "{obs:?}");
        }
        let mut huge = normal();
        huge.respiratory_rate = f64::MAX;
        huge.systolic_bp = 1e300;
        huge.pulse = f64::MAX;
        assert_eq!(score(&huge).map(|s| s.total), Ok(9));
    }

    #[test]
    fn first_invalid_parameter_is_reported() {
        let mut obs = normal();
        obs.temperature = f64::NAN;
        obs.pulse = -5.0;
        obs.spo2 = 101.0;
        assert_eq!(score(&obs), Err(ReadingError::OutOfRange(Parameter::SpO2)));
        assert_eq!(
            points(Parameter::Temperature, &obs),
            Err(ReadingError::NotFinite(Parameter::Temperature))
        );
        assert_eq!(points(Parameter::RespiratoryRate, &obs), Ok(0));
        assert_eq!(
            ReadingError::NotFinite(Parameter::SpO2).to_string(),
            "SpO2 reading is not a finite number"
        );
    }

    #[test]
    fn serde_forms() {
        assert_eq!(serde_json::to_string(&SpO2Scale::One).unwrap(), "1");
        assert_eq!(serde_json::to_string(&SpO2Scale::Two).unwrap(), "2");
        assert_eq!(
            serde_json::from_str::<SpO2Scale>("1").unwrap(),
            SpO2Scale::One
        );
        assert_eq!(
            serde_json::from_str::<SpO2Scale>("2").unwrap(),
            SpO2Scale::Two
        );
        for bad in ["0", "3", "256", "-1", "1.5", "\"1\"", "\"One\"", "null"] {
            assert!(serde_json::from_str::<SpO2Scale>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&Consciousness::NewConfusion).unwrap(),
            "\"new_confusion\""
        );
        assert_eq!(
            serde_json::to_string(&Risk::LowMedium).unwrap(),
            "\"low_medium\""
        );
        assert_eq!(serde_json::to_string(&Parameter::SpO2).unwrap(), "\"spo2\"");
        assert_eq!(
            serde_json::to_string(&Parameter::SystolicBp).unwrap(),
            "\"systolic_bp\""
        );
        for parameter in Parameter::ALL {
            let json = serde_json::to_string(&parameter).unwrap();
            assert_eq!(serde_json::from_str::<Parameter>(&json).unwrap(), parameter);
        }
    }

    /// What a generated reading truly is, known independently of rounding.
    #[derive(Clone, Copy)]
    enum Truth {
        /// A valid reading worth this many chart steps after rounding.
        Steps(i64),
        NotFinite,
        OutOfRange,
    }

    use crate::testing::Rng;

    /// A whole-number reading: usually `n` plus an offset that must round
    /// back to `n`, where `n` is a band edge, a value in the `calm` range
    /// that scores 0, or any value in `lo..=hi`; sometimes invalid.
    fn whole(rng: &mut Rng, edges: &[i64], calm: (i64, i64), lo: i64, hi: i64) -> (f64, Truth) {
        match rng.below(40) {
            0 => {
                return (
                    rng.pick(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
                    Truth::NotFinite,
                );
            }
            1 => return (-(rng.between(1, 1000) as f64) / 7.0, Truth::OutOfRange),
            _ => {}
        }
        let n = match rng.below(3) {
            0 => rng.pick(edges),
            1 => rng.between(calm.0, calm.1),
            _ => rng.between(lo, hi),
        };
        let offset = if n == 0 {
            rng.pick(&[0.0, 0.2, 0.49])
        } else {
            rng.pick(&[0.0, 0.0, -0.5, -0.3, -0.01, 0.01, 0.3, 0.49])
        };
        (n as f64 + offset, Truth::Steps(n))
    }

    /// A temperature written with two decimals that rounds to `t` tenths,
    /// sometimes invalid.
    fn temperature(rng: &mut Rng) -> (f64, Truth) {
        const EDGES: [i64; 12] = [250, 349, 350, 351, 360, 361, 380, 381, 390, 391, 392, 450];
        match rng.below(40) {
            0 => return (f64::NAN, Truth::NotFinite),
            1 => {
                return (
                    rng.pick(&[24.94, 45.05, 50.0, 0.0, -36.6]),
                    Truth::OutOfRange,
                );
            }
            _ => {}
        }
        let t = match rng.below(3) {
            0 => rng.pick(&EDGES),
            1 => rng.between(361, 380),
            _ => rng.between(250, 450),
        };
        let hundredths = 10 * t + rng.pick(&[-5, -3, -1, 0, 0, 1, 4]);
        let written = format!("{}.{:02}", hundredths / 100, hundredths % 100);
        (written.parse().unwrap(), Truth::Steps(t))
    }

    /// Points of `steps` on a chart row given as `(lowest, highest, points)`.
    fn look_up(row: &[(i64, i64, u8)], steps: i64) -> u8 {
        row.iter()
            .find(|&&(lo, hi, _)| lo <= steps && steps <= hi)
            .map(|&(_, _, p)| p)
            .expect("chart rows cover every valid reading")
    }

    const OPEN: i64 = i64::MAX;
    const RESPIRATION: [(i64, i64, u8); 5] = [
        (0, 8, 3),
        (9, 11, 1),
        (12, 20, 0),
        (21, 24, 2),
        (25, OPEN, 3),
    ];
    const SCALE_ONE: [(i64, i64, u8); 4] = [(0, 91, 3), (92, 93, 2), (94, 95, 1), (96, 100, 0)];
    const SCALE_TWO_AIR: [(i64, i64, u8); 4] = [(0, 83, 3), (84, 85, 2), (86, 87, 1), (88, 100, 0)];
    const SCALE_TWO_OXYGEN: [(i64, i64, u8); 7] = [
        (0, 83, 3),
        (84, 85, 2),
        (86, 87, 1),
        (88, 92, 0),
        (93, 94, 1),
        (95, 96, 2),
        (97, 100, 3),
    ];
    const SYSTOLIC: [(i64, i64, u8); 5] = [
        (0, 90, 3),
        (91, 100, 2),
        (101, 110, 1),
        (111, 219, 0),
        (220, OPEN, 3),
    ];
    const PULSE: [(i64, i64, u8); 6] = [
        (0, 40, 3),
        (41, 50, 1),
        (51, 90, 0),
        (91, 110, 1),
        (111, 130, 2),
        (131, OPEN, 3),
    ];
    const TEMPERATURE_TENTHS: [(i64, i64, u8); 5] = [
        (250, 350, 3),
        (351, 360, 1),
        (361, 380, 0),
        (381, 390, 1),
        (391, 450, 2),
    ];

    /// The expected score, from the chart rows and the true readings.
    fn reference(
        readings: [(Parameter, Truth); 5],
        on_oxygen: bool,
        scale: SpO2Scale,
        consciousness: Consciousness,
    ) -> Result<(u8, Vec<u8>, Risk), ReadingError> {
        let mut all = Vec::new();
        for parameter in Parameter::ALL {
            let p = match parameter {
                Parameter::AirOrOxygen => 2 * u8::from(on_oxygen),
                Parameter::Consciousness => 3 * u8::from(consciousness != Consciousness::Alert),
                _ => {
                    let (_, truth) = readings
                        .iter()
                        .find(|(q, _)| *q == parameter)
                        .copied()
                        .expect("a reading for each numeric parameter");
                    let steps = match truth {
                        Truth::Steps(steps) => steps,
                        Truth::NotFinite => return Err(ReadingError::NotFinite(parameter)),
                        Truth::OutOfRange => return Err(ReadingError::OutOfRange(parameter)),
                    };
                    let row: &[(i64, i64, u8)] = match (parameter, scale, on_oxygen) {
                        (Parameter::RespiratoryRate, _, _) => &RESPIRATION,
                        (Parameter::SpO2, SpO2Scale::One, _) => &SCALE_ONE,
                        (Parameter::SpO2, SpO2Scale::Two, false) => &SCALE_TWO_AIR,
                        (Parameter::SpO2, SpO2Scale::Two, true) => &SCALE_TWO_OXYGEN,
                        (Parameter::SystolicBp, _, _) => &SYSTOLIC,
                        (Parameter::Pulse, _, _) => &PULSE,
                        _ => &TEMPERATURE_TENTHS,
                    };
                    look_up(row, steps)
                }
            };
            all.push(p);
        }
        let total: u8 = all.iter().sum();
        let band = if total >= 7 {
            Risk::High
        } else if total >= 5 {
            Risk::Medium
        } else if all.contains(&3) {
            Risk::LowMedium
        } else {
            Risk::Low
        };
        Ok((total, all, band))
    }

    #[test]
    fn agrees_with_table_driven_reference() {
        const LEVELS: [Consciousness; 5] = [
            Consciousness::Alert,
            Consciousness::NewConfusion,
            Consciousness::Voice,
            Consciousness::Pain,
            Consciousness::Unresponsive,
        ];
        let mut rng = Rng(0x4E45_5753_3230_3137);
        let mut seen = [0_usize; 4];
        let mut errors = 0;
        for _ in 0..50_000 {
            let rr = whole(
                &mut rng,
                &[0, 8, 9, 11, 12, 20, 21, 24, 25],
                (12, 20),
                0,
                60,
            );
            let mut spo2 = whole(
                &mut rng,
                &[0, 83, 84, 85, 86, 87, 88, 91, 92, 93, 94, 95, 96, 97, 100],
                (88, 100),
                50,
                100,
            );
            if rng.below(60) == 0 {
                spo2 = (100.5 + rng.below(50) as f64, Truth::OutOfRange);
            }
            let bp = whole(
                &mut rng,
                &[0, 90, 91, 100, 101, 110, 111, 219, 220],
                (111, 219),
                40,
                300,
            );
            let pulse = whole(
                &mut rng,
                &[0, 40, 41, 50, 51, 90, 91, 110, 111, 130, 131],
                (51, 90),
                20,
                250,
            );
            let temp = temperature(&mut rng);
            let obs = Observations {
                respiratory_rate: rr.0,
                spo2: spo2.0,
                on_oxygen: rng.below(2) == 0,
                scale: if rng.below(2) == 0 {
                    SpO2Scale::One
                } else {
                    SpO2Scale::Two
                },
                systolic_bp: bp.0,
                pulse: pulse.0,
                consciousness: if rng.below(3) == 0 {
                    rng.pick(&LEVELS)
                } else {
                    Consciousness::Alert
                },
                temperature: temp.0,
            };
            let expected = reference(
                [
                    (Parameter::RespiratoryRate, rr.1),
                    (Parameter::SpO2, spo2.1),
                    (Parameter::SystolicBp, bp.1),
                    (Parameter::Pulse, pulse.1),
                    (Parameter::Temperature, temp.1),
                ],
                obs.on_oxygen,
                obs.scale,
                obs.consciousness,
            );
            let actual = score(&obs).map(|s| {
                assert!(s.points.iter().map(|p| p.parameter).eq(Parameter::ALL));
                (s.total, s.points.iter().map(|p| p.points).collect(), s.risk)
            });
            assert_eq!(actual, expected, "{obs:?}");
            match &actual {
                Ok((_, _, band)) => seen[*band as usize] += 1,
                Err(_) => errors += 1,
            }
        }
        assert!(seen.iter().all(|&n| n > 1_000), "{seen:?}");
        assert!(errors > 1_000, "{errors}");
    }
}
