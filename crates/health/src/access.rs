//! Accountable access: why a record is read (HL7 PurposeOfUse), what a
//! patient has directed about it (FHIR R4 `Consent` with the
//! `patient-privacy` scope), and the record of each read (a FHIR
//! `AuditEvent` after IHE BALP). All three are pure data with their rules,
//! so every node judges a directive or an access entry the same way.

use crate::fhir;
use crate::payload::PayloadError;
use crate::pseudonym;
use serde::{Deserialize, Serialize};

/// Kind of a patient's consent directive.
pub const CONSENT_DIRECTIVE: &str = "consent.directive";
/// Kind of an access entry: one record-level read, logged by the node that
/// served it.
pub const ACCESS_ENTRY: &str = "access.entry";
/// Kind of the data-protection officer's review of a break-glass entry.
pub const ACCESS_REVIEW: &str = "access.review";

/// HL7 v3 ActReason, the code system of PurposeOfUse.
pub const PURPOSE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// FHIR's consent scope code system.
pub const CONSENT_SCOPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
/// The reference type of a participant; the reference is its key in hex.
pub const PARTICIPANT_TYPE: &str = "urn:medledger:participant";
/// The code system of medledger transaction kinds.
pub const KIND_SYSTEM: &str = "urn:medledger:kind";
/// FHIR's resource types code system.
pub const RESOURCE_TYPE_SYSTEM: &str = "http://hl7.org/fhir/resource-types";
/// The reference type of a transaction; the reference is its id in hex.
pub const TRANSACTION_TYPE: &str = "urn:medledger:transaction";
/// Extension holding the access decision of an entry.
pub const DECISION_URL: &str = "urn:medledger:access-decision";
/// Extension holding the reason stated for a break-glass read.
pub const BREAK_GLASS_REASON_URL: &str = "urn:medledger:break-glass-reason";
/// Extension holding how many records a read returned.
pub const RETURNED_URL: &str = "urn:medledger:records-returned";
/// Extension holding how many records a read withheld under consent.
pub const WITHHELD_URL: &str = "urn:medledger:records-withheld";

/// Most patients, records or directive terms one payload may name.
const MAX_ITEMS: usize = 1000;
/// Longest break-glass reason, in bytes.
const MAX_REASON: usize = 500;

/// Why a record is read: the HL7 PurposeOfUse codes medledger accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// Treatment.
    Treat,
    /// Emergency treatment (the only purpose that may break the glass).
    Etreat,
    /// Payment.
    Hpaymt,
    /// Research.
    Hresch,
    /// Public health.
    Pubhlth,
    /// Healthcare operations (audit, quality, administration).
    Hoperat,
    /// The patient's own request.
    Patrqt,
}

impl Purpose {
    /// Every purpose, in code order of the table in docs/ROLES.md.
    pub const ALL: [Purpose; 7] = [
        Purpose::Treat,
        Purpose::Etreat,
        Purpose::Hpaymt,
        Purpose::Hresch,
        Purpose::Pubhlth,
        Purpose::Hoperat,
        Purpose::Patrqt,
    ];

    /// The HL7 code.
    pub fn code(self) -> &'static str {
        match self {
            Purpose::Treat => "TREAT",
            Purpose::Etreat => "ETREAT",
            Purpose::Hpaymt => "HPAYMT",
            Purpose::Hresch => "HRESCH",
            Purpose::Pubhlth => "PUBHLTH",
            Purpose::Hoperat => "HOPERAT",
            Purpose::Patrqt => "PATRQT",
        }
    }

    /// The purpose with HL7 code `code`.
    pub fn parse(code: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.code() == code)
    }
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A code with its system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coding {
    /// The code system.
    pub system: String,
    /// The code.
    pub code: String,
}

/// A CodeableConcept of codings only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concept {
    /// Its codings.
    pub coding: Vec<Coding>,
}

/// A Reference: literal (`Type/id`, or a key or id in hex with its `type`),
/// or by its display alone. FHIR's `identifier` is a name the PII guard
/// reserves for identifying data, and the guard passes a hex key only as a
/// whole string, so keys and ids stand alone in `reference`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// `Type/id`, or a key or id in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// What a hex reference points at: [`PARTICIPANT_TYPE`] or
    /// [`TRANSACTION_TYPE`].
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The name of what is referenced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// A time period; either end may be open.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// Start, a FHIR dateTime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// End, a FHIR dateTime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// Permit or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionType {
    /// The matching reads are permitted.
    Permit,
    /// The matching reads are denied.
    Deny,
}

/// One actor a provision is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// Who: a participant (its key, of type [`PARTICIPANT_TYPE`]), or an
    /// institution by its registered name (`display`).
    pub reference: Reference,
}

/// What a directive permits or denies. An empty list matches everything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provision {
    /// Permit or deny.
    #[serde(rename = "type")]
    pub kind: ProvisionType,
    /// When the provision is in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// The purposes it covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purpose: Vec<Coding>,
    /// The readers it covers: participants or whole institutions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actor: Vec<Actor>,
    /// The data it covers: transaction kinds or FHIR resource types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class: Vec<Coding>,
}

/// A patient's directive: a FHIR R4 `Consent` with the `patient-privacy`
/// scope and one provision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Consent {
    /// Always `Consent`.
    pub resource_type: String,
    /// `active`, or `inactive` for a directive that is kept but not applied.
    pub status: String,
    /// `patient-privacy` in [`CONSENT_SCOPE_SYSTEM`].
    pub scope: Concept,
    /// `Patient/<pseudonym>`.
    pub patient: Reference,
    /// When the patient gave it, a FHIR dateTime.
    pub date_time: String,
    /// The signed form it was taken from; required when a doctor submits
    /// the directive on the patient's behalf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_reference: Option<Reference>,
    /// What it permits or denies.
    pub provision: Provision,
}

impl Consent {
    /// The patient's pseudonym.
    pub fn patient(&self) -> &str {
        patient_of(&self.patient).unwrap_or("")
    }

    /// True when the directive is active, in force at `at_ms`, and covers a
    /// read for `purpose` by the participant `reader` (hex key) of
    /// `institution`, of a record of `kind`.
    pub fn covers(
        &self,
        at_ms: i64,
        purpose: Purpose,
        reader: &str,
        institution: &str,
        kind: &str,
    ) -> bool {
        let p = &self.provision;
        let in_force = p.period.as_ref().is_none_or(|period| {
            let start = period.start.as_deref().and_then(fhir::date_range);
            let end = period.end.as_deref().and_then(fhir::date_range);
            start.is_none_or(|(s, _)| s <= at_ms) && end.is_none_or(|(_, e)| at_ms < e)
        });
        let purpose_ok = p.purpose.is_empty() || p.purpose.iter().any(|c| c.code == purpose.code());
        let actor_ok = p.actor.is_empty()
            || p.actor.iter().any(|a| {
                participant_of(&a.reference) == Some(reader)
                    || (a.reference.reference.is_none()
                        && a.reference.display.as_deref() == Some(institution))
            });
        let resource_type = fhir::resource_type_of(kind);
        let class_ok = p.class.is_empty()
            || p.class.iter().any(|c| {
                (c.system == KIND_SYSTEM && c.code == kind)
                    || (c.system == RESOURCE_TYPE_SYSTEM && Some(c.code.as_str()) == resource_type)
            });
        self.status == "active" && in_force && purpose_ok && actor_ok && class_ok
    }
}

/// The index code under which a patient's directives are found: the
/// patient's record lists them too, but a read must not walk every record
/// of the patient to find them.
pub fn directive_code(patient: &str) -> String {
    format!("consent:{patient}")
}

/// The directive in force for a read: the latest of `directives` (in
/// ledger order, oldest first) that covers it; `None` when none does, and
/// the ledger's default applies.
pub fn in_force<'a>(
    directives: &'a [Consent],
    at_ms: i64,
    purpose: Purpose,
    reader: &str,
    institution: &str,
    kind: &str,
) -> Option<&'a Consent> {
    directives
        .iter()
        .rev()
        .find(|d| d.covers(at_ms, purpose, reader, institution, kind))
}

fn patient_of(r: &Reference) -> Option<&str> {
    r.reference
        .as_deref()?
        .strip_prefix("Patient/")
        .filter(|p| pseudonym::is_well_formed(p))
}

/// The key or id (hex) of a reference of type `kind`.
fn hex_of<'a>(r: &'a Reference, kind: &str) -> Option<&'a str> {
    (r.kind.as_deref() == Some(kind) && r.display.is_none())
        .then_some(r.reference.as_deref()?)
        .filter(|k| is_hex_key(k))
}

/// The key (hex) of a participant reference.
fn participant_of(r: &Reference) -> Option<&str> {
    hex_of(r, PARTICIPANT_TYPE)
}

fn schema(msg: impl Into<String>) -> PayloadError {
    PayloadError::Schema(msg.into())
}

fn check_purposes(codes: &[Coding], path: &str) -> Result<(), PayloadError> {
    for (i, c) in codes.iter().enumerate() {
        if c.system != PURPOSE_SYSTEM || Purpose::parse(&c.code).is_none() {
            return Err(schema(format!(
                "{path}[{i}] must be a PurposeOfUse code of {PURPOSE_SYSTEM} (TREAT, ETREAT, \
                 HPAYMT, HRESCH, PUBHLTH, HOPERAT or PATRQT)"
            )));
        }
    }
    Ok(())
}

fn is_hex_key(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a consent directive's payload (JSON bytes).
pub fn consent(payload: &[u8]) -> Result<Consent, PayloadError> {
    let c: Consent = serde_json::from_slice(payload).map_err(|e| schema(e.to_string()))?;
    if c.resource_type != "Consent" {
        return Err(schema("resourceType must be Consent"));
    }
    if !matches!(c.status.as_str(), "active" | "inactive") {
        return Err(schema("status must be active or inactive"));
    }
    let privacy = c
        .scope
        .coding
        .iter()
        .any(|s| s.system == CONSENT_SCOPE_SYSTEM && s.code == "patient-privacy");
    if !privacy {
        return Err(schema(format!(
            "scope must be patient-privacy of {CONSENT_SCOPE_SYSTEM}"
        )));
    }
    if patient_of(&c.patient).is_none() {
        return Err(schema("patient must reference Patient/<pseudonym>"));
    }
    if fhir::date_range(&c.date_time).is_none() {
        return Err(schema("dateTime must be a FHIR dateTime"));
    }
    if let Some(source) = &c.source_reference
        && source.reference.as_deref().is_none_or(|r| !r.contains('/'))
    {
        return Err(schema(
            "sourceReference must reference the signed form, Type/id",
        ));
    }
    let p = &c.provision;
    if let Some(period) = &p.period {
        for (name, v) in [("start", &period.start), ("end", &period.end)] {
            if v.as_deref().is_some_and(|v| fhir::date_range(v).is_none()) {
                return Err(schema(format!(
                    "provision.period.{name} must be a FHIR dateTime"
                )));
            }
        }
    }
    if p.purpose.len() + p.actor.len() + p.class.len() > MAX_ITEMS {
        return Err(schema(format!(
            "a provision names at most {MAX_ITEMS} terms"
        )));
    }
    check_purposes(&p.purpose, "provision.purpose")?;
    for (i, a) in p.actor.iter().enumerate() {
        let r = &a.reference;
        let ok = match (&r.reference, &r.display) {
            (Some(_), None) => participant_of(r).is_some(),
            (None, Some(name)) => r.kind.is_none() && !name.trim().is_empty(),
            _ => false,
        };
        if !ok {
            return Err(schema(format!(
                "provision.actor[{i}] must reference a participant (type {PARTICIPANT_TYPE}, its \
                 key in hex) or name an institution (display, its registered name)"
            )));
        }
    }
    for (i, c) in p.class.iter().enumerate() {
        let ok = match c.system.as_str() {
            KIND_SYSTEM => !c.code.is_empty(),
            RESOURCE_TYPE_SYSTEM => fhir::kind_of(&c.code).is_some(),
            _ => false,
        };
        if !ok {
            return Err(schema(format!(
                "provision.class[{i}] must be a transaction kind ({KIND_SYSTEM}) or a stored \
                 FHIR resource type ({RESOURCE_TYPE_SYSTEM})"
            )));
        }
    }
    Ok(c)
}

/// What a read decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The records were returned.
    Permit,
    /// Nothing was returned.
    Deny,
    /// Returned despite a consent denial, for emergency treatment.
    BreakGlass,
}

impl Verdict {
    /// The code stored in an access entry.
    pub fn code(self) -> &'static str {
        match self {
            Verdict::Permit => "permit",
            Verdict::Deny => "deny",
            Verdict::BreakGlass => "break-glass",
        }
    }
}

/// One record-level read, as the node that served it logs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// The reader's key, in hex.
    pub reader: String,
    /// The reader's role.
    pub role: String,
    /// The serving node's key, in hex.
    pub node: String,
    /// The patients whose records were asked for.
    pub patients: Vec<String>,
    /// The ids (hex) of the records returned.
    pub records: Vec<String>,
    /// The request (path and query) for a search or an export.
    pub query: Option<String>,
    /// Records returned.
    pub returned: u64,
    /// Records withheld under the patients' consent.
    pub withheld: u64,
    /// The purpose of use.
    pub purpose: Purpose,
    /// The decision.
    pub verdict: Verdict,
    /// The reason stated for a break-glass read.
    pub reason: Option<String>,
    /// When, in ms since the epoch.
    pub time_ms: i64,
}

impl Access {
    /// The entry as a FHIR `AuditEvent` (IHE BALP "Patient Record" read).
    pub fn to_audit_event(&self) -> serde_json::Value {
        use serde_json::json;
        let mut entity: Vec<serde_json::Value> = self
            .patients
            .iter()
            .map(|p| {
                json!({"what": {"reference": format!("Patient/{p}")},
                       "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
                       "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}})
            })
            .collect();
        entity.extend(self.records.iter().map(|id| {
            json!({"what": {"type": TRANSACTION_TYPE, "reference": id},
                   "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"}})
        }));
        if let Some(q) = &self.query {
            entity.push(json!({
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24"},
                "description": q}));
        }
        let mut extension = vec![
            json!({"url": DECISION_URL, "valueCode": self.verdict.code()}),
            json!({"url": RETURNED_URL, "valueUnsignedInt": self.returned}),
            json!({"url": WITHHELD_URL, "valueUnsignedInt": self.withheld}),
        ];
        if let Some(r) = &self.reason {
            extension.push(json!({"url": BREAK_GLASS_REASON_URL, "valueString": r}));
        }
        json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction",
                         "code": if self.query.is_some() { "search-type" } else { "read" }}],
            "action": if self.query.is_some() { "E" } else { "R" },
            "recorded": crate::calendar::instant_of_ms(self.time_ms),
            "outcome": if self.verdict == Verdict::Deny { "4" } else { "0" },
            "purposeOfEvent": [{"coding": [{"system": PURPOSE_SYSTEM, "code": self.purpose.code()}]}],
            "agent": [{
                "who": {"type": PARTICIPANT_TYPE, "reference": self.reader},
                "role": [{"coding": [{"system": "urn:medledger:role", "code": self.role}]}],
                "requestor": true}],
            "source": {"observer": {"type": PARTICIPANT_TYPE, "reference": self.node}},
            "entity": entity,
            "extension": extension,
        })
    }
}

/// An access entry's payload, as stored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuditEvent {
    resource_type: String,
    #[serde(rename = "type")]
    _type: Coding,
    subtype: Vec<Coding>,
    action: String,
    recorded: String,
    outcome: String,
    purpose_of_event: Vec<Concept>,
    agent: Vec<Agent>,
    source: Source,
    entity: Vec<Entity>,
    extension: Vec<Extension>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Agent {
    who: Reference,
    role: Vec<Concept>,
    requestor: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    observer: Reference,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entity {
    #[serde(default)]
    what: Option<Reference>,
    #[serde(rename = "type")]
    _type: Coding,
    #[serde(default)]
    role: Option<Coding>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Extension {
    url: String,
    #[serde(default)]
    value_code: Option<String>,
    #[serde(default)]
    value_unsigned_int: Option<u64>,
    #[serde(default)]
    value_string: Option<String>,
}

/// What the indexes and the access log take from a valid access entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessSummary {
    /// The patients whose records were asked for.
    pub patients: Vec<String>,
    /// The decision.
    pub verdict: Verdict,
    /// The reader's key, in hex.
    pub reader: String,
    /// The purpose of use.
    pub purpose: Purpose,
    /// The reason stated for a break-glass read.
    pub reason: Option<String>,
}

/// Checks an access entry's payload (JSON bytes): a FHIR `AuditEvent` as
/// [`Access::to_audit_event`] writes it.
pub fn access_entry(payload: &[u8]) -> Result<AccessSummary, PayloadError> {
    let e: AuditEvent = serde_json::from_slice(payload).map_err(|e| schema(e.to_string()))?;
    if e.resource_type != "AuditEvent" || e.subtype.len() != 1 {
        return Err(schema("resourceType must be AuditEvent, with one subtype"));
    }
    if !matches!(e.action.as_str(), "R" | "E") || !matches!(e.outcome.as_str(), "0" | "4") {
        return Err(schema("action must be R or E, outcome 0 or 4"));
    }
    if crate::fhir::date_range(&e.recorded).is_none() {
        return Err(schema("recorded must be an instant"));
    }
    let purposes: Vec<Coding> = e
        .purpose_of_event
        .into_iter()
        .flat_map(|c| c.coding)
        .collect();
    if purposes.len() != 1 {
        return Err(schema("purposeOfEvent must hold one PurposeOfUse code"));
    }
    check_purposes(&purposes, "purposeOfEvent")?;
    let purpose = Purpose::parse(&purposes[0].code)
        .ok_or_else(|| schema("purposeOfEvent must hold one PurposeOfUse code"))?;
    let keyed = |r: &Reference| participant_of(r).is_some();
    let [agent] = e.agent.as_slice() else {
        return Err(schema("agent must name the one reader"));
    };
    if !agent.requestor || !keyed(&agent.who) || agent.role.len() != 1 || !keyed(&e.source.observer)
    {
        return Err(schema(
            "agent.who and source.observer must be participant keys",
        ));
    }
    if e.entity.len() > 2 * MAX_ITEMS + 1 {
        return Err(schema("too many entities"));
    }
    let mut patients = Vec::new();
    for (i, ent) in e.entity.iter().enumerate() {
        let what = ent.what.as_ref();
        if let Some(p) = what.and_then(patient_of) {
            patients.push(p.to_owned());
        } else if let Some(w) = what {
            if hex_of(w, TRANSACTION_TYPE).is_none() {
                return Err(schema(format!("entity[{i}] must name a transaction id")));
            }
        } else if ent.description.is_none() || ent.role.is_none() {
            return Err(schema(format!(
                "entity[{i}] must name a patient, a record or the query"
            )));
        }
    }
    if patients.is_empty() || patients.len() > MAX_ITEMS {
        return Err(schema(format!("an entry names 1 to {MAX_ITEMS} patients")));
    }
    let mut verdict = None;
    for x in &e.extension {
        match (
            x.url.as_str(),
            &x.value_code,
            &x.value_unsigned_int,
            &x.value_string,
        ) {
            (DECISION_URL, Some(code), None, None) => {
                verdict = Some(match code.as_str() {
                    "permit" => Verdict::Permit,
                    "deny" => Verdict::Deny,
                    "break-glass" => Verdict::BreakGlass,
                    _ => return Err(schema("the decision is permit, deny or break-glass")),
                });
            }
            (RETURNED_URL | WITHHELD_URL, None, Some(_), None) => {}
            (BREAK_GLASS_REASON_URL, None, None, Some(r)) if !r.trim().is_empty() => {
                if r.len() > MAX_REASON {
                    return Err(schema(format!("a reason is at most {MAX_REASON} bytes")));
                }
            }
            _ => return Err(schema(format!("extension {} is not known here", x.url))),
        }
    }
    let verdict = verdict.ok_or_else(|| schema("the entry must state its decision"))?;
    let reason = e
        .extension
        .into_iter()
        .find(|x| x.url == BREAK_GLASS_REASON_URL)
        .and_then(|x| x.value_string);
    if (verdict == Verdict::BreakGlass) != reason.is_some() {
        return Err(schema(
            "a break-glass entry, and only one, states its reason",
        ));
    }
    let reader = participant_of(&agent.who).unwrap_or_default().to_owned();
    Ok(AccessSummary {
        patients,
        verdict,
        reader,
        purpose,
        reason,
    })
}

/// Whether the officer found a break-glass read justified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReviewOutcome {
    /// The emergency justified reading despite the patient's directive.
    Justified,
    /// It did not.
    NotJustified,
}

impl ReviewOutcome {
    /// The code stored in a review.
    pub fn code(self) -> &'static str {
        match self {
            ReviewOutcome::Justified => "justified",
            ReviewOutcome::NotJustified => "not-justified",
        }
    }
}

/// Why the officer decided as it did: a closed set of codes, so a review
/// holds no free text that could carry personal data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReviewReason {
    /// Justified: the clinical record confirms the emergency.
    EmergencyConfirmed,
    /// Justified: the patient could not be asked (unconscious, incapable).
    ConsentUnobtainable,
    /// Not justified: there was no emergency.
    NoEmergency,
    /// Not justified: the reader was not treating the patient.
    NotTreating,
    /// Not justified: more was read than the emergency needed.
    ExcessScope,
    /// Not justified: the stated reason does not support the read.
    ReasonInadequate,
}

impl ReviewReason {
    /// Every reason code.
    pub const ALL: [ReviewReason; 6] = [
        ReviewReason::EmergencyConfirmed,
        ReviewReason::ConsentUnobtainable,
        ReviewReason::NoEmergency,
        ReviewReason::NotTreating,
        ReviewReason::ExcessScope,
        ReviewReason::ReasonInadequate,
    ];

    /// The outcome this reason supports.
    pub fn outcome(self) -> ReviewOutcome {
        match self {
            ReviewReason::EmergencyConfirmed | ReviewReason::ConsentUnobtainable => {
                ReviewOutcome::Justified
            }
            ReviewReason::NoEmergency
            | ReviewReason::NotTreating
            | ReviewReason::ExcessScope
            | ReviewReason::ReasonInadequate => ReviewOutcome::NotJustified,
        }
    }

    /// The code stored in a review.
    pub fn code(self) -> &'static str {
        match self {
            ReviewReason::EmergencyConfirmed => "emergency-confirmed",
            ReviewReason::ConsentUnobtainable => "consent-unobtainable",
            ReviewReason::NoEmergency => "no-emergency",
            ReviewReason::NotTreating => "not-treating",
            ReviewReason::ExcessScope => "excess-scope",
            ReviewReason::ReasonInadequate => "reason-inadequate",
        }
    }
}

/// The data-protection officer's review of one break-glass access entry
/// (kind [`ACCESS_REVIEW`]). Plain JSON rather than a FHIR resource: FHIR
/// has no resource for the review of an AuditEvent, and every field here is
/// a code, an id or a pseudonym.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// The id (hex) of the reviewed `access.entry`.
    pub entry: String,
    /// The patients that entry names, each once: the review is indexed
    /// under them, so it appears in their access logs. The ledger checks
    /// they are exactly the entry's.
    pub patients: Vec<String>,
    /// Justified or not.
    pub outcome: ReviewOutcome,
    /// Why, as a code that supports the outcome.
    pub reason: ReviewReason,
}

/// Checks a review's payload (JSON bytes) on its own; whether it names a
/// break-glass entry awaiting review is the ledger's rule.
pub fn review(payload: &[u8]) -> Result<Review, PayloadError> {
    let r: Review = serde_json::from_slice(payload).map_err(|e| schema(e.to_string()))?;
    if !is_hex_key(&r.entry) {
        return Err(schema(
            "entry must be the id of an access entry, 64 lowercase hex digits",
        ));
    }
    if r.patients.is_empty() || r.patients.len() > MAX_ITEMS {
        return Err(schema(format!("a review names 1 to {MAX_ITEMS} patients")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in r.patients.iter().enumerate() {
        if !pseudonym::is_well_formed(p) || !seen.insert(p.as_str()) {
            return Err(schema(format!(
                "patients[{i}] must be a pseudonym not named before"
            )));
        }
    }
    if r.reason.outcome() != r.outcome {
        return Err(schema(format!(
            "reason {} does not support outcome {}",
            r.reason.code(),
            r.outcome.code()
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const P: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";

    fn directive(provision: serde_json::Value) -> serde_json::Value {
        json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE_SYSTEM, "code": "patient-privacy"}]},
            "patient": {"reference": format!("Patient/{P}")},
            "dateTime": "2026-12-01T09:00:00Z",
            "provision": provision,
        })
    }

    fn parse(v: &serde_json::Value) -> Result<Consent, PayloadError> {
        consent(v.to_string().as_bytes())
    }

    // 2026-12-03T00:00:00Z, worked out by hand: 20,790 days after 1970-01-01.
    const DEC_3: i64 = 20_790 * 86_400_000;

    #[test]
    fn the_latest_directive_in_force_that_covers_a_read_applies() {
        let deny_research = parse(&directive(json!({"type": "deny",
            "purpose": [{"system": PURPOSE_SYSTEM, "code": "HRESCH"}]})))
        .unwrap();
        let permit_all = parse(&directive(json!({"type": "permit"}))).unwrap();
        let later_deny_until_nov = parse(&directive(json!({"type": "deny",
            "period": {"end": "2026-11-30"}})))
        .unwrap();
        let ds = [deny_research.clone(), permit_all, later_deny_until_nov];
        let r = "ab".repeat(32);
        let at =
            |p| in_force(&ds, DEC_3, p, &r, "KC Nis", "medical.report").map(|d| d.provision.kind);
        // The deny that ended in November is not in force; the permit after
        // the research opt-out is the latest that covers research.
        assert_eq!(at(Purpose::Hresch), Some(ProvisionType::Permit));
        assert_eq!(at(Purpose::Treat), Some(ProvisionType::Permit));
        // With the research deny alone, only research is covered.
        let only = [deny_research];
        assert_eq!(
            in_force(
                &only,
                DEC_3,
                Purpose::Hresch,
                &r,
                "KC Nis",
                "medical.report"
            )
            .map(|d| d.provision.kind),
            Some(ProvisionType::Deny)
        );
        assert!(in_force(&only, DEC_3, Purpose::Treat, &r, "KC Nis", "medical.report").is_none());
    }

    #[test]
    fn a_directive_covers_only_its_actors_and_classes() {
        let key = "cd".repeat(32);
        let d = parse(&directive(json!({"type": "deny",
            "actor": [{"reference": {"display": "KC Nis"}},
                      {"reference": {"type": PARTICIPANT_TYPE, "reference": key}}],
            "class": [{"system": RESOURCE_TYPE_SYSTEM, "code": "Observation"}]})))
        .unwrap();
        let other = "ef".repeat(32);
        assert!(d.covers(DEC_3, Purpose::Treat, &other, "KC Nis", "fhir.observation"));
        assert!(d.covers(DEC_3, Purpose::Treat, &key, "DZ Nis", "fhir.observation"));
        assert!(!d.covers(DEC_3, Purpose::Treat, &other, "DZ Nis", "fhir.observation"));
        assert!(!d.covers(DEC_3, Purpose::Treat, &key, "KC Nis", "medical.report"));
    }

    #[test]
    fn malformed_directives_are_refused_with_the_field_named() {
        let cases = [
            (json!({"type": "maybe"}), "unknown variant"),
            (
                json!({"type": "deny", "purpose": [{"system": PURPOSE_SYSTEM, "code": "SPY"}]}),
                "purpose[0]",
            ),
            (
                json!({"type": "deny", "class": [{"system": RESOURCE_TYPE_SYSTEM, "code": "Patient"}]}),
                "class[0]",
            ),
            (
                json!({"type": "deny", "actor": [{"reference": {"reference": "Practitioner/1"}}]}),
                "actor[0]",
            ),
            (
                json!({"type": "deny", "period": {"start": "yesterday"}}),
                "period.start",
            ),
        ];
        for (provision, want) in cases {
            let err = parse(&directive(provision)).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        let mut wrong_scope = directive(json!({"type": "deny"}));
        wrong_scope["scope"]["coding"][0]["code"] = json!("research");
        assert!(
            parse(&wrong_scope)
                .unwrap_err()
                .to_string()
                .contains("patient-privacy")
        );
        let mut no_patient = directive(json!({"type": "deny"}));
        no_patient["patient"]["reference"] = json!("Patient/Pera Peric");
        assert!(parse(&no_patient).is_err());
    }

    fn access(verdict: Verdict, reason: Option<&str>) -> Access {
        Access {
            reader: "ab".repeat(32),
            role: "doctor".into(),
            node: "cd".repeat(32),
            patients: vec![P.into()],
            records: vec!["01".repeat(32)],
            query: None,
            returned: 1,
            withheld: 0,
            purpose: Purpose::Etreat,
            verdict,
            reason: reason.map(Into::into),
            time_ms: DEC_3,
        }
    }

    #[test]
    fn an_access_entry_round_trips_through_its_rules() {
        let a = access(Verdict::BreakGlass, Some("unconscious on arrival"));
        let event = a.to_audit_event();
        assert_eq!(event["recorded"], "2026-12-03T00:00:00.000Z");
        assert_eq!(event["purposeOfEvent"][0]["coding"][0]["code"], "ETREAT");
        let s = access_entry(event.to_string().as_bytes()).unwrap();
        assert_eq!(s.patients, [P]);
        assert_eq!(s.verdict, Verdict::BreakGlass);
        assert_eq!(s.reader, "ab".repeat(32));
        assert_eq!(s.purpose, Purpose::Etreat);
        assert_eq!(s.reason.as_deref(), Some("unconscious on arrival"));
        // A break-glass read states its reason; a plain one does not.
        let silent = access(Verdict::BreakGlass, None).to_audit_event();
        assert!(access_entry(silent.to_string().as_bytes()).is_err());
        let odd = access(Verdict::Permit, Some("why not")).to_audit_event();
        assert!(access_entry(odd.to_string().as_bytes()).is_err());
        // Every field is the rules' business: a payload smuggled in is refused.
        let mut extra = a.to_audit_event();
        extra["note"] = json!("free text");
        assert!(access_entry(extra.to_string().as_bytes()).is_err());
    }

    #[test]
    fn keys_and_ids_that_hold_a_phone_numbers_digits_pass_the_pii_guard() {
        // Hex keys are exempt from the guard only as whole strings; these
        // hold a mobile number's shape and must still be loggable.
        let mut a = access(Verdict::Permit, None);
        a.reader = format!("0641234567{}", "a".repeat(54));
        a.records = vec![format!("{}0641234567", "b".repeat(54))];
        let bytes = a.to_audit_event().to_string();
        crate::pii::scan_json(bytes.as_bytes()).expect("the guard passes the entry");
        assert!(access_entry(bytes.as_bytes()).is_ok());
    }

    #[test]
    fn a_review_names_an_entry_its_patients_and_a_reason_that_fits_its_outcome() {
        let entry = "0a".repeat(32);
        let ok = json!({"entry": entry, "patients": [P], "outcome": "not-justified",
                        "reason": "no-emergency"});
        let r = review(ok.to_string().as_bytes()).unwrap();
        assert_eq!(r.outcome, ReviewOutcome::NotJustified);
        assert_eq!(r.reason, ReviewReason::NoEmergency);
        crate::pii::scan_json(ok.to_string().as_bytes()).expect("the guard passes a review");
        let bad = [
            (
                json!({"entry": entry, "patients": [P], "outcome": "justified",
                    "reason": "no-emergency"}),
                "does not support",
            ),
            (
                json!({"entry": "0A".repeat(32), "patients": [P], "outcome": "justified",
                    "reason": "emergency-confirmed"}),
                "entry",
            ),
            (
                json!({"entry": entry, "patients": [], "outcome": "justified",
                    "reason": "emergency-confirmed"}),
                "1 to",
            ),
            (
                json!({"entry": entry, "patients": [P, P], "outcome": "justified",
                    "reason": "emergency-confirmed"}),
                "patients[1]",
            ),
            (
                json!({"entry": entry, "patients": [P], "outcome": "justified",
                    "reason": "because I said so"}),
                "unknown variant",
            ),
            (
                json!({"entry": entry, "patients": [P], "outcome": "justified",
                    "reason": "emergency-confirmed", "note": "free text"}),
                "unknown field",
            ),
        ];
        for (v, want) in bad {
            let err = review(v.to_string().as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        for reason in ReviewReason::ALL {
            let v = serde_json::to_value(reason).unwrap();
            assert_eq!(v, json!(reason.code()));
        }
    }

    #[test]
    fn purposes_parse_from_their_hl7_codes() {
        for p in Purpose::ALL {
            assert_eq!(Purpose::parse(p.code()), Some(p));
        }
        assert_eq!(Purpose::parse("treat"), None);
        assert_eq!(Purpose::parse("HMARKT"), None);
    }
}
