//! FHIR R4 search: the one table of the search parameters each resource
//! type takes ([`search_params`]; the node's CapabilityStatement is built
//! from it, so the two cannot drift), how their values are read, and how a
//! query matches a stored resource by its [`Summary`].
//!
//! Semantics (FHIR R4 §3.1.1.4 and §3.1.1.5): a comma between values is OR,
//! a repeated parameter is AND. Tokens are `system|code`, `|code` (no
//! system), `system|` (any code of the system) or `code` (any system);
//! `:missing=true|false` on every parameter; `:not` on tokens, matching
//! resources that have none of the values (also those with no value at
//! all). Dates take the prefixes of [`DateParam`]. Empty values are ignored,
//! as the specification says.

use super::dates::DateParam;
use super::error::FhirError;
use super::observation::OBSERVATION_CATEGORY;
use super::storage::Summary;
use crate::pseudonym;

/// A search parameter's FHIR type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    /// A reference (here always `Patient/<pseudonym>`).
    Reference,
    /// A coded value, `system|code`.
    Token,
    /// A date or dateTime.
    Date,
}

impl ParamType {
    /// The FHIR `SearchParamType` code.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Reference => "reference",
            ParamType::Token => "token",
            ParamType::Date => "date",
        }
    }
}

/// What of a stored resource a parameter looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Patient,
    Code,
    Category,
    Identifier,
    Date,
}

/// One search parameter of a resource type.
#[derive(Debug)]
pub struct SearchParam {
    /// Its name in the query string.
    pub name: &'static str,
    /// Its FHIR type.
    pub ty: ParamType,
    /// The canonical SearchParameter it implements.
    pub definition: &'static str,
    /// What it matches, for the CapabilityStatement.
    pub documentation: &'static str,
    field: Field,
}

const fn param(
    name: &'static str,
    ty: ParamType,
    field: Field,
    definition: &'static str,
    documentation: &'static str,
) -> SearchParam {
    SearchParam {
        name,
        ty,
        definition,
        documentation,
        field,
    }
}

const TOKEN_DOC: &str = "system|code, |code, system| or code; comma for OR; :not, :missing";
const PATIENT_DOC: &str = "Patient/<pseudonym> or <pseudonym>; comma for OR; :missing";
const DATE_DOC: &str = "prefixes eq (default), ne, lt, gt, le, ge, sa, eb, ap (the range widened by 10 % of its distance from now); comma for OR; repeat for AND; :missing";
const IDENTIFIER_DOC: &str =
    "business identifier, system|value, |value, system| or value; :not, :missing";

/// The clinical parameters several types share.
const CLINICAL_PATIENT: SearchParam = param(
    "patient",
    ParamType::Reference,
    Field::Patient,
    "http://hl7.org/fhir/SearchParameter/clinical-patient",
    PATIENT_DOC,
);
const CLINICAL_CODE: SearchParam = param(
    "code",
    ParamType::Token,
    Field::Code,
    "http://hl7.org/fhir/SearchParameter/clinical-code",
    TOKEN_DOC,
);
const CLINICAL_DATE: SearchParam = param(
    "date",
    ParamType::Date,
    Field::Date,
    "http://hl7.org/fhir/SearchParameter/clinical-date",
    DATE_DOC,
);
const CLINICAL_IDENTIFIER: SearchParam = param(
    "identifier",
    ParamType::Token,
    Field::Identifier,
    "http://hl7.org/fhir/SearchParameter/clinical-identifier",
    IDENTIFIER_DOC,
);

static OBSERVATION: &[SearchParam] = &[
    param(
        "subject",
        ParamType::Reference,
        Field::Patient,
        "http://hl7.org/fhir/SearchParameter/Observation-subject",
        PATIENT_DOC,
    ),
    CLINICAL_PATIENT,
    CLINICAL_CODE,
    param(
        "category",
        ParamType::Token,
        Field::Category,
        "http://hl7.org/fhir/SearchParameter/Observation-category",
        "vital-signs or laboratory (as the code implies); system|code as for tokens",
    ),
    CLINICAL_DATE,
    CLINICAL_IDENTIFIER,
];

static CONDITION: &[SearchParam] = &[
    param(
        "subject",
        ParamType::Reference,
        Field::Patient,
        "http://hl7.org/fhir/SearchParameter/Condition-subject",
        PATIENT_DOC,
    ),
    CLINICAL_PATIENT,
    CLINICAL_CODE,
    param(
        "date",
        ParamType::Date,
        Field::Date,
        "http://hl7.org/fhir/SearchParameter/Condition-onset-date",
        "onsetDateTime, else recordedDate; prefixes as for every date",
    ),
    CLINICAL_IDENTIFIER,
];

static IMMUNIZATION: &[SearchParam] = &[
    CLINICAL_PATIENT,
    param(
        "vaccine-code",
        ParamType::Token,
        Field::Code,
        "http://hl7.org/fhir/SearchParameter/Immunization-vaccine-code",
        TOKEN_DOC,
    ),
    CLINICAL_DATE,
    CLINICAL_IDENTIFIER,
];

const MEDICATION_CODE: SearchParam = param(
    "code",
    ParamType::Token,
    Field::Code,
    "http://hl7.org/fhir/SearchParameter/medications-code",
    "the ATC code, http://www.whocc.no/atc|N02AA01 or N02AA01; comma for OR; :not, :missing",
);
const MEDICATION_IDENTIFIER: SearchParam = param(
    "identifier",
    ParamType::Token,
    Field::Identifier,
    "http://hl7.org/fhir/SearchParameter/medications-identifier",
    IDENTIFIER_DOC,
);

static MEDICATION_REQUEST: &[SearchParam] = &[
    param(
        "subject",
        ParamType::Reference,
        Field::Patient,
        "http://hl7.org/fhir/SearchParameter/MedicationRequest-subject",
        PATIENT_DOC,
    ),
    param(
        "patient",
        ParamType::Reference,
        Field::Patient,
        "http://hl7.org/fhir/SearchParameter/medications-patient",
        PATIENT_DOC,
    ),
    MEDICATION_CODE,
    param(
        "date",
        ParamType::Date,
        Field::Date,
        "http://hl7.org/fhir/SearchParameter/MedicationRequest-authoredon",
        "authoredOn; prefixes as for every date",
    ),
    MEDICATION_IDENTIFIER,
];

static MEDICATION_DISPENSE: &[SearchParam] = &[
    param(
        "subject",
        ParamType::Reference,
        Field::Patient,
        "http://hl7.org/fhir/SearchParameter/MedicationDispense-subject",
        PATIENT_DOC,
    ),
    param(
        "patient",
        ParamType::Reference,
        Field::Patient,
        "http://hl7.org/fhir/SearchParameter/medications-patient",
        PATIENT_DOC,
    ),
    MEDICATION_CODE,
    param(
        "date",
        ParamType::Date,
        Field::Date,
        "http://hl7.org/fhir/SearchParameter/MedicationDispense-whenhandedover",
        "whenHandedOver; prefixes as for every date",
    ),
    MEDICATION_IDENTIFIER,
];

/// The search parameters of a resource type; none for a type not stored.
pub fn search_params(resource_type: &str) -> &'static [SearchParam] {
    match resource_type {
        "Observation" => OBSERVATION,
        "Condition" => CONDITION,
        "Immunization" => IMMUNIZATION,
        "MedicationRequest" => MEDICATION_REQUEST,
        "MedicationDispense" => MEDICATION_DISPENSE,
        _ => &[],
    }
}

/// The result parameters every search takes: (name, FHIR type, meaning).
pub const RESULT_PARAMS: &[(&str, &str, &str)] = &[
    (
        "_count",
        "number",
        "page size, 0 to 1000 (default 50); 0 answers the total only",
    ),
    (
        "_total",
        "token",
        "accurate or estimate (both exact here; the default), or none to omit Bundle.total; _totalMethod (HAPI's name, which fhirpy's count() sends) is taken and changes nothing",
    ),
    ("_summary", "token", "count: the total only; false"),
    (
        "_sort",
        "token",
        "date or -date (ties and resources without a date in log order, the latter last)",
    ),
];

/// A modifier of a search parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modifier {
    /// None given.
    None,
    /// `:missing=true` (true) or `:missing=false` (false).
    Missing(bool),
    /// `:not` (tokens).
    Not,
}

/// One value of a clause.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Test {
    Patient(String),
    /// `system`: `None` any, `Some(None)` none, `Some(Some(s))` exactly
    /// `s`; `code`: `None` any.
    Token {
        system: Option<Option<String>>,
        code: Option<String>,
    },
    Date(DateParam),
}

/// Why a query parameter was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchParamError {
    /// The resource type has no such parameter (the caller refuses it, or
    /// ignores it when asked to be lenient).
    Unknown,
    /// The parameter is known but its modifier or value is not usable.
    Invalid(FhirError),
}

/// One parameter of a query with its values: met when any value matches.
#[derive(Clone, Debug)]
pub struct Clause {
    param: &'static SearchParam,
    modifier: Modifier,
    tests: Vec<Test>,
}

fn invalid(msg: String) -> SearchParamError {
    SearchParamError::Invalid(FhirError::new(400, "value", None, msg))
}

/// The values of a parameter, split at commas that are not escaped as
/// `\,`; `\\` is a backslash.
pub fn split_values(raw: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | '\\' | '$')) => {
                    if let Some(last) = out.last_mut() {
                        last.push(n);
                    }
                }
                Some(n) => {
                    if let Some(last) = out.last_mut() {
                        last.push('\\');
                        last.push(n);
                    }
                }
                None => {
                    if let Some(last) = out.last_mut() {
                        last.push('\\');
                    }
                }
            },
            ',' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

impl Clause {
    /// Reads `key=value` of a search of `resource_type`: `Ok(None)` for an
    /// empty value (ignored). `now_ms` is the instant `ap` dates measure
    /// from.
    pub fn parse(
        resource_type: &str,
        key: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<Option<Clause>, SearchParamError> {
        let (name, modifier) = match key.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (key, None),
        };
        let param = search_params(resource_type)
            .iter()
            .find(|p| p.name == name)
            .ok_or(SearchParamError::Unknown)?;
        let modifier = match (modifier, param.ty) {
            (None, _) => Modifier::None,
            (Some("missing"), _) => match value {
                "true" => Modifier::Missing(true),
                "false" => Modifier::Missing(false),
                _ => return Err(invalid(format!("{key} takes true or false"))),
            },
            (Some("not"), ParamType::Token) => Modifier::Not,
            (Some(m), _) => {
                return Err(SearchParamError::Invalid(FhirError::new(
                    400,
                    "not-supported",
                    None,
                    format!(
                        "modifier :{m} is not supported on {name} ({}); supported: :missing{}",
                        param.ty.as_str(),
                        if param.ty == ParamType::Token {
                            ", :not"
                        } else {
                            ""
                        }
                    ),
                )));
            }
        };
        if value.is_empty() {
            return Ok(None);
        }
        if let Modifier::Missing(_) = modifier {
            return Ok(Some(Clause {
                param,
                modifier,
                tests: Vec::new(),
            }));
        }
        let mut tests = Vec::new();
        for v in split_values(value) {
            tests.push(match param.ty {
                ParamType::Reference => {
                    let p = v.strip_prefix("Patient/").unwrap_or(&v);
                    if !pseudonym::is_well_formed(p) {
                        return Err(invalid(format!(
                            "{name} must be Patient/<pseudonym> (26 characters of base32)"
                        )));
                    }
                    Test::Patient(p.to_owned())
                }
                ParamType::Token => {
                    let (system, code) = match v.split_once('|') {
                        None => (None, Some(v.clone())),
                        Some(("", "")) => {
                            return Err(invalid(format!("{name}: | alone names no token")));
                        }
                        Some(("", c)) => (Some(None), Some(c.to_owned())),
                        Some((s, "")) => (Some(Some(s.to_owned())), None),
                        Some((s, c)) => (Some(Some(s.to_owned())), Some(c.to_owned())),
                    };
                    if code.as_deref() == Some("") {
                        return Err(invalid(format!("{name}: an empty code between commas")));
                    }
                    Test::Token { system, code }
                }
                ParamType::Date => {
                    Test::Date(DateParam::parse(&v, now_ms).map_err(SearchParamError::Invalid)?)
                }
            });
        }
        Ok(Some(Clause {
            param,
            modifier,
            tests,
        }))
    }

    /// The parameter's name.
    pub fn name(&self) -> &'static str {
        self.param.name
    }

    /// Whether the resource summarized by `s` meets this clause.
    pub fn matches(&self, s: &Summary) -> bool {
        let tokens = || -> Vec<(&str, &str)> {
            match self.param.field {
                Field::Code => s
                    .codes
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect(),
                Field::Identifier => s
                    .identifiers
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect(),
                Field::Category => s
                    .category
                    .map(|c| (OBSERVATION_CATEGORY, c))
                    .into_iter()
                    .collect(),
                Field::Patient | Field::Date => Vec::new(),
            }
        };
        let has_value = match self.param.field {
            Field::Patient => !s.patient.is_empty(),
            Field::Date => s.date.is_some(),
            _ => !tokens().is_empty(),
        };
        let any = || {
            let toks = tokens();
            self.tests.iter().any(|t| match t {
                Test::Patient(p) => &s.patient == p,
                Test::Date(d) => s.date.as_deref().is_some_and(|v| d.matches(v)),
                Test::Token { system, code } => toks.iter().any(|(ss, cc)| {
                    code.as_deref().is_none_or(|c| c == *cc)
                        && match system {
                            None => true,
                            Some(None) => ss.is_empty(),
                            Some(Some(x)) => x == ss,
                        }
                }),
            })
        };
        match self.modifier {
            Modifier::Missing(missing) => has_value != missing,
            Modifier::Not => !any(),
            Modifier::None => any(),
        }
    }

    /// The one patient this clause restricts a search to, if it does.
    pub fn patient(&self) -> Option<&str> {
        match (self.modifier, self.tests.as_slice()) {
            (Modifier::None, [Test::Patient(p)]) => Some(p),
            _ => None,
        }
    }

    /// An index term every match of this clause carries (a code, or an
    /// identifier as `system|value`), if there is one.
    pub fn index_term(&self) -> Option<String> {
        let (Modifier::None, [Test::Token { system, code }]) =
            (self.modifier, self.tests.as_slice())
        else {
            return None;
        };
        let code = code.as_ref()?;
        match self.param.field {
            Field::Code => Some(code.clone()),
            Field::Identifier => match system {
                Some(Some(s)) => Some(format!("{s}|{code}")),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A search: clauses that must all be met.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// The clauses, in the order given.
    pub clauses: Vec<Clause>,
}

impl Query {
    /// Whether the resource summarized by `s` meets every clause.
    pub fn matches(&self, s: &Summary) -> bool {
        self.clauses.iter().all(|c| c.matches(s))
    }

    /// The one patient the query restricts a search to, if any clause does.
    pub fn patient(&self) -> Option<&str> {
        self.clauses.iter().find_map(Clause::patient)
    }

    /// An index term every match carries, if a clause gives one.
    pub fn index_term(&self) -> Option<String> {
        self.clauses.iter().find_map(Clause::index_term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::storage::KIND_OBSERVATION;

    const P: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";
    const NOW: i64 = 1_767_225_600_000;

    fn summary(code: &str, date: Option<&str>, ids: &[(&str, &str)]) -> Summary {
        Summary {
            kind: KIND_OBSERVATION,
            resource_type: "Observation",
            patient: P.into(),
            date: date.map(str::to_owned),
            codes: vec![("http://loinc.org".into(), code.into())],
            category: Some("vital-signs"),
            identifiers: ids
                .iter()
                .map(|(s, v)| ((*s).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn query(q: &str) -> Query {
        let mut out = Query::default();
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap();
            if let Some(c) = Clause::parse("Observation", k, v, NOW).unwrap() {
                out.clauses.push(c);
            }
        }
        out
    }

    fn hits(q: &str, s: &Summary) -> bool {
        query(q).matches(s)
    }

    #[test]
    fn comma_is_or_and_repeats_are_and() {
        let hr = summary("8867-4", Some("2026-11-20"), &[]);
        let rr = summary("9279-1", Some("2026-11-21"), &[]);
        for s in [&hr, &rr] {
            assert!(hits("code=8867-4,9279-1", s));
        }
        assert!(!hits("code=8867-4&code=9279-1", &hr), "AND of two codes");
        assert!(hits("code=8867-4&code=http://loinc.org|", &hr));
        assert!(hits("date=ge2026-11-20&date=lt2026-11-21", &hr));
        assert!(!hits("date=ge2026-11-20&date=lt2026-11-21", &rr));
        assert!(hits("date=2026-11-20,2026-11-21", &rr));
    }

    #[test]
    fn token_forms() {
        let hr = summary("8867-4", None, &[("https://his.example/obs", "A-1")]);
        assert!(hits("code=http://loinc.org|8867-4", &hr));
        assert!(!hits("code=http://snomed.info/sct|8867-4", &hr));
        assert!(!hits("code=|8867-4", &hr), "stored codes all have a system");
        assert!(hits("code=http://loinc.org|", &hr));
        assert!(!hits("code=http://snomed.info/sct|", &hr));
        assert!(hits("code:not=9279-1", &hr));
        assert!(!hits("code:not=9279-1,8867-4", &hr));
        assert!(hits("identifier=https://his.example/obs|A-1", &hr));
        assert!(hits("identifier=A-1", &hr));
        assert!(!hits("identifier=https://his.example/obs|A-2", &hr));
        assert!(hits("identifier:missing=false", &hr));
        assert!(!hits("identifier:missing=true", &hr));
        let bare = summary("8867-4", None, &[]);
        assert!(hits("identifier:missing=true", &bare));
        assert!(hits("identifier:not=x|y", &bare), ":not matches no value");
        assert!(hits("date:missing=true", &bare));
        assert!(!hits("date=ne2026-01-01", &bare), "no date, no match");
        assert!(hits("category=vital-signs", &bare));
        assert!(!hits("category=laboratory", &bare));
    }

    #[test]
    fn references() {
        let q = pseudonym::synthetic(1);
        let s = summary("8867-4", None, &[]);
        assert!(hits(&format!("subject=Patient/{P}"), &s));
        assert!(hits(&format!("patient={q},{P}"), &s));
        assert!(!hits(&format!("patient={q}"), &s));
        assert_eq!(query(&format!("subject={P}")).patient(), Some(P));
        assert_eq!(query(&format!("subject={P},{q}")).patient(), None);
    }

    #[test]
    fn index_terms() {
        assert_eq!(query("code=a|b").index_term().as_deref(), Some("b"));
        assert_eq!(query("code=a,b").index_term(), None);
        assert_eq!(query("code:not=b").index_term(), None);
        assert_eq!(
            query("identifier=https://x|1").index_term().as_deref(),
            Some("https://x|1")
        );
        assert_eq!(query("identifier=1").index_term(), None);
    }

    #[test]
    fn refusals() {
        let err = |k: &str, v: &str| Clause::parse("Observation", k, v, NOW).unwrap_err();
        assert_eq!(err("bogus", "1"), SearchParamError::Unknown);
        assert_eq!(
            Clause::parse("Immunization", "code", "1", NOW).unwrap_err(),
            SearchParamError::Unknown
        );
        for (k, v) in [
            ("code:exact", "1"),
            ("date:not", "2026"),
            ("code:missing", "maybe"),
            ("subject", "Patient/123"),
            ("date", "xx2026"),
            ("code", "|"),
            ("code", "a,,b"),
        ] {
            assert!(
                matches!(err(k, v), SearchParamError::Invalid(e) if e.status == 400),
                "{k}={v}"
            );
        }
        assert!(
            Clause::parse("Observation", "code", "", NOW)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn escaped_commas() {
        assert_eq!(split_values(r"a\,b,c"), ["a,b", "c"]);
        assert_eq!(split_values(r"a\\,b"), [r"a\", "b"]);
        assert_eq!(split_values("a"), ["a"]);
    }

    #[test]
    fn every_type_stored_has_its_parameters() {
        for rt in [
            "Observation",
            "Condition",
            "Immunization",
            "MedicationRequest",
            "MedicationDispense",
        ] {
            let names: Vec<_> = search_params(rt).iter().map(|p| p.name).collect();
            assert!(names.contains(&"date"), "{rt}");
            assert!(names.contains(&"identifier"), "{rt}");
            assert!(names.contains(&"patient"), "{rt}");
        }
        assert!(search_params("Patient").is_empty());
    }
}
