//! The read policy for record-level reads, beside the write policy in
//! [`crate::roles`]: which purposes of use each role may name, and the one
//! decision every record-level read goes through.

use crate::roles::{RECORD_READERS, Role, may_read_kind};
pub use medledger_health::access::{ProvisionType, Purpose};

/// The purposes `role` may read records for; the first is the one assumed
/// when a read names none. Empty for roles that read no records.
pub fn purposes(role: Role) -> &'static [Purpose] {
    use Purpose::*;
    match role {
        Role::Doctor => &[Treat, Etreat, Hoperat],
        Role::Institution => &[Treat, Hpaymt, Hoperat],
        Role::PublicHealth => &[Pubhlth],
        Role::Researcher => &[Hresch],
        Role::Auditor => &[Hoperat],
        Role::DataProtectionOfficer => &[Hoperat, Patrqt],
        Role::Admin => &[Hoperat],
        Role::Patient => &[Patrqt],
        // Dispensing is part of the patient's treatment.
        Role::Pharmacy => &[Treat],
        Role::Device | Role::PseudonymizationAuthority | Role::Node | Role::RegistryOfficer => &[],
    }
}

/// Why a read was denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The role reads no records of this kind.
    Role,
    /// The role may not read for this purpose.
    Purpose,
    /// The patient's consent directive denies it.
    Consent,
}

/// The outcome of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Read.
    Permit,
    /// Read despite a consent denial: emergency treatment by a doctor who
    /// stated a reason. The entry is flagged and must be reviewed.
    BreakGlass,
    /// Not read.
    Deny(Denial),
}

/// The one decision for a record-level read: a reader of `role` reads a
/// record of `kind` for `purpose`, where the patient's directive in force
/// (if any) says `consent`, `reason` says whether a break-glass reason
/// was stated, and `own` whether the record is about the reader's own
/// pseudonym (a patient reading their own records). Pure and
/// deterministic; every read path calls it. With no directive in force,
/// the ledger's default is to permit. A patient reads their own records
/// whatever their directives say, and nobody else's.
pub fn decide(
    role: Role,
    purpose: Purpose,
    kind: &str,
    consent: Option<ProvisionType>,
    reason: bool,
    own: bool,
) -> Decision {
    if !RECORD_READERS.contains(&role) || !may_read_kind(role, kind) {
        return Decision::Deny(Denial::Role);
    }
    if !purposes(role).contains(&purpose) {
        return Decision::Deny(Denial::Purpose);
    }
    if role == Role::Patient {
        return match own {
            true => Decision::Permit,
            false => Decision::Deny(Denial::Role),
        };
    }
    match consent {
        Some(ProvisionType::Deny)
            if role == Role::Doctor && purpose == Purpose::Etreat && reason =>
        {
            Decision::BreakGlass
        }
        Some(ProvisionType::Deny) => Decision::Deny(Denial::Consent),
        Some(ProvisionType::Permit) | None => Decision::Permit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::kind;

    #[test]
    fn consent_denies_every_reader_but_a_doctor_breaking_the_glass_for_an_emergency() {
        let deny = Some(ProvisionType::Deny);
        let report = kind::MEDICAL_REPORT;
        // A patient's own reads are judged apart, and so are a pharmacy's,
        // which reads no reports (the tests below).
        for role in RECORD_READERS
            .iter()
            .filter(|r| **r != Role::Patient && may_read_kind(**r, report))
        {
            for &purpose in purposes(*role) {
                let glass = *role == Role::Doctor && purpose == Purpose::Etreat;
                let want = match glass {
                    true => Decision::BreakGlass,
                    false => Decision::Deny(Denial::Consent),
                };
                assert_eq!(
                    decide(*role, purpose, report, deny, true, false),
                    want,
                    "{role} {purpose}"
                );
                assert_eq!(
                    decide(*role, purpose, report, deny, false, false),
                    Decision::Deny(Denial::Consent)
                );
                for consent in [None, Some(ProvisionType::Permit)] {
                    assert_eq!(
                        decide(*role, purpose, report, consent, false, false),
                        Decision::Permit
                    );
                }
            }
        }
    }

    #[test]
    fn a_purpose_outside_the_roles_list_or_a_role_that_reads_no_records_is_denied() {
        let report = kind::MEDICAL_REPORT;
        assert_eq!(
            decide(Role::Researcher, Purpose::Treat, report, None, false, false),
            Decision::Deny(Denial::Purpose)
        );
        assert_eq!(
            decide(Role::Device, Purpose::Treat, report, None, false, false),
            Decision::Deny(Denial::Role)
        );
        // The donor registry has its own readers.
        assert_eq!(
            decide(
                Role::Researcher,
                Purpose::Hresch,
                kind::ORGAN_DONOR_DECISION,
                None,
                false,
                false
            ),
            Decision::Deny(Denial::Role)
        );
    }

    #[test]
    fn a_pharmacy_reads_prescriptions_and_dispenses_for_treatment_and_nothing_else() {
        let deny = Some(ProvisionType::Deny);
        for k in kind::MEDICATION {
            assert_eq!(
                decide(Role::Pharmacy, Purpose::Treat, k, None, false, false),
                Decision::Permit,
                "{k}"
            );
            // The patient's consent binds a pharmacy as any reader.
            assert_eq!(
                decide(Role::Pharmacy, Purpose::Treat, k, deny, true, false),
                Decision::Deny(Denial::Consent),
                "{k}"
            );
            assert_eq!(
                decide(Role::Pharmacy, Purpose::Hresch, k, None, false, false),
                Decision::Deny(Denial::Purpose),
                "{k}"
            );
        }
        for k in [
            kind::MEDICAL_REPORT,
            kind::FHIR_OBSERVATION,
            kind::VITAL_SIGNS,
            kind::ORGAN_DONOR_DECISION,
        ] {
            assert_eq!(
                decide(Role::Pharmacy, Purpose::Treat, k, None, false, false),
                Decision::Deny(Denial::Role),
                "{k}"
            );
        }
    }

    #[test]
    fn a_patient_reads_their_own_records_whatever_their_directives_and_nobody_elses() {
        let report = kind::MEDICAL_REPORT;
        let p = Role::Patient;
        for consent in [None, Some(ProvisionType::Permit), Some(ProvisionType::Deny)] {
            assert_eq!(
                decide(p, Purpose::Patrqt, report, consent, false, true),
                Decision::Permit
            );
            assert_eq!(
                decide(p, Purpose::Patrqt, report, consent, false, false),
                Decision::Deny(Denial::Role)
            );
        }
        assert_eq!(
            decide(p, Purpose::Treat, report, None, false, true),
            Decision::Deny(Denial::Purpose)
        );
    }
}
