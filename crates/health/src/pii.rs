//! (stub while the real module is written)
#![allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PiiKind {
    Jmbg,
    Lbo,
    Email,
    Phone,
    Pseudonym,
    IdentifyingField,
}
impl PiiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Jmbg => "jmbg",
            PiiKind::Lbo => "lbo",
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Pseudonym => "malformed_pseudonym",
            PiiKind::IdentifyingField => "identifying_field",
        }
    }
    pub fn describe(self) -> &'static str {
        self.as_str()
    }
}
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {}", kind.describe())]
pub struct PiiFinding {
    pub field: String,
    pub kind: PiiKind,
}
pub fn scan(value: &serde_json::Value) -> Result<(), PiiFinding> {
    if let Some(p) = value.get("patient").and_then(|p| p.as_str()) {
        if !crate::pseudonym::is_well_formed(p) {
            return Err(PiiFinding {
                field: "/patient".into(),
                kind: PiiKind::Pseudonym,
            });
        }
    }
    if value.to_string().contains('@') {
        return Err(PiiFinding {
            field: "".into(),
            kind: PiiKind::Email,
        });
    }
    Ok(())
}
