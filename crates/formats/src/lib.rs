//! medledger formats: the bytes that are signed, hashed and stored. Pure
//! code with no I/O, so every format can be pinned by a known-answer test.
//! docs/FORMATS.md describes each one byte by byte.

pub mod block;
pub mod bytes;
pub mod canon;
pub mod checkpoint;
pub mod cosignature;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod receipt;
pub mod record;
pub mod sig;
pub mod tx;
