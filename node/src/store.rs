//! The node's durable store: SQLite in WAL mode with full synchronous
//! commits.
//!
//! Entries are kept as the exact bytes received, in insertion order, indexed
//! by (case, author, seq), by (case, insertion order) and by change counter.
//! There is no index on entry ids (schema version 6): an id is a SHA-256,
//! so such an index takes every insert to a random page of its own, which
//! made writing the index most of a large catch-up's store work. An id is
//! found through the in-memory validators, which know every loaded entry's
//! position, and then through the position index; a duplicate is caught by
//! the validator and, in the file, by the unique position (an entry's id
//! fixes its case, author and sequence number).
//!
//! Every write is one `BEGIN IMMEDIATE` transaction that first catches up
//! with rows other processes wrote (the CLI and a running node share the
//! file), then validates, then inserts: two writers can never both author
//! the same sequence number, and nothing is acknowledged before its commit
//! is on disk.
//!
//! Rows carry two counters: `pos`, the insertion order, which is a
//! dependency order of each case (an entry is only stored after everything
//! it references), and `rev`, bumped again when a withheld position is
//! revealed, which is how another process notices the change.
//!
//! Nothing read back from the file is trusted: rows are verified when they
//! are loaded (ids, decoding, signatures in batches on every core, then the
//! case rules in dependency order), exactly as if a peer had sent them. A
//! row that fails is *quarantined* (SPEC.md §8.8): moved, with its bytes
//! and the reason, from `entries` into the `quarantine` table, so that it
//! is never served, never chained onto and never exported, and its position
//! is free again for the genuine entry (re-sent by a peer) or, for this
//! agency's own chain, the next entry it writes.
//!
//! The file, its WAL and shared-memory files are created with mode 0600
//! (SQLite gives the WAL and shared-memory files the database file's mode),
//! and tightened to it when an older version left them readable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use custodia_protocol::session::{apply_batch, BatchStore};
pub use custodia_protocol::session::{BatchOutcome, Checked, RowHead};
use custodia_protocol::{
    admit_proof, AgencyId, Applied, Body, CaseId, CaseState, Entry, EntryId, EquivocationProof,
    Head, Identity, Payload, ProofRefusal, RecordSpill, RejectKind, Rejection, SyncItem, Tlp,
    Validator, WithheldPosition, FORMAT_VERSION, MAX_PROOFS_PER_AUTHOR, MAX_REFS,
};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// The schema version this code writes; older versions are migrated.
pub const SCHEMA_VERSION: i64 = 6;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE entries (
        pos        INTEGER PRIMARY KEY AUTOINCREMENT,
        rev        INTEGER NOT NULL,
        id         BLOB NOT NULL UNIQUE,
        case_id    BLOB NOT NULL,
        author     BLOB NOT NULL,
        seq        INTEGER NOT NULL,
        bytes      BLOB,
        stored_at  INTEGER NOT NULL
     );
     CREATE UNIQUE INDEX entries_position ON entries(case_id, author, seq);
     CREATE INDEX entries_case ON entries(case_id, pos);
     CREATE INDEX entries_rev ON entries(rev);
     CREATE TABLE equivocations (
        case_id BLOB NOT NULL,
        author  BLOB NOT NULL,
        seq     INTEGER NOT NULL,
        proof   BLOB NOT NULL,
        PRIMARY KEY (case_id, author, seq)
     );",
    // 1 -> 2: rows that failed verification when loaded, kept for
    // forensics exactly as they were stored (the copied columns have no
    // declared type, so whatever a damaged row held is kept as it was).
    "CREATE TABLE quarantine (
        pos            INTEGER PRIMARY KEY,
        rev,
        id,
        case_id,
        author,
        seq,
        bytes,
        stored_at,
        quarantined_at INTEGER NOT NULL,
        reason         TEXT NOT NULL
     );",
    // 2 -> 3: the authoring guard (SPEC.md §9.14): holds, peers' views of
    // this agency's chains, the store file's identity.
    crate::guard::MIGRATION,
    // 3 -> 4: the agency's key log (SPEC.md §3.4).
    crate::keys::MIGRATION,
    // 4 -> 5: the proofs of forked key logs (sync version 3, SPEC.md §9.15).
    crate::keys::FORKS_MIGRATION,
    // 5 -> 6: no unique index on the entry id. SQLite cannot drop the index
    // of a UNIQUE column constraint, so the table is copied into one
    // without it, rows and positions unchanged, and the AUTOINCREMENT
    // counter carried over (a position freed by quarantine is never
    // reused); then the other indexes are made again.
    "CREATE TABLE entries_v6 (
        pos        INTEGER PRIMARY KEY AUTOINCREMENT,
        rev        INTEGER NOT NULL,
        id         BLOB NOT NULL,
        case_id    BLOB NOT NULL,
        author     BLOB NOT NULL,
        seq        INTEGER NOT NULL,
        bytes      BLOB,
        stored_at  INTEGER NOT NULL
     );
     INSERT INTO entries_v6 (pos, rev, id, case_id, author, seq, bytes, stored_at)
        SELECT pos, rev, id, case_id, author, seq, bytes, stored_at FROM entries ORDER BY pos;
     DELETE FROM sqlite_sequence WHERE name = 'entries_v6';
     UPDATE sqlite_sequence SET name = 'entries_v6' WHERE name = 'entries';
     DROP TABLE entries;
     ALTER TABLE entries_v6 RENAME TO entries;
     CREATE UNIQUE INDEX entries_position ON entries(case_id, author, seq);
     CREATE INDEX entries_case ON entries(case_id, pos);
     CREATE INDEX entries_rev ON entries(rev);",
];

/// A SQLite error of the store file at `path`.
fn sqlite(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// The store file opened read-only, for a look that loads nothing and
/// writes nothing (safe while a node writes to it).
fn read_only(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| sqlite(path, e))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| sqlite(path, e))?;
    Ok(conn)
}

/// `agency`'s key log from the store file at `path`, checked in full
/// (SPEC.md §3.4); `None` if it holds none.
fn load_key_log(
    conn: &Connection,
    path: &Path,
    agency: &AgencyId,
) -> Result<Option<custodia_protocol::keylog::KeyLog>, StoreError> {
    crate::keys::load(conn, agency).map_err(|e| match e {
        crate::keys::LoadError::Sql(e) => sqlite(path, e),
        invalid => StoreError::KeyLog {
            path: path.to_owned(),
            agency: agency.fingerprint(),
            why: invalid.to_string(),
        },
    })
}

/// Who signs what this node's agency writes: the agency's own key, which
/// writes entries of format version 1, or a key the agency's key log
/// certifies (an officer's), which writes entries of format version 2 in
/// the agency's name (SPEC.md §5.7).
#[derive(Clone, Copy)]
pub struct Signer<'k> {
    /// The author: the agency id.
    pub agency: AgencyId,
    /// The key that signs.
    pub key: &'k Identity,
}

impl<'k> Signer<'k> {
    /// A key the agency's log certifies, acting for `agency`.
    pub fn certified(agency: AgencyId, key: &'k Identity) -> Self {
        Signer { agency, key }
    }

    /// The format version this signer writes.
    pub fn version(&self) -> u64 {
        if self.key.agency() == self.agency {
            FORMAT_VERSION
        } else {
            custodia_protocol::FORMAT_VERSION_2
        }
    }
}

impl<'k> From<&'k Identity> for Signer<'k> {
    fn from(key: &'k Identity) -> Self {
        Signer {
            agency: key.agency(),
            key,
        }
    }
}

impl std::fmt::Debug for Signer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("agency", &self.agency)
            .field("key", &self.key.agency())
            .finish()
    }
}

/// A store failure. Validation refusals are not errors of the store: they
/// are reported in [`BatchOutcome`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer version of Custodia.
    #[error("store {path} has schema version {found}; this build knows up to {SCHEMA_VERSION}")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// The case is not in the store.
    #[error("unknown case {0}")]
    UnknownCase(CaseId),
    /// The case is on hold: the store may hold less of this agency's chain
    /// than its peers do, and an entry now could reuse a position they
    /// hold (SPEC.md §9.14).
    #[error("this node's record of case {} may be behind what its peers hold ({}): {}; nothing was written; retry when `custodia status` shows the case ready", .0.case, .0.reason, match (.0.peer, .0.behind) { (Some(p), _) => format!("recovering from peer {}", p.fingerprint()), (None, Some(b)) => format!("waiting to receive this agency's entries up to #{b} again from a peer (start the node: `custodia node run`), or release the hold with `custodia case release-hold` if no other agency holds them"), (None, None) => "waiting for a peer to confirm this agency's head (start the node: `custodia node run`), or release the hold with `custodia case release-hold` if no other agency holds the case".to_string() })]
    OnHold(crate::guard::Hold),
    /// This agency has signed two entries at one position of the case: a
    /// proof is held. Nothing more is written until people decide how the
    /// record goes on (SPEC.md §9.14).
    #[error("this agency has signed two different entries as #{seq} of its history in case {case} (an equivocation, shown in every court bundle); nothing was written: the case needs a decision by people before this node writes in it again (see `custodia case show`)")]
    Equivocated {
        /// The case.
        case: CaseId,
        /// The position signed twice.
        seq: u64,
    },
    /// The key offered to sign does not fit the case: a certified key in a
    /// case of format version 1, the agency's key in one of version 2, or
    /// no key log to certify it.
    #[error("{0}")]
    Signer(String),
    /// The key log changed between reading it and writing a statement
    /// over it; nothing was written.
    #[error("store {path}: the key log changed while this statement was being made (a partner's statements arrived, or another command wrote one); nothing was written: run the command again")]
    KeyLogChanged {
        /// The database file.
        path: PathBuf,
    },
    /// The stored key log is not a valid log (a row was changed or lost).
    #[error("store {path}: the key log of agency {agency} is damaged: {why}")]
    KeyLog {
        /// The database file.
        path: PathBuf,
        /// Whose log.
        agency: String,
        /// What is wrong.
        why: String,
    },
    /// The entry the caller asked to author was refused by the rules
    /// (SPEC.md §8, the same rules a receiver applies); nothing was stored.
    #[error("refused by rule V{} ({}), nothing stored: {}", .0.rule(), .0.class(), .0.kind)]
    Refused(Rejection),
    /// What this process keeps of a case out of memory (SPEC.md §8.7)
    /// could not be read back. Nothing was quarantined or written; the
    /// cases are loaded again from the store on the next look.
    #[error("store {path}: what this process set aside of case {case} in a temporary file could not be read back ({why}); nothing was quarantined or written, and the case is read again from the store next time")]
    Records {
        /// The store file.
        path: PathBuf,
        /// The case.
        case: CaseId,
        /// What failed.
        why: String,
    },
}

/// What a caller wants to say; the store fills in the chain fields.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Handling label.
    pub tlp: Tlp,
    /// Recipients, for RED.
    pub to: Option<Vec<AgencyId>>,
    /// The body.
    pub body: Body,
    /// Entries that must be referenced (besides the other authors' heads).
    pub refs: Vec<EntryId>,
}

impl Draft {
    /// A draft with the given label and body.
    pub fn new(tlp: Tlp, body: Body) -> Self {
        Draft {
            tlp,
            to: None,
            body,
            refs: Vec::new(),
        }
    }
}

/// One stored row, as read for sending.
#[derive(Debug, Clone)]
pub struct Row {
    /// Insertion order.
    pub pos: i64,
    /// The entry id.
    pub id: EntryId,
    /// The author.
    pub author: AgencyId,
    /// The sequence number.
    pub seq: u64,
    /// The bytes; None for a withheld position.
    pub bytes: Option<Vec<u8>>,
}

/// A problem the store check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Row position, when the problem is a row.
    pub pos: Option<i64>,
    /// Entry id recorded for the row.
    pub id: Option<EntryId>,
    /// What is wrong.
    pub what: String,
}

/// A stored row that failed verification when it was loaded (SPEC.md
/// §8.8): never served, chained onto or exported. Its columns are those
/// stored, when they are well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The row's position in the store when it was loaded.
    pub pos: i64,
    /// The entry id the row recorded.
    pub id: Option<EntryId>,
    /// The case the row recorded.
    pub case: Option<CaseId>,
    /// The author the row recorded.
    pub author: Option<AgencyId>,
    /// The sequence number the row recorded.
    pub seq: Option<u64>,
    /// Why it failed: the rule, or what is wrong with the row.
    pub reason: String,
    /// When it was moved into quarantine (ms since the Unix epoch); None
    /// when it could not be moved (a read-only store) and is only skipped.
    pub quarantined_at: Option<u64>,
    /// Whether the case holds the recorded entry id again (re-received
    /// from a peer): the damage is repaired.
    pub recovered: bool,
}

/// The store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    cases: BTreeMap<CaseId, Validator>,
    loaded_rev: i64,
    /// Times every case was rebuilt from the file after a failed
    /// transaction ([`Store::reloads`]).
    reloads: u64,
    damaged: Vec<Problem>,
    /// Rows found bad that could not be moved into quarantine (a read-only
    /// file): skipped, and moved by the next write transaction.
    in_place: Vec<(Quarantined, Value)>,
    /// The seal beside the file (SPEC.md §9.14).
    seal: crate::guard::Seal,
    /// Why the store was found suspect when opened, if it was.
    suspicion: Option<String>,
    /// The key logs held (this agency's and its peers'), as of
    /// `key_revision` (SPEC.md §3.4, §9.15).
    key_logs: BTreeMap<AgencyId, custodia_protocol::keylog::KeyLog>,
    key_revision: i64,
    /// Where the validators' older records go (unnamed files in the
    /// store's folder), and how many stay in memory (None: all).
    spill: Arc<dyn RecordSpill>,
    window: Option<usize>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// The stateless checks of a received batch (decoding and signatures,
/// V1–V8), on all cores, in the batch's order. They need no store, so a
/// node runs them outside its store lock, while an earlier batch commits.
/// Each thread verifies its share of the signatures in one batch
/// (`Entry::decode_many`, SPEC.md §3.3).
pub fn check(items: Vec<SyncItem>) -> Vec<Checked> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let entries: Vec<&[u8]> = items
        .iter()
        .filter_map(|i| match i {
            SyncItem::Entry(bytes) => Some(bytes.as_slice()),
            SyncItem::Withheld(_) => None,
        })
        .collect();
    let decoded: Vec<Result<Entry, Rejection>> =
        custodia_protocol::map_in_parallel(&entries, threads, Entry::decode_many);
    custodia_protocol::session::zip_checked(items, decoded)
}

fn blob32(v: Vec<u8>) -> Option<[u8; 32]> {
    v.try_into().ok()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Creates the store file with mode 0600 if it does not exist, and
/// tightens it and its WAL and shared-memory files to 0600 if group or
/// others may read them (files older versions created with the umask's
/// mode). SQLite creates the WAL and shared-memory files with the
/// database file's mode. Failures are left to SQLite to report.
fn private_files(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = PathBuf::from(name);
            let Ok(meta) = std::fs::metadata(&file) else {
                continue;
            };
            let mode = meta.permissions().mode();
            if meta.is_file() && mode & 0o077 != 0 {
                let tightened = std::fs::Permissions::from_mode(mode & 0o7700);
                match std::fs::set_permissions(&file, tightened) {
                    Ok(()) => {
                        tracing::warn!(file = %file.display(), "store file was readable by others; now mode 0600")
                    }
                    Err(e) => {
                        tracing::warn!(file = %file.display(), error = %e, "store file is readable by others and cannot be tightened")
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// One row as stored. A damaged or tampered row may hold anything in any
/// column, so every column but `pos` (SQLite's rowid) is read as a plain
/// value and checked.
struct RawRow {
    pos: i64,
    rev: Value,
    id: Value,
    case: Value,
    author: Value,
    seq: Value,
    bytes: Value,
}

/// A row's index columns, those that are well formed.
struct Columns {
    id: Option<EntryId>,
    case: Option<CaseId>,
    author: Option<AgencyId>,
    seq: Option<u64>,
}

/// A row's index columns, all well formed.
#[derive(Clone, Copy)]
struct Place {
    id: EntryId,
    case: CaseId,
    author: AgencyId,
    seq: u64,
}

impl Columns {
    fn of(row: &RawRow) -> Columns {
        let b32 = |v: &Value| match v {
            Value::Blob(b) => <[u8; 32]>::try_from(b.as_slice()).ok(),
            _ => None,
        };
        Columns {
            id: b32(&row.id).map(EntryId),
            case: b32(&row.case).map(EntryId),
            author: b32(&row.author).map(AgencyId),
            seq: match row.seq {
                Value::Integer(n) => u64::try_from(n).ok(),
                _ => None,
            },
        }
    }

    fn place(&self) -> Result<Place, String> {
        match (self.id, self.case, self.author, self.seq) {
            (Some(id), Some(case), Some(author), Some(seq)) => Ok(Place {
                id,
                case,
                author,
                seq,
            }),
            (None, ..) => Err("the id column is not 32 bytes".into()),
            (_, None, ..) => Err("the case column is not 32 bytes".into()),
            (_, _, None, _) => Err("the author column is not 32 bytes".into()),
            (.., None) => Err("the seq column is not a sequence number".into()),
        }
    }

    fn quarantined(&self, pos: i64, reason: String, at: Option<u64>) -> Quarantined {
        Quarantined {
            pos,
            id: self.id,
            case: self.case,
            author: self.author,
            seq: self.seq,
            reason,
            quarantined_at: at,
            recovered: false,
        }
    }
}

/// What loading does with a row after its columns are read.
enum Step {
    Bad(String),
    Withheld(Place),
    Entry(Place),
}

/// A row that failed verification while loading.
struct Bad {
    pos: i64,
    rev: Value,
    columns: Columns,
    what: String,
}

impl Store {
    /// Opens (creating if needed) the store file, migrates it, and loads the
    /// state of every case, verifying every row (a row that fails is
    /// quarantined, see [`Store::quarantined`]). A new file is created with
    /// mode 0600; an existing one, and its WAL and shared-memory files,
    /// are tightened to 0600 if group or others may read them.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        private_files(path);
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
            cases: BTreeMap::new(),
            loaded_rev: 0,
            reloads: 0,
            damaged: Vec::new(),
            in_place: Vec::new(),
            seal: crate::guard::Seal::beside(path),
            suspicion: None,
            key_logs: BTreeMap::new(),
            key_revision: -1,
            spill: Arc::new(crate::spill::TempFiles::in_dir(
                path.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            )),
            window: crate::spill::record_window(),
        };
        store.migrate()?;
        store.refresh()?;
        store.check_rollback()?;
        Ok(store)
    }

    /// The rollback check at open (SPEC.md §9.14): a store that may have
    /// gone back in time puts each case shared with other agencies on
    /// hold. Then the seal is brought up to date.
    fn check_rollback(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.sql(e))?;
        let result = (|| {
            let committed = self.committed_rev()?;
            let why = crate::guard::suspicion(&self.conn, &self.path, &self.seal, committed)
                .map_err(|e| self.sql(e))?;
            if let Some(why) = &why {
                tracing::warn!(reason = %why, "the store may have gone back in time: shared cases are on hold until a peer confirms them");
                if crate::keys::holds_any(&self.conn).map_err(|e| self.sql(e))? {
                    crate::guard::set_meta(&self.conn, crate::keys::UNCONFIRMED, why)
                        .map_err(|e| self.sql(e))?;
                }
                let now = now_ms();
                for (case, v) in &self.cases {
                    if v.state().members.len() >= 2 {
                        crate::guard::hold(&self.conn, case, why, None, None, now)
                            .map_err(|e| self.sql(e))?;
                    }
                }
            }
            Ok::<_, StoreError>((why, committed))
        })();
        match result {
            Ok((why, committed)) => {
                self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e))?;
                self.seal.write(committed);
                self.suspicion = why;
                Ok(())
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The highest change counter committed (quarantined rows included).
    fn committed_rev(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT MAX(COALESCE((SELECT MAX(rev) FROM entries), 0),
                            COALESCE((SELECT MAX(CAST(rev AS INTEGER)) FROM quarantine), 0))",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))
    }

    /// `agency`'s key log read from the store file at `path` without
    /// opening the store (no migration, no case loaded, nothing written),
    /// checked in full as [`Store::key_log`] checks it: for a command that
    /// only shows an agency's signed name, on a store that may hold
    /// millions of entries. `None` if there is no file, no key log table
    /// (a store older than key logs) or no log of `agency`.
    pub fn peek_key_log(
        path: &Path,
        agency: &AgencyId,
    ) -> Result<Option<custodia_protocol::keylog::KeyLog>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = read_only(path)?;
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'key_statements'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| sqlite(path, e))?;
        if tables == 0 {
            return Ok(None);
        }
        load_key_log(&conn, path, agency)
    }

    /// `agency`'s key log as the store holds it, checked in full
    /// (SPEC.md §3.4); `None` if it holds none.
    pub fn key_log(
        &self,
        agency: &AgencyId,
    ) -> Result<Option<custodia_protocol::keylog::KeyLog>, StoreError> {
        load_key_log(&self.conn, &self.path, agency)
    }

    /// The statements a recovery rotation superseded in `agency`'s key
    /// log (SPEC.md §3.4), oldest first: what a thief of an old root
    /// signed, for reports.
    pub fn key_superseded(
        &self,
        agency: &AgencyId,
    ) -> Result<Vec<custodia_protocol::keylog::KeyStatement>, StoreError> {
        crate::keys::load_superseded(&self.conn, agency).map_err(|e| match e {
            crate::keys::LoadError::Sql(e) => self.sql(e),
            invalid => StoreError::KeyLog {
                path: self.path.clone(),
                agency: agency.fingerprint(),
                why: format!("superseded {invalid}"),
            },
        })
    }

    /// Why the key log waits for the operator's confirmation: the store
    /// was found suspect while it held one (restored, copied, WAL lost).
    pub fn key_log_unconfirmed(&self) -> Result<Option<String>, StoreError> {
        crate::guard::meta(&self.conn, crate::keys::UNCONFIRMED).map_err(|e| self.sql(e))
    }

    /// The operator confirms the key log; false if it was not waiting.
    pub(crate) fn confirm_key_log(&mut self) -> Result<bool, StoreError> {
        crate::guard::clear_meta(&self.conn, crate::keys::UNCONFIRMED).map_err(|e| self.sql(e))
    }

    /// Stores `log`, this agency's key log as the caller extended (or
    /// recovered) it from the log it read, whose length and last statement
    /// were `base` (`None`: no log). In one write transaction, refused if
    /// the stored log is no longer `base` (statements from a partner, or
    /// another command, were stored since it was read: a statement signed
    /// over them would take a used position). Only the statements from
    /// `from` on are written.
    pub(crate) fn save_key_log_over(
        &mut self,
        log: &custodia_protocol::keylog::KeyLog,
        base: Option<(u64, custodia_protocol::StatementId)>,
        from: u64,
    ) -> Result<(), StoreError> {
        let agency = log.agency();
        let rev = self.key_write(|conn| {
            let now = crate::keys::stored_head(conn, &agency)?;
            if now != base {
                return Ok(None);
            }
            crate::keys::save_from(conn, log, from).map(Some)
        })?;
        let Some(rev) = rev else {
            return Err(StoreError::KeyLogChanged {
                path: self.path.clone(),
            });
        };
        self.cache_key_log(log, rev);
        Ok(())
    }

    /// Applies statements of `agency`'s key log that a peer sent
    /// (SPEC.md §9.15) to the log the store holds, in one write
    /// transaction: the log is read under the write lock, so statements
    /// another process wrote meanwhile are never overwritten; only what
    /// changed is written; a fork's two statements are kept as its proof.
    pub fn receive_key_statements(
        &mut self,
        agency: &AgencyId,
        items: &[Vec<u8>],
    ) -> Result<custodia_protocol::keylog::Received, StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.sql(e))?;
        let result = (|| {
            self.refresh_key_logs()?;
            let mut log = self.key_logs.remove(agency);
            let got = custodia_protocol::keylog::receive(&mut log, agency, items);
            let mut rev = None;
            if let (true, Some(l)) = (got.changed(), &log) {
                let from = got.changed_from.unwrap_or(l.len());
                rev = Some(crate::keys::save_from(&self.conn, l, from).map_err(|e| self.sql(e))?);
            }
            if let Some((held, other)) = &got.fork {
                crate::keys::save_fork(&self.conn, held, other).map_err(|e| self.sql(e))?;
            }
            Ok::<_, StoreError>((got, log, rev))
        })();
        match result {
            Ok((got, log, rev)) => {
                self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e))?;
                if let Some(log) = log {
                    match rev {
                        Some(rev) => self.cache_key_log(&log, rev),
                        None => {
                            self.key_logs.insert(*agency, log);
                        }
                    }
                }
                Ok(got)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                // The cache may hold a log taken out above: reload it all.
                self.key_revision = -1;
                Err(e)
            }
        }
    }

    /// Runs `f` in one write transaction (BEGIN IMMEDIATE).
    fn key_write<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        let out = f(&tx).map_err(|e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        tx.commit().map_err(|e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        Ok(out)
    }

    /// Keeps `log` in the cache after a save that set the change counter
    /// to `rev`: if nobody else saved since the last load, the cache is
    /// current; otherwise the next refresh reloads every log.
    fn cache_key_log(&mut self, log: &custodia_protocol::keylog::KeyLog, rev: i64) {
        if rev == self.key_revision + 1 {
            self.key_logs.insert(log.agency(), log.clone());
            self.key_revision = rev;
        }
    }

    /// A peer holds this agency's key log up to `len` statements, the last
    /// being `head` (SPEC.md §9.15). If the log waits for confirmation
    /// (the store was found suspect) and the peer's log is the store's or
    /// a prefix of it, nothing of the log is missing that the peer could
    /// show: the wait ends. Whether it ended now.
    pub(crate) fn own_key_head_seen(
        &mut self,
        me: &AgencyId,
        len: u64,
        head: &custodia_protocol::StatementId,
    ) -> Result<bool, StoreError> {
        if self.key_log_unconfirmed()?.is_none() {
            return Ok(false);
        }
        if !custodia_protocol::session::key_log_holds(self.key_logs.get(me), len, head) {
            return Ok(false);
        }
        self.confirm_key_log()
    }

    /// Why the store was found suspect when this process opened it.
    pub fn suspicion(&self) -> Option<&str> {
        self.suspicion.as_deref()
    }

    /// The holds in force (one case, or all).
    pub fn holds(&self, case: Option<&CaseId>) -> Result<Vec<crate::guard::Hold>, StoreError> {
        crate::guard::holds(&self.conn, case).map_err(|e| self.sql(e))
    }

    /// The hold history of a case, oldest first.
    pub fn hold_log(&self, case: &CaseId) -> Result<Vec<(u64, String)>, StoreError> {
        crate::guard::hold_log(&self.conn, case).map_err(|e| self.sql(e))
    }

    /// What each peer last said it holds of this agency's chain in a case.
    pub fn peer_views(&self, case: &CaseId) -> Result<Vec<crate::guard::PeerView>, StoreError> {
        crate::guard::views(&self.conn, case).map_err(|e| self.sql(e))
    }

    /// Records what a peer holds of this agency's chain in a case (from an
    /// acknowledgement), if it is more than it was known to hold.
    pub fn record_peer_view(
        &mut self,
        case: &CaseId,
        peer: &AgencyId,
        seq: Option<u64>,
    ) -> Result<(), StoreError> {
        let known = crate::guard::views(&self.conn, case)
            .map_err(|e| self.sql(e))?
            .into_iter()
            .find(|v| v.peer == *peer)
            .and_then(|v| v.seq);
        if seq > known {
            crate::guard::record_view(&self.conn, case, peer, seq, now_ms())
                .map_err(|e| self.sql(e))?;
        }
        Ok(())
    }

    /// Releases a case's hold by an operator's decision (logged with the
    /// reason); true if there was one.
    pub fn release_hold(&mut self, case: &CaseId, why: &str) -> Result<bool, StoreError> {
        let behind = crate::guard::holds(&self.conn, Some(case))
            .map_err(|e| self.sql(e))?
            .pop()
            .and_then(|h| h.behind);
        if let Some(b) = behind {
            // Not held again for the same positions.
            crate::guard::set_meta(&self.conn, &released_key(case), &b.to_string())
                .map_err(|e| self.sql(e))?;
        }
        let released =
            crate::guard::release(&self.conn, case, why, now_ms()).map_err(|e| self.sql(e))?;
        if released {
            tracing::warn!(case = %case, reason = ?why, "hold released by the operator");
        }
        Ok(released)
    }

    /// The position at which `me` signed two entries in a case, if the
    /// store holds a proof of it or the state records it.
    pub fn self_equivocation(&self, me: &AgencyId, case: &CaseId) -> Option<u64> {
        let proved: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(seq) FROM equivocations WHERE case_id = ?1 AND author = ?2",
                params![&case.0[..], &me.0[..]],
                |r| r.get(0),
            )
            .ok()
            .flatten();
        proved.map(|s| s as u64).or_else(|| {
            self.state(case)?.conflicts.iter().find_map(|c| match c {
                custodia_protocol::Conflict::Equivocation { author, seq, .. } if author == me => {
                    Some(*seq)
                }
                _ => None,
            })
        })
    }

    /// Compares what member peer `peer` says it holds of `me`'s chain in a
    /// case (its head, from a `heads` message) with the store (SPEC.md
    /// §9.14): a peer ahead puts the case on hold until its entries are
    /// stored; a peer that holds the store's own head, or an earlier entry
    /// of the same chain, releases a hold no peer showed to be behind.
    pub fn own_head_seen(
        &mut self,
        case: &CaseId,
        me: &AgencyId,
        peer: &AgencyId,
        theirs: Option<(u64, EntryId)>,
    ) -> Result<(), StoreError> {
        let Some(v) = self.cases.get(case) else {
            return Ok(());
        };
        let next = v.next_seq(me);
        let now = now_ms();
        crate::guard::record_view(&self.conn, case, peer, theirs.map(|t| t.0), now)
            .map_err(|e| self.sql(e))?;
        match theirs {
            Some((seq, _)) if seq >= next => {
                let why = format!(
                    "peer {} holds this agency's entries up to #{seq}; this store only up to {}",
                    peer.fingerprint(),
                    next.checked_sub(1)
                        .map_or("none".to_string(), |s| format!("#{s}"))
                );
                tracing::warn!(case = %case, peer = %peer.fingerprint(), theirs = seq, ours = next, "this node is behind a peer on its own chain: recovering before it writes again");
                crate::guard::hold(&self.conn, case, &why, Some(seq), Some(peer), now)
                    .map_err(|e| self.sql(e))?;
            }
            Some((seq, id)) if v.at(me, seq) != Some(id) => {
                // A fork of this agency's own chain: the sync exchanges
                // both entries and the proof follows.
            }
            _ => {
                let held = crate::guard::holds(&self.conn, Some(case))
                    .map_err(|e| self.sql(e))?
                    .pop();
                if held.is_some_and(|h| h.behind.is_none_or(|b| b < next)) {
                    let why = format!("peer {} confirmed this agency's head", peer.fingerprint());
                    crate::guard::release(&self.conn, case, &why, now).map_err(|e| self.sql(e))?;
                    tracing::info!(case = %case, peer = %peer.fingerprint(), "own head confirmed by a peer: the case is writable again");
                }
            }
        }
        Ok(())
    }

    /// Releases the holds of cases whose entries a peer was ahead by are
    /// now stored.
    pub fn settle_holds(&mut self, me: &AgencyId) -> Result<(), StoreError> {
        let now = now_ms();
        for h in crate::guard::holds(&self.conn, None).map_err(|e| self.sql(e))? {
            let (Some(behind), Some(v)) = (h.behind, self.cases.get(&h.case)) else {
                continue;
            };
            if v.next_seq(me) > behind {
                let why = "recovered this agency's entries from its peers".to_string();
                crate::guard::release(&self.conn, &h.case, &why, now).map_err(|e| self.sql(e))?;
                tracing::info!(case = %h.case, "own entries recovered from peers: the case is writable again");
            }
        }
        Ok(())
    }

    /// Marks the store as restored from a backup (`custodia restore`): the
    /// next open puts its shared cases on hold.
    pub fn mark_restored(&mut self, why: &str) -> Result<(), StoreError> {
        crate::guard::set_meta(&self.conn, crate::guard::RESTORED, why).map_err(|e| self.sql(e))
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.sql(e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
            });
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    source: e,
                })?;
            // Another process may have migrated meanwhile.
            let now: i64 = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    source: e,
                })?;
            if now <= i as i64 {
                tx.execute_batch(m)
                    .and_then(|_| tx.pragma_update(None, "user_version", i as i64 + 1))
                    .map_err(|e| StoreError::Sqlite {
                        path: self.path.clone(),
                        source: e,
                    })?;
            }
            tx.commit().map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        }
        if version < SCHEMA_VERSION {
            // The step to version 6 rewrote the entries table through the
            // write-ahead log, which keeps its largest size until the last
            // connection closes (a running node's, for as long as it runs):
            // it is copied into the file and emptied now. If a reader holds
            // it, it stays as it is, which is no harm.
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        Ok(())
    }

    /// Catches up with rows written by other processes since the last look.
    /// Every row is verified as a received one would be (SPEC.md §8.8):
    /// its columns, its id, decoding and signature (V1–V8, in batches on
    /// every core), then the case rules in dependency order. A row that
    /// fails is quarantined.
    ///
    /// Changed rows are found by `rev` but applied in `pos` order: a revealed
    /// withheld position keeps its place in the dependency order, so rows
    /// written after it may carry a lower `rev`.
    pub fn refresh(&mut self) -> Result<bool, StoreError> {
        // Rows loaded, decoded and verified at a time. Each row's bytes and
        // decoded entry (≈1.1 KB) live until its chunk is applied, and the
        // allocator keeps what a chunk used after it is freed: at 4,096 a
        // node that loaded a million entries stayed ≈11 MB larger than at
        // 1,024 (bench/examples/store_memory.rs). Still large enough for
        // each thread's share to be one efficient signature batch.
        const CHUNK: i64 = 1024;
        // Key logs first: entries of format version 2 are checked against
        // them (V20 to V24).
        let mut changed = self.refresh_key_logs()?;
        let mut bad = Vec::new();
        if self.loaded_rev == 0 {
            // First load: the whole table in dependency order, a chunk at a
            // time, so memory holds one chunk of entry bytes, not the file.
            let mut last_pos = 0;
            loop {
                let rows = self.read_rows(
                    "SELECT pos, rev, id, case_id, author, seq, bytes FROM entries
                     WHERE pos > ?1 ORDER BY pos LIMIT ?2",
                    last_pos,
                    CHUNK,
                )?;
                let Some(last) = rows.last() else { break };
                last_pos = last.pos;
                changed = true;
                bad.extend(self.load_rows(rows));
            }
            // The validators grew by doubling while loading; a node keeps
            // them for as long as it runs.
            for v in self.cases.values_mut() {
                v.shrink_to_fit();
            }
        } else {
            // Catching up: the new rows are found through the rev index
            // (cheap when there are none), then applied in pos order.
            let mut rows = self.read_rows(
                "SELECT pos, rev, id, case_id, author, seq, bytes FROM entries
                 WHERE rev > ?1 ORDER BY rev LIMIT ?2",
                self.loaded_rev,
                i64::MAX,
            )?;
            rows.sort_by_key(|r| r.pos);
            changed = !rows.is_empty();
            bad.extend(self.load_rows(rows));
        }
        // A validator that could not read back its own records refused
        // rows it could not judge: they are not damaged, and nothing is
        // quarantined. The cases are loaded afresh (new files) next time.
        if let Some((case, why)) = self
            .cases
            .iter()
            .find_map(|(c, v)| v.failure().map(|why| (*c, why.to_string())))
        {
            self.cases.clear();
            self.loaded_rev = 0;
            return Err(StoreError::Records {
                path: self.path.clone(),
                case,
                why,
            });
        }
        self.quarantine(bad)?;
        Ok(changed)
    }

    /// Reloads the key logs if another process (or this one) saved one
    /// since the last look; whether they changed. A log that fails its
    /// checks is left out and logged: it is never believed, and it does not
    /// stop the node.
    fn refresh_key_logs(&mut self) -> Result<bool, StoreError> {
        let rev = crate::keys::revision(&self.conn).map_err(|e| self.sql(e))?;
        if rev == self.key_revision {
            return Ok(false);
        }
        self.key_logs = self.read_key_logs()?;
        self.key_revision = rev;
        Ok(true)
    }

    /// Every key log in the store, read and checked afresh; a log that
    /// fails its checks is left out and logged.
    fn read_key_logs(
        &self,
    ) -> Result<BTreeMap<AgencyId, custodia_protocol::keylog::KeyLog>, StoreError> {
        let mut logs = BTreeMap::new();
        for agency in crate::keys::agencies(&self.conn).map_err(|e| self.sql(e))? {
            match self.key_log(&agency) {
                Ok(Some(log)) => {
                    logs.insert(agency, log);
                }
                Ok(None) => {}
                Err(e @ StoreError::KeyLog { .. }) => {
                    tracing::warn!(error = %e, "a stored key log fails its checks: left out");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(logs)
    }

    /// The key log held of `agency`, as last loaded (the node's view; see
    /// [`Store::key_log`] for a fresh read).
    pub fn cached_key_log(&self, agency: &AgencyId) -> Option<&custodia_protocol::keylog::KeyLog> {
        self.key_logs.get(agency)
    }

    /// Every key log held, as last loaded, with the key log revision they
    /// were loaded at (it changes whenever a statement is stored).
    pub fn key_logs(&self) -> (i64, &BTreeMap<AgencyId, custodia_protocol::keylog::KeyLog>) {
        (self.key_revision, &self.key_logs)
    }

    /// The agencies whose key logs are held, as last loaded.
    pub fn key_log_agencies(&self) -> impl Iterator<Item = &AgencyId> {
        self.key_logs.keys()
    }

    /// The proofs held that `agency`'s log forked.
    pub fn key_forks(&self, agency: &AgencyId) -> Result<Vec<crate::keys::KeyFork>, StoreError> {
        crate::keys::forks(&self.conn, agency).map_err(|e| self.sql(e))
    }

    fn read_rows(&self, sql: &str, after: i64, limit: i64) -> Result<Vec<RawRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![after, limit], |r| {
                Ok(RawRow {
                    pos: r.get(0)?,
                    rev: r.get(1)?,
                    id: r.get(2)?,
                    case: r.get(3)?,
                    author: r.get(4)?,
                    seq: r.get(5)?,
                    bytes: r.get(6)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// Verifies and applies rows in order; returns those that failed.
    fn load_rows(&mut self, rows: Vec<RawRow>) -> Vec<Bad> {
        // First what needs no case: the columns, then decoding and the
        // signatures of every entry of the chunk, on all cores.
        let mut loaded = Vec::with_capacity(rows.len());
        let mut items = Vec::new();
        for row in rows {
            if let Value::Integer(rev) = row.rev {
                self.loaded_rev = self.loaded_rev.max(rev);
            }
            let columns = Columns::of(&row);
            let step = match (columns.place(), row.bytes) {
                (Err(what), _) => Step::Bad(what),
                (Ok(p), Value::Null) => Step::Withheld(p),
                (Ok(p), Value::Blob(b)) => {
                    items.push(SyncItem::Entry(b));
                    Step::Entry(p)
                }
                (Ok(_), _) => Step::Bad("the bytes column is not a blob".into()),
            };
            loaded.push((row.pos, row.rev, columns, step));
        }
        let mut verdicts = check(items).into_iter();
        // Then the case rules, in dependency order.
        let mut bad = Vec::new();
        for (pos, rev, columns, step) in loaded {
            let result = match step {
                Step::Bad(what) => Err(what),
                Step::Withheld(p) => self.apply_loaded(p, None),
                Step::Entry(p) => match verdicts.next() {
                    Some(Checked::Entry(verdict)) => self.apply_loaded(p, Some(verdict)),
                    _ => Err("internal: no verdict".into()),
                },
            };
            if let Err(what) = result {
                bad.push(Bad {
                    pos,
                    rev,
                    columns,
                    what,
                });
            }
        }
        bad
    }

    /// Applies one loaded row to its case: a withheld position (`verdict`
    /// None) or an entry with the verdict of its decoding and signature.
    fn apply_loaded(
        &mut self,
        p: Place,
        verdict: Option<Result<Entry, Rejection>>,
    ) -> Result<(), String> {
        let altered =
            || "its bytes do not hash to its id (they were altered after they were stored)".into();
        let rule = |r: Rejection| format!("rule V{} ({}): {}", r.rule(), r.class(), r.kind);
        let validator = self
            .cases
            .entry(p.case)
            .or_insert_with(|| crate::spill::lean_validator(&self.spill, self.window));
        let keys = &self.key_logs;
        let result = match verdict {
            None => validator
                .apply_withheld(WithheldPosition {
                    author: p.author,
                    seq: p.seq,
                    id: p.id,
                })
                .map_err(rule),
            Some(Err(r)) if r.entry != Some(p.id) => Err(altered()),
            Some(Err(r)) => Err(rule(r)),
            Some(Ok(e)) if e.id() != p.id => Err(altered()),
            Some(Ok(e)) if e.case_id() != p.case || e.author() != p.author || e.seq() != p.seq => {
                Err("the row's case, author or sequence columns disagree with the entry".into())
            }
            Some(Ok(e)) => validator.apply_keyed(&e, u64::MAX, keys).map_err(rule),
        };
        if validator.case().is_none() {
            self.cases.remove(&p.case);
        }
        result.map(|_| ())
    }

    /// Moves rows that failed verification into the `quarantine` table, in
    /// the caller's transaction if one is open, else in one of its own. If
    /// they cannot be moved (a read-only file, or a writer holding the
    /// lock past the busy timeout) they stay where they are, skipped, and
    /// the next write transaction moves them.
    fn quarantine(&mut self, bad: Vec<Bad>) -> Result<(), StoreError> {
        if bad.is_empty() {
            return Ok(());
        }
        for b in &bad {
            tracing::warn!(pos = b.pos, problem = %b.what, "store row failed verification; quarantined");
            self.damaged.push(Problem {
                pos: Some(b.pos),
                id: b.columns.id,
                what: b.what.clone(),
            });
        }
        let own = self.conn.is_autocommit();
        if own {
            if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
                tracing::warn!(error = %e, "cannot move damaged rows into quarantine; they are skipped");
                self.keep_in_place(bad);
                return Ok(());
            }
        }
        let now = now_ms();
        // A row not moved changed meanwhile (another process revealed or
        // quarantined it): the next refresh sees it.
        let moved = bad
            .iter()
            .try_for_each(|b| self.move_to_quarantine(b, now).map(|_| ()));
        if !own {
            // In the caller's transaction: an error aborts it, and the
            // caller reloads.
            return moved;
        }
        if moved.is_err() || self.conn.execute_batch("COMMIT").is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
            tracing::warn!("cannot move damaged rows into quarantine; they are skipped");
            self.keep_in_place(bad);
        }
        Ok(())
    }

    /// Copies a row into quarantine and deletes it from `entries`, if it
    /// is still the row that was read. Whether it moved.
    fn move_to_quarantine(&self, b: &Bad, now: u64) -> Result<bool, StoreError> {
        let copied = self
            .conn
            .prepare_cached(
                "INSERT OR REPLACE INTO quarantine
                    (pos, rev, id, case_id, author, seq, bytes, stored_at, quarantined_at, reason)
                 SELECT pos, rev, id, case_id, author, seq, bytes, stored_at, ?3, ?4
                 FROM entries WHERE pos = ?1 AND rev IS ?2",
            )
            .and_then(|mut s| s.execute(params![b.pos, &b.rev, now as i64, &b.what]))
            .map_err(|e| self.sql(e))?;
        if copied == 0 {
            return Ok(false);
        }
        self.conn
            .prepare_cached("DELETE FROM entries WHERE pos = ?1")
            .and_then(|mut s| s.execute(params![b.pos]))
            .map_err(|e| self.sql(e))?;
        Ok(true)
    }

    fn keep_in_place(&mut self, bad: Vec<Bad>) {
        for b in bad {
            let q = b.columns.quarantined(b.pos, b.what, None);
            self.in_place.push((q, b.rev));
        }
    }

    /// Inside a write transaction: moves the rows kept in place earlier.
    fn quarantine_in_place(&mut self) -> Result<(), StoreError> {
        let now = now_ms();
        for (q, rev) in std::mem::take(&mut self.in_place) {
            let b = Bad {
                pos: q.pos,
                rev,
                columns: Columns {
                    id: q.id,
                    case: q.case,
                    author: q.author,
                    seq: q.seq,
                },
                what: q.reason,
            };
            self.move_to_quarantine(&b, now)?;
        }
        Ok(())
    }

    /// The rows of the store that failed verification (SPEC.md §8.8),
    /// by position: of one case (with those whose case column is itself
    /// damaged), or of every case.
    pub fn quarantined(&self, case: Option<&CaseId>) -> Result<Vec<Quarantined>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT pos, id, case_id, author, seq, quarantined_at, reason
                 FROM quarantine ORDER BY pos",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                let columns = Columns::of(&RawRow {
                    pos: r.get(0)?,
                    rev: Value::Null,
                    id: r.get(1)?,
                    case: r.get(2)?,
                    author: r.get(3)?,
                    seq: r.get(4)?,
                    bytes: Value::Null,
                });
                let at: Option<i64> = r.get(5)?;
                Ok(columns.quarantined(
                    r.get(0)?,
                    r.get(6)?,
                    Some(at.map_or(0, |t| t.max(0) as u64)),
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        out.extend(self.in_place.iter().map(|(q, _)| q.clone()));
        out.retain(|q| case.is_none_or(|c| q.case.is_none_or(|qc| qc == *c)));
        for q in &mut out {
            q.recovered = match (q.case, q.id) {
                (Some(c), Some(id)) => self.cases.get(&c).is_some_and(|v| v.knows(&id)),
                _ => false,
            };
        }
        out.sort_by_key(|q| q.pos);
        Ok(out)
    }

    /// Rows this process found failing verification while loading (moved
    /// into quarantine, or skipped where they are if that was impossible).
    pub fn damaged(&self) -> &[Problem] {
        &self.damaged
    }

    /// Rebuilds every case from the file (after a failed transaction).
    fn reload(&mut self) -> Result<(), StoreError> {
        self.reloads += 1;
        self.cases.clear();
        self.damaged.clear();
        self.in_place.clear();
        self.loaded_rev = 0;
        self.refresh().map(|_| ())
    }

    /// The ids of the cases in the store.
    pub fn cases(&self) -> impl Iterator<Item = &CaseId> {
        self.cases.keys()
    }

    /// A case's validator (state, heads, membership).
    pub fn case(&self, case: &CaseId) -> Option<&Validator> {
        self.cases.get(case)
    }

    /// A case's derived state.
    pub fn state(&self, case: &CaseId) -> Option<&CaseState> {
        self.cases.get(case).map(Validator::state)
    }

    /// The heads held of a case, ascending by author.
    pub fn heads(&self, case: &CaseId) -> Vec<Head> {
        self.state(case)
            .map(|s| {
                s.heads
                    .iter()
                    .take(custodia_protocol::MAX_HEADS)
                    .map(|(a, (seq, id))| Head(*a, *seq, *id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many times this handle rebuilt every case from the file (every
    /// row read and checked again) after a transaction failed. A refusal
    /// decided before a transaction starts costs none.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// A cheap change counter of what is loaded: the highest entry `rev`
    /// plus the key logs' counter (both only grow, so any change of either
    /// changes it).
    pub fn revision(&self) -> i64 {
        self.loaded_rev + self.key_revision.max(0)
    }

    /// Writes a new entry by this node's agency. `case` is None to open a
    /// new case (the draft's body must then be case-opened). `signer` is
    /// the agency's key ([`Signer::from`] an [`Identity`]: format version
    /// 1) or a key its log certifies ([`Signer::certified`]: version 2).
    pub fn author<'k>(
        &mut self,
        signer: impl Into<Signer<'k>>,
        case: Option<CaseId>,
        draft: Draft,
        now_ms: u64,
    ) -> Result<Entry, StoreError> {
        let mut out = self.author_many(signer, case, vec![draft], now_ms)?;
        out.pop()
            .ok_or(StoreError::UnknownCase(case.unwrap_or(EntryId([0; 32]))))
    }

    /// Writes several entries by this node's agency in one transaction.
    pub fn author_many<'k>(
        &mut self,
        signer: impl Into<Signer<'k>>,
        case: Option<CaseId>,
        drafts: Vec<Draft>,
        now_ms: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        let signer = signer.into();
        if let Some(c) = &case {
            self.hold_for_quarantined_own(&signer.agency, c)?;
            // A case on hold is refused before the transaction, with
            // nothing to undo: a refusal inside it rebuilds every case from
            // the file, and a node recovering its own chain after a lost
            // store tries a witness at every interval (SPEC.md §9.14).
            if let Some(h) = self.holds(Some(c))?.pop() {
                return Err(StoreError::OnHold(h));
            }
        }
        let result = self.author_tx(&signer, case, drafts, now_ms);
        if result.is_err() {
            self.reload()?;
        }
        result
    }

    /// A quarantined row of this agency's own chain may be a genuine entry
    /// whose bytes were damaged on disk, one its peers hold: authoring at
    /// its freed position would be an equivocation. The case is put on
    /// hold until a peer has sent the genuine entry again (SPEC.md §8.8,
    /// §9.14).
    fn hold_for_quarantined_own(&mut self, me: &AgencyId, case: &CaseId) -> Result<(), StoreError> {
        let own: Vec<u64> = self
            .quarantined(Some(case))?
            .into_iter()
            .filter(|q| q.author == Some(*me) && !q.recovered)
            .filter_map(|q| q.seq)
            .collect();
        let Some(&top) = own.iter().max() else {
            return Ok(());
        };
        let next = self.cases.get(case).map_or(0, |v| v.next_seq(me));
        // The operator released the hold for these positions already.
        let released = crate::guard::meta(&self.conn, &released_key(case))
            .map_err(|e| self.sql(e))?
            .and_then(|v| v.parse::<u64>().ok());
        if next > top || released.is_some_and(|r| r >= top) {
            return Ok(());
        }
        let why = format!(
            "{} damaged row(s) of this agency's own chain were quarantined (up to #{top}): they may be genuine entries its peers hold; waiting to receive them again",
            own.len()
        );
        crate::guard::hold(&self.conn, case, &why, Some(top), None, now_ms())
            .map_err(|e| self.sql(e))
    }

    fn author_tx(
        &mut self,
        signer: &Signer<'_>,
        mut case: Option<CaseId>,
        drafts: Vec<Draft>,
        now_ms: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        let me_id = signer.agency;
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.sql(e))?;
        let result = (|| {
            self.refresh()?;
            self.quarantine_in_place()?;
            let mut out = Vec::with_capacity(drafts.len());
            // Every entry passes the rules a receiver applies before it is
            // stored: decoding (V1–V7) here, the signatures (V8) in one
            // batch before the commit, the case rules as it is applied.
            let mut signatures = custodia_protocol::signature::Batch::with_capacity(drafts.len());
            for draft in drafts {
                let payload = match case {
                    None => {
                        let (v, keys) = self.version_for(signer, None)?;
                        let mut p = Payload {
                            v,
                            keys,
                            case: None,
                            author: me_id,
                            seq: 0,
                            prev: None,
                            refs: Vec::new(),
                            time: now_ms,
                            tlp: draft.tlp,
                            to: draft.to,
                            body: draft.body,
                        };
                        p.refs.clear();
                        p
                    }
                    Some(c) => {
                        let (version, keys) = self.version_for(signer, Some(&c))?;
                        let v = self.cases.get(&c).ok_or(StoreError::UnknownCase(c))?;
                        // SPEC.md §9.14: never at a position the node
                        // cannot show is its next one, never on after an
                        // equivocation of its own.
                        if let Some(h) = crate::guard::holds(&self.conn, Some(&c))
                            .map_err(|e| self.sql(e))?
                            .pop()
                        {
                            return Err(StoreError::OnHold(h));
                        }
                        if let Some(seq) = self.self_equivocation(&me_id, &c) {
                            return Err(StoreError::Equivocated { case: c, seq });
                        }
                        let seq = v.next_seq(&me_id);
                        let prev = seq.checked_sub(1).and_then(|s| v.at(&me_id, s));
                        let mut refs: Vec<EntryId> = draft.refs.clone();
                        for (a, (_, id)) in &v.state().heads {
                            if *a != me_id && refs.len() < MAX_REFS {
                                refs.push(*id);
                            }
                        }
                        refs.sort();
                        refs.dedup();
                        refs.truncate(MAX_REFS);
                        Payload {
                            v: version,
                            keys,
                            case: Some(c),
                            author: me_id,
                            seq,
                            prev,
                            refs,
                            time: now_ms,
                            tlp: draft.tlp,
                            to: draft.to,
                            body: draft.body,
                        }
                    }
                };
                let signed = Entry::sign(signer.key, &payload);
                let decoded =
                    Entry::decode_unverified(signed.bytes()).map_err(StoreError::Refused)?;
                signatures.push_parts(
                    &decoded.signer(),
                    &decoded.signed_parts(),
                    decoded.signature(),
                );
                let entry = decoded.assume_verified();
                let c = entry.case_id();
                // A key revoked since (SPEC.md §8.6), uncertified, of the
                // wrong role or out of its validity writes nothing.
                custodia_protocol::refuse_revoked(&entry, &self.key_logs)
                    .map_err(StoreError::Refused)?;
                let v = self
                    .cases
                    .entry(c)
                    .or_insert_with(|| crate::spill::lean_validator(&self.spill, self.window));
                let how = v
                    .apply_keyed(&entry, now_ms, &self.key_logs)
                    .map_err(StoreError::Refused)?;
                self.insert_row(&entry, how, now_ms)?;
                case = Some(c);
                out.push(entry);
            }
            let verdicts = signatures.verify();
            if let Some(e) = out.iter().zip(verdicts).find(|(_, ok)| !ok).map(|(e, _)| e) {
                return Err(StoreError::Refused(Rejection {
                    entry: Some(e.id()),
                    kind: RejectKind::BadSignature,
                }));
            }
            Ok(out)
        })();
        match result {
            Ok(out) => {
                self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e))?;
                // The seal records what is now committed (SPEC.md §9.14).
                self.seal.write(self.loaded_rev);
                // A node running on this store sends it on at once (§9.9).
                crate::wake::notify(&self.path);
                Ok(out)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The format version of an entry `signer` writes in `case` (None: a
    /// new case), and for version 2 the length of the agency's key log it
    /// is made under: a case keeps its genesis's version (V19); the
    /// agency's key writes version 1, a certified key version 2.
    fn version_for(
        &self,
        signer: &Signer<'_>,
        case: Option<&CaseId>,
    ) -> Result<(u64, Option<u64>), StoreError> {
        let version = match case {
            None => signer.version(),
            Some(c) => self
                .cases
                .get(c)
                .and_then(Validator::version)
                .ok_or(StoreError::UnknownCase(*c))?,
        };
        if version != signer.version() {
            return Err(StoreError::Signer(if version == FORMAT_VERSION {
                format!(
                    "case {} was opened in format version 1, whose entries are signed by the agency's own key; write in it without --as (and without CUSTODIA_OFFICER_KEY)",
                    case.map_or_else(String::new, ToString::to_string)
                )
            } else {
                format!(
                    "case {} was opened in format version 2, whose entries are signed by the officer who acts: pass the officer's key file with --as FILE (or set CUSTODIA_OFFICER_KEY)",
                    case.map_or_else(String::new, ToString::to_string)
                )
            }));
        }
        if version == FORMAT_VERSION {
            return Ok((version, None));
        }
        let held = self.key_logs.get(&signer.agency).map(|l| l.len());
        match held {
            Some(n) => Ok((version, Some(n))),
            None => Err(StoreError::Signer(
                "this agency has no key log, so no key of it is certified: start one with `custodia key start` and certify the officer with `custodia key certify-officer`".into(),
            )),
        }
    }

    /// The change counter of the next row written. Asked once per row, so
    /// the statement is kept prepared: parsing it again for every entry
    /// took ≈7 % of a catching-up node's CPU.
    fn next_rev(&self) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached("SELECT COALESCE(MAX(rev), 0) + 1 FROM entries")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.sql(e))
    }

    /// Stores an accepted entry: fills its withheld row when the validator
    /// says it revealed a withheld position (`how` is [`Applied::Revealed`]),
    /// else inserts a new row (an index probe less per entry than trying
    /// the update first).
    fn insert_row(&mut self, entry: &Entry, how: Applied, now_ms: u64) -> Result<(), StoreError> {
        let rev = self.next_rev()?;
        let updated = if how == Applied::Revealed {
            self.conn
                .prepare_cached(
                    "UPDATE entries SET bytes = ?5, rev = ?6
                     WHERE case_id = ?1 AND author = ?2 AND seq = ?3 AND id = ?4
                       AND bytes IS NULL",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        &entry.case_id().0[..],
                        &entry.author().0[..],
                        entry.seq() as i64,
                        &entry.id().0[..],
                        entry.bytes(),
                        rev
                    ])
                })
                .map_err(|e| self.sql(e))?
        } else {
            0
        };
        if updated == 0 {
            self.conn
                .prepare_cached(
                    "INSERT INTO entries (rev, id, case_id, author, seq, bytes, stored_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        rev,
                        &entry.id().0[..],
                        &entry.case_id().0[..],
                        &entry.author().0[..],
                        entry.seq() as i64,
                        entry.bytes(),
                        now_ms as i64
                    ])
                })
                .map_err(|e| self.sql(e))?;
        }
        self.loaded_rev = rev;
        Ok(())
    }

    fn insert_withheld(
        &mut self,
        case: &CaseId,
        w: &WithheldPosition,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let rev = self.next_rev()?;
        self.conn
            .prepare_cached(
                "INSERT INTO entries (rev, id, case_id, author, seq, bytes, stored_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    rev,
                    &w.id.0[..],
                    &case.0[..],
                    &w.author.0[..],
                    w.seq as i64,
                    now_ms as i64
                ])
            })
            .map_err(|e| self.sql(e))?;
        self.loaded_rev = rev;
        Ok(())
    }

    fn insert_proof(
        &mut self,
        case: &CaseId,
        proof: &EquivocationProof,
    ) -> Result<bool, StoreError> {
        let Ok(eq) = proof.check_keyed(&self.key_logs) else {
            return Ok(false);
        };
        if eq.case != *case || self.proofs_about(case, &eq.author)? >= MAX_PROOFS_PER_AUTHOR {
            return Ok(false);
        }
        let n = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO equivocations (case_id, author, seq, proof) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    &case.0[..],
                    &eq.author.0[..],
                    eq.seq as i64,
                    proof.to_bytes()
                ])
            })
            .map_err(|e| self.sql(e))?;
        Ok(n > 0)
    }

    /// Validates and stores entries received from a peer, in one atomic
    /// transaction: when this returns Ok, everything in `stored` is on disk.
    pub fn receive(
        &mut self,
        case: &CaseId,
        items: Vec<SyncItem>,
        now_ms: u64,
    ) -> Result<BatchOutcome, StoreError> {
        // Decoding and signature checks (V1–V8) need no state: they run on
        // every core before the write lock is taken.
        let checked = check(items);
        let mut out = self.receive_checked(vec![(*case, checked)], None, now_ms)?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Validates and stores batches already through [`check`], all in one
    /// atomic transaction (one durable commit for the group): when this
    /// returns Ok, everything in every outcome's `stored` is on disk. The
    /// batches are applied in order, each seeing the ones before it. One
    /// outcome per batch, in order. On an error nothing of the group is
    /// stored.
    ///
    /// With `markers_from`, withheld markers are taken only if that agency
    /// is a member of the case when its batch starts (a marker is unsigned:
    /// only a member's word counts); the others are counted in `ignored`.
    pub fn receive_checked(
        &mut self,
        batches: Vec<(CaseId, Vec<Checked>)>,
        markers_from: Option<AgencyId>,
        now_ms: u64,
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        let result = self.receive_tx(batches, markers_from, now_ms);
        if result.is_err() {
            self.reload()?;
        }
        result
    }

    fn receive_tx(
        &mut self,
        batches: Vec<(CaseId, Vec<Checked>)>,
        markers_from: Option<AgencyId>,
        now_ms: u64,
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.sql(e))?;
        let result = (|| {
            self.refresh()?;
            self.quarantine_in_place()?;
            let mut outs = Vec::with_capacity(batches.len());
            for (case, items) in batches {
                outs.push(apply_batch(
                    self,
                    &case,
                    items,
                    markers_from.as_ref(),
                    now_ms,
                )?);
            }
            Ok(outs)
        })();
        match result {
            Ok(outs) => {
                self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e))?;
                // The seal records what is now committed (SPEC.md §9.14).
                self.seal.write(self.loaded_rev);
                Ok(outs)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Stores an equivocation proof that peer `from` sent, if the node
    /// takes it (SPEC.md §9.11: the case is held here, the sender and the
    /// author are members, the proof checks, and fewer than
    /// [`MAX_PROOFS_PER_AUTHOR`] proofs about that author are held).
    /// `Ok(Ok(true))` if it is new and now stored, `Ok(Ok(false))` if it
    /// was already held, `Ok(Err(_))` if it was refused.
    pub fn receive_proof(
        &mut self,
        case: &CaseId,
        proof: &EquivocationProof,
        from: &AgencyId,
    ) -> Result<Result<bool, ProofRefusal>, StoreError> {
        // Taken from other processes' writes too (the sender's membership
        // may have just arrived through the CLI's store).
        self.refresh()?;
        let v = self.cases.get(case);
        if let Err(r) = admit_proof(case, proof, from, v, &self.key_logs, |a| {
            self.proofs_about(case, a).unwrap_or(usize::MAX)
        }) {
            return Ok(Err(r));
        }
        self.insert_proof(case, proof).map(Ok)
    }

    /// How many proofs about `author` are stored for a case.
    fn proofs_about(&self, case: &CaseId, author: &AgencyId) -> Result<usize, StoreError> {
        self.conn
            .prepare_cached("SELECT COUNT(*) FROM equivocations WHERE case_id = ?1 AND author = ?2")
            .and_then(|mut s| {
                s.query_row(params![&case.0[..], &author.0[..]], |r| r.get::<_, i64>(0))
            })
            .map(|n| n as usize)
            .map_err(|e| self.sql(e))
    }

    /// The equivocation proofs stored for a case.
    pub fn proofs(&self, case: &CaseId) -> Result<Vec<EquivocationProof>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT proof FROM equivocations WHERE case_id = ?1 ORDER BY author, seq",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![&case.0[..]], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for bytes in rows {
            let bytes = bytes.map_err(|e| self.sql(e))?;
            if let Ok(p) = EquivocationProof::from_bytes(&bytes) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Rows of a case after position `after`, in dependency order, at most
    /// `limit`. A row whose bytes do not hash to its id is refused (the
    /// store is damaged): it is never served.
    pub fn rows_after(
        &self,
        case: &CaseId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT pos, id, author, seq, bytes FROM entries
                 WHERE case_id = ?1 AND pos > ?2 ORDER BY pos LIMIT ?3",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![&case.0[..], after, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (pos, id, author, seq, bytes) = row.map_err(|e| self.sql(e))?;
            let (Some(id), Some(author)) = (blob32(id), blob32(author)) else {
                tracing::error!(pos, "store row has a damaged id column; not served");
                continue;
            };
            let id = EntryId(id);
            if let Some(b) = &bytes {
                if EntryId::of(b) != id {
                    tracing::error!(pos, %id, "stored bytes do not hash to the entry id; not served");
                    continue;
                }
            }
            out.push(Row {
                pos,
                id,
                author: AgencyId(author),
                seq: seq as u64,
                bytes,
            });
        }
        Ok(out)
    }

    /// The places of a case's rows after position `after`, in dependency
    /// order, at most `limit`, without their bytes: a sender reads the
    /// bytes ([`Self::row_bytes`]) only of the rows it sends. A row with a
    /// damaged id column is left out.
    pub fn row_heads_after(
        &self,
        case: &CaseId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<RowHead>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT pos, id, author, seq, bytes IS NULL FROM entries
                 WHERE case_id = ?1 AND pos > ?2 ORDER BY pos LIMIT ?3",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![&case.0[..], after, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, bool>(4)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (pos, id, author, seq, withheld) = row.map_err(|e| self.sql(e))?;
            let (Some(id), Some(author)) = (blob32(id), blob32(author)) else {
                tracing::error!(pos, "store row has a damaged id column; not served");
                continue;
            };
            out.push(RowHead {
                pos,
                id: EntryId(id),
                author: AgencyId(author),
                seq: seq as u64,
                withheld,
            });
        }
        Ok(out)
    }

    /// The bytes of the row at `pos`, if it holds entry `id`'s bytes and
    /// they still hash to `id`. None for a withheld position, or a damaged
    /// row (which is never served).
    pub fn row_bytes(&self, pos: i64, id: &EntryId) -> Result<Option<Vec<u8>>, StoreError> {
        let bytes: Option<Option<Vec<u8>>> = self
            .conn
            .prepare_cached("SELECT bytes FROM entries WHERE pos = ?1")
            .and_then(|mut s| {
                s.query_row(params![pos], |r| r.get::<_, Option<Vec<u8>>>(0))
                    .optional()
            })
            .map_err(|e| self.sql(e))?;
        let bytes = bytes.flatten();
        if let Some(b) = &bytes {
            if EntryId::of(b) != *id {
                tracing::error!(pos, %id, "stored bytes do not hash to the entry id; not served");
                return Ok(None);
            }
        }
        Ok(bytes)
    }

    /// Every stored entry of a case, decoded, in dependency order (withheld
    /// positions and damaged rows left out).
    pub fn entries(&self, case: &CaseId) -> Result<Vec<Entry>, StoreError> {
        let v = self.cases.get(case).ok_or(StoreError::UnknownCase(*case))?;
        let rows = self.rows_after(case, 0, usize::MAX >> 1)?;
        Ok(rows
            .into_iter()
            .filter(|r| v.knows(&r.id))
            .filter_map(|r| r.bytes)
            .filter_map(|b| Entry::decode_unverified(&b).ok())
            .map(custodia_protocol::Unverified::assume_verified)
            .collect())
    }

    /// Where an id is held, as loaded: the case and position of the
    /// accepted entry, else of a withheld position with that id. (A
    /// withheld marker is a member's unsigned word: one case may record an
    /// id that is another case's entry; that case's validator refuses the
    /// entry if it arrives. So an accepted entry wins.)
    fn place_of(&self, id: &EntryId) -> Option<(CaseId, AgencyId, u64)> {
        let mut withheld = None;
        for (case, v) in &self.cases {
            if let Some(m) = v.meta(id) {
                if m.time.is_some() {
                    return Some((*case, m.author, m.seq));
                }
                withheld.get_or_insert((*case, m.author, m.seq));
            }
        }
        withheld
    }

    /// One stored entry by id (None if absent, withheld here, or not
    /// accepted when loaded, as a quarantined row). Its bytes must still
    /// hash to its id. Found through the loaded validators and the
    /// position index: rows another process wrote since the last
    /// [`Store::refresh`] are not seen.
    pub fn entry(&self, id: &EntryId) -> Result<Option<Entry>, StoreError> {
        let Some((case, author, seq)) = self.place_of(id) else {
            return Ok(None);
        };
        let bytes: Option<Option<Vec<u8>>> = self
            .conn
            .prepare_cached(
                "SELECT bytes FROM entries
                 WHERE case_id = ?1 AND author = ?2 AND seq = ?3 AND id = ?4",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![&case.0[..], &author.0[..], seq as i64, &id.0[..]],
                    |r| r.get::<_, Option<Vec<u8>>>(0),
                )
                .optional()
            })
            .map_err(|e| self.sql(e))?;
        Ok(bytes
            .flatten()
            .filter(|b| EntryId::of(b) == *id)
            .and_then(|b| Entry::decode_unverified(&b).ok())
            .map(custodia_protocol::Unverified::assume_verified))
    }

    /// Counts the rows of a store file without loading it (a cheap look
    /// for monitoring and tests; safe while a node writes to it).
    pub fn peek_count(path: &Path) -> Result<u64, StoreError> {
        read_only(path)?
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| sqlite(path, e))
    }

    /// Number of stored rows (entries and withheld positions).
    pub fn count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }

    /// The store check: SQLite's own integrity check, then every row
    /// re-verified from its bytes (id, signature, chain and every rule) in
    /// dependency order with fresh validators, then every quarantined row
    /// not recovered since (a peer re-sent its entry).
    pub fn check(&self) -> Result<Vec<Problem>, StoreError> {
        let mut problems = self.check_rows()?;
        for q in self.quarantined(None)? {
            if q.quarantined_at.is_some() && !q.recovered {
                problems.push(Problem {
                    pos: Some(q.pos),
                    id: q.id,
                    what: format!("quarantined: {}", q.reason),
                });
            }
        }
        Ok(problems)
    }

    fn check_rows(&self) -> Result<Vec<Problem>, StoreError> {
        let mut problems = Vec::new();
        let integrity: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("PRAGMA integrity_check")
                .map_err(|e| self.sql(e))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| self.sql(e))?;
            rows.filter_map(Result::ok).collect()
        };
        if integrity != ["ok"] {
            for line in integrity {
                problems.push(Problem {
                    pos: None,
                    id: None,
                    what: format!("database file: {line}"),
                });
            }
        }
        let mut stmt = self
            .conn
            .prepare("SELECT pos, id, case_id, author, seq, bytes FROM entries ORDER BY pos")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<Vec<u8>>>(5)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut fresh: BTreeMap<CaseId, Validator> = BTreeMap::new();
        // Entries of format version 2 are checked against the key logs as
        // stored (V20 to V24), read afresh like the entries.
        let logs = self.read_key_logs()?;
        for row in rows {
            let (pos, id, case, author, seq, bytes) = match row {
                Ok(r) => r,
                Err(e) => {
                    problems.push(Problem {
                        pos: None,
                        id: None,
                        what: format!("unreadable row: {e}"),
                    });
                    continue;
                }
            };
            let mut problem = |id: Option<EntryId>, what: String| {
                problems.push(Problem {
                    pos: Some(pos),
                    id,
                    what,
                })
            };
            let (Some(id), Some(case), Some(author)) = (blob32(id), blob32(case), blob32(author))
            else {
                problem(None, "an id column is not 32 bytes".into());
                continue;
            };
            let (id, case, author) = (EntryId(id), EntryId(case), AgencyId(author));
            let v = fresh
                .entry(case)
                .or_insert_with(|| crate::spill::lean_validator(&self.spill, self.window));
            match bytes {
                None => {
                    if let Err(r) = v.apply_withheld(WithheldPosition {
                        author,
                        seq: seq as u64,
                        id,
                    }) {
                        problem(Some(id), r.to_string());
                    }
                }
                Some(bytes) => {
                    if EntryId::of(&bytes) != id {
                        problem(
                            Some(id),
                            "the stored bytes do not hash to the entry id".into(),
                        );
                        continue;
                    }
                    let entry = match Entry::decode(&bytes) {
                        Ok(e) => e,
                        Err(r) => {
                            problem(Some(id), r.to_string());
                            continue;
                        }
                    };
                    if entry.case_id() != case
                        || entry.author() != author
                        || entry.seq() != seq as u64
                    {
                        problem(Some(id), "the index columns disagree with the entry".into());
                        continue;
                    }
                    if let Err(r) = v.apply_keyed(&entry, u64::MAX, &logs) {
                        problem(Some(id), r.to_string());
                    }
                }
            }
        }
        // Rows refused because the check's own records could not be read
        // back are not damage: the check could not finish.
        if let Some((case, why)) = fresh
            .iter()
            .find_map(|(c, v)| v.failure().map(|why| (*c, why.to_string())))
        {
            return Err(StoreError::Records {
                path: self.path.clone(),
                case,
                why,
            });
        }
        Ok(problems)
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a case exists in the store.
    pub fn has_case(&self, case: &CaseId) -> bool {
        self.cases.contains_key(case)
    }

    /// Looks up which case holds an entry id (accepted, or else withheld),
    /// as loaded.
    pub fn case_of_entry(&self, id: &EntryId) -> Result<Option<CaseId>, StoreError> {
        Ok(self.place_of(id).map(|(case, ..)| case))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodia_protocol::{CaseOpened, Note};

    const T: u64 = 1_795_000_000_000;

    fn note(text: &str) -> Draft {
        Draft::new(
            Tlp::Amber,
            Body::Note(Note {
                text: text.into(),
                item: None,
            }),
        )
    }

    fn opened(title: &str) -> Draft {
        Draft::new(
            Tlp::Amber,
            Body::CaseOpened(CaseOpened {
                title: title.into(),
                reference: "R-1".into(),
                jurisdiction: None,
                name: "Alpha".into(),
                country: "PH".into(),
            }),
        )
    }

    /// A store with a case of three entries by `me`: genesis, two notes.
    fn store_with_case(path: &Path, me: &Identity) -> (Store, CaseId, Vec<Entry>) {
        let mut store = Store::open(path).expect("open");
        let genesis = store.author(me, None, opened("Case"), T).expect("genesis");
        let case = genesis.case_id();
        let one = store.author(me, Some(case), note("one"), T).expect("one");
        let two = store.author(me, Some(case), note("two"), T).expect("two");
        (store, case, vec![genesis, one, two])
    }

    #[test]
    fn writing_in_a_case_on_hold_is_refused_without_reloading_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = Identity::from_seed([3; 32]);
        let (mut store, case, _) = store_with_case(&dir.path().join("s.sqlite"), &me);
        crate::guard::hold(&store.conn, &case, "a test hold", Some(5), None, T).expect("hold");
        for _ in 0..3 {
            let refused = store.author(&me, Some(case), note("too early"), T);
            assert!(matches!(refused, Err(StoreError::OnHold(_))), "{refused:?}");
        }
        assert_eq!(
            store.reloads(),
            0,
            "a refusal before the transaction reloads nothing"
        );
        assert_eq!(store.case(&case).map(|v| v.next_seq(&me.agency())), Some(3));
        // A failure inside a transaction still rebuilds the cases.
        crate::guard::release(&store.conn, &case, "test", T).expect("release");
        let other = EntryId([9; 32]);
        assert!(store
            .author(&me, Some(other), note("no such case"), T)
            .is_err());
        assert_eq!(store.reloads(), 1);
    }

    /// Writes a row as a tool other than the store would.
    fn insert_raw(path: &Path, case: &CaseId, author: &AgencyId, seq: u64, bytes: &[u8]) {
        let conn = Connection::open(path).expect("open");
        conn.execute(
            "INSERT INTO entries (rev, id, case_id, author, seq, bytes, stored_at)
             VALUES ((SELECT MAX(rev) + 1 FROM entries), ?1, ?2, ?3, ?4, ?5, 0)",
            params![
                &EntryId::of(bytes).0[..],
                &case.0[..],
                &author.0[..],
                seq as i64,
                bytes
            ],
        )
        .expect("insert");
    }

    /// An entry by `me` at `seq` after `prev`, its signature broken.
    fn forged(me: &Identity, case: CaseId, seq: u64, prev: EntryId) -> Vec<u8> {
        let e = Entry::sign(
            me,
            &Payload {
                v: FORMAT_VERSION,
                keys: None,
                case: Some(case),
                author: me.agency(),
                seq,
                prev: Some(prev),
                refs: Vec::new(),
                time: T,
                tlp: Tlp::Amber,
                to: None,
                body: Body::Note(Note {
                    text: "forged".into(),
                    item: None,
                }),
            },
        );
        let mut bytes = e.bytes().to_vec();
        let at = bytes.len() - 40;
        bytes[at] ^= 1;
        bytes
    }

    /// A position first received as withheld, then as the entry itself
    /// (its content revealed): the row keeps its place and gains the
    /// bytes; an entry at a new position is a new row.
    #[test]
    fn a_revealed_withheld_position_fills_its_row_and_new_entries_get_new_rows() {
        let dir = tempfile::tempdir().expect("tmp");
        let me = Identity::from_seed([1; 32]);
        let (_, case, entries) = store_with_case(&dir.path().join("a.sqlite"), &me);
        let mut b = Store::open(&dir.path().join("b.sqlite")).expect("open");
        let withheld = WithheldPosition {
            author: me.agency(),
            seq: 1,
            id: entries[1].id(),
        };
        let out = b
            .receive(
                &case,
                vec![
                    SyncItem::Entry(entries[0].bytes().to_vec()),
                    SyncItem::Withheld(withheld),
                ],
                T,
            )
            .expect("receive");
        assert_eq!((out.stored.len(), out.refused.len()), (2, 0));
        let pos_of = |s: &Store, id: &EntryId| -> (i64, bool) {
            s.conn
                .query_row(
                    "SELECT pos, bytes IS NULL FROM entries WHERE id = ?1",
                    params![&id.0[..]],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("row")
        };
        let (pos, empty) = pos_of(&b, &entries[1].id());
        assert!(empty);
        let out = b
            .receive(
                &case,
                entries[1..]
                    .iter()
                    .map(|e| SyncItem::Entry(e.bytes().to_vec()))
                    .collect(),
                T,
            )
            .expect("receive");
        assert_eq!((out.stored.len(), out.refused.len()), (2, 0), "{out:?}");
        assert_eq!(pos_of(&b, &entries[1].id()), (pos, false));
        assert!(pos_of(&b, &entries[2].id()).0 > pos);
        assert_eq!(b.count().expect("count"), 3);
        assert_eq!(
            b.row_bytes(pos, &entries[1].id())
                .expect("bytes")
                .as_deref(),
            Some(entries[1].bytes())
        );
        // Reopened, every row verifies.
        drop(b);
        let b = Store::open(&dir.path().join("b.sqlite")).expect("reopen");
        assert!(b.damaged().is_empty());
        assert_eq!(b.entries(&case).expect("entries").len(), 3);
    }

    #[test]
    fn an_entry_the_rules_refuse_is_never_stored_and_the_chain_goes_on() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("store.sqlite");
        let me = Identity::from_seed([1; 32]);
        let (mut store, case, entries) = store_with_case(&path, &me);
        let long = "x".repeat(70_000);
        match store.author(&me, Some(case), note(&long), T) {
            Err(StoreError::Refused(r)) => {
                assert_eq!(r.rule(), 1);
                let text = StoreError::Refused(r).to_string();
                assert!(text.contains("V1") && text.contains("65536"), "{text}");
            }
            other => panic!("expected a V1 refusal, got {other:?}"),
        }
        match store.author(&me, None, opened(&long), T) {
            Err(StoreError::Refused(r)) => assert_eq!(r.rule(), 1),
            other => panic!("expected a V1 refusal, got {other:?}"),
        }
        assert_eq!(store.count().expect("count"), 3);
        let next = store
            .author(&me, Some(case), note("three"), T)
            .expect("next");
        assert_eq!(next.seq(), 3);
        assert_eq!(next.payload().prev, Some(entries[2].id()));
        drop(store);
        let store = Store::open(&path).expect("reopen");
        assert!(store.check().expect("check").is_empty());
        assert!(store.quarantined(None).expect("list").is_empty());
    }

    #[test]
    fn a_forged_row_is_quarantined_never_served_and_its_position_taken() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("store.sqlite");
        let me = Identity::from_seed([1; 32]);
        let (mut writer, case, entries) = store_with_case(&path, &me);
        let bytes = forged(&me, case, 3, entries[2].id());
        let bad = EntryId::of(&bytes);
        insert_raw(&path, &case, &me.agency(), 3, &bytes);

        // Another handle catches up with the row and quarantines it.
        writer.refresh().expect("refresh");
        let q = writer.quarantined(Some(&case)).expect("list");
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].id, Some(bad));
        assert_eq!(q[0].seq, Some(3));
        assert!(q[0].reason.contains("V8"), "{}", q[0].reason);
        assert!(!q[0].recovered);
        let heads = writer.row_heads_after(&case, 0, 100).expect("heads");
        assert_eq!(heads.len(), 3);
        assert!(heads.iter().all(|h| h.id != bad));
        assert!(writer.entry(&bad).expect("lookup").is_none());

        // The quarantined row was of this agency's own chain: it may be a
        // genuine entry peers hold, so the case is on hold (SPEC.md
        // §9.14) until it comes back, or the operator releases the hold.
        let held = writer.author(&me, Some(case), note("three"), T);
        assert!(
            matches!(held, Err(StoreError::OnHold(ref h)) if h.behind == Some(3)),
            "{held:?}"
        );
        assert!(writer
            .release_hold(&case, "the row was forged; no peer holds a #3")
            .expect("release"));
        // The position is free: the next entry takes it, after the
        // genuine head.
        let next = writer
            .author(&me, Some(case), note("three"), T)
            .expect("write");
        assert_eq!(next.seq(), 3);
        assert_eq!(next.payload().prev, Some(entries[2].id()));

        // Reopened, the store is whole; the check lists the quarantined
        // row with its reason.
        drop(writer);
        let store = Store::open(&path).expect("reopen");
        assert!(store.damaged().is_empty(), "nothing new to quarantine");
        assert_eq!(store.entries(&case).expect("entries").len(), 4);
        let problems = store.check().expect("check");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].id, Some(bad));
        assert!(problems[0].what.starts_with("quarantined: rule V8"));
        let kept: Vec<u8> = store
            .conn
            .query_row("SELECT bytes FROM quarantine", [], |r| r.get(0))
            .expect("kept for forensics");
        assert_eq!(kept, bytes);
    }

    #[test]
    fn a_damaged_row_and_what_depends_on_it_are_quarantined_until_a_peer_sends_them_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("store.sqlite");
        let me = Identity::from_seed([1; 32]);
        let (store, case, entries) = store_with_case(&path, &me);
        drop(store);
        // One flipped bit in the first note's bytes.
        let conn = Connection::open(&path).expect("open");
        let mut bytes = entries[1].bytes().to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x04;
        conn.execute(
            "UPDATE entries SET bytes = ?1 WHERE id = ?2",
            params![bytes, &entries[1].id().0[..]],
        )
        .expect("damage");
        drop(conn);

        let mut store = Store::open(&path).expect("open");
        let q = store.quarantined(Some(&case)).expect("list");
        assert_eq!(
            q.iter().map(|q| q.id).collect::<Vec<_>>(),
            [Some(entries[1].id()), Some(entries[2].id())]
        );
        assert!(
            q[0].reason.contains("do not hash to its id"),
            "{}",
            q[0].reason
        );
        assert!(q[1].reason.contains("V11"), "{}", q[1].reason);
        assert_eq!(store.count().expect("count"), 1);

        // A peer holding the genuine entries sends them again.
        let items = entries[1..]
            .iter()
            .map(|e| SyncItem::Entry(e.bytes().to_vec()))
            .collect();
        let out = store.receive(&case, items, T).expect("receive");
        assert_eq!(out.stored.len(), 2, "{out:?}");
        let q = store.quarantined(Some(&case)).expect("list");
        assert!(q.iter().all(|q| q.recovered), "{q:?}");
        assert!(store.check().expect("check").is_empty());
    }

    #[test]
    fn a_row_with_columns_of_the_wrong_type_is_quarantined_not_fatal() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("store.sqlite");
        let me = Identity::from_seed([1; 32]);
        let (store, case, _) = store_with_case(&path, &me);
        drop(store);
        let conn = Connection::open(&path).expect("open");
        conn.execute(
            "INSERT INTO entries (rev, id, case_id, author, seq, bytes, stored_at)
             VALUES (99, 'not an id', ?1, 42, 'x', 7, 0)",
            params![&case.0[..]],
        )
        .expect("insert");
        drop(conn);
        let store = Store::open(&path).expect("a damaged row does not stop the store");
        let q = store.quarantined(None).expect("list");
        assert_eq!(q.len(), 1);
        assert!(q[0].reason.contains("id column"), "{}", q[0].reason);
        assert_eq!(store.entries(&case).expect("entries").len(), 3);
    }

    #[test]
    fn a_version_1_store_is_migrated_and_verified() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("store.sqlite");
        let me = Identity::from_seed([1; 32]);
        let (store, case, entries) = store_with_case(&path, &me);
        drop(store);
        // Back to the version-1 schema, with a forged row.
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "DROP TABLE quarantine; DROP TABLE node_meta; DROP TABLE holds;
             DROP TABLE key_statements; DROP TABLE key_superseded; DROP TABLE key_forks;
             DROP TABLE peer_views; DROP TABLE hold_log; PRAGMA user_version = 1;",
        )
        .expect("downgrade");
        drop(conn);
        insert_raw(
            &path,
            &case,
            &me.agency(),
            3,
            &forged(&me, case, 3, entries[2].id()),
        );
        let store = Store::open(&path).expect("open");
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(store.quarantined(None).expect("list").len(), 1);
    }

    /// A store file at schema version 5, as the migrations up to 5 made
    /// it: the entries table with a unique index on the entry id.
    fn version_5_store(path: &Path) -> Connection {
        let conn = Connection::open(path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        for m in &MIGRATIONS[..5] {
            conn.execute_batch(m).expect("migration");
        }
        conn.pragma_update(None, "user_version", 5)
            .expect("version");
        conn
    }

    /// The indexes of the entries table, by name.
    fn entry_indexes(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries' ORDER BY name")
            .expect("prepare");
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("names");
        names
    }

    /// An existing store written at version 5 is upgraded in place: every
    /// row keeps its position, every entry is found by its id, a withheld
    /// position stays withheld, the unique id index is gone, and a
    /// position freed at the end of the table is not used again.
    #[test]
    fn a_version_5_store_is_upgraded_in_place_and_every_entry_found_by_id() {
        let dir = tempfile::tempdir().expect("tmp");
        let me = Identity::from_seed([1; 32]);
        // The rows, made by a current store.
        let (mut scratch, case, mut entries) = store_with_case(&dir.path().join("s.sqlite"), &me);
        let notes = (0..200).map(|i| note(&format!("note {i}"))).collect();
        entries.extend(
            scratch
                .author_many(&me, Some(case), notes, T)
                .expect("notes"),
        );
        let other = scratch
            .author(&me, None, opened("Other"), T)
            .expect("genesis");
        entries.push(other.clone());
        type Raw = (
            i64,
            i64,
            Vec<u8>,
            Vec<u8>,
            Vec<u8>,
            i64,
            Option<Vec<u8>>,
            i64,
        );
        let rows: Vec<Raw> = {
            let mut stmt = scratch
                .conn
                .prepare("SELECT pos, rev, id, case_id, author, seq, bytes, stored_at FROM entries ORDER BY pos")
                .expect("prepare");
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                })
                .expect("query")
                .collect::<Result<Vec<_>, _>>()
                .expect("rows");
            rows
        };
        drop(scratch);
        assert_eq!(rows.len(), entries.len());

        // The same rows in a version-5 file, one position withheld, and
        // a last row deleted (as quarantine deletes one).
        let path = dir.path().join("store.sqlite");
        let conn = version_5_store(&path);
        assert!(
            entry_indexes(&conn)
                .iter()
                .any(|n| n.starts_with("sqlite_autoindex_entries")),
            "version 5 has the unique id index"
        );
        let withheld = entries[5].id();
        for (pos, rev, id, case_id, author, seq, bytes, at) in &rows {
            let bytes = if *id == withheld.0 {
                None
            } else {
                bytes.clone()
            };
            conn.execute(
                "INSERT INTO entries (pos, rev, id, case_id, author, seq, bytes, stored_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![pos, rev, id, case_id, author, seq, bytes, at],
            )
            .expect("insert");
        }
        let last = rows.last().map(|r| r.0).expect("rows");
        let freed = entries.last().expect("entries").id();
        conn.execute("DELETE FROM entries WHERE pos = ?1", params![last])
            .expect("delete");
        drop(conn);

        let mut store = Store::open(&path).expect("open");
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(
            entry_indexes(&store.conn),
            ["entries_case", "entries_position", "entries_rev"]
        );
        assert!(store.damaged().is_empty(), "{:?}", store.damaged());
        assert_eq!(store.count().expect("count"), rows.len() as u64 - 1);
        let positions: Vec<i64> = {
            let mut stmt = store
                .conn
                .prepare("SELECT pos FROM entries ORDER BY pos")
                .expect("prepare");
            let p = stmt
                .query_map([], |r| r.get(0))
                .expect("query")
                .collect::<Result<Vec<_>, _>>()
                .expect("positions");
            p
        };
        assert_eq!(
            positions,
            rows[..rows.len() - 1]
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>()
        );
        for e in &entries[..entries.len() - 1] {
            let found = store.entry(&e.id()).expect("lookup");
            if e.id() == withheld {
                assert!(found.is_none(), "a withheld position has no bytes");
            } else {
                assert_eq!(found.map(|f| f.bytes().to_vec()), Some(e.bytes().to_vec()));
            }
            assert_eq!(
                store.case_of_entry(&e.id()).expect("case"),
                Some(e.case_id())
            );
        }
        assert!(store.entry(&freed).expect("lookup").is_none());
        assert!(store.check().expect("check").is_empty());
        // The freed position is not taken again: the next row comes after.
        store
            .author(&me, None, opened("Third"), T)
            .expect("genesis");
        let top: i64 = store
            .conn
            .query_row("SELECT MAX(pos) FROM entries", [], |r| r.get(0))
            .expect("max");
        assert_eq!(top, last + 1);
    }

    /// Without an index on ids, an entry stored twice is still one row: the
    /// validator reports the duplicate, the file refuses a second row at
    /// its position, and a row that repeats an id at another position
    /// (written by a tool other than the store) is quarantined.
    #[test]
    fn a_duplicate_entry_is_still_one_row() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("store.sqlite");
        let me = Identity::from_seed([1; 32]);
        let (_, case, entries) = store_with_case(&dir.path().join("a.sqlite"), &me);
        let mut store = Store::open(&path).expect("open");
        let items = || {
            entries
                .iter()
                .map(|e| SyncItem::Entry(e.bytes().to_vec()))
                .collect::<Vec<_>>()
        };
        let out = store.receive(&case, items(), T).expect("receive");
        assert_eq!(out.stored.len(), 3);
        let out = store.receive(&case, items(), T).expect("receive again");
        assert_eq!((out.stored.len(), out.duplicates), (0, 3), "{out:?}");
        assert_eq!(store.count().expect("count"), 3);

        // The file itself refuses a second row of the same entry.
        let conn = Connection::open(&path).expect("open");
        let again = conn.execute(
            "INSERT INTO entries (rev, id, case_id, author, seq, bytes, stored_at)
             VALUES (99, ?1, ?2, ?3, 1, ?4, 0)",
            params![
                &entries[1].id().0[..],
                &case.0[..],
                &me.agency().0[..],
                entries[1].bytes()
            ],
        );
        assert!(again.is_err(), "a second row at a held position");
        // The same id and bytes recorded at another position.
        conn.execute(
            "INSERT INTO entries (rev, id, case_id, author, seq, bytes, stored_at)
             VALUES (99, ?1, ?2, ?3, 7, ?4, 0)",
            params![
                &entries[1].id().0[..],
                &case.0[..],
                &me.agency().0[..],
                entries[1].bytes()
            ],
        )
        .expect("a tool writes past the store");
        drop(conn);
        drop(store);
        let store = Store::open(&path).expect("reopen");
        let q = store.quarantined(Some(&case)).expect("list");
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!((q[0].id, q[0].seq), (Some(entries[1].id()), Some(7)));
        assert!(q[0].reason.contains("disagree"), "{}", q[0].reason);
        assert_eq!(store.count().expect("count"), 3);
        assert_eq!(
            store
                .entry(&entries[1].id())
                .expect("lookup")
                .map(|e| e.seq()),
            Some(1)
        );
        assert_eq!(store.entries(&case).expect("entries").len(), 3);
    }

    /// A withheld marker is a member's unsigned word: a marker in one case
    /// may name the id of an entry of another. It is stored for its case
    /// (a unique id index made the whole batch fail), and the entry is
    /// still found by its id in its own case.
    #[test]
    fn a_withheld_marker_naming_another_cases_entry_leaves_that_entry_found() {
        let dir = tempfile::tempdir().expect("tmp");
        let me = Identity::from_seed([1; 32]);
        let (mut store, a, entries) = store_with_case(&dir.path().join("a.sqlite"), &me);
        let b = store
            .author(&me, None, opened("B"), T)
            .expect("genesis")
            .case_id();
        let marker = WithheldPosition {
            author: me.agency(),
            seq: 1,
            id: entries[2].id(),
        };
        let out = store
            .receive(&b, vec![SyncItem::Withheld(marker)], T)
            .expect("the marker is taken for case B");
        assert_eq!((out.stored.len(), out.refused.len()), (1, 0), "{out:?}");
        assert_eq!(
            store
                .entry(&entries[2].id())
                .expect("lookup")
                .map(|e| e.bytes().to_vec()),
            Some(entries[2].bytes().to_vec())
        );
        assert_eq!(
            store.case_of_entry(&entries[2].id()).expect("case"),
            Some(a)
        );
        drop(store);
        let store = Store::open(&dir.path().join("a.sqlite")).expect("reopen");
        assert!(store.damaged().is_empty(), "{:?}", store.damaged());
        assert_eq!(
            store
                .entry(&entries[2].id())
                .expect("lookup")
                .map(|e| e.case_id()),
            Some(a)
        );
    }

    /// An agency's log: inception and profile by root 1 (next root 2).
    fn key_log_of_one() -> custodia_protocol::keylog::KeyLog {
        use custodia_protocol::keylog::{
            KeyLog, KeyStatement, Profile, Statement, StatementPayload,
        };
        let root = Identity::from_seed([1; 32]);
        let next = Identity::from_seed([2; 32]);
        let t = 1_795_000_000_000;
        let mut log = KeyLog::from_inception(KeyStatement::sign(
            &root,
            &StatementPayload::inception(&root, &next, t),
        ))
        .expect("inception");
        let profile = Statement::Profile(Profile {
            name: "NBI".into(),
            country: "PH".into(),
        });
        log.append(KeyStatement::sign(
            &root,
            &StatementPayload::after(&log, t + 1, profile),
        ))
        .expect("profile");
        log
    }

    fn officer_statement(
        log: &custodia_protocol::keylog::KeyLog,
        n: u8,
    ) -> custodia_protocol::keylog::KeyStatement {
        use custodia_protocol::keylog::{
            key_of, Certify, KeyRole, KeyStatement, Officer, PublicKey, Statement, StatementPayload,
        };
        let st = Statement::Certify(Certify {
            key: PublicKey::ed25519(key_of(&Identity::from_seed([n; 32]))),
            role: KeyRole::Officer,
            officer: Some(Officer {
                name: format!("Officer {n}"),
                number: format!("PNP-{n}"),
            }),
            not_before: 0,
            not_after: None,
        });
        KeyStatement::sign(
            &Identity::from_seed([1; 32]),
            &StatementPayload::after(log, 1_795_000_000_100 + u64::from(n), st),
        )
    }

    #[test]
    fn a_statement_signed_over_a_key_log_that_changed_meanwhile_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("store.sqlite");
        let mut store = Store::open(&path).expect("open");
        let log = key_log_of_one();
        let agency = log.agency();
        store.save_key_log_over(&log, None, 0).expect("started");
        assert!(matches!(
            store.save_key_log_over(&log, None, 0),
            Err(StoreError::KeyLogChanged { .. })
        ));
        // Two writers read the same log; each signs the next statement.
        let base = Some((log.len(), log.head()));
        let (mut first, mut second) = (log.clone(), log.clone());
        first.append(officer_statement(&log, 7)).expect("one");
        second.append(officer_statement(&log, 8)).expect("other");
        let mut other = Store::open(&path).expect("a second process");
        other
            .save_key_log_over(&first, base, 2)
            .expect("first writer");
        let late = store.save_key_log_over(&second, base, 2);
        assert!(
            matches!(late, Err(StoreError::KeyLogChanged { .. })),
            "{late:?}"
        );
        let held = Store::open(&path)
            .expect("open")
            .key_log(&agency)
            .expect("reads")
            .expect("held");
        assert_eq!(held.head(), first.head(), "the first statement stands");
        assert_eq!(held.len(), 3);
    }

    #[test]
    fn received_key_statements_are_applied_to_the_stored_log_not_a_stale_copy() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("store.sqlite");
        let mut node = Store::open(&path).expect("the node's store");
        let log = key_log_of_one();
        let agency = log.agency();
        let bytes = |l: &custodia_protocol::keylog::KeyLog| -> Vec<Vec<u8>> {
            l.statements().iter().map(|s| s.bytes().to_vec()).collect()
        };
        let got = node
            .receive_key_statements(&agency, &bytes(&log))
            .expect("received");
        assert_eq!((got.new, got.changed_from), (2, Some(0)));
        // Another process (the command line) appends while the node's
        // cache still holds two statements; then a peer's statements
        // arrive: the node applies them to the stored log, not its copy.
        let mut cli = Store::open(&path).expect("the tool's store");
        let mut longer = log.clone();
        longer.append(officer_statement(&log, 7)).expect("appended");
        cli.save_key_log_over(&longer, Some((log.len(), log.head())), 2)
            .expect("the tool writes");
        let got = node
            .receive_key_statements(&agency, &bytes(&log))
            .expect("received again");
        assert_eq!((got.new, got.duplicates), (0, 2));
        let held = Store::open(&path)
            .expect("open")
            .key_log(&agency)
            .expect("reads")
            .expect("held");
        assert_eq!(held.head(), longer.head(), "the tool's statement stands");
        assert_eq!(node.cached_key_log(&agency).map(|l| l.len()), Some(3));
    }

    #[cfg(unix)]
    #[test]
    fn the_store_and_its_wal_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("store.sqlite");
        let me = Identity::from_seed([1; 32]);
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        let (store, _, _) = store_with_case(&path, &me);
        for f in ["store.sqlite", "store.sqlite-wal", "store.sqlite-shm"] {
            assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
        }
        drop(store);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let _store = Store::open(&path).expect("open");
        assert_eq!(mode(&path), 0o600);
    }
}

/// The `node_meta` key recording up to which own position an operator
/// released a case's hold.
/// The store as the storage side of the one batch procedure
/// ([`apply_batch`]), inside the open transaction of `receive_tx`.
impl BatchStore for Store {
    type Error = StoreError;

    fn validator(&mut self, case: &CaseId, open: bool) -> Option<&mut Validator> {
        self.keyed_validator(case, open).map(|(v, _)| v)
    }

    fn keyed_validator(
        &mut self,
        case: &CaseId,
        open: bool,
    ) -> Option<(&mut Validator, &dyn custodia_protocol::keylog::KeyLogs)> {
        let v = if open {
            self.cases
                .entry(*case)
                .or_insert_with(|| crate::spill::lean_validator(&self.spill, self.window))
        } else {
            self.cases.get_mut(case)?
        };
        Some((v, &self.key_logs))
    }

    fn forget_unopened(&mut self, case: &CaseId) {
        if self.cases.get(case).is_some_and(|v| v.case().is_none()) {
            self.cases.remove(case);
        }
    }

    fn insert_entry(&mut self, entry: &Entry, how: Applied, now_ms: u64) -> Result<(), StoreError> {
        self.insert_row(entry, how, now_ms)
    }

    fn insert_withheld(
        &mut self,
        case: &CaseId,
        w: &WithheldPosition,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        Store::insert_withheld(self, case, w, now_ms)
    }

    fn held_entry(&mut self, id: &EntryId) -> Result<Option<Entry>, StoreError> {
        self.entry(id)
    }

    fn insert_proof(
        &mut self,
        case: &CaseId,
        proof: &EquivocationProof,
    ) -> Result<bool, StoreError> {
        Store::insert_proof(self, case, proof)
    }
}

fn released_key(case: &CaseId) -> String {
    format!("released:{}", case.to_hex())
}

/// What a backup file records about itself (`custodia backup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// When it was made (ms since the Unix epoch).
    pub made_at: u64,
    /// The agency whose store it is.
    pub agency: AgencyId,
    /// The node's configuration file, as text.
    pub config: String,
}

impl Store {
    /// Writes a consistent copy of the store to `out` while other
    /// processes (a running node) go on writing: SQLite's `VACUUM INTO`
    /// reads one snapshot. The copy also records `info` (table
    /// `backup_info`). `out` must not exist; it is created with mode 0600.
    pub fn backup_into(&self, out: &Path, info: &BackupInfo) -> Result<(), StoreError> {
        let err = |source| StoreError::Sqlite {
            path: out.to_owned(),
            source,
        };
        {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            o.open(out).map_err(|e| {
                err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot create {}: {e}", out.display())),
                ))
            })?;
        }
        let target = out
            .to_str()
            .ok_or_else(|| err(rusqlite::Error::InvalidPath(out.to_owned())))?;
        self.conn
            .execute("VACUUM INTO ?1", params![target])
            .map_err(|e| self.sql(e))?;
        let copy = Connection::open(out).map_err(err)?;
        copy.execute_batch(
            "CREATE TABLE backup_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             DELETE FROM node_meta;",
        )
        .map_err(err)?;
        for (k, v) in [
            ("made_at", info.made_at.to_string()),
            ("agency", info.agency.to_hex()),
            ("config", info.config.clone()),
        ] {
            copy.execute(
                "INSERT INTO backup_info (key, value) VALUES (?1, ?2)",
                params![k, v],
            )
            .map_err(err)?;
        }
        Ok(())
    }

    /// Reads what a backup file records about itself.
    pub fn backup_info(file: &Path) -> Result<BackupInfo, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: file.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(err)?;
        let get = |k: &str| -> Result<String, StoreError> {
            conn.query_row(
                "SELECT value FROM backup_info WHERE key = ?1",
                params![k],
                |r| r.get::<_, String>(0),
            )
            .map_err(err)
        };
        let agency = get("agency")?;
        Ok(BackupInfo {
            made_at: get("made_at")?.parse().unwrap_or(0),
            agency: AgencyId::from_hex(&agency).map_err(|_| {
                err(rusqlite::Error::InvalidColumnType(
                    0,
                    "agency".into(),
                    rusqlite::types::Type::Text,
                ))
            })?,
            config: get("config")?,
        })
    }

    /// Turns a copied backup file into a store: drops the backup's own
    /// table and marks the store restored, so the next open puts its
    /// shared cases on hold until peers confirm them (SPEC.md §9.14).
    pub fn adopt_backup(file: &Path, why: &str) -> Result<(), StoreError> {
        let err = |source| StoreError::Sqlite {
            path: file.to_owned(),
            source,
        };
        let conn = Connection::open(file).map_err(err)?;
        conn.execute_batch("DROP TABLE IF EXISTS backup_info;")
            .map_err(err)?;
        crate::guard::set_meta(&conn, crate::guard::RESTORED, why).map_err(err)?;
        Ok(())
    }
}
