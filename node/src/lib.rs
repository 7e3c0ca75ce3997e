//! # custodia-node
//!
//! The I/O half of Custodia: the durable store (SQLite, WAL, full sync),
//! configuration and identity key files, the QUIC transport with pinned
//! mutual TLS 1.3, and the replication daemon that syncs, relays and
//! witnesses the cases an agency shares. The rules themselves live in
//! `custodia-protocol`; this crate never decides validity on its own.

pub mod config;
pub mod daemon;
pub mod guard;
pub mod hashing;
pub mod keyfile;
pub mod local;
pub mod mediatype;
pub mod store;
pub mod tls;
pub mod wake;
