//! The HTTP side of the node, outermost first: the edge (connections,
//! limits, budgets), the router, request plumbing (state, authorization,
//! admission of a body), problems and OperationOutcomes, and the handlers:
//! the ledger's own routes, FHIR, health services, exports, statistics,
//! cosigning, the token endpoint and the dashboard. Only what the wiring
//! and the tests need is public, below.

pub(crate) mod access;
pub(crate) mod cosign;
pub(crate) mod dashboard;
pub(crate) mod edge;
pub(crate) mod export;
pub(crate) mod fhir;
pub(crate) mod glass;
pub(crate) mod health;
pub(crate) mod observe;
pub(crate) mod problem;
pub(crate) mod record;
pub(crate) mod request;
pub(crate) mod router;
pub(crate) mod services;
pub(crate) mod stats;
pub(crate) mod token;

pub use cosign::{CosignerNameError, PEER_TIMEOUT, node_cosigner};
pub use edge::Budgets;
pub use export::{CHECKPOINT_HEADER, ExportFailure, LOG_SIZE_HEADER, WITHHELD_HEADER, pin, rows};
pub use problem::{PiiDetail, Problem, submit_problem};
pub use request::AppState;
pub use router::{OPENAPI, router};
