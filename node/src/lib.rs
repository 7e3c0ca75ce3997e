//! # custodia-node
//!
//! The I/O half of Custodia: the durable store (SQLite, WAL, full sync),
//! configuration and identity key files, the QUIC transport with pinned
//! mutual TLS 1.3, and the replication daemon that syncs, relays and
//! witnesses the cases an agency shares. The rules themselves live in
//! `custodia-protocol`; this crate never decides validity on its own.
//!
//! The API is flat: the modules are private and what a caller needs is
//! re-exported here. A node directory is opened as a [`Local`] (the
//! commands' view: agencies, cases, evidence, custody, backups) or started
//! as a running node with [`start`] or [`run`] (the replication daemon).
//! The durable [`Store`] is public for tools that inspect or check a store
//! file on its own; a `Local` lends it out read-only ([`Local::store`]), so
//! every write goes through the `Local`, which signs with the agency's key.

mod config;
mod daemon;
mod guard;
mod hashing;
mod keyfile;
mod keys;
mod local;
mod mediatype;
mod pkcs11;
mod spill;
mod store;
mod tls;
mod wake;

pub use config::{
    check_addr, country_code, AgencySection, Config, ConfigError, NodeSection, Peer, CONFIG_FILE,
    MAX_CONFIG_FILE,
};
pub use daemon::{now_ms, run, run_with, start, start_with, NodeError, PeerStats, Running};
pub use guard::{Hold, PeerView};
pub use hashing::{hash_file, hash_reader, Hashed, Wanted};
pub use keyfile::{
    create as create_key_file, create_with as create_key_file_with, protection as key_protection,
    read as read_key_file, read_with as read_key_file_with, write as write_key_file,
    write_with as write_key_file_with, KeyFileError, NoPassphrase, Passphrase, PassphraseSource,
    Protection, MAX_KDF_WORK, MAX_KEY_FILE, MAX_SCRYPT_MEMORY, SCRYPT_LOG_N, SCRYPT_P, SCRYPT_R,
};
pub use keys::KeyFork;
pub use local::{
    change_passphrase, evidence_files, load_config, open_config, open_config_with, protect_key,
    CustodyInfo, CustodyWritten, EvidenceCheck, EvidenceFile, EvidenceInfo, KnownAgency, Local,
    LocalError, Registered, TimelineRow, DEFAULT_LISTEN, KEY_FILE, NODE_KEY_FILE,
};
pub use pkcs11::{Pkcs11Module, TokenError, TokenKey, TokenUri, PKCS11_SCHEME};
pub use spill::{lean_validator, record_window, TempFiles, RECORD_WINDOW_VAR};
pub use store::{
    check as check_items, BackupInfo, BatchOutcome, Checked, Draft, Problem, Quarantined, Row,
    RowHead, Signer, Store, StoreError, SCHEMA_VERSION,
};
pub use tls::{
    client_config, client_config_presenting, PinSet, Presented, TlsError, ALPN, SERVER_NAME,
};
