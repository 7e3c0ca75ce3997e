//! The agency's key log in the store (SPEC.md §3.4).
//!
//! The log is kept as the statements' exact bytes, one row per position,
//! and checked in full (K1–K12) every time it is read: a row changed on
//! disk is a refused log, never a different key believed. Statements a
//! recovery rotation superseded are kept apart, for reports.
//!
//! The store keeps the agency's own log and the logs its peers sent (sync
//! version 3, SPEC.md §9.15), and the proofs of forked logs (K12).

use custodia_protocol::keylog::{KeyLog, KeyLogError, KeyStatement};
use custodia_protocol::{AgencyId, StatementId};
use rusqlite::{params, Connection, OptionalExtension};

/// The schema of the key log's tables (a store migration).
pub(crate) const MIGRATION: &str = "
    CREATE TABLE key_statements (
        agency BLOB NOT NULL,
        seq    INTEGER NOT NULL,
        id     BLOB NOT NULL,
        bytes  BLOB NOT NULL,
        PRIMARY KEY (agency, seq)
    );
    CREATE TABLE key_superseded (
        agency BLOB NOT NULL,
        id     BLOB NOT NULL,
        bytes  BLOB NOT NULL,
        PRIMARY KEY (agency, id)
    );";

/// The schema of forked key logs (a store migration): two statements at one
/// position, both signed by the root in force there (K12), kept as the
/// proof that the agency's root equivocated.
pub(crate) const FORKS_MIGRATION: &str = "
    CREATE TABLE key_forks (
        agency BLOB NOT NULL,
        seq    INTEGER NOT NULL,
        held   BLOB NOT NULL,
        other  BLOB NOT NULL,
        PRIMARY KEY (agency, seq)
    );";

/// The `node_meta` key of the key logs' change counter: every save bumps
/// it, so a node sees the statements another process (the command-line
/// tool) wrote.
pub(crate) const REVISION: &str = "key_log_revision";

/// The key logs' change counter.
pub(crate) fn revision(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(crate::guard::meta(conn, REVISION)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// The agencies whose key logs the store holds.
pub(crate) fn agencies(conn: &Connection) -> rusqlite::Result<Vec<AgencyId>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT agency FROM key_statements")?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for r in rows {
        if let Ok(a) = <[u8; 32]>::try_from(r?) {
            out.push(AgencyId(a));
        }
    }
    Ok(out)
}

/// Keeps the proof that `held` and `other` are two statements at one
/// position of a log, both by its root; the first proof per position.
pub(crate) fn save_fork(
    conn: &Connection,
    held: &KeyStatement,
    other: &KeyStatement,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO key_forks (agency, seq, held, other) VALUES (?1, ?2, ?3, ?4)",
        params![
            held.payload().agency.0.to_vec(),
            held.seq() as i64,
            held.bytes(),
            other.bytes()
        ],
    )?;
    Ok(())
}

/// The proof that an agency's log forked (K12): two statements at one
/// position, both signed by its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFork {
    /// The position.
    pub seq: u64,
    /// The statement the store held there.
    pub held: Vec<u8>,
    /// The other one.
    pub other: Vec<u8>,
}

/// The proofs of forked logs held for `agency`.
pub(crate) fn forks(conn: &Connection, agency: &AgencyId) -> rusqlite::Result<Vec<KeyFork>> {
    let mut stmt = conn
        .prepare_cached("SELECT seq, held, other FROM key_forks WHERE agency = ?1 ORDER BY seq")?;
    let rows = stmt.query_map(params![agency.0.to_vec()], |r| {
        Ok(KeyFork {
            seq: r.get::<_, i64>(0)? as u64,
            held: r.get(1)?,
            other: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// The `node_meta` key of the mark a store gets when it is opened suspect
/// (SPEC.md §9.14: restored, copied, WAL lost) while it holds a key log:
/// the log may be older than the one the agency signed since, and its next
/// statement could take a position already used. No statement is written
/// until the operator confirms the log.
pub(crate) const UNCONFIRMED: &str = "key_log_unconfirmed";

/// Whether the store holds any key statement.
pub(crate) fn holds_any(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM key_statements)", [], |r| {
        r.get(0)
    })
}

/// Why a stored key log could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// SQLite failed.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// A stored statement is not a valid part of the log.
    #[error("statement {seq}: {source}")]
    Invalid {
        /// Its position.
        seq: i64,
        /// Why.
        source: KeyLogError,
    },
}

/// Reads `agency`'s log; `None` if the store holds none.
pub(crate) fn load(conn: &Connection, agency: &AgencyId) -> Result<Option<KeyLog>, LoadError> {
    let mut stmt = conn
        .prepare_cached("SELECT seq, bytes FROM key_statements WHERE agency = ?1 ORDER BY seq")?;
    let rows = stmt.query_map(params![agency.0.to_vec()], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut log: Option<KeyLog> = None;
    for row in rows {
        let (seq, bytes) = row?;
        let invalid = |source| LoadError::Invalid { seq, source };
        let s = KeyStatement::decode(&bytes).map_err(invalid)?;
        if i64::try_from(s.seq()).ok() != Some(seq) || s.payload().agency != *agency {
            return Err(invalid(KeyLogError::WrongLog(
                "the row's position or agency is not the statement's".into(),
            )));
        }
        match &mut log {
            None => log = Some(KeyLog::from_inception(s).map_err(invalid)?),
            Some(l) => {
                l.append(s).map_err(invalid)?;
            }
        }
    }
    Ok(log)
}

/// The statements a recovery superseded in `agency`'s log, as stored
/// (each checked on its own, K1–K5; their place was checked when they
/// were superseded), oldest first.
pub(crate) fn load_superseded(
    conn: &Connection,
    agency: &AgencyId,
) -> Result<Vec<KeyStatement>, LoadError> {
    let mut stmt =
        conn.prepare_cached("SELECT bytes FROM key_superseded WHERE agency = ?1 ORDER BY rowid")?;
    let rows = stmt.query_map(params![agency.0.to_vec()], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for row in rows {
        let s =
            KeyStatement::decode(&row?).map_err(|source| LoadError::Invalid { seq: -1, source })?;
        if s.payload().agency != *agency {
            return Err(LoadError::Invalid {
                seq: -1,
                source: KeyLogError::WrongLog("a superseded statement of another agency".into()),
            });
        }
        out.push(s);
    }
    Ok(out)
}

/// The stored log's length and the id of its last statement; `None` if the
/// store holds no log of `agency`.
pub(crate) fn stored_head(
    conn: &Connection,
    agency: &AgencyId,
) -> rusqlite::Result<Option<(u64, StatementId)>> {
    conn.query_row(
        "SELECT seq, id FROM key_statements WHERE agency = ?1 ORDER BY seq DESC LIMIT 1",
        params![agency.0.to_vec()],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
    )
    .optional()
    .map(|row| {
        row.and_then(|(seq, id)| {
            <[u8; 32]>::try_from(id)
                .ok()
                .map(|id| (seq as u64 + 1, StatementId(id)))
        })
    })
}

/// Writes `log`'s statements from position `from` on (those before are
/// stored already, unchanged) and the statements it superseded, in the
/// caller's transaction, and bumps the change counter; returns it. Only
/// what changed is written: a long log costs one row per new statement,
/// not the whole log again.
pub(crate) fn save_from(conn: &Connection, log: &KeyLog, from: u64) -> rusqlite::Result<i64> {
    let agency = log.agency().0.to_vec();
    conn.execute(
        "DELETE FROM key_statements WHERE agency = ?1 AND seq >= ?2",
        params![agency, from as i64],
    )?;
    let start = usize::try_from(from).unwrap_or(usize::MAX);
    for s in log.statements().get(start..).unwrap_or_default() {
        conn.execute(
            "INSERT INTO key_statements (agency, seq, id, bytes) VALUES (?1, ?2, ?3, ?4)",
            params![agency, s.seq() as i64, s.id().0.to_vec(), s.bytes()],
        )?;
    }
    for s in log.superseded() {
        conn.execute(
            "INSERT OR IGNORE INTO key_superseded (agency, id, bytes) VALUES (?1, ?2, ?3)",
            params![agency, s.id().0.to_vec(), s.bytes()],
        )?;
    }
    let next = revision(conn)? + 1;
    crate::guard::set_meta(conn, REVISION, &next.to_string())?;
    Ok(next)
}
