//! The PII guard of transaction admission.
//!
//! Every transaction payload is scanned before it is admitted; one finding
//! refuses it. The guard is a pure function of the JSON value (no locale, no
//! clock, no randomness), so every node and every verifier reaches the same
//! verdict. A finding names the field (an RFC 6901 JSON Pointer) and the kind
//! of identifier, never the identifier itself.
//!
//! # What is scanned
//!
//! Every string value and every object key is free text. Integer numbers are
//! checked as identifiers (floats never are). Objects are visited in their
//! map's iteration order, arrays by index, and the first finding is
//! returned. When an object key itself carries an identifier, the finding
//! points at the object holding the key, so the pointer never repeats the
//! identifier; every key that does appear in a pointer has been scanned.
//!
//! # Rules
//!
//! Free text is cut into *groups*: maximal runs of ASCII digits. A group is
//! judged by its digits alone, whatever precedes it (`A0641234567` holds the
//! group `0641234567`).
//!
//! * **JMBG**: a group of exactly 13 digits that passes
//!   [`is_valid_jmbg`], or two or more groups joined by a single space or a
//!   single dash whose 13 digits together pass it (`0101990 710008`). An
//!   integer of 13 digits, or of 12 (a leading zero lost), that passes it.
//! * **LBO**: 11 digits, in one group or in groups joined as for a JMBG,
//!   with an insurance keyword among the words within 40 characters before
//!   or after them (the window is widened to whole words), or anywhere under
//!   an object key holding such a keyword (the key of the field or of any
//!   ancestor). An integer of 11 digits under such a key. The keywords,
//!   matched case-insensitively (Unicode lowercase) on words: `lbo`/`лбо` as
//!   a whole word (so `elbow` is not one); words starting with `osiguran`,
//!   `осигуран`, `insurance`, `insured`, `zdravstven`, `здравствен`,
//!   `knjižic`, `knjizic`, `књижиц`, `healthcard`; and the pairs `health
//!   card`, `broj kartic…`, `број картиц…`. Words are runs of letters, split
//!   also at a lower-to-upper case change, so keys such as `insuranceNumber`
//!   or `broj_kartice` match.
//! * **E-mail**: `@` with at least one character of `[A-Za-z0-9._%+-]`
//!   before it, then a domain label of `[A-Za-z0-9-]` and one or more
//!   further dot-separated labels, one of which starts with two ASCII
//!   letters (`ana@kc.rs`, `x@mail.co.rs`). A bare `@` (`@ 5 mg`) is not one.
//! * **Phone**: groups may be chained through a separator of one or two
//!   characters: one of space, `-`, `.`, `/`, optionally with a parenthesis
//!   (`(` or `)`) before or after it, or one or two parentheses alone. A
//!   chain counts when, after some group, the running digit total is in
//!   range:
//!   - international, `+`: a group right after `+` (or `+(`) starts a chain
//!     that reaches 8–15 digits (`+381 64 123 4567`, `+1 (202) 555-0143`);
//!   - international, `00`: a group starting with `00` and a non-zero third
//!     digit, 3–5 digits long (`00` and a country code) or 10–17 digits on
//!     its own, whose chain reaches 8–15 digits after the `00`
//!     (`00381 64 1234567`);
//!   - Serbian national: a group starting with `0` whose second digit is
//!     `1`, `2`, `3` (landline area codes) or `6` (mobile), either 9–10
//!     digits on its own (`0641234567`) or 3–4 digits long (an area code
//!     with its leading zero: `011`, `064`, `0230`) and followed by groups
//!     of 2–7 digits until the total is 9 or 10 (`064/123-4567`,
//!     `011 3615 555`, `021 456 789`, `(011) 3615-555`).
//!
//!   The area-code group is required to be 3–4 digits (every Serbian area
//!   code with its zero is), which keeps dates out: `01.02.2026 10` starts
//!   with a 2-digit group. Dates (`2026-11-24`, `24.11.2026.`), times,
//!   blood pressures (`150/95`), decimals (`38.5`, `0.5 mg`), ICD codes
//!   (`J10.1`), doses (`2x500 mg`), ranges (`5-10`) and LOINC codes
//!   (`8867-4`) never start with a qualifying group or never reach the
//!   totals. Runs of digits glued to a longer run are not split: an 11-digit
//!   run is not a 10-digit phone number.
//! * **Malformed pseudonym**: a `patient` key whose value is a string that
//!   is not [`is_well_formed`], and a `reference` key whose string value
//!   starts with `Patient/` but is not `Patient/` and a well-formed
//!   pseudonym. A `patient` object is scanned like any other value.
//! * **Identifying field**: an object key that, lowercased and without `_`,
//!   `-` and spaces, is one of `name`, `given`, `family`, `firstname`,
//!   `lastname`, `surname`, `fullname`, `maidenname`, `ime`, `prezime`,
//!   `imeiprezime`, `jmbg`, `lbo`, `ssn`, `email`, `mail`, `phone`,
//!   `telephone`, `telecom`, `mobile`, `address`, `addr`, `birthdate`,
//!   `dateofbirth`, `datumrodjenja` (also `datumrođenja`), `identifier`,
//!   `passport`, `photo`, or the Cyrillic `име`, `презиме`, `имеипрезиме`,
//!   `јмбг`, `лбо`, `датумрођења`. It is refused whatever its value: callers
//!   strip such fields before submitting.
//!
//! Within one string the finding that starts first is reported. Text with
//! neither an ASCII digit nor an `@` is passed after one pass over its
//! bytes. A string that is exactly 64 lowercase hex digits (a public key or
//! a hash, as `participant.register` and `chosen_doctor` carry), or a
//! reference `Type/<64 hex>` to a ledger transaction (a dispense's
//! prescription), is not free text and is passed: one random key in a few hundred holds a run of
//! digits shaped like a phone number.

use std::fmt::Write as _;
use std::ops::RangeInclusive;

use serde_json::{Number, Value};

use crate::ids::is_valid_jmbg;
use crate::pseudonym::is_well_formed;

/// Digits in a JMBG.
const JMBG_LEN: usize = 13;
/// Digits in an LBO.
const LBO_LEN: usize = 11;
/// Characters searched for an insurance keyword on each side of an LBO.
const KEYWORD_WINDOW: usize = 40;

/// Object keys refused whatever their value, in normalized form (lowercase,
/// without `_`, `-` and spaces).
const IDENTIFYING_KEYS: &[&str] = &[
    "name",
    "given",
    "family",
    "firstname",
    "lastname",
    "surname",
    "fullname",
    "maidenname",
    "ime",
    "prezime",
    "imeiprezime",
    "jmbg",
    "lbo",
    "ssn",
    "email",
    "mail",
    "phone",
    "telephone",
    "telecom",
    "mobile",
    "address",
    "addr",
    "birthdate",
    "dateofbirth",
    "datumrodjenja",
    "datumrođenja",
    "identifier",
    "passport",
    "photo",
    "име",
    "презиме",
    "имеипрезиме",
    "јмбг",
    "лбо",
    "датумрођења",
];

/// Word prefixes that make a word an insurance keyword.
const INSURANCE_PREFIXES: &[&str] = &[
    "osiguran",
    "осигуран",
    "insurance",
    "insured",
    "zdravstven",
    "здравствен",
    "knjižic",
    "knjizic",
    "књижиц",
    "healthcard",
    "brojkartic",
    "бројкартиц",
];

/// Word pairs (the first word whole, the second a prefix) that make an
/// insurance keyword.
const INSURANCE_PAIRS: &[(&str, &str)] =
    &[("health", "card"), ("broj", "kartic"), ("број", "картиц")];

/// Whole words that are insurance keywords.
const INSURANCE_WORDS: &[&str] = &["lbo", "лбо"];

/// Kind of identifier found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PiiKind {
    /// A valid JMBG (personal identity number), in text or as an integer.
    Jmbg,
    /// An 11-digit number next to an insurance keyword or under an
    /// insurance field: an LBO (health insurance number).
    Lbo,
    /// An e-mail address.
    Email,
    /// A telephone number, international or Serbian national.
    Phone,
    /// A `patient` field or a `Patient/` reference that is not a
    /// well-formed pseudonym.
    Pseudonym,
    /// An object key reserved for identifying data (`name`, `address`, ...).
    IdentifyingField,
    /// A business identifier whose system or type names a person: a
    /// national, insurance, patient or medical-record number.
    PersonIdentifier,
}

impl PiiKind {
    /// A stable machine-readable name, for logs and API error codes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jmbg => "jmbg",
            Self::Lbo => "lbo",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Pseudonym => "malformed_pseudonym",
            Self::IdentifyingField => "identifying_field",
            Self::PersonIdentifier => "person_identifier",
        }
    }

    /// A human-readable description, as a noun phrase.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Jmbg => "a JMBG (personal identity number)",
            Self::Lbo => "an LBO (health insurance number)",
            Self::Email => "an e-mail address",
            Self::Phone => "a telephone number",
            Self::Pseudonym => "a patient reference that is not a well-formed pseudonym",
            Self::IdentifyingField => "a field name reserved for identifying data",
            Self::PersonIdentifier => {
                "an identifier of a person (national, insurance, patient or medical-record number)"
            }
        }
    }
}

/// Where and what; never the value itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} at {}", .kind.describe(), location(.field))]
pub struct PiiFinding {
    /// RFC 6901 JSON Pointer of the field, e.g. `/anamnesis` or
    /// `/component/0/valueString`; empty for the root. For an identifier in
    /// an object key, the pointer of the object holding that key.
    pub field: String,
    /// What was found.
    pub kind: PiiKind,
}

/// How a finding's pointer reads in its message.
fn location(pointer: &str) -> String {
    if pointer.is_empty() {
        "the payload root".to_owned()
    } else {
        format!("`{pointer}`")
    }
}

/// Scans a payload; the first finding in document order refuses it.
pub fn scan(value: &Value) -> Result<(), PiiFinding> {
    let Some(hit) = walk(value, false) else {
        return Ok(());
    };
    let mut field = String::new();
    for token in hit.path.iter().rev() {
        match token {
            Token::Key(key) => push_token(&mut field, key),
            // Writing to a String cannot fail.
            Token::Index(i) => {
                let _ = write!(field, "/{i}");
            }
        }
    }
    Err(PiiFinding {
        field,
        kind: hit.kind,
    })
}

/// Words of an identifier system that make it a person's identifier:
/// whole words, lowercased, split at every character that is not a letter
/// or digit (`urn:oid:…:jmbg`, `https://kc.rs/mrn`).
const PERSON_SYSTEM_WORDS: &[&str] = &[
    "jmbg", "lbo", "mrn", "ssn", "mbi", "npi", "pid", "ehic", "jmb", "umcn", "oib", "egn",
];

/// Word prefixes of an identifier system that make it a person's
/// identifier.
const PERSON_SYSTEM_PREFIXES: &[&str] = &[
    "patient",
    "person",
    "passport",
    "national",
    "citizen",
    "insur",
    "osiguran",
    "medicare",
    "medicaid",
    "driver",
    "licen",
    "birth",
    "socialsec",
    "medicalrecord",
    "healthcard",
    "zdravstven",
    "knjizic",
];

/// Identifier type codes (HL7 v2 table 0203) of persons' identifiers.
const PERSON_TYPE_CODES: &[&str] = &[
    "MR", "MRT", "SS", "NI", "NH", "NIIP", "NNxxx", "PPN", "DL", "JHN", "PT", "PI", "PN", "MC",
    "MA", "SN", "HC", "CZ", "BCT", "BC", "EN", "PRN", "LN",
];

/// Whether an identifier system names persons' identifiers.
fn is_person_system(system: &str) -> bool {
    let lower = system.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let joined: String = words.concat();
    words.iter().any(|w| {
        PERSON_SYSTEM_WORDS.contains(w) || PERSON_SYSTEM_PREFIXES.iter().any(|p| w.starts_with(p))
    }) || ["medicalrecord", "socialsecurity", "healthcard", "ussn"]
        .iter()
        .any(|p| joined.contains(p))
}

/// Whether `value` is shaped like an LBO or a JMBG: 11 or 13 digits,
/// perhaps in groups.
fn national_shape(value: &str) -> Option<PiiKind> {
    if !value
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        return None;
    }
    match value.chars().filter(char::is_ascii_digit).count() {
        LBO_LEN => Some(PiiKind::Lbo),
        JMBG_LEN => Some(PiiKind::Jmbg),
        _ => None,
    }
}

/// The PII finding of one business identifier (`{system, value, use,
/// type}`), with its pointer below the identifier.
fn business_identifier_hit(id: &Value) -> Option<(PiiKind, String)> {
    let Value::Object(map) = id else {
        return walk(id, false).map(|h| (h.kind, String::new()));
    };
    let system = map.get("system").and_then(Value::as_str).unwrap_or("");
    if is_person_system(system) {
        return Some((PiiKind::PersonIdentifier, "/system".into()));
    }
    if let Some(value) = map.get("value").and_then(Value::as_str)
        && let Some(kind) = national_shape(value).or_else(|| scan_str(value, false))
    {
        return Some((kind, "/value".into()));
    }
    let codes = map
        .get("type")
        .and_then(|t| t.get("coding"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for c in codes {
        if c.get("code")
            .and_then(Value::as_str)
            .is_some_and(|code| PERSON_TYPE_CODES.contains(&code))
        {
            return Some((PiiKind::PersonIdentifier, "/type".into()));
        }
    }
    for (k, v) in map {
        if k == "value" || k == "system" {
            continue;
        }
        let rest = Value::Object([(k.clone(), v.clone())].into_iter().collect());
        if let Err(f) = scan(&rest) {
            return Some((f.kind, f.field));
        }
    }
    None
}

/// [`scan`] for a FHIR clinical resource (Observation, Condition,
/// Immunization): as [`scan`], except that the resource's own top-level
/// `identifier` (its business identifiers, FHIR `Identifier`s) is allowed.
/// Each of them is refused when its system or type names a person's
/// identifier (national, insurance, patient or medical-record numbers:
/// [`PiiKind::PersonIdentifier`]), when its value is shaped like an LBO or
/// a JMBG (11 or 13 digits), or when its value or type holds what [`scan`]
/// refuses anywhere. `identifier` anywhere else (on a reference, in a
/// component) is refused as before.
pub fn scan_resource(value: &Value) -> Result<(), PiiFinding> {
    let Value::Object(map) = value else {
        return scan(value);
    };
    let Some(ids) = map.get("identifier") else {
        return scan(value);
    };
    let mut rest = map.clone();
    rest.remove("identifier");
    scan(&Value::Object(rest))?;
    let Value::Array(ids) = ids else {
        return Err(PiiFinding {
            field: "/identifier".into(),
            kind: PiiKind::IdentifyingField,
        });
    };
    for (i, id) in ids.iter().enumerate() {
        if let Some((kind, below)) = business_identifier_hit(id) {
            return Err(PiiFinding {
                field: format!("/identifier/{i}{below}"),
                kind,
            });
        }
    }
    Ok(())
}

/// [`scan`] over a payload's JSON bytes, applying the same rules as the
/// document is parsed, without building it: the admission path calls this
/// for every transaction. Objects are visited in the order of the bytes
/// (canonical payloads have sorted keys). Bytes that are not JSON are
/// refused as a finding at the root would be: the caller has parsed the
/// payload before, so this does not happen on the admission path.
pub fn scan_json(bytes: &[u8]) -> Result<(), PiiFinding> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let hit = Stream { insured: false }
        .deserialize(&mut de)
        .map_err(|_| PiiFinding {
            field: String::new(),
            kind: PiiKind::IdentifyingField,
        })?;
    let Some((kind, path)) = hit else {
        return Ok(());
    };
    let mut field = String::new();
    for token in path.iter().rev() {
        match token {
            OwnedToken::Key(key) => push_token(&mut field, key),
            OwnedToken::Index(i) => {
                let _ = write!(field, "/{i}");
            }
        }
    }
    Err(PiiFinding { field, kind })
}

fn number_hit(n: Number, insured: bool) -> StreamHit {
    scan_number(&n, insured).map(|k| (k, Vec::new()))
}

/// A step of a pointer, owned: keys of a stream do not outlive their visit.
enum OwnedToken {
    Key(String),
    Index(usize),
}

/// A finding of the stream and its pointer, innermost step first.
type StreamHit = Option<(PiiKind, Vec<OwnedToken>)>;

/// One value of the stream; `insured` means an insurance key is an ancestor.
#[derive(Clone, Copy)]
struct Stream {
    insured: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Stream {
    type Value = StreamHit;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<StreamHit, D::Error> {
        d.deserialize_any(self)
    }
}

/// What a value was, for the rule on `patient` and `reference` keys.
struct Visited {
    hit: StreamHit,
    /// The string, when the value was one and the key's rule needs it.
    text: Option<String>,
}

/// A value under a known key: also remembers a string for the key's rule.
struct Keyed<'k> {
    insured: bool,
    key: &'k str,
}

impl<'de> serde::de::DeserializeSeed<'de> for Keyed<'_> {
    type Value = Visited;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Visited, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Keyed<'_> {
    type Value = Visited;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Visited, E> {
        let wants = matches!(self.key, "patient" | "reference");
        Ok(Visited {
            hit: scan_str(v, self.insured).map(|k| (k, Vec::new())),
            text: wants.then(|| v.to_owned()),
        })
    }
    fn visit_bool<E>(self, _: bool) -> Result<Visited, E> {
        Ok(Visited {
            hit: None,
            text: None,
        })
    }
    fn visit_unit<E>(self) -> Result<Visited, E> {
        Ok(Visited {
            hit: None,
            text: None,
        })
    }
    fn visit_u64<E>(self, v: u64) -> Result<Visited, E> {
        Ok(Visited {
            hit: number_hit(Number::from(v), self.insured),
            text: None,
        })
    }
    fn visit_i64<E>(self, v: i64) -> Result<Visited, E> {
        Ok(Visited {
            hit: number_hit(Number::from(v), self.insured),
            text: None,
        })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Visited, E> {
        Ok(Visited {
            hit: None,
            text: None,
        })
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Visited, A::Error> {
        Ok(Visited {
            hit: Stream {
                insured: self.insured,
            }
            .visit_seq(seq)?,
            text: None,
        })
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Visited, A::Error> {
        Ok(Visited {
            hit: Stream {
                insured: self.insured,
            }
            .visit_map(map)?,
            text: None,
        })
    }
}

impl<'de> serde::de::Visitor<'de> for Stream {
    type Value = StreamHit;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StreamHit, E> {
        Ok(scan_str(v, self.insured).map(|k| (k, Vec::new())))
    }
    fn visit_bool<E>(self, _: bool) -> Result<StreamHit, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<StreamHit, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, v: u64) -> Result<StreamHit, E> {
        Ok(number_hit(Number::from(v), self.insured))
    }
    fn visit_i64<E>(self, v: i64) -> Result<StreamHit, E> {
        Ok(number_hit(Number::from(v), self.insured))
    }
    fn visit_f64<E>(self, _: f64) -> Result<StreamHit, E> {
        Ok(None)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StreamHit, A::Error> {
        let mut found: StreamHit = None;
        let mut i = 0;
        while found.is_none() {
            match seq.next_element_seed(self)? {
                Some(Some((kind, mut path))) => {
                    path.push(OwnedToken::Index(i));
                    found = Some((kind, path));
                }
                Some(None) => i += 1,
                None => return Ok(None),
            }
        }
        // The rest is read and ignored: the first finding is the answer.
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(found)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StreamHit, A::Error> {
        let mut found: StreamHit = None;
        while found.is_none() {
            let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? else {
                return Ok(None);
            };
            // An identifier in a key is reported at the object, so the
            // pointer never repeats it.
            if let Some(kind) = scan_str(&key, self.insured) {
                found = Some((kind, Vec::new()));
                map.next_value::<serde::de::IgnoredAny>()?;
                break;
            }
            if is_identifying_key(&key) {
                map.next_value::<serde::de::IgnoredAny>()?;
                found = Some((
                    PiiKind::IdentifyingField,
                    vec![OwnedToken::Key(key.into_owned())],
                ));
                break;
            }
            let insured = self.insured || has_insurance_keyword(&key);
            let v = map.next_value_seed(Keyed { insured, key: &key })?;
            let hit = v.hit.or_else(|| {
                let text = Value::String(v.text?);
                pseudonym_rule(&key, &text).map(|k| (k, Vec::new()))
            });
            if let Some((kind, mut path)) = hit {
                path.push(OwnedToken::Key(key.into_owned()));
                found = Some((kind, path));
            }
        }
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(found)
    }
}

/// Checks one piece of free text (no field names, no insurance context).
pub fn scan_text(text: &str) -> Option<PiiKind> {
    scan_str(text, false)
}

/// One step of a JSON Pointer.
enum Token<'a> {
    /// An object key, unescaped.
    Key(&'a str),
    /// An array index.
    Index(usize),
}

/// A finding on its way up: the pointer is collected innermost first, so
/// nothing is allocated while a payload is clean.
struct Hit<'a> {
    kind: PiiKind,
    path: Vec<Token<'a>>,
}

impl<'a> Hit<'a> {
    fn new(kind: PiiKind) -> Self {
        Self {
            kind,
            path: Vec::new(),
        }
    }

    fn under(mut self, token: Token<'a>) -> Self {
        self.path.push(token);
        self
    }
}

/// Visits `value`; `insured` means an insurance key is an ancestor.
fn walk(value: &Value, insured: bool) -> Option<Hit<'_>> {
    match value {
        Value::Null | Value::Bool(_) => None,
        Value::Number(n) => scan_number(n, insured).map(Hit::new),
        Value::String(s) => scan_str(s, insured).map(Hit::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| walk(item, insured).map(|hit| hit.under(Token::Index(i)))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            // An identifier in a key is reported at the object, so the
            // pointer never repeats it.
            if let Some(kind) = scan_str(key, insured) {
                return Some(Hit::new(kind));
            }
            let hit = if is_identifying_key(key) {
                Some(Hit::new(PiiKind::IdentifyingField))
            } else {
                let insured = insured || has_insurance_keyword(key);
                walk(item, insured).or_else(|| pseudonym_rule(key, item).map(Hit::new))
            };
            hit.map(|hit| hit.under(Token::Key(key)))
        }),
    }
}

/// Appends `/token` to a JSON Pointer, escaping per RFC 6901.
fn push_token(path: &mut String, token: &str) {
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// Rule 5: patient references must be pseudonyms.
fn pseudonym_rule(key: &str, value: &Value) -> Option<PiiKind> {
    let Value::String(s) = value else {
        return None;
    };
    let ok = match key {
        "patient" => is_well_formed(s),
        "reference" => s.strip_prefix("Patient/").is_none_or(is_well_formed),
        _ => true,
    };
    (!ok).then_some(PiiKind::Pseudonym)
}

/// True if a key, normalized, is in [`IDENTIFYING_KEYS`].
fn is_identifying_key(key: &str) -> bool {
    let mut lower = Lower::default();
    for c in key.chars().filter(|c| !matches!(c, '_' | '-' | ' ')) {
        lower.push(c);
    }
    IDENTIFYING_KEYS.iter().any(|name| lower.is(name))
}

/// Bytes kept by [`Lower`]: more than the longest keyword or key name.
const LOWER_CAP: usize = 32;

/// A short string lowercased on the stack (UTF-8); a longer one is cut
/// after [`LOWER_CAP`] bytes and remembered as cut.
#[derive(Default)]
struct Lower {
    buf: [u8; LOWER_CAP],
    len: usize,
    cut: bool,
}

impl Lower {
    /// Lowercases `text`.
    fn of(text: &str) -> Self {
        let mut lower = Self::default();
        for c in text.chars() {
            lower.push(c);
        }
        lower
    }

    /// Appends `c` lowercased.
    fn push(&mut self, c: char) {
        if c.is_ascii() {
            self.push_utf8(&[c.to_ascii_lowercase() as u8]);
        } else {
            for l in c.to_lowercase() {
                self.push_utf8(l.encode_utf8(&mut [0; 4]).as_bytes());
            }
        }
    }

    fn push_utf8(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(slot) if !self.cut => {
                slot.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            _ => self.cut = true,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// True if the lowercased string is `other` (already lowercase).
    fn is(&self, other: &str) -> bool {
        !self.cut && self.bytes() == other.as_bytes()
    }

    /// True if the lowercased string starts with `prefix` (already
    /// lowercase and shorter than [`LOWER_CAP`]).
    fn starts_with(&self, prefix: &str) -> bool {
        self.bytes().starts_with(prefix.as_bytes())
    }
}

/// Rule 1 and 2 for JSON integers.
fn scan_number(n: &Number, insured: bool) -> Option<PiiKind> {
    let mut rest = n.as_u64().or_else(|| n.as_i64().map(i64::unsigned_abs))?;
    // Right-aligned decimal digits over a field of zeros, so the last 13
    // bytes are the number zero-padded to a JMBG's length.
    let mut buf = [b'0'; 20];
    let mut len = 0;
    for slot in buf.iter_mut().rev() {
        // `rest % 10` is below 10.
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
        len += 1;
        if rest == 0 {
            break;
        }
    }
    match len {
        12 | JMBG_LEN => {
            let padded = buf.get(buf.len() - JMBG_LEN..)?;
            std::str::from_utf8(padded)
                .is_ok_and(is_valid_jmbg)
                .then_some(PiiKind::Jmbg)
        }
        LBO_LEN if insured => Some(PiiKind::Lbo),
        _ => None,
    }
}

/// Checks free text; `insured` means an insurance key is an ancestor.
fn scan_str(text: &str, insured: bool) -> Option<PiiKind> {
    let bytes = text.as_bytes();
    if is_ledger_id(bytes) {
        return None;
    }
    let (digit, at) = interesting(bytes);
    let email = if at { first_email(bytes) } else { None };
    if digit {
        // Only number findings that start before the first e-mail.
        let limit = email.unwrap_or(bytes.len());
        if let Some(kind) = first_number_finding(text, limit, insured) {
            return Some(kind);
        }
    }
    email.map(|_| PiiKind::Email)
}

/// Whether `b` is 64 lowercase hex digits (a key or a hash), or a FHIR
/// reference to one, `Type/<64 hex>` (a dispense's reference to the
/// prescription it fills, whose id is a transaction id).
fn is_ledger_id(b: &[u8]) -> bool {
    let hex = |h: &[u8]| h.len() == 64 && h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    match b.iter().position(|&c| c == b'/') {
        Some(i) => i > 0 && b[..i].iter().all(u8::is_ascii_alphabetic) && hex(&b[i + 1..]),
        None => hex(b),
    }
}

/// Whether `b` holds an ASCII digit and whether it holds an `@`. One
/// branch-free pass, which the compiler vectorizes.
fn interesting(b: &[u8]) -> (bool, bool) {
    let (mut digit, mut at) = (false, false);
    for &c in b {
        digit |= c.wrapping_sub(b'0') < 10;
        at |= c == b'@';
    }
    (digit, at)
}

/// Characters of an e-mail's local part.
fn is_local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// Characters of a domain label.
fn is_label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

/// Where the first e-mail address starts (its local part).
fn first_email(b: &[u8]) -> Option<usize> {
    b.iter()
        .enumerate()
        .filter(|&(_, &c)| c == b'@')
        .find_map(|(at, _)| {
            let local = b.get(..at)?;
            let start = local
                .iter()
                .rposition(|&c| !is_local_char(c))
                .map_or(0, |p| p + 1);
            (start < at && is_domain(b.get(at + 1..)?)).then_some(start)
        })
}

/// True if `d` starts with a domain: a label, then dot-separated labels one
/// of which starts with two ASCII letters.
fn is_domain(d: &[u8]) -> bool {
    let label_end = |from: usize| {
        from + d.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|&&c| is_label_char(c)).count()
        })
    };
    let mut end = label_end(0);
    if end == 0 {
        return false;
    }
    while d.get(end) == Some(&b'.') {
        let next = label_end(end + 1);
        if next == end + 1 {
            return false;
        }
        let letters = d
            .get(end + 1..end + 3)
            .is_some_and(|p| p.iter().all(u8::is_ascii_alphabetic));
        if letters {
            return true;
        }
        end = next;
    }
    false
}

/// The end of the digit run starting at `i`.
fn run_end(b: &[u8], i: usize) -> usize {
    i + b.get(i..).map_or(0, |rest| {
        rest.iter().take_while(|c| c.is_ascii_digit()).count()
    })
}

/// How groups may be joined.
#[derive(Clone, Copy)]
enum Join {
    /// A single space or dash (identifiers written in groups).
    Id,
    /// Phone separators, see the module documentation.
    Phone,
}

/// True if `gap` joins two groups of a phone number.
fn is_phone_gap(gap: &[u8]) -> bool {
    let paren = |c: &u8| matches!(c, b'(' | b')');
    let plain = |c: &u8| matches!(c, b' ' | b'-' | b'.' | b'/');
    match gap {
        [a] => paren(a) || plain(a),
        [a, b] => (paren(a) && (paren(b) || plain(b))) || (plain(a) && paren(b)),
        _ => false,
    }
}

/// The group joined to the one ending at `end`, if any.
fn next_group(b: &[u8], end: usize, join: Join) -> Option<(usize, usize)> {
    let max_gap = match join {
        Join::Id => 1,
        Join::Phone => 2,
    };
    let start = (end + 1..=end + max_gap).find(|&j| b.get(j).is_some_and(u8::is_ascii_digit))?;
    let gap = b.get(end..start)?;
    let joined = match join {
        Join::Id => matches!(gap, [b' ' | b'-']),
        Join::Phone => is_phone_gap(gap),
    };
    joined.then(|| (start, run_end(b, start)))
}

/// The first JMBG, LBO or phone number among the groups starting before
/// `limit`.
fn first_number_finding(text: &str, limit: usize, insured: bool) -> Option<PiiKind> {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(offset) = b.get(i..)?.iter().position(u8::is_ascii_digit) {
        let start = i + offset;
        if start >= limit {
            return None;
        }
        let end = run_end(b, start);
        if let Some(kind) = identifier_at(text, start, end, insured) {
            return Some(kind);
        }
        if is_phone_at(b, start, end) {
            return Some(PiiKind::Phone);
        }
        i = end;
    }
    None
}

/// A JMBG or LBO starting with the group `start..end`, alone or joined to
/// the following groups by single spaces or dashes.
fn identifier_at(text: &str, start: usize, end: usize, insured: bool) -> Option<PiiKind> {
    let b = text.as_bytes();
    let mut digits = [b'0'; JMBG_LEN];
    let mut n = 0;
    let mut group = (start, end);
    loop {
        let g = b.get(group.0..group.1)?;
        let slot = digits.get_mut(n..n + g.len())?;
        slot.copy_from_slice(g);
        n += g.len();
        if n == JMBG_LEN && std::str::from_utf8(&digits).is_ok_and(is_valid_jmbg) {
            return Some(PiiKind::Jmbg);
        }
        if n == LBO_LEN && (insured || keyword_near(text, start, group.1)) {
            return Some(PiiKind::Lbo);
        }
        group = next_group(b, group.1, Join::Id)?;
    }
}

/// True if the group `start..end` starts a phone number.
fn is_phone_at(b: &[u8], start: usize, end: usize) -> bool {
    let len = end - start;
    let digit = |k: usize| b.get(start + k).copied();
    let before = |k: usize| start.checked_sub(k).and_then(|p| b.get(p)).copied();
    let plus = before(1) == Some(b'+') || (before(1) == Some(b'(') && before(2) == Some(b'+'));
    if plus {
        return phone_chain(b, end, len, 8..=15, 1..=15);
    }
    match (digit(0), digit(1), digit(2)) {
        (Some(b'0'), Some(b'0'), Some(b'1'..=b'9'))
            if (3..=5).contains(&len) || (10..=17).contains(&len) =>
        {
            phone_chain(b, end, len - 2, 8..=15, 1..=15)
        }
        (Some(b'0'), Some(b'1' | b'2' | b'3' | b'6'), _)
            if (3..=4).contains(&len) || (9..=10).contains(&len) =>
        {
            phone_chain(b, end, len, 9..=10, 2..=7)
        }
        _ => false,
    }
}

/// Follows a phone chain from a first group ending at `end` that counts
/// `first` digits: true if the running total lands in `target`, each later
/// group being `group` digits long.
fn phone_chain(
    b: &[u8],
    mut end: usize,
    first: usize,
    target: RangeInclusive<usize>,
    group: RangeInclusive<usize>,
) -> bool {
    let mut total = first;
    loop {
        if target.contains(&total) {
            return true;
        }
        if total > *target.end() {
            return false;
        }
        let Some((s, e)) = next_group(b, end, Join::Phone) else {
            return false;
        };
        if !group.contains(&(e - s)) {
            return false;
        }
        total += e - s;
        end = e;
    }
}

/// True if an insurance keyword is among the words within
/// [`KEYWORD_WINDOW`] characters of the digits `start..end`.
fn keyword_near(text: &str, start: usize, end: usize) -> bool {
    let (Some(before), Some(after)) = (text.get(..start), text.get(end..)) else {
        return false;
    };
    let from = before
        .char_indices()
        .rev()
        .nth(KEYWORD_WINDOW - 1)
        .map_or(0, |(i, _)| i);
    // Widen to whole words.
    let from = before
        .get(..from)
        .and_then(|head| {
            head.char_indices()
                .rev()
                .find(|(_, c)| !c.is_alphabetic())
                .map(|(i, c)| i + c.len_utf8())
        })
        .unwrap_or(0);
    let to = after
        .char_indices()
        .nth(KEYWORD_WINDOW)
        .map_or(after.len(), |(i, _)| i);
    let to = after
        .get(to..)
        .and_then(|tail| {
            tail.char_indices()
                .find(|(_, c)| !c.is_alphabetic())
                .map(|(i, _)| to + i)
        })
        .unwrap_or(after.len());
    before.get(from..).is_some_and(has_insurance_keyword)
        || after.get(..to).is_some_and(has_insurance_keyword)
}

/// True if `text` holds an insurance keyword (see the module documentation).
fn has_insurance_keyword(text: &str) -> bool {
    let mut prev: Option<Lower> = None;
    any_word(text, |word| {
        let word = Lower::of(word);
        let hit = INSURANCE_WORDS.iter().any(|k| word.is(k))
            || INSURANCE_PREFIXES.iter().any(|k| word.starts_with(k))
            || prev.as_ref().is_some_and(|prev| {
                INSURANCE_PAIRS
                    .iter()
                    .any(|(first, second)| prev.is(first) && word.starts_with(second))
            });
        prev = Some(word);
        hit
    })
}

/// Calls `hit` on each word of `text` until it returns true. Words are runs
/// of letters, split where a lowercase letter is followed by an uppercase
/// one.
fn any_word(text: &str, mut hit: impl FnMut(&str) -> bool) -> bool {
    let mut start = None;
    let mut lower_before = false;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        let alpha = c.is_alphabetic();
        if let Some(s) = start
            && (!alpha || (lower_before && c.is_uppercase()))
        {
            if text.get(s..i).is_some_and(&mut hit) {
                return true;
            }
            start = None;
        }
        if alpha && start.is_none() {
            start = Some(i);
        }
        lower_before = c.is_lowercase();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JMBGS: [&str; 3] = ["0101990710008", "1503857150010", "3112999500122"];
    const PSEUDONYM: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";

    /// Scans `{"note": text}` and checks the message hides `secret`.
    fn finding_in_text(text: &str, secret: &str) -> Option<PiiFinding> {
        let found = scan(&json!({ "note": text })).err()?;
        let message = found.to_string();
        assert!(!message.contains(secret), "{message:?} leaks {secret:?}");
        assert_eq!(found.field, "/note");
        Some(found)
    }

    fn assert_kind(text: &str, secret: &str, kind: PiiKind) {
        assert_eq!(scan_text(text), Some(kind), "{text:?}");
        let found = finding_in_text(text, secret);
        assert_eq!(found.map(|f| f.kind), Some(kind), "{text:?}");
    }

    fn assert_clean(text: &str) {
        assert_eq!(scan_text(text), None, "{text:?}");
        assert_eq!(scan(&json!({ "note": text })), Ok(()), "{text:?}");
    }

    #[test]
    fn kinds_have_stable_names() {
        let names = [
            (PiiKind::Jmbg, "jmbg"),
            (PiiKind::Lbo, "lbo"),
            (PiiKind::Email, "email"),
            (PiiKind::Phone, "phone"),
            (PiiKind::Pseudonym, "malformed_pseudonym"),
            (PiiKind::IdentifyingField, "identifying_field"),
        ];
        for (kind, name) in names {
            assert_eq!(kind.as_str(), name);
            assert!(!kind.describe().is_empty());
        }
        let f = PiiFinding {
            field: "/anamnesis".into(),
            kind: PiiKind::Email,
        };
        assert_eq!(f.to_string(), "an e-mail address at `/anamnesis`");
        let root = PiiFinding {
            field: String::new(),
            kind: PiiKind::Phone,
        };
        assert_eq!(root.to_string(), "a telephone number at the payload root");
    }

    #[test]
    fn jmbg_in_text() {
        assert_kind(
            "JMBG 0101990710008 pacijenta",
            "0101990710008",
            PiiKind::Jmbg,
        );
        for j in JMBGS {
            assert_kind(&format!("id:{j}."), j, PiiKind::Jmbg);
        }
        // Written in groups.
        assert_kind("JMBG 0101990 710008", "710008", PiiKind::Jmbg);
        assert_kind("JMBG 010199-0710008", "0710008", PiiKind::Jmbg);
        assert_kind("jmbg 010 1990 710 008", "1990 710", PiiKind::Jmbg);
    }

    #[test]
    fn jmbg_lookalikes_pass() {
        // 13 digits, bad check digit; 13 digits, no such date; 14 digits.
        assert_clean("broj 0101990710009 u protokolu");
        assert_clean("1234567890123");
        assert_clean("niz 01019907100080");
    }

    #[test]
    fn jmbg_as_integer() {
        let f = scan(&json!({ "value": 1_503_857_150_010_u64 })).unwrap_err();
        assert_eq!((f.field.as_str(), f.kind), ("/value", PiiKind::Jmbg));
        assert!(!f.to_string().contains("1503857150010"));
        // The leading zero of 0101990710008 is lost in a number.
        let f = scan(&json!({ "x": [1, 101_990_710_008_u64] })).unwrap_err();
        assert_eq!((f.field.as_str(), f.kind), ("/x/1", PiiKind::Jmbg));
        let f = scan(&json!({ "x": -101_990_710_008_i64 })).unwrap_err();
        assert_eq!(f.kind, PiiKind::Jmbg);
        // Not a JMBG; floats are never identifiers.
        assert_eq!(scan(&json!({ "x": 1_234_567_890_123_u64 })), Ok(()));
        assert_eq!(scan(&json!({ "x": 101_990_710_008.0 })), Ok(()));
        assert_eq!(scan(&json!({ "x": 12_345_678_901_u64 })), Ok(()));
    }

    #[test]
    fn lbo_next_to_a_keyword() {
        for text in [
            "ЛБО: 12345678901",
            "лбо 12345678901",
            "LBO pacijenta je 12345678901",
            "broj osiguranja 12345678901",
            "Осигураник 12345678901",
            "insurance no. 12345678901",
            "12345678901 (zdravstvena knjižica)",
            "broj kartice: 12345678901",
            "број картице 12345678901",
            "health card 12345678901",
            "knjizica br. 12345678901, izdata u Nišu",
        ] {
            assert_kind(text, "12345678901", PiiKind::Lbo);
        }
        assert_kind("LBO 123 4567 8901", "4567 8901", PiiKind::Lbo);
    }

    #[test]
    fn eleven_digits_without_a_keyword_pass() {
        assert_clean("Uzorak 12345678901");
        assert_clean("pain in the left elbow, sample 12345678901");
        // A keyword too far away.
        assert_clean(
            "LBO je upisan u karton ranije, a ovde je samo broj uzorka za laboratoriju 12345678901",
        );
    }

    #[test]
    fn lbo_under_an_insurance_key() {
        let f = scan(&json!({ "osiguranje": { "broj": "12345678901" } })).unwrap_err();
        assert_eq!(
            (f.field.as_str(), f.kind),
            ("/osiguranje/broj", PiiKind::Lbo)
        );
        assert!(!f.to_string().contains("12345678901"));
        let f = scan(&json!({ "insuranceNumber": 12_345_678_901_u64 })).unwrap_err();
        assert_eq!(
            (f.field.as_str(), f.kind),
            ("/insuranceNumber", PiiKind::Lbo)
        );
        let f = scan(&json!({ "broj_kartice": ["x", "12345678901"] })).unwrap_err();
        assert_eq!(
            (f.field.as_str(), f.kind),
            ("/broj_kartice/1", PiiKind::Lbo)
        );
        assert_eq!(
            scan(&json!({ "elbowPain": "12345678901", "sample": 12_345_678_901_u64 })),
            Ok(())
        );
    }

    #[test]
    fn emails() {
        for (text, secret) in [
            (
                "Kontakt lekara: dr.petar.petrovic@kc-nis.rs za pitanja.",
                "petrovic@kc",
            ),
            ("pisati na ana_m+lab@mail.co.rs.", "ana_m+lab@mail"),
            ("x@y.org", "x@y.org"),
            ("marko.0641234567@gmail.com", "0641234567"),
        ] {
            assert_kind(text, secret, PiiKind::Email);
        }
        for text in [
            "@ 5 mg",
            "a @ b.rs",
            "foo@bar",
            "foo@bar.c",
            "@home.rs",
            "x@.rs",
            "x@1.2.3.4",
        ] {
            assert_clean(text);
        }
    }

    #[test]
    fn phones() {
        for (text, secret) in [
            ("tel. +381 64 123 4567", "123 4567"),
            ("+381-11-3615-555", "3615"),
            ("call +1 (202) 555-0143 now", "555-0143"),
            ("+381641234567", "641234567"),
            ("+381 (0)11 3615 555", "3615 555"),
            ("00381 64 1234567", "1234567"),
            ("mob 064/123-4567", "123-4567"),
            ("fiksni 011 3615 555", "3615 555"),
            ("0641234567", "0641234567"),
            ("021 456 789", "456 789"),
            ("(011) 3615-555", "3615-555"),
            ("A0641234567", "0641234567"),
            ("Kikinda 0230 456 789", "456 789"),
        ] {
            assert_kind(text, secret, PiiKind::Phone);
        }
    }

    #[test]
    fn keys_and_hashes_are_not_free_text() {
        // A key whose hex holds `0641234567`, a mobile number's shape.
        let key = "ab0641234567cdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(key.len(), 64);
        assert_eq!(scan_str(key, false), None);
        // The same digits in text, or in a value that is not a bare key, are found.
        assert_eq!(scan_str("ab0641234567", false), Some(PiiKind::Phone));
        assert_eq!(scan_str(&format!("{key} "), false), Some(PiiKind::Phone));
        assert_eq!(scan_str(&key.to_uppercase(), false), Some(PiiKind::Phone));
        // A reference to a transaction by its id is not free text either;
        // anything more around it is.
        assert_eq!(scan_str(&format!("MedicationRequest/{key}"), false), None);
        for text in [
            format!("/{key}"),
            format!("Medication Request/{key}"),
            format!("MedicationRequest/{key}/x"),
        ] {
            assert_eq!(scan_str(&text, false), Some(PiiKind::Phone), "{text}");
        }
    }

    #[test]
    fn clinical_numbers_are_not_phones() {
        for text in [
            "2026-11-24",
            "24.11.2026.",
            "01.02.2026",
            "01.02.2026 10 sati",
            "08:30",
            "150/95",
            "BP 120/80",
            "38.5",
            "0.5 mg",
            "J10.1",
            "2x500 mg",
            "5-10",
            "SpO2 94%",
            "8867-4",
            "mm[Hg]",
            "Na+ 140, K+ 4.2",
            "+38.5",
            "2026-11-24T08:30:00+01:00",
            "urn:oid:2.16.840.1.113883.6.1",
            "064 12",
            "0641234",
        ] {
            assert_clean(text);
        }
    }

    const REPORT: &str = "Anamneza: Pacijent (58 god.) primljen 24.11.2026. u 08:30 zbog \
        febrilnosti do 38.5 °C, kašlja i otežanog disanja 3 dana. TA 150/95 mmHg, puls 96/min, \
        SpO2 94% na sobnom vazduhu. Lab: Le 12.4 x10^9/L, CRP 86 mg/L, Hgb 132 g/L, Tr 245. \
        RTG pluća 2026-11-24: infiltrat desno bazalno. Dg: J18.9, J10.1; I10. Th: amoksicilin \
        2x500 mg p.o. 7 dana, paracetamol 0.5 g po potrebi (max 4x dnevno), kontrola za 5-10 \
        dana. Uzorak 12345678901. On discharge 01.02.2026 BP 120/80, HR 72 (LOINC 8867-4), \
        mm[Hg]. Температура 37,2 °C, притисак 130/85.";

    #[test]
    fn a_medical_report_passes() {
        assert!(REPORT.len() > 500);
        assert_clean(REPORT);
        let payload = json!({
            "anamnesis": REPORT,
            "icd10": ["J18.9", "J10.1"],
            "temperature": 38.5,
            "pulse": 96,
            "patient": PSEUDONYM,
        });
        assert_eq!(scan(&payload), Ok(()));
    }

    #[test]
    fn fhir_resources() {
        let observation = json!({
            "resourceType": "Observation",
            "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4",
                                   "display": "Heart rate" }] },
            "subject": { "reference": format!("Patient/{PSEUDONYM}") },
            "effectiveDateTime": "2026-11-24T08:30:00+01:00",
            "valueQuantity": { "value": 96, "unit": "beats/minute",
                               "system": "http://unitsofmeasure.org", "code": "/min" },
            "component": [{ "code": { "text": "BP" }, "valueString": "150/95 mm[Hg]" }],
        });
        assert_eq!(scan(&observation), Ok(()));

        let immunization = json!({
            "resourceType": "Immunization",
            "patient": { "reference": format!("Patient/{PSEUDONYM}") },
            "occurrenceDateTime": "2026-10-01",
            "lotNumber": "AB1234",
        });
        assert_eq!(scan(&immunization), Ok(()));

        let mut bad = observation.clone();
        bad["subject"]["reference"] = json!("Patient/JOHN");
        let f = scan(&bad).unwrap_err();
        assert_eq!(
            (f.field.as_str(), f.kind),
            ("/subject/reference", PiiKind::Pseudonym)
        );
        assert!(!f.to_string().contains("JOHN"));

        let mut bad = observation;
        bad["component"][0]["valueString"] = json!("javiti na 064/123-4567");
        let f = scan(&bad).unwrap_err();
        assert_eq!(
            (f.field.as_str(), f.kind),
            ("/component/0/valueString", PiiKind::Phone)
        );

        let mut bad = immunization;
        bad["patient"]["reference"] = json!("Patient/P0000000000000000000000001");
        let f = scan(&bad).unwrap_err();
        assert_eq!(
            (f.field.as_str(), f.kind),
            ("/patient/reference", PiiKind::Pseudonym)
        );

        let patient = json!({
            "resourceType": "Patient",
            "name": [{ "family": "Petrović", "given": ["Petar"] }],
            "gender": "male",
        });
        let f = scan(&patient).unwrap_err();
        assert_eq!(
            (f.field.as_str(), f.kind),
            ("/name", PiiKind::IdentifyingField)
        );
        assert!(!f.to_string().contains("Petrović"));

        // Other references are not patient references.
        assert_eq!(
            scan(&json!({ "performer": { "reference": "Practitioner/dr-1" } })),
            Ok(())
        );
    }

    #[test]
    fn patient_fields_must_be_pseudonyms() {
        assert_eq!(scan(&json!({ "patient": PSEUDONYM })), Ok(()));
        for bad in [
            "P0000000000000000000000001",
            "JOHN",
            "",
            "mfrggzdfmztwq2lknnwg23tpoa",
        ] {
            let f = scan(&json!({ "patient": bad })).unwrap_err();
            assert_eq!((f.field.as_str(), f.kind), ("/patient", PiiKind::Pseudonym));
            assert!(bad.is_empty() || !f.to_string().contains(bad));
        }
        // A JMBG in place of a pseudonym is reported as the JMBG.
        let f = scan(&json!({ "patient": "0101990710008" })).unwrap_err();
        assert_eq!((f.field.as_str(), f.kind), ("/patient", PiiKind::Jmbg));
        let f = scan(&json!({ "data": [{ "reference": "Patient/JOHN" }] })).unwrap_err();
        assert_eq!(
            (f.field.as_str(), f.kind),
            ("/data/0/reference", PiiKind::Pseudonym)
        );
    }

    #[test]
    fn identifying_keys() {
        for key in [
            "name",
            "first_name",
            "Last-Name",
            "ImeIPrezime",
            "ime i prezime",
            "JMBG",
            "e-mail",
            "telecom",
            "dateOfBirth",
            "datum_rodjenja",
            "datumRođenja",
            "Презиме",
            "photo",
        ] {
            let f = scan(&json!({ "a": { key: "x" } })).unwrap_err();
            assert_eq!(f.kind, PiiKind::IdentifyingField, "{key}");
            assert_eq!(f.field, format!("/a/{key}"));
        }
        for key in [
            "names",
            "nickname",
            "display",
            "code",
            "text",
            "valueString",
        ] {
            assert_eq!(scan(&json!({ key: "x" })), Ok(()), "{key}");
        }
    }

    #[test]
    fn identifiers_in_keys_point_at_the_object() {
        let f = scan(&json!({ "note": { "ana@kc.rs": true } })).unwrap_err();
        assert_eq!((f.field.as_str(), f.kind), ("/note", PiiKind::Email));
        assert!(!f.to_string().contains("ana@kc.rs"));
        let f = scan(&json!({ "0101990710008": 1 })).unwrap_err();
        assert_eq!((f.field.as_str(), f.kind), ("", PiiKind::Jmbg));
        assert!(!f.to_string().contains("0101990710008"));
    }

    #[test]
    fn root_values() {
        let f = scan(&json!("tel +381 64 123 4567")).unwrap_err();
        assert_eq!((f.field.as_str(), f.kind), ("", PiiKind::Phone));
        assert_eq!(scan(&json!(null)), Ok(()));
        assert_eq!(scan(&json!(true)), Ok(()));
        assert_eq!(scan(&json!([])), Ok(()));
    }

    #[test]
    fn first_finding_in_document_order() {
        // serde_json maps iterate in key order; arrays by index.
        let f = scan(&json!({
            "a": ["ok", "x@y.rs"],
            "b": "0641234567",
        }))
        .unwrap_err();
        assert_eq!((f.field.as_str(), f.kind), ("/a/1", PiiKind::Email));
        // Within a string, the earliest finding.
        assert_eq!(
            scan_text("JMBG 0101990710008, mail a@b.rs"),
            Some(PiiKind::Jmbg)
        );
        assert_eq!(
            scan_text("mail a@b.rs, JMBG 0101990710008"),
            Some(PiiKind::Email)
        );
    }

    #[test]
    fn json_pointer_escaping() {
        let f = scan(&json!({ "a/b": { "c~d": { "": ["x", "x@y.rs"] } } })).unwrap_err();
        assert_eq!(f.field, "/a~1b/c~0d//1");
        assert_eq!(f.kind, PiiKind::Email);
        let mut path = String::new();
        push_token(&mut path, "~1/~0");
        assert_eq!(path, "/~01~1~00");
    }

    #[test]
    fn keyword_words() {
        assert!(has_insurance_keyword("insuranceNumber"));
        assert!(has_insurance_keyword("zdravstvenaKnjizica"));
        assert!(has_insurance_keyword("HEALTH_CARD"));
        assert!(has_insurance_keyword("patientLBO"));
        assert!(has_insurance_keyword("lboPacijenta"));
        assert!(has_insurance_keyword("ЗДРАВСТВЕНА КЊИЖИЦА"));
        assert!(!has_insurance_keyword("elbow"));
        assert!(!has_insurance_keyword("ELBOW"));
        assert!(!has_insurance_keyword("card health"));
        assert!(!has_insurance_keyword("broj"));
    }

    use crate::testing::Rng;

    const WORDS: &[&str] = &[
        "pacijent",
        "febrilan",
        "kašalj",
        "dispnea",
        "auskultatorno",
        "pulmo",
        "srce",
        "ritmična",
        "akcija",
        "bez",
        "šumova",
        "abdomen",
        "mekan",
        "bolno",
        "diureza",
        "uredna",
        "kontrola",
        "terapija",
        "nalaz",
        "uredan",
        "left",
        "elbow",
        "pain",
        "fever",
        "cough",
        "admitted",
        "with",
        "history",
        "of",
        "hypertension",
        "TA",
        "CRP",
        "Hgb",
        "dnevno",
        "пацијент",
        "температура",
        "притисак",
        "кашаљ",
    ];

    fn clinical_number(r: &mut Rng) -> String {
        match r.below(13) {
            0 => format!("{}.{} °C", 35 + r.below(6), r.below(10)),
            1 => format!("{}/{}", 90 + r.below(100), 50 + r.below(60)),
            2 => format!(
                "{}-{:02}-{:02}",
                2000 + r.below(30),
                1 + r.below(12),
                1 + r.below(28)
            ),
            3 => format!(
                "{:02}.{:02}.{}.",
                1 + r.below(28),
                1 + r.below(12),
                2000 + r.below(30)
            ),
            4 => format!("{}x{} mg", 1 + r.below(3), r.pick(&[250, 500, 1000])),
            5 => format!("SpO2 {}%", 85 + r.below(15)),
            6 => format!(
                "{}{}.{}",
                char::from(b'A' + r.below(26) as u8),
                10 + r.below(90),
                r.below(10)
            ),
            7 => format!("{}-{}", 1 + r.below(9000), r.below(10)),
            8 => format!("{:02}:{:02}", r.below(24), r.below(60)),
            // An 11-digit accession number, no keyword in the vocabulary.
            9 => format!("Uzorak {}{}", 1 + r.below(9), r.digits(10)),
            // 13 digits whose "month" is 13..99: never a JMBG.
            10 => format!("{}{}{}", 10 + r.below(18), 13 + r.below(87), r.digits(9)),
            11 => format!("{}.{}", r.below(10), r.digits(2)),
            _ => format!("{}", 1 + r.below(999)),
        }
    }

    /// Words with clinical numbers between them; starts and ends with a
    /// word, and never puts two numbers side by side.
    fn sentence(r: &mut Rng) -> String {
        let mut out = String::new();
        for _ in 0..1 + r.below(12) {
            out.push_str(r.pick(WORDS));
            out.push(' ');
            if r.below(2) == 0 {
                out.push_str(&clinical_number(r));
                out.push_str(r.pick(&[" ", ", ", "; "]));
            }
        }
        out.push_str(r.pick(WORDS));
        out
    }

    fn random_jmbg(r: &mut Rng) -> String {
        let year = if r.below(2) == 0 {
            900 + r.below(100)
        } else {
            r.below(26)
        };
        let head = format!(
            "{:02}{:02}{:03}{}",
            1 + r.below(28),
            1 + r.below(12),
            year,
            r.digits(5)
        );
        let jmbg = (0..10)
            .map(|k| format!("{head}{k}"))
            .find(|s| is_valid_jmbg(s))
            .expect("one check digit fits");
        match r.below(3) {
            0 => jmbg,
            1 => format!("{} {}", &jmbg[..7], &jmbg[7..]),
            _ => format!("{}-{}", &jmbg[..7], &jmbg[7..]),
        }
    }

    fn random_email(r: &mut Rng) -> String {
        const LOCAL: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789._-";
        let mut local = String::from(char::from(b'a' + r.below(26) as u8));
        for _ in 0..r.below(10) {
            local.push(char::from(r.pick(LOCAL)));
        }
        let label: String = (0..1 + r.below(8))
            .map(|_| char::from(b'a' + r.below(26) as u8))
            .collect();
        let tld = r.pick(&["rs", "com", "org", "co.rs", "gov.rs"]);
        format!("{local}@{label}.{tld}")
    }

    fn random_phone(r: &mut Rng) -> String {
        let mobile = format!("6{}", r.below(10));
        match r.below(9) {
            0 => format!("+381 {mobile} {} {}", r.digits(3), r.digits(4)),
            1 => format!("+381-11-{}-{}", r.digits(4), r.digits(3)),
            2 => format!("+1 ({}) {}-{}", r.digits(3), r.digits(3), r.digits(4)),
            3 => format!("00381 {mobile} {}", r.digits(7)),
            4 => format!("0{mobile}/{}-{}", r.digits(3), r.digits(4)),
            5 => format!("011 {} {}", r.digits(4), r.digits(3)),
            6 => format!("0{mobile}{}", r.digits(7)),
            7 => format!("021 {} {}", r.digits(3), r.digits(3)),
            _ => format!(
                "({}) {}-{}",
                r.pick(&["011", "021", "018", "034", "064"]),
                r.digits(4),
                r.digits(3)
            ),
        }
    }

    #[test]
    fn property_inserted_identifiers_are_caught_clean_text_passes() {
        let mut r = Rng(0x5EED);
        for _ in 0..3000 {
            let (left, right) = (sentence(&mut r), sentence(&mut r));
            let clean = format!("{left} {right}");
            assert_eq!(scan_text(&clean), None, "{clean:?}");
            let (pii, kind) = match r.below(3) {
                0 => (random_jmbg(&mut r), PiiKind::Jmbg),
                1 => (random_email(&mut r), PiiKind::Email),
                _ => (random_phone(&mut r), PiiKind::Phone),
            };
            let punct = r.pick(&["", ",", ".", ";", ")"]);
            let text = format!("{left} {pii}{punct} {right}");
            assert_eq!(scan_text(&text), Some(kind), "{text:?}");
            let f = scan(&json!({ "t": text })).unwrap_err();
            assert!(!f.to_string().contains(&pii));
        }
    }

    #[test]
    fn arbitrary_text_never_panics_and_is_deterministic() {
        const ALPHABET: &[&str] = &[
            "0", "1", "3", "6", "9", "0", " ", "-", ".", "/", "(", ")", "+", "@", "_", "%", "a",
            "Z", "rs", "€", "ЛБО", "lbo", "osiguran", "ž", "\n", "~", "🙂",
        ];
        let mut r = Rng(7);
        for _ in 0..20_000 {
            let text: String = (0..r.below(64)).map(|_| r.pick(ALPHABET)).collect();
            let once = scan_text(&text);
            assert_eq!(once, scan_text(&text));
            let mut map = serde_json::Map::new();
            let inner = json!([text.clone(), { "insurance": text.clone() }]);
            map.insert(text, inner);
            let _ = scan(&Value::Object(map));
        }
    }

    /// A random JSON document of clinical text, numbers and keys, some of
    /// them carrying identifiers, some keyed by `patient`, `reference`,
    /// insurance words or identifying names.
    fn random_doc(r: &mut Rng, depth: u32) -> Value {
        const KEYS: &[&str] = &[
            "anamnesis",
            "findings",
            "patient",
            "reference",
            "osiguranje",
            "lbo_broj",
            "name",
            "note",
            "component",
            "valueString",
            "code",
            "insurance",
        ];
        match r.below(if depth == 0 { 4 } else { 6 }) {
            0 => json!(sentence(r)),
            1 => match r.below(5) {
                0 => json!(random_jmbg(r)),
                1 => json!(format!("{} {}", sentence(r), random_email(r))),
                2 => json!(format!("tel {}", random_phone(r))),
                3 => json!(format!("LBO {}", r.digits(11))),
                _ => json!(crate::pseudonym::synthetic(r.below(1000))),
            },
            2 => match r.below(4) {
                0 => json!(random_jmbg(r).parse::<u64>().unwrap_or(0)),
                1 => json!(r.digits(11).parse::<u64>().unwrap_or(0)),
                2 => json!(r.below(300)),
                _ => json!(-(r.below(1000) as i64)),
            },
            3 => json!(r.below(2) == 0),
            4 => Value::Array((0..r.below(4)).map(|_| random_doc(r, depth - 1)).collect()),
            _ => {
                let mut m = serde_json::Map::new();
                for _ in 0..r.below(5) {
                    let key = r.pick(KEYS).to_owned();
                    let v = if key == "reference" && r.below(2) == 0 {
                        json!(format!(
                            "Patient/{}",
                            crate::pseudonym::synthetic(r.below(9))
                        ))
                    } else {
                        random_doc(r, depth - 1)
                    };
                    m.insert(key, v);
                }
                Value::Object(m)
            }
        }
    }

    #[test]
    fn the_stream_scan_finds_what_the_tree_scan_finds() {
        let mut r = Rng(0x5EED_0001);
        let mut findings = 0;
        for _ in 0..20_000 {
            let doc = random_doc(&mut r, 4);
            let bytes = serde_json::to_vec(&doc).expect("json");
            let tree = scan(&doc);
            assert_eq!(scan_json(&bytes), tree, "{doc}");
            findings += usize::from(tree.is_err());
        }
        assert!(findings > 5_000, "the corpus holds findings: {findings}");
        assert!(scan_json(b"{not json").is_err());
    }
}
