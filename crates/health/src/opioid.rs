//! Opioid stewardship: daily morphine milligram equivalents (MME),
//! opioid–benzodiazepine overlap, multiple-provider episodes and early
//! refills, computed from one patient's prescriptions and dispenses.
//!
//! Everything here is a pure, deterministic function of the records offered,
//! so every node that replays the same ledger raises the same alerts. The
//! alerts warn; they never refuse a prescription or a dispense.
//!
//! # Sources
//! - MME conversion factors: Dowell D, Ragan KR, Jones CM, Baldwin GT, Chou R.
//!   *CDC Clinical Practice Guideline for Prescribing Opioids for Pain —
//!   United States, 2022.* MMWR Recomm Rep 2022;71(No. RR-3):1–95.
//!   Table: "Morphine milligram equivalent doses for commonly prescribed
//!   opioids for pain management". See [`Substance::cdc_2022_factor`].
//! - Thresholds of 50 and 90 MME/day: the issue's, from the dosage discussion
//!   under the same guideline's recommendation 4. The 2022 guideline frames
//!   them as points to reassess, not as limits, which is why they only warn.
//! - ATC codes: WHO Collaborating Centre for Drug Statistics Methodology,
//!   ATC/DDD index (atcddd.fhi.no). See [`Substance::from_atc`].
//!
//! # Decisions (the issue leaves these open)
//! - **Dates** are whole UTC calendar days ([`Day`]). A prescription is active
//!   from its start to its end day, both inclusive; a cancellation on day `c`
//!   ends it on day `c - 1`.
//! - **Opioid** means ATC `N02A*`, plus the three opioids of the CDC table
//!   that ATC files elsewhere by indication: codeine `R05DA04`, hydrocodone
//!   `R05DA03` and methadone `N07BC02`. Without them the MME alert would count
//!   methadone while the overlap alert ignored it. Buprenorphine for opioid
//!   dependence (`N07BC01`, `N07BC51`) is not counted: it is treatment for
//!   opioid use disorder, which the guideline asks clinicians to offer, not
//!   a stewardship risk.
//! - **Benzodiazepine** means ATC `N05BA*` or `N05CD*`, as the issue says;
//!   clonazepam (`N03AE01`, filed as an antiepileptic) is therefore not
//!   counted.
//! - **Multiple-provider episode**: prescribers are counted from opioid
//!   prescriptions on their start day (cancelled ones included, since the
//!   visit happened), pharmacies from opioid dispenses on their date. A window
//!   is 90 consecutive days, both ends inclusive: events on day `d` and day
//!   `d + 89` are within one window, events on `d` and `d + 90` are not.
//! - **Early refill** compares a dispense with the latest earlier (or same-day)
//!   dispense of the *same substance*, whatever the prescription, because a
//!   new prescription from another prescriber is exactly how a refill
//!   restriction is evaded. It applies to opioids only. With
//!   `left = previous days' supply − days elapsed`, the dispense is early when
//!   `left / previous days' supply > 0.25`, compared in integers
//!   (`4 × left > supply`) so the 25 % edge is exact.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Daily MME at or above which the guideline asks to reassess benefits and risks.
pub const MME_CAUTION: f64 = 50.0;

/// Daily MME at or above which the guideline asks to avoid or carefully justify the dose.
pub const MME_HIGH: f64 = 90.0;

/// Length of a multiple-provider window in days, both ends inclusive.
pub const EPISODE_WINDOW_DAYS: i64 = 90;

/// Distinct prescribers, and distinct pharmacies, that make an episode.
pub const EPISODE_MIN_PROVIDERS: usize = 4;

/// A calendar day, UTC, counted in days since 1970-01-01.
///
/// Written `YYYY-MM-DD` in text and JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(i64);

impl Day {
    /// The day `days` days after 1970-01-01 (negative before it).
    pub fn from_days_since_epoch(days: i64) -> Day {
        Day(days)
    }

    /// Days since 1970-01-01.
    pub fn days_since_epoch(self) -> i64 {
        self.0
    }

    /// Parses a real calendar date written `YYYY-MM-DD` (year 1900 or later).
    pub fn parse(s: &str) -> Result<Day, RecordError> {
        let bad = || RecordError::BadDate(s.to_owned());
        if !crate::payload::is_date(s) {
            return Err(bad());
        }
        // is_date has checked the shape and that every field is digits.
        let field = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<i64>().ok());
        match (field(0..4), field(5..7), field(8..10)) {
            (Some(y), Some(m), Some(d)) => Ok(Day(crate::calendar::days_from_civil(y, m, d))),
            _ => Err(bad()),
        }
    }

    /// The day `n` days later (earlier for negative `n`).
    pub fn add_days(self, n: i64) -> Day {
        Day(self.0.saturating_add(n))
    }

    /// Days from `earlier` to `self` (negative if `earlier` is later).
    pub fn days_since(self, earlier: Day) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The last day of a supply of `days_supply` days starting on `self`.
    pub fn end_of_supply(self, days_supply: u32) -> Result<Day, RecordError> {
        if days_supply == 0 {
            return Err(RecordError::ZeroSupply);
        }
        Ok(self.add_days(i64::from(days_supply) - 1))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = crate::calendar::civil_from_days(self.0);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Day, D::Error> {
        let s = String::deserialize(d)?;
        Day::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a dose cannot be turned into a daily amount.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DoseError {
    /// The dose quantity's unit is not a mass this module converts.
    #[error("unknown dose unit {0:?}: expected UCUM mg, g or ug (or mcg)")]
    UnknownDoseUnit(String),
    /// The rate's unit is not micrograms per hour.
    #[error("unknown rate unit {0:?}: expected UCUM ug/h (or mcg/h)")]
    UnknownRateUnit(String),
    /// The timing's period unit is not one of fixed length.
    #[error("unknown or variable period unit {0:?}: expected s, min, h, d or wk")]
    UnknownPeriodUnit(String),
    /// A number that must be finite and greater than zero is not.
    #[error("{0} must be a finite number greater than zero")]
    NotPositive(&'static str),
    /// The timing's frequency is zero.
    #[error("frequency must be at least 1")]
    ZeroFrequency,
}

/// Why a prescription or dispense cannot enter a patient's history.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A date is not a real `YYYY-MM-DD` date.
    #[error("not a calendar date YYYY-MM-DD: {0:?}")]
    BadDate(String),
    /// A days' supply of zero.
    #[error("days' supply must be at least 1")]
    ZeroSupply,
    /// A prescription that ends before it starts.
    #[error("prescription {0} ends before it starts")]
    EndsBeforeStart(String),
    /// The medication code is not a WHO ATC substance (level 5) code.
    #[error("not a WHO ATC substance code: {0:?}")]
    BadAtc(String),
    /// The prescribed daily dose is unusable.
    #[error("prescription {0}: {1}")]
    BadDose(String, DoseError),
    /// The dispensed quantity is not a finite number greater than zero.
    #[error("dispense {0}: quantity must be a finite number greater than zero")]
    BadQuantity(String),
    /// The record belongs to another patient.
    #[error("record {id} is of another patient than this history's")]
    OtherPatient {
        /// The record's id.
        id: String,
    },
    /// A record with this id is already in the history.
    #[error("record {0} is already in the history")]
    Duplicate(String),
    /// A dispense or cancellation names a prescription the history lacks.
    #[error("unknown prescription {0}")]
    UnknownPrescription(String),
}

/// How a medication is given, as far as the MME table distinguishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// By mouth: the table's factors for every opioid except fentanyl.
    Oral,
    /// Through the skin: the table's factor for fentanyl patches.
    Transdermal,
    /// Any other route; the table has no factor for it.
    Other,
}

/// A prescribed daily amount, in the unit the MME table expects.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DailyDose {
    /// Milligrams per day (every opioid of the table but fentanyl).
    MgPerDay(f64),
    /// Micrograms per hour, a transdermal patch's release rate (fentanyl).
    UgPerHour(f64),
}

fn positive(x: f64, what: &'static str) -> Result<f64, DoseError> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(DoseError::NotPositive(what))
    }
}

/// Milligrams per day of a structured dose: `value` `unit` taken `frequency`
/// times every `period` `period_unit` (FHIR `Dosage.doseAndRate.doseQuantity`
/// and `Dosage.timing.repeat`).
///
/// `unit` is UCUM `mg`, `g` or `ug` (`mcg` is accepted too, though not UCUM).
/// `period_unit` is a FHIR `UnitsOfTime` of fixed length: `s`, `min`, `h`,
/// `d` or `wk`; `mo` and `a` are refused, since their length in days varies.
/// For a range ("1–2 tablets every 4–6 h"), pass the largest dose,
/// `frequencyMax` when given, and `period` rather than the longer
/// `periodMax`, so the MME is the most the patient may take.
pub fn daily_dose_mg(
    value: f64,
    unit: &str,
    frequency: u32,
    period: f64,
    period_unit: &str,
) -> Result<f64, DoseError> {
    let value = positive(value, "dose")?;
    // Division by 1000 rather than multiplication by 0.001, which binary
    // floating point cannot represent exactly.
    let mg = match unit {
        "mg" => value,
        "g" => value * 1000.0,
        "ug" | "mcg" => value / 1000.0,
        other => return Err(DoseError::UnknownDoseUnit(other.to_owned())),
    };
    if frequency == 0 {
        return Err(DoseError::ZeroFrequency);
    }
    let period = positive(period, "period")?;
    // Multiply before dividing so hand-checkable doses stay exact: 10 mg
    // every 6 h is (10 × 1 × 24) / 6 = 40.
    let per_period = mg * f64::from(frequency);
    let mg = match period_unit {
        "s" => per_period * 86_400.0 / period,
        "min" => per_period * 1_440.0 / period,
        "h" => per_period * 24.0 / period,
        "d" => per_period / period,
        "wk" => per_period / (7.0 * period),
        other => return Err(DoseError::UnknownPeriodUnit(other.to_owned())),
    };
    positive(mg, "daily dose")
}

/// Micrograms per hour of a transdermal patch's release rate (FHIR
/// `Dosage.doseAndRate.rateQuantity`), in UCUM `ug/h` (`mcg/h` accepted).
pub fn patch_rate_ug_per_hour(value: f64, unit: &str) -> Result<f64, DoseError> {
    match unit {
        "ug/h" | "mcg/h" => positive(value, "rate"),
        other => Err(DoseError::UnknownRateUnit(other.to_owned())),
    }
}

/// An opioid of the CDC 2022 MME table, or buprenorphine, which the table
/// leaves out on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Substance {
    /// Codeine.
    Codeine,
    /// Fentanyl; only its transdermal patch has a factor.
    Fentanyl,
    /// Hydrocodone.
    Hydrocodone,
    /// Hydromorphone.
    Hydromorphone,
    /// Methadone.
    Methadone,
    /// Morphine.
    Morphine,
    /// Oxycodone.
    Oxycodone,
    /// Oxymorphone.
    Oxymorphone,
    /// Tapentadol.
    Tapentadol,
    /// Tramadol.
    Tramadol,
    /// Buprenorphine: an opioid with no MME factor.
    Buprenorphine,
}

/// WHO ATC codes of each substance, alone and in the combinations whose
/// opioid dose is the prescribed dose (the partner is a non-opioid analgesic
/// or an opioid antagonist). Confirmed against the WHOCC index or its 2016
/// N02AJ announcement unless marked "from memory".
const ATC_SUBSTANCES: &[(&str, Substance)] = &[
    // Plain codeine is filed as a cough suppressant (WHOCC N02AA guideline text).
    ("R05DA04", Substance::Codeine),
    ("N02AA59", Substance::Codeine), // codeine, combinations excl. psycholeptics
    ("N02AA79", Substance::Codeine), // codeine, combinations with psycholeptics
    ("N02AJ06", Substance::Codeine), // codeine and paracetamol
    ("N02AJ07", Substance::Codeine), // codeine and acetylsalicylic acid
    ("N02AJ08", Substance::Codeine), // codeine and ibuprofen
    ("N02AJ09", Substance::Codeine), // codeine and other non-opioid analgesics
    // Patches are in N02AB03; parenteral fentanyl is N01AH01 (anaesthesia).
    ("N02AB03", Substance::Fentanyl),
    ("R05DA03", Substance::Hydrocodone),
    ("N02AJ22", Substance::Hydrocodone), // hydrocodone and paracetamol
    ("N02AJ23", Substance::Hydrocodone), // hydrocodone and other non-opioid analgesics (title from memory)
    ("N02AA03", Substance::Hydromorphone),
    ("N02AA53", Substance::Hydromorphone), // hydromorphone and naloxone (from memory)
    // ATC files all methadone under opioid dependence, whatever the indication.
    ("N07BC02", Substance::Methadone),
    ("N02AC52", Substance::Methadone), // methadone, combinations excl. psycholeptics (from memory)
    ("N02AA01", Substance::Morphine),
    ("N02AA51", Substance::Morphine), // morphine, combinations
    ("N02AA05", Substance::Oxycodone),
    ("N02AA55", Substance::Oxycodone), // oxycodone and naloxone
    ("N02AA56", Substance::Oxycodone), // oxycodone and naltrexone (from memory)
    ("N02AJ17", Substance::Oxycodone), // oxycodone and paracetamol
    ("N02AJ18", Substance::Oxycodone), // oxycodone and acetylsalicylic acid
    ("N02AJ19", Substance::Oxycodone), // oxycodone and ibuprofen
    ("N02AA11", Substance::Oxymorphone),
    ("N02AX06", Substance::Tapentadol),
    ("N02AX02", Substance::Tramadol),
    ("N02AJ13", Substance::Tramadol), // tramadol and paracetamol
    ("N02AJ14", Substance::Tramadol), // tramadol and dexketoprofen
    ("N02AX52", Substance::Tramadol), // tramadol, combinations: the code before 2016
    ("N02AE01", Substance::Buprenorphine),
    ("N07BC01", Substance::Buprenorphine),
    ("N07BC51", Substance::Buprenorphine), // buprenorphine, combinations
];

impl Substance {
    /// The substance a WHO ATC code names, if it is one of the table's
    /// opioids or buprenorphine.
    pub fn from_atc(atc: &str) -> Option<Substance> {
        ATC_SUBSTANCES
            .iter()
            .find(|(code, _)| *code == atc)
            .map(|&(_, s)| s)
    }

    /// The CDC 2022 conversion factor: MME per mg of daily dose, or for
    /// fentanyl per mcg/hr of patch rate. `None` for buprenorphine.
    ///
    /// Source: Dowell D, et al. CDC Clinical Practice Guideline for
    /// Prescribing Opioids for Pain — United States, 2022. MMWR Recomm Rep
    /// 2022;71(No. RR-3), Table "Morphine milligram equivalent doses for
    /// commonly prescribed opioids for pain management" (adapted there from
    /// Von Korff et al. 2008 and Nielsen et al. 2016). The 2016 guideline's
    /// values differ (hydromorphone 4, tramadol 0.1, methadone tiered by
    /// dose); do not mix them in.
    pub fn cdc_2022_factor(self) -> Option<f64> {
        Some(match self {
            Substance::Codeine => 0.15,
            Substance::Fentanyl => 2.4, // transdermal, per mcg/hr
            Substance::Hydrocodone => 1.0,
            Substance::Hydromorphone => 5.0,
            Substance::Methadone => 4.7,
            Substance::Morphine => 1.0,
            Substance::Oxycodone => 1.5,
            Substance::Oxymorphone => 3.0,
            Substance::Tapentadol => 0.4,
            Substance::Tramadol => 0.2,
            // Not in the table: its partial agonism makes an MME misleading.
            Substance::Buprenorphine => return None,
        })
    }

    /// The factor for this substance given by `route`: the table's oral
    /// factors, and fentanyl's only for a patch.
    pub fn mme_factor(self, route: Route) -> Option<f64> {
        let table_route = match self {
            Substance::Fentanyl => Route::Transdermal,
            _ => Route::Oral,
        };
        if route == table_route {
            self.cdc_2022_factor()
        } else {
            None
        }
    }

    /// MME per day of `dose` given by `route`; `None` when the table has no
    /// factor for the substance and route, or the dose is in the wrong unit.
    pub fn daily_mme(self, route: Route, dose: DailyDose) -> Option<f64> {
        let factor = self.mme_factor(route)?;
        let amount = match (self, dose) {
            (Substance::Fentanyl, DailyDose::UgPerHour(x)) => x,
            (Substance::Fentanyl, DailyDose::MgPerDay(_)) => return None,
            (_, DailyDose::MgPerDay(x)) => x,
            (_, DailyDose::UgPerHour(_)) => return None,
        };
        Some(round_mme(amount * factor))
    }
}

/// The CDC 2022 MME factor for an ATC code given by `route`, if any.
pub fn mme_factor(atc: &str, route: Route) -> Option<f64> {
    Substance::from_atc(atc)?.mme_factor(route)
}

/// Removes binary rounding noise (60 × 1.5, 600 × 0.15) so a dose exactly at
/// a threshold is classified at it; a millionth of an MME is far below any
/// clinical meaning.
fn round_mme(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// True for an opioid in the sense of this module (see the module's
/// decisions): ATC `N02A*`, codeine `R05DA04`, hydrocodone `R05DA03` or
/// methadone `N07BC02`.
pub fn is_opioid(atc: &str) -> bool {
    atc.starts_with("N02A") || matches!(atc, "R05DA04" | "R05DA03" | "N07BC02")
}

/// True for a benzodiazepine: ATC `N05BA*` (anxiolytics) or `N05CD*` (hypnotics).
pub fn is_benzodiazepine(atc: &str) -> bool {
    atc.starts_with("N05BA") || atc.starts_with("N05CD")
}

/// A prescription as the stewardship rules need it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prescription {
    /// The prescription's id (its ledger transaction).
    pub id: String,
    /// The patient's pseudonym.
    pub patient: String,
    /// The prescriber's id.
    pub prescriber: String,
    /// WHO ATC substance code of the medication.
    pub atc: String,
    /// How it is given.
    pub route: Route,
    /// The prescribed daily amount.
    pub dose: DailyDose,
    /// First day of the therapy.
    pub start: Day,
    /// Last day of the therapy, inclusive (see [`Day::end_of_supply`]).
    pub end: Day,
}

impl Prescription {
    /// Checks what the rules rely on: an ATC substance code, a positive
    /// finite dose and an end not before the start.
    pub fn validate(&self) -> Result<(), RecordError> {
        if !crate::prescription::is_atc_substance(&self.atc) {
            return Err(RecordError::BadAtc(self.atc.clone()));
        }
        let bad_dose = |e| RecordError::BadDose(self.id.clone(), e);
        match self.dose {
            DailyDose::MgPerDay(x) => positive(x, "daily dose").map_err(bad_dose)?,
            DailyDose::UgPerHour(x) => positive(x, "rate").map_err(bad_dose)?,
        };
        if self.end < self.start {
            return Err(RecordError::EndsBeforeStart(self.id.clone()));
        }
        Ok(())
    }

    /// MME per day of this prescription; `None` when the table cannot
    /// convert it (not an opioid of the table, other route, wrong unit).
    pub fn daily_mme(&self) -> Option<f64> {
        Substance::from_atc(&self.atc)?.daily_mme(self.route, self.dose)
    }
}

/// A dispense as the stewardship rules need it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dispense {
    /// The dispense's id (its ledger transaction).
    pub id: String,
    /// The patient's pseudonym.
    pub patient: String,
    /// The dispensing pharmacy's id.
    pub pharmacy: String,
    /// Id of the prescription dispensed.
    pub prescription: String,
    /// Day of the dispense.
    pub date: Day,
    /// Units handed out (tablets, patches); no rule here uses it.
    pub quantity: f64,
    /// Days the dispensed quantity lasts at the prescribed dose.
    pub days_supply: u32,
}

impl Dispense {
    /// Checks what the rules rely on: a days' supply of at least one day
    /// and a positive finite quantity.
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.days_supply == 0 {
            return Err(RecordError::ZeroSupply);
        }
        if !(self.quantity.is_finite() && self.quantity > 0.0) {
            return Err(RecordError::BadQuantity(self.id.clone()));
        }
        Ok(())
    }
}

/// Where a daily MME stands against the guideline's thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MmeLevel {
    /// Below 50 MME/day.
    #[serde(rename = "below_50")]
    Below50,
    /// At least 50 and below 90 MME/day.
    #[serde(rename = "at_least_50")]
    AtLeast50,
    /// At least 90 MME/day.
    #[serde(rename = "at_least_90")]
    AtLeast90,
}

impl MmeLevel {
    /// The level of a daily MME.
    pub fn of(mme: f64) -> MmeLevel {
        if mme >= MME_HIGH {
            MmeLevel::AtLeast90
        } else if mme >= MME_CAUTION {
            MmeLevel::AtLeast50
        } else {
            MmeLevel::Below50
        }
    }
}

/// A patient's MME on one day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DailyMme {
    /// The day.
    pub day: Day,
    /// Sum of the convertible active opioid prescriptions' MME/day.
    pub mme: f64,
    /// [`MmeLevel::of`] the sum.
    pub level: MmeLevel,
    /// Active opioid prescriptions the table cannot convert (buprenorphine,
    /// other routes): while any is listed, `mme` is a lower bound.
    pub unconverted: Vec<String>,
}

/// An opioid and a benzodiazepine prescribed for at least one same day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlap {
    /// The opioid prescription's id.
    pub opioid: String,
    /// The benzodiazepine prescription's id.
    pub benzodiazepine: String,
    /// First day both are active.
    pub first_day: Day,
    /// Last day both are active.
    pub last_day: Day,
}

/// A 90-day window with enough distinct opioid prescribers and pharmacies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    /// First day of the window.
    pub window_start: Day,
    /// Last day of the window, inclusive.
    pub window_end: Day,
    /// Distinct prescribers of opioid prescriptions starting in the window.
    pub prescribers: usize,
    /// Distinct pharmacies of opioid dispenses in the window.
    pub pharmacies: usize,
}

/// A stewardship warning, serialized with its stable `code`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code")]
pub enum Alert {
    /// Peak daily MME at least 50 and below 90 (code `mme_50`).
    #[serde(rename = "mme_50")]
    Mme50(DailyMme),
    /// Peak daily MME at least 90 (code `mme_90`).
    #[serde(rename = "mme_90")]
    Mme90(DailyMme),
    /// An opioid and a benzodiazepine share a day (code
    /// `opioid_benzodiazepine_overlap`).
    #[serde(rename = "opioid_benzodiazepine_overlap")]
    OpioidBenzodiazepineOverlap(Overlap),
    /// At least 4 prescribers and 4 pharmacies in 90 days (code
    /// `multiple_provider_episode`).
    #[serde(rename = "multiple_provider_episode")]
    MultipleProviderEpisode(Episode),
    /// More than 25 % of the previous supply left (code `early_refill`).
    #[serde(rename = "early_refill")]
    EarlyRefill(EarlyRefill),
}

/// A dispense while more than a quarter of the previous supply is left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyRefill {
    /// The early dispense's id.
    pub dispense: String,
    /// The previous dispense of the same substance.
    pub previous_dispense: String,
    /// The previous dispense's days' supply.
    pub previous_days_supply: u32,
    /// Days of that supply left on the new dispense's date.
    pub days_left: i64,
}

impl Alert {
    /// The alert's stable code, as serialized.
    pub fn code(&self) -> &'static str {
        match self {
            Alert::Mme50(_) => "mme_50",
            Alert::Mme90(_) => "mme_90",
            Alert::OpioidBenzodiazepineOverlap(_) => "opioid_benzodiazepine_overlap",
            Alert::MultipleProviderEpisode(_) => "multiple_provider_episode",
            Alert::EarlyRefill(_) => "early_refill",
        }
    }
}

/// The substance a dispense is of, for early refills.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SubstanceKey<'a> {
    Known(Substance),
    Atc(&'a str),
}

/// One patient's prescriptions and dispenses, and the rules over them.
///
/// A view following the log adds each committed record with
/// [`add_prescription`](Self::add_prescription) and
/// [`add_dispense`](Self::add_dispense); the API previews the alerts of a
/// record not yet committed with
/// [`alerts_for_prescription`](Self::alerts_for_prescription) and
/// [`alerts_for_dispense`](Self::alerts_for_dispense).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PatientHistory {
    patient: String,
    prescriptions: BTreeMap<String, Prescription>,
    dispenses: BTreeMap<String, Dispense>,
    cancelled: BTreeMap<String, Day>,
}

impl PatientHistory {
    /// An empty history of the patient with this pseudonym.
    pub fn new(patient: impl Into<String>) -> PatientHistory {
        PatientHistory {
            patient: patient.into(),
            ..PatientHistory::default()
        }
    }

    /// The patient's pseudonym.
    pub fn patient(&self) -> &str {
        &self.patient
    }

    /// The prescriptions, by id.
    pub fn prescriptions(&self) -> impl Iterator<Item = &Prescription> {
        self.prescriptions.values()
    }

    /// The dispenses, by id.
    pub fn dispenses(&self) -> impl Iterator<Item = &Dispense> {
        self.dispenses.values()
    }

    /// Adds a valid prescription of this patient with a new id.
    pub fn add_prescription(&mut self, p: Prescription) -> Result<(), RecordError> {
        p.validate()?;
        if p.patient != self.patient {
            return Err(RecordError::OtherPatient { id: p.id });
        }
        if self.prescriptions.contains_key(&p.id) || self.dispenses.contains_key(&p.id) {
            return Err(RecordError::Duplicate(p.id));
        }
        self.prescriptions.insert(p.id.clone(), p);
        Ok(())
    }

    /// Adds a valid dispense of this patient, with a new id, of a
    /// prescription already in the history.
    pub fn add_dispense(&mut self, d: Dispense) -> Result<(), RecordError> {
        d.validate()?;
        if d.patient != self.patient {
            return Err(RecordError::OtherPatient { id: d.id });
        }
        if self.prescriptions.contains_key(&d.id) || self.dispenses.contains_key(&d.id) {
            return Err(RecordError::Duplicate(d.id));
        }
        if !self.prescriptions.contains_key(&d.prescription) {
            return Err(RecordError::UnknownPrescription(d.prescription));
        }
        self.dispenses.insert(d.id.clone(), d);
        Ok(())
    }

    /// Records the cancellation of a prescription on day `on`: from that day
    /// it no longer counts as active. The earliest cancellation wins.
    pub fn cancel_prescription(&mut self, id: &str, on: Day) -> Result<(), RecordError> {
        if !self.prescriptions.contains_key(id) {
            return Err(RecordError::UnknownPrescription(id.to_owned()));
        }
        let day = self.cancelled.entry(id.to_owned()).or_insert(on);
        *day = (*day).min(on);
        Ok(())
    }

    /// Days a prescription is active, both inclusive; `None` if it was
    /// cancelled on or before its start.
    fn active(&self, p: &Prescription) -> Option<(Day, Day)> {
        let end = match self.cancelled.get(&p.id) {
            Some(c) => p.end.min(c.add_days(-1)),
            None => p.end,
        };
        (end >= p.start).then_some((p.start, end))
    }

    /// The patient's daily MME on `day`, from the opioid prescriptions active
    /// that day.
    pub fn daily_mme(&self, day: Day) -> DailyMme {
        let mut mme = 0.0;
        let mut unconverted = Vec::new();
        // BTreeMap order fixes the summation order, so every node gets the
        // same bits.
        for p in self.prescriptions.values() {
            let Some((start, end)) = self.active(p) else {
                continue;
            };
            if !is_opioid(&p.atc) || day < start || day > end {
                continue;
            }
            match p.daily_mme() {
                Some(x) => mme += x,
                None => unconverted.push(p.id.clone()),
            }
        }
        let mme = round_mme(mme);
        DailyMme {
            day,
            mme,
            level: MmeLevel::of(mme),
            unconverted,
        }
    }

    /// The highest daily MME on any day of `[from, to]`, the earliest such
    /// day on a tie; `None` for an empty range.
    pub fn peak_mme(&self, from: Day, to: Day) -> Option<DailyMme> {
        if to < from {
            return None;
        }
        // The sum only rises on a day some prescription starts, so the peak
        // is on `from` or on one of those days.
        let mut days: BTreeSet<Day> = BTreeSet::from([from]);
        days.extend(
            self.prescriptions
                .values()
                .filter_map(|p| self.active(p))
                .map(|(start, _)| start)
                .filter(|d| (from..=to).contains(d)),
        );
        let mut best: Option<DailyMme> = None;
        for day in days {
            let m = self.daily_mme(day);
            if best.as_ref().is_none_or(|b| m.mme > b.mme) {
                best = Some(m);
            }
        }
        best
    }

    /// Every opioid–benzodiazepine pair active on a same day within
    /// `[from, to]`, with the days they share there, ordered by opioid then
    /// benzodiazepine id.
    pub fn overlaps(&self, from: Day, to: Day) -> Vec<Overlap> {
        let mut out = Vec::new();
        for o in self.prescriptions.values().filter(|p| is_opioid(&p.atc)) {
            let Some((os, oe)) = self.active(o) else {
                continue;
            };
            for b in self
                .prescriptions
                .values()
                .filter(|p| is_benzodiazepine(&p.atc))
            {
                let Some((bs, be)) = self.active(b) else {
                    continue;
                };
                let first = os.max(bs).max(from);
                let last = oe.min(be).min(to);
                if first <= last {
                    out.push(Overlap {
                        opioid: o.id.clone(),
                        benzodiazepine: b.id.clone(),
                        first_day: first,
                        last_day: last,
                    });
                }
            }
        }
        out
    }

    /// The counts of the 90-day window ending on `window_end`, if they make
    /// a multiple-provider episode.
    pub fn episode_ending(&self, window_end: Day) -> Option<Episode> {
        let window_start = window_end.add_days(1 - EPISODE_WINDOW_DAYS);
        let within = |d: Day| window_start <= d && d <= window_end;
        let prescribers: BTreeSet<&str> = self
            .prescriptions
            .values()
            .filter(|p| is_opioid(&p.atc) && within(p.start))
            .map(|p| p.prescriber.as_str())
            .collect();
        let pharmacies: BTreeSet<&str> = self
            .dispenses
            .values()
            .filter(|d| within(d.date) && self.dispenses_opioid(d))
            .map(|d| d.pharmacy.as_str())
            .collect();
        (prescribers.len() >= EPISODE_MIN_PROVIDERS && pharmacies.len() >= EPISODE_MIN_PROVIDERS)
            .then_some(Episode {
                window_start,
                window_end,
                prescribers: prescribers.len(),
                pharmacies: pharmacies.len(),
            })
    }

    /// The earliest-ending episode whose window contains `day`.
    pub fn episode_containing(&self, day: Day) -> Option<Episode> {
        (0..EPISODE_WINDOW_DAYS).find_map(|k| self.episode_ending(day.add_days(k)))
    }

    fn dispenses_opioid(&self, d: &Dispense) -> bool {
        self.prescriptions
            .get(&d.prescription)
            .is_some_and(|p| is_opioid(&p.atc))
    }

    /// What early-refill compares: the substance when the table knows it,
    /// so that plain and combination codes match, else the ATC code itself.
    fn substance_key(&self, d: &Dispense) -> Option<SubstanceKey<'_>> {
        let p = self.prescriptions.get(&d.prescription)?;
        Some(match Substance::from_atc(&p.atc) {
            Some(s) => SubstanceKey::Known(s),
            None => SubstanceKey::Atc(&p.atc),
        })
    }

    /// The early-refill finding for a dispense in the history, if it is one.
    pub fn early_refill(&self, dispense_id: &str) -> Option<EarlyRefill> {
        let new = self.dispenses.get(dispense_id)?;
        if !self.dispenses_opioid(new) {
            return None;
        }
        let key = self.substance_key(new)?;
        // The latest earlier or same-day dispense of the same substance; on
        // a tie the longest supply, then the greatest id, so the choice never
        // depends on arrival order.
        let prev = self
            .dispenses
            .values()
            .filter(|d| d.id != new.id && d.date <= new.date)
            .filter(|d| self.substance_key(d) == Some(key))
            .max_by(|a, b| (a.date, a.days_supply, &a.id).cmp(&(b.date, b.days_supply, &b.id)))?;
        let supply = i64::from(prev.days_supply);
        let left = supply - new.date.days_since(prev.date);
        // left / supply > 0.25, in integers so the edge is exact.
        (4 * left > supply).then(|| EarlyRefill {
            dispense: new.id.clone(),
            previous_dispense: prev.id.clone(),
            previous_days_supply: prev.days_supply,
            days_left: left,
        })
    }

    /// Alerts about one prescription in the history, looking from `from`
    /// (the days before it are past).
    fn prescription_alerts(&self, p: &Prescription, from: Day) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let Some((start, end)) = self.active(p) else {
            return alerts;
        };
        let from = from.max(start).min(end);
        if is_opioid(&p.atc)
            && let Some(peak) = self.peak_mme(from, end)
        {
            match peak.level {
                MmeLevel::AtLeast90 => alerts.push(Alert::Mme90(peak)),
                MmeLevel::AtLeast50 => alerts.push(Alert::Mme50(peak)),
                MmeLevel::Below50 => {}
            }
        }
        if is_opioid(&p.atc) || is_benzodiazepine(&p.atc) {
            alerts.extend(
                self.overlaps(from, end)
                    .into_iter()
                    .filter(|o| o.opioid == p.id || o.benzodiazepine == p.id)
                    .map(Alert::OpioidBenzodiazepineOverlap),
            );
        }
        alerts
    }

    /// The alerts a new prescription raises, as if it were added: peak MME
    /// over its days, overlaps with it, and an episode around its start.
    /// The history is not changed.
    pub fn alerts_for_prescription(&self, new: &Prescription) -> Result<Vec<Alert>, RecordError> {
        let mut with = self.clone();
        with.add_prescription(new.clone())?;
        let mut alerts = with.prescription_alerts(new, new.start);
        if is_opioid(&new.atc) {
            alerts.extend(
                with.episode_containing(new.start)
                    .map(Alert::MultipleProviderEpisode),
            );
        }
        Ok(alerts)
    }

    /// The alerts a new dispense raises, as if it were added: those of its
    /// prescription from the dispense date on, an episode around its date,
    /// and an early refill. The history is not changed.
    pub fn alerts_for_dispense(&self, new: &Dispense) -> Result<Vec<Alert>, RecordError> {
        let mut with = self.clone();
        with.add_dispense(new.clone())?;
        let p = with
            .prescriptions
            .get(&new.prescription)
            .ok_or_else(|| RecordError::UnknownPrescription(new.prescription.clone()))?;
        let mut alerts = with.prescription_alerts(p, new.date);
        if is_opioid(&p.atc) {
            alerts.extend(
                with.episode_containing(new.date)
                    .map(Alert::MultipleProviderEpisode),
            );
            alerts.extend(with.early_refill(&new.id).map(Alert::EarlyRefill));
        }
        Ok(alerts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every expected value below is worked by hand in the comment beside it
    // from the CDC 2022 table; none is computed by the code under test.

    fn day(s: &str) -> Day {
        Day::parse(s).expect("test date")
    }

    fn rx(
        id: &str,
        prescriber: &str,
        atc: &str,
        dose: DailyDose,
        start: &str,
        end: &str,
    ) -> Prescription {
        let route = match dose {
            DailyDose::UgPerHour(_) => Route::Transdermal,
            DailyDose::MgPerDay(_) => Route::Oral,
        };
        Prescription {
            id: id.into(),
            patient: "pat".into(),
            prescriber: prescriber.into(),
            atc: atc.into(),
            route,
            dose,
            start: day(start),
            end: day(end),
        }
    }

    fn oral(atc: &str, mg_per_day: f64) -> Prescription {
        rx(
            "p",
            "dr",
            atc,
            DailyDose::MgPerDay(mg_per_day),
            "2026-03-01",
            "2026-03-30",
        )
    }

    fn dispense(
        id: &str,
        pharmacy: &str,
        prescription: &str,
        date: &str,
        days_supply: u32,
    ) -> Dispense {
        Dispense {
            id: id.into(),
            patient: "pat".into(),
            pharmacy: pharmacy.into(),
            prescription: prescription.into(),
            date: day(date),
            quantity: 30.0,
            days_supply,
        }
    }

    fn history(prescriptions: Vec<Prescription>, dispenses: Vec<Dispense>) -> PatientHistory {
        let mut h = PatientHistory::new("pat");
        for p in prescriptions {
            h.add_prescription(p).expect("test prescription");
        }
        for d in dispenses {
            h.add_dispense(d).expect("test dispense");
        }
        h
    }

    fn codes(alerts: &[Alert]) -> Vec<&'static str> {
        alerts.iter().map(Alert::code).collect()
    }

    #[test]
    fn cdc_2022_table_factors_are_pinned() {
        // The table, row by row (mg/day, fentanyl mcg/hr).
        let table = [
            (Substance::Codeine, Some(0.15)),
            (Substance::Fentanyl, Some(2.4)),
            (Substance::Hydrocodone, Some(1.0)),
            (Substance::Hydromorphone, Some(5.0)),
            (Substance::Methadone, Some(4.7)),
            (Substance::Morphine, Some(1.0)),
            (Substance::Oxycodone, Some(1.5)),
            (Substance::Oxymorphone, Some(3.0)),
            (Substance::Tapentadol, Some(0.4)),
            (Substance::Tramadol, Some(0.2)),
            (Substance::Buprenorphine, None),
        ];
        for (substance, factor) in table {
            assert_eq!(substance.cdc_2022_factor(), factor, "{substance:?}");
        }
    }

    #[test]
    fn atc_codes_name_their_substances_and_route_selects_the_factor() {
        assert_eq!(mme_factor("N02AA01", Route::Oral), Some(1.0)); // morphine
        assert_eq!(mme_factor("N02AA03", Route::Oral), Some(5.0)); // hydromorphone
        assert_eq!(mme_factor("N02AA05", Route::Oral), Some(1.5)); // oxycodone
        assert_eq!(mme_factor("N02AJ17", Route::Oral), Some(1.5)); // oxycodone and paracetamol
        assert_eq!(mme_factor("N02AA11", Route::Oral), Some(3.0)); // oxymorphone
        assert_eq!(mme_factor("R05DA04", Route::Oral), Some(0.15)); // codeine
        assert_eq!(mme_factor("N02AJ06", Route::Oral), Some(0.15)); // codeine and paracetamol
        assert_eq!(mme_factor("R05DA03", Route::Oral), Some(1.0)); // hydrocodone
        assert_eq!(mme_factor("N07BC02", Route::Oral), Some(4.7)); // methadone
        assert_eq!(mme_factor("N02AX02", Route::Oral), Some(0.2)); // tramadol
        assert_eq!(mme_factor("N02AX06", Route::Oral), Some(0.4)); // tapentadol
        assert_eq!(mme_factor("N02AB03", Route::Transdermal), Some(2.4)); // fentanyl patch
        // The table has no factor for fentanyl by mouth, for morphine
        // through the skin, for buprenorphine, or for a non-opioid.
        assert_eq!(mme_factor("N02AB03", Route::Oral), None);
        assert_eq!(mme_factor("N02AA01", Route::Transdermal), None);
        assert_eq!(mme_factor("N02AA01", Route::Other), None);
        assert_eq!(mme_factor("N02AE01", Route::Oral), None);
        assert_eq!(mme_factor("N05BA01", Route::Oral), None);
    }

    #[test]
    fn cdc_table_footnote_examples_give_the_guideline_answers() {
        // Footnote: hydrocodone 5 mg four times a day = 20 mg/day = 20 MME.
        let mg = daily_dose_mg(5.0, "mg", 4, 1.0, "d").expect("dose");
        assert_eq!(mg, 20.0);
        assert_eq!(
            Substance::Hydrocodone.daily_mme(Route::Oral, DailyDose::MgPerDay(mg)),
            Some(20.0)
        );
        // Footnote: oxycodone ER 10 mg twice a day = 20 mg/day = 30 MME.
        let mg = daily_dose_mg(10.0, "mg", 2, 1.0, "d").expect("dose");
        assert_eq!(mg, 20.0);
        assert_eq!(
            Substance::Oxycodone.daily_mme(Route::Oral, DailyDose::MgPerDay(mg)),
            Some(30.0)
        );
    }

    #[test]
    fn oxycodone_10mg_every_6h_is_60_mme_at_least_50() {
        // 10 mg every 6 h = 10 × 24/6 = 40 mg/day; × 1.5 = 60 MME/day.
        let mg = daily_dose_mg(10.0, "mg", 1, 6.0, "h").expect("dose");
        assert_eq!(mg, 40.0);
        let h = history(vec![oral("N02AA05", mg)], vec![]);
        let m = h.daily_mme(day("2026-03-05"));
        assert_eq!(m.mme, 60.0);
        assert_eq!(m.level, MmeLevel::AtLeast50);
    }

    #[test]
    fn oxycodone_and_morphine_on_the_same_day_add_up_to_120_mme_at_least_90() {
        // Oxycodone 40 mg/day × 1.5 = 60; morphine 30 mg twice daily =
        // 60 mg/day × 1 = 60; total 120 MME/day.
        let morphine_mg = daily_dose_mg(30.0, "mg", 2, 1.0, "d").expect("dose");
        assert_eq!(morphine_mg, 60.0);
        let h = history(
            vec![
                rx(
                    "oxy",
                    "dr1",
                    "N02AA05",
                    DailyDose::MgPerDay(40.0),
                    "2026-03-01",
                    "2026-03-30",
                ),
                rx(
                    "mor",
                    "dr2",
                    "N02AA01",
                    DailyDose::MgPerDay(morphine_mg),
                    "2026-03-10",
                    "2026-03-20",
                ),
            ],
            vec![],
        );
        let both = h.daily_mme(day("2026-03-10"));
        assert_eq!(both.mme, 120.0);
        assert_eq!(both.level, MmeLevel::AtLeast90);
        // Before morphine starts only oxycodone counts: 60.
        assert_eq!(h.daily_mme(day("2026-03-09")).mme, 60.0);
    }

    #[test]
    fn fentanyl_patch_25ug_per_hour_is_60_mme() {
        // 25 mcg/hr × 2.4 = 60 MME/day, whatever the patch's change interval.
        let rate = patch_rate_ug_per_hour(25.0, "ug/h").expect("rate");
        let h = history(
            vec![rx(
                "fen",
                "dr",
                "N02AB03",
                DailyDose::UgPerHour(rate),
                "2026-03-01",
                "2026-03-30",
            )],
            vec![],
        );
        let m = h.daily_mme(day("2026-03-01"));
        assert_eq!(m.mme, 60.0);
        assert_eq!(m.level, MmeLevel::AtLeast50);
        assert!(m.unconverted.is_empty());
    }

    #[test]
    fn methadone_10mg_three_times_daily_is_141_mme() {
        // 10 mg × 3 = 30 mg/day; × 4.7 = 141 MME/day (one factor in 2022,
        // not the 2016 dose tiers).
        let mg = daily_dose_mg(10.0, "mg", 3, 1.0, "d").expect("dose");
        let h = history(vec![oral("N07BC02", mg)], vec![]);
        let m = h.daily_mme(day("2026-03-01"));
        assert_eq!(m.mme, 141.0);
        assert_eq!(m.level, MmeLevel::AtLeast90);
    }

    #[test]
    fn tramadol_50mg_four_times_daily_is_40_mme_below_50() {
        // 50 mg × 4 = 200 mg/day; × 0.2 = 40 MME/day.
        let mg = daily_dose_mg(50.0, "mg", 4, 1.0, "d").expect("dose");
        let h = history(vec![oral("N02AX02", mg)], vec![]);
        let m = h.daily_mme(day("2026-03-01"));
        assert_eq!(m.mme, 40.0);
        assert_eq!(m.level, MmeLevel::Below50);
    }

    #[test]
    fn exactly_50_mme_is_at_least_50_and_49_is_below() {
        // Morphine 50 mg/day × 1 = 50; hydromorphone 10 mg/day × 5 = 50;
        // tramadol 250 mg/day × 0.2 = 50; morphine 49 mg/day = 49.
        for (atc, mg) in [("N02AA01", 50.0), ("N02AA03", 10.0), ("N02AX02", 250.0)] {
            let m = history(vec![oral(atc, mg)], vec![]).daily_mme(day("2026-03-01"));
            assert_eq!((m.mme, m.level), (50.0, MmeLevel::AtLeast50), "{atc}");
        }
        let m = history(vec![oral("N02AA01", 49.0)], vec![]).daily_mme(day("2026-03-01"));
        assert_eq!((m.mme, m.level), (49.0, MmeLevel::Below50));
    }

    #[test]
    fn exactly_90_mme_is_at_least_90_and_89_is_at_least_50() {
        // Oxycodone 60 mg/day × 1.5 = 90; codeine 600 mg/day × 0.15 = 90
        // (0.15 has no exact binary form, so this pins the rounding);
        // morphine 89 mg/day = 89.
        for (atc, mg) in [("N02AA05", 60.0), ("R05DA04", 600.0)] {
            let m = history(vec![oral(atc, mg)], vec![]).daily_mme(day("2026-03-01"));
            assert_eq!((m.mme, m.level), (90.0, MmeLevel::AtLeast90), "{atc}");
        }
        let m = history(vec![oral("N02AA01", 89.0)], vec![]).daily_mme(day("2026-03-01"));
        assert_eq!((m.mme, m.level), (89.0, MmeLevel::AtLeast50));
    }

    #[test]
    fn daily_dose_converts_ucum_units_and_fixed_periods() {
        // 500 ug every 12 h = 0.5 mg × 2 = 1 mg/day.
        assert_eq!(daily_dose_mg(500.0, "ug", 1, 12.0, "h"), Ok(1.0));
        // 70 mg once a week = 10 mg/day.
        assert_eq!(daily_dose_mg(70.0, "mg", 1, 1.0, "wk"), Ok(10.0));
        // 5 mg every 240 min = every 4 h = 30 mg/day.
        assert_eq!(daily_dose_mg(5.0, "mg", 1, 240.0, "min"), Ok(30.0));
        // 0.01 g twice a day = 20 mg/day.
        assert_eq!(daily_dose_mg(0.01, "g", 2, 1.0, "d"), Ok(20.0));
        assert_eq!(patch_rate_ug_per_hour(12.0, "mcg/h"), Ok(12.0));
    }

    #[test]
    fn unknown_units_and_impossible_numbers_are_typed_errors() {
        assert_eq!(
            daily_dose_mg(5.0, "mL", 1, 1.0, "d"),
            Err(DoseError::UnknownDoseUnit("mL".into()))
        );
        assert_eq!(
            daily_dose_mg(5.0, "mg", 1, 1.0, "mo"),
            Err(DoseError::UnknownPeriodUnit("mo".into()))
        );
        assert_eq!(
            daily_dose_mg(5.0, "mg", 0, 1.0, "d"),
            Err(DoseError::ZeroFrequency)
        );
        assert_eq!(
            daily_dose_mg(f64::NAN, "mg", 1, 1.0, "d"),
            Err(DoseError::NotPositive("dose"))
        );
        assert_eq!(
            daily_dose_mg(5.0, "mg", 1, 0.0, "h"),
            Err(DoseError::NotPositive("period"))
        );
        assert_eq!(
            daily_dose_mg(-5.0, "mg", 1, 1.0, "d"),
            Err(DoseError::NotPositive("dose"))
        );
        assert_eq!(
            patch_rate_ug_per_hour(25.0, "mg"),
            Err(DoseError::UnknownRateUnit("mg".into()))
        );
    }

    #[test]
    fn records_that_the_rules_cannot_trust_are_refused() {
        let mut h = PatientHistory::new("pat");
        let mut bad = oral("N02AA5", 10.0);
        assert_eq!(
            h.add_prescription(bad.clone()),
            Err(RecordError::BadAtc("N02AA5".into()))
        );
        bad.atc = "N02AA05".into();
        bad.end = day("2026-02-28");
        assert_eq!(
            h.add_prescription(bad.clone()),
            Err(RecordError::EndsBeforeStart("p".into()))
        );
        bad.end = day("2026-03-30");
        bad.dose = DailyDose::MgPerDay(f64::INFINITY);
        assert!(matches!(
            h.add_prescription(bad.clone()),
            Err(RecordError::BadDose(..))
        ));
        bad.dose = DailyDose::MgPerDay(10.0);
        bad.patient = "other".into();
        assert_eq!(
            h.add_prescription(bad.clone()),
            Err(RecordError::OtherPatient { id: "p".into() })
        );
        bad.patient = "pat".into();
        assert_eq!(h.add_prescription(bad.clone()), Ok(()));
        assert_eq!(
            h.add_prescription(bad),
            Err(RecordError::Duplicate("p".into()))
        );
        assert_eq!(
            h.add_dispense(dispense("d", "ph", "nope", "2026-03-01", 10)),
            Err(RecordError::UnknownPrescription("nope".into()))
        );
        assert_eq!(
            h.add_dispense(dispense("d", "ph", "p", "2026-03-01", 0)),
            Err(RecordError::ZeroSupply)
        );
        assert_eq!(
            Day::parse("2026-02-30"),
            Err(RecordError::BadDate("2026-02-30".into()))
        );
        assert_eq!(
            day("2026-03-01").end_of_supply(0),
            Err(RecordError::ZeroSupply)
        );
    }

    #[test]
    fn day_round_trips_its_text_and_supply_ends_inclusive() {
        let d = day("2024-02-28");
        assert_eq!(d.to_string(), "2024-02-28");
        // 2024 is a leap year: 28 Feb + 1 = 29 Feb.
        assert_eq!(d.add_days(1).to_string(), "2024-02-29");
        // A 30-day supply from 1 March covers 1..=30 March.
        assert_eq!(day("2026-03-01").end_of_supply(30), Ok(day("2026-03-30")));
        assert_eq!(day("2026-03-30").days_since(day("2026-03-01")), 29);
        assert_eq!(Day::from_days_since_epoch(0).to_string(), "1970-01-01");
    }

    #[test]
    fn prescription_counts_only_on_its_active_days_inclusive() {
        // Morphine 60 mg/day from 1 to 30 March.
        let h = history(vec![oral("N02AA01", 60.0)], vec![]);
        assert_eq!(h.daily_mme(day("2026-02-28")).mme, 0.0);
        assert_eq!(h.daily_mme(day("2026-03-01")).mme, 60.0);
        assert_eq!(h.daily_mme(day("2026-03-30")).mme, 60.0);
        assert_eq!(h.daily_mme(day("2026-03-31")).mme, 0.0);
    }

    #[test]
    fn cancelled_prescription_stops_counting_on_the_cancellation_day() {
        let mut h = history(vec![oral("N02AA01", 60.0)], vec![]);
        h.cancel_prescription("p", day("2026-03-10"))
            .expect("cancel");
        assert_eq!(h.daily_mme(day("2026-03-09")).mme, 60.0);
        assert_eq!(h.daily_mme(day("2026-03-10")).mme, 0.0);
        assert_eq!(
            h.cancel_prescription("nope", day("2026-03-10")),
            Err(RecordError::UnknownPrescription("nope".into()))
        );
    }

    #[test]
    fn opioid_without_a_factor_makes_the_total_a_lower_bound() {
        // Buprenorphine (no factor) + morphine 20 mg/day = at least 20.
        let h = history(
            vec![
                rx(
                    "bup",
                    "dr",
                    "N02AE01",
                    DailyDose::MgPerDay(1.2),
                    "2026-03-01",
                    "2026-03-30",
                ),
                rx(
                    "mor",
                    "dr",
                    "N02AA01",
                    DailyDose::MgPerDay(20.0),
                    "2026-03-01",
                    "2026-03-30",
                ),
                // A benzodiazepine is not an opioid and is neither summed nor listed.
                rx(
                    "dia",
                    "dr",
                    "N05BA01",
                    DailyDose::MgPerDay(10.0),
                    "2026-03-01",
                    "2026-03-30",
                ),
            ],
            vec![],
        );
        let m = h.daily_mme(day("2026-03-01"));
        assert_eq!(m.mme, 20.0);
        assert_eq!(m.unconverted, vec!["bup".to_string()]);
    }

    #[test]
    fn opioid_and_benzodiazepine_sharing_one_day_overlap() {
        // Oxycodone 1..=10 March, diazepam 10..=20 March: 10 March is shared.
        let h = history(
            vec![
                rx(
                    "oxy",
                    "dr",
                    "N02AA05",
                    DailyDose::MgPerDay(10.0),
                    "2026-03-01",
                    "2026-03-10",
                ),
                rx(
                    "dia",
                    "dr",
                    "N05BA01",
                    DailyDose::MgPerDay(5.0),
                    "2026-03-10",
                    "2026-03-20",
                ),
            ],
            vec![],
        );
        let overlap = Overlap {
            opioid: "oxy".into(),
            benzodiazepine: "dia".into(),
            first_day: day("2026-03-10"),
            last_day: day("2026-03-10"),
        };
        assert_eq!(
            h.overlaps(day("2026-01-01"), day("2026-12-31")),
            vec![overlap]
        );
    }

    #[test]
    fn adjacent_opioid_and_benzodiazepine_do_not_overlap() {
        // Oxycodone 1..=10 March, hypnotic 11..=20 March: no shared day.
        let h = history(
            vec![
                rx(
                    "oxy",
                    "dr",
                    "N02AA05",
                    DailyDose::MgPerDay(10.0),
                    "2026-03-01",
                    "2026-03-10",
                ),
                rx(
                    "hyp",
                    "dr",
                    "N05CD02",
                    DailyDose::MgPerDay(5.0),
                    "2026-03-11",
                    "2026-03-20",
                ),
            ],
            vec![],
        );
        assert!(h.overlaps(day("2026-01-01"), day("2026-12-31")).is_empty());
    }

    #[test]
    fn methadone_counts_as_an_opioid_for_overlap() {
        // Methadone is filed under N07BC, outside N02A, but is in the MME table.
        let h = history(
            vec![
                rx(
                    "met",
                    "dr",
                    "N07BC02",
                    DailyDose::MgPerDay(30.0),
                    "2026-03-01",
                    "2026-03-10",
                ),
                rx(
                    "hyp",
                    "dr",
                    "N05CD02",
                    DailyDose::MgPerDay(5.0),
                    "2026-03-05",
                    "2026-03-20",
                ),
            ],
            vec![],
        );
        let o = h.overlaps(day("2026-01-01"), day("2026-12-31"));
        assert_eq!(o.len(), 1);
        assert_eq!(
            (o[0].first_day, o[0].last_day),
            (day("2026-03-05"), day("2026-03-10"))
        );
    }

    /// Four oxycodone prescriptions by four prescribers, each dispensed at
    /// its own pharmacy on its start day: days 0, 30, 60 and `last` after
    /// 1 January 2026.
    fn four_providers(last: i64) -> PatientHistory {
        let d0 = day("2026-01-01");
        let mut h = PatientHistory::new("pat");
        for (i, offset) in [0, 30, 60, last].into_iter().enumerate() {
            let start = d0.add_days(offset);
            let p = Prescription {
                id: format!("p{i}"),
                patient: "pat".into(),
                prescriber: format!("dr{i}"),
                atc: "N02AA05".into(),
                route: Route::Oral,
                dose: DailyDose::MgPerDay(10.0),
                start,
                end: start.add_days(6),
            };
            h.add_prescription(p).expect("prescription");
            let d = Dispense {
                id: format!("d{i}"),
                patient: "pat".into(),
                pharmacy: format!("ph{i}"),
                prescription: format!("p{i}"),
                date: start,
                quantity: 7.0,
                days_supply: 7,
            };
            h.add_dispense(d).expect("dispense");
        }
        h
    }

    #[test]
    fn four_prescribers_and_four_pharmacies_on_days_0_and_89_are_an_episode() {
        // Days 0 and 89 lie in the one 90-day window [day 0, day 89].
        let h = four_providers(89);
        let d0 = day("2026-01-01");
        let episode = Episode {
            window_start: d0,
            window_end: d0.add_days(89),
            prescribers: 4,
            pharmacies: 4,
        };
        assert_eq!(h.episode_ending(d0.add_days(89)), Some(episode.clone()));
        assert_eq!(h.episode_containing(d0.add_days(89)), Some(episode));
    }

    #[test]
    fn fourth_provider_on_day_90_is_outside_the_window() {
        // Days 0 and 90 are 91 days apart counting both: no window holds both.
        let h = four_providers(90);
        let d0 = day("2026-01-01");
        for k in 0..=180 {
            assert_eq!(
                h.episode_ending(d0.add_days(k)),
                None,
                "window ending day {k}"
            );
        }
    }

    #[test]
    fn four_prescribers_but_three_pharmacies_are_not_an_episode() {
        let mut h = four_providers(89);
        // Move the last dispense to the first pharmacy: 3 distinct pharmacies.
        let mut d3 = h.dispenses.remove("d3").expect("d3");
        d3.pharmacy = "ph0".into();
        h.add_dispense(d3).expect("dispense");
        assert_eq!(h.episode_ending(day("2026-01-01").add_days(89)), None);
    }

    #[test]
    fn fourth_prescriber_sees_the_episode_when_prescribing() {
        // Before p3: prescribers dr0..dr2 (3) and pharmacies ph0..ph3 (4,
        // ph3 having dispensed p2 again). p3 by dr3 on day 89 makes 4
        // prescribers within [day 0, day 89].
        let full = four_providers(89);
        let mut h = PatientHistory::new("pat");
        for p in full.prescriptions().filter(|p| p.id != "p3") {
            h.add_prescription(p.clone()).expect("prescription");
        }
        for d in full.dispenses().filter(|d| d.id != "d3") {
            h.add_dispense(d.clone()).expect("dispense");
        }
        // A fourth pharmacy dispensed p2 again on day 61.
        h.add_dispense(dispense("d2b", "ph3", "p2", "2026-03-03", 7))
            .expect("dispense");
        let p3 = full.prescriptions.get("p3").expect("p3").clone();
        let alerts = h.alerts_for_prescription(&p3).expect("alerts");
        assert_eq!(codes(&alerts), vec!["multiple_provider_episode"]);
        // The preview does not change the history.
        assert!(!h.prescriptions.contains_key("p3"));
    }

    fn refill_history(previous_supply: u32) -> PatientHistory {
        history(
            vec![
                rx(
                    "p1",
                    "dr1",
                    "N02AA05",
                    DailyDose::MgPerDay(10.0),
                    "2026-01-01",
                    "2026-12-31",
                ),
                // Same substance from another prescriber, as a combination code.
                rx(
                    "p2",
                    "dr2",
                    "N02AJ17",
                    DailyDose::MgPerDay(10.0),
                    "2026-01-01",
                    "2026-12-31",
                ),
                rx(
                    "p3",
                    "dr3",
                    "N02AA01",
                    DailyDose::MgPerDay(10.0),
                    "2026-01-01",
                    "2026-12-31",
                ),
            ],
            vec![dispense("d1", "ph1", "p1", "2026-01-01", previous_supply)],
        )
    }

    #[test]
    fn refill_with_exactly_25_percent_left_is_not_early() {
        // 100-day supply on day 0; on day 75, 100 − 75 = 25 left: 25/100 = 0.25, not > 0.25.
        let h = refill_history(100);
        let alerts = h
            .alerts_for_dispense(&dispense("d2", "ph1", "p1", "2026-03-17", 30))
            .expect("alerts");
        assert_eq!(day("2026-03-17").days_since(day("2026-01-01")), 75);
        assert!(!codes(&alerts).contains(&"early_refill"));
    }

    #[test]
    fn refill_with_26_percent_left_is_early() {
        // 100-day supply on day 0; on day 74, 100 − 74 = 26 left: 26/100 = 0.26 > 0.25.
        let h = refill_history(100);
        let alerts = h
            .alerts_for_dispense(&dispense("d2", "ph1", "p1", "2026-03-16", 30))
            .expect("alerts");
        let expected = Alert::EarlyRefill(EarlyRefill {
            dispense: "d2".into(),
            previous_dispense: "d1".into(),
            previous_days_supply: 100,
            days_left: 26,
        });
        assert!(alerts.contains(&expected), "{alerts:?}");
    }

    #[test]
    fn early_refill_follows_the_substance_across_prescriptions() {
        // 30-day supply on 1 Jan; on 23 Jan (day 22) 8 are left: 8/30 = 0.27 > 0.25.
        let h = refill_history(30);
        // Oxycodone again, under another prescription and code: early.
        let same = h
            .alerts_for_dispense(&dispense("d2", "ph2", "p2", "2026-01-23", 30))
            .expect("alerts");
        assert!(codes(&same).contains(&"early_refill"));
        // Morphine is another substance: not a refill of the oxycodone.
        let other = h
            .alerts_for_dispense(&dispense("d2", "ph2", "p3", "2026-01-23", 30))
            .expect("alerts");
        assert!(!codes(&other).contains(&"early_refill"));
        // On 24 Jan (day 23) 7 are left: 7/30 = 0.23, not early.
        let later = h
            .alerts_for_dispense(&dispense("d2", "ph2", "p2", "2026-01-24", 30))
            .expect("alerts");
        assert!(!codes(&later).contains(&"early_refill"));
    }

    #[test]
    fn new_prescription_reaching_90_mme_with_a_benzodiazepine_raises_both_alerts() {
        // Existing: morphine 60 mg/day (60 MME) and diazepam, all March.
        // New: oxycodone 20 mg/day × 1.5 = 30 MME from 15 March: 60 + 30 = 90.
        let h = history(
            vec![
                rx(
                    "mor",
                    "dr1",
                    "N02AA01",
                    DailyDose::MgPerDay(60.0),
                    "2026-03-01",
                    "2026-03-31",
                ),
                rx(
                    "dia",
                    "dr2",
                    "N05BA01",
                    DailyDose::MgPerDay(5.0),
                    "2026-03-01",
                    "2026-03-31",
                ),
            ],
            vec![],
        );
        let new = rx(
            "oxy",
            "dr3",
            "N02AA05",
            DailyDose::MgPerDay(20.0),
            "2026-03-15",
            "2026-04-15",
        );
        let alerts = h.alerts_for_prescription(&new).expect("alerts");
        let expected = vec![
            Alert::Mme90(DailyMme {
                day: day("2026-03-15"),
                mme: 90.0,
                level: MmeLevel::AtLeast90,
                unconverted: vec![],
            }),
            Alert::OpioidBenzodiazepineOverlap(Overlap {
                opioid: "oxy".into(),
                benzodiazepine: "dia".into(),
                first_day: day("2026-03-15"),
                last_day: day("2026-03-31"),
            }),
        ];
        assert_eq!(alerts, expected);
    }

    #[test]
    fn new_benzodiazepine_warns_of_the_overlap_but_not_of_mme() {
        // Morphine 60 mg/day = 60 MME is the opioid prescriber's alert, not
        // the benzodiazepine prescriber's.
        let h = history(
            vec![rx(
                "mor",
                "dr1",
                "N02AA01",
                DailyDose::MgPerDay(60.0),
                "2026-03-01",
                "2026-03-31",
            )],
            vec![],
        );
        let new = rx(
            "dia",
            "dr2",
            "N05BA01",
            DailyDose::MgPerDay(5.0),
            "2026-03-31",
            "2026-04-30",
        );
        let alerts = h.alerts_for_prescription(&new).expect("alerts");
        assert_eq!(codes(&alerts), vec!["opioid_benzodiazepine_overlap"]);
    }

    #[test]
    fn alerts_do_not_depend_on_the_order_records_arrive_in() {
        // The log may deliver records in any order; every node must agree.
        let h = four_providers(89);
        let mut reversed = PatientHistory::new("pat");
        for p in h.prescriptions().collect::<Vec<_>>().into_iter().rev() {
            reversed.add_prescription(p.clone()).expect("prescription");
        }
        for d in h.dispenses().collect::<Vec<_>>().into_iter().rev() {
            reversed.add_dispense(d.clone()).expect("dispense");
        }
        let new = dispense("d9", "ph9", "p3", "2026-03-31", 7);
        assert_eq!(
            h.alerts_for_dispense(&new).expect("alerts"),
            reversed.alerts_for_dispense(&new).expect("alerts")
        );
    }

    #[test]
    fn fourth_pharmacy_sees_the_episode_and_the_early_refill_when_dispensing() {
        // p0..p3 by dr0..dr3 start on days 0, 30, 60, 89; only ph0..ph2 have
        // dispensed. ph3 dispenses p3 on day 89 (31 March 2026): 4 pharmacies
        // in [day 0, day 89]. p2 was dispensed for 7 days on day 60; 89 − 60
        // = 29 days elapsed, 7 − 29 < 0 left: not early. Same day again: all
        // 7 days left, 7/7 > 0.25: early.
        let full = four_providers(89);
        let mut h = PatientHistory::new("pat");
        for p in full.prescriptions() {
            h.add_prescription(p.clone()).expect("prescription");
        }
        for d in full.dispenses().filter(|d| d.id != "d3") {
            h.add_dispense(d.clone()).expect("dispense");
        }
        let d3 = full.dispenses.get("d3").expect("d3").clone();
        assert_eq!(d3.date, day("2026-03-31"));
        let alerts = h.alerts_for_dispense(&d3).expect("alerts");
        assert_eq!(codes(&alerts), vec!["multiple_provider_episode"]);
        h.add_dispense(d3).expect("dispense");
        let again = dispense("d3b", "ph3", "p3", "2026-03-31", 7);
        let alerts = h.alerts_for_dispense(&again).expect("alerts");
        assert_eq!(
            codes(&alerts),
            vec!["multiple_provider_episode", "early_refill"]
        );
    }

    #[test]
    fn alerts_serialize_with_their_stable_codes() {
        let early = Alert::EarlyRefill(EarlyRefill {
            dispense: "d2".into(),
            previous_dispense: "d1".into(),
            previous_days_supply: 30,
            days_left: 8,
        });
        let json = serde_json::to_string(&early).expect("json");
        assert_eq!(
            json,
            r#"{"code":"early_refill","dispense":"d2","previous_dispense":"d1","previous_days_supply":30,"days_left":8}"#
        );
        let mme = Alert::Mme50(DailyMme {
            day: day("2026-03-01"),
            mme: 60.0,
            level: MmeLevel::AtLeast50,
            unconverted: vec![],
        });
        let json = serde_json::to_string(&mme).expect("json");
        assert_eq!(
            json,
            r#"{"code":"mme_50","day":"2026-03-01","mme":60.0,"level":"at_least_50","unconverted":[]}"#
        );
        let back: Alert = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, mme);
        let episode = Alert::MultipleProviderEpisode(Episode {
            window_start: day("2026-01-01"),
            window_end: day("2026-03-31"),
            prescribers: 4,
            pharmacies: 4,
        });
        let overlap = Alert::OpioidBenzodiazepineOverlap(Overlap {
            opioid: "o".into(),
            benzodiazepine: "b".into(),
            first_day: day("2026-03-01"),
            last_day: day("2026-03-01"),
        });
        let mme90 = Alert::Mme90(DailyMme {
            day: day("2026-03-01"),
            mme: 90.0,
            level: MmeLevel::AtLeast90,
            unconverted: vec![],
        });
        for alert in [early, mme, mme90, overlap, episode] {
            let v = serde_json::to_value(&alert).expect("json");
            assert_eq!(v["code"], alert.code());
        }
    }
}
