//! medledger storage. The segment files are the source of truth; the Merkle
//! subtree files and the redb indexes are derived from them and can always be
//! rebuilt.

pub mod backend;
pub mod index;
pub mod merkle_store;
pub mod segment;
