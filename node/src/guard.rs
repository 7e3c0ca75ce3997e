//! The authoring guard (SPEC.md §9.14): a node never signs an entry at a
//! position it cannot show is its agency's next one.
//!
//! An agency's own chain in a case is a line: two different entries at one
//! position are an equivocation, a portable proof of misbehaviour in every
//! court bundle, whoever caused it. An honest node ends up there only if
//! its store goes back in time: a backup restored, a folder copied, a WAL
//! lost after a crash. It then holds less of its own chain than its peers
//! do, and its next entry would reuse a position they already hold.
//!
//! The guard keeps that from happening in three steps:
//!
//! 1. **Suspicion at open.** A store that may have gone back in time is
//!    recognised when it is opened: its file is not the one the node last
//!    used (a copy or a restored backup has another file identity), it
//!    holds fewer committed writes than the seal file beside it records
//!    (a removed or truncated WAL), or `custodia restore` marked it.
//! 2. **Holds.** Each shared case of a suspect store is put on hold: no
//!    entry is authored in it, by the node or the command-line tool,
//!    until a peer confirms the agency's head, or the sync brings back
//!    the entries a peer holds beyond it. A peer whose `heads` show more
//!    of the agency's chain than the store holds puts the case on hold at
//!    any time.
//! 3. **Release.** A member peer's `heads` naming the same entry as the
//!    agency's own head, or an older one of its chain, releases a hold
//!    that no peer has shown to be behind; the entries a peer was ahead
//!    by release it once they are stored. An operator can release a hold
//!    explicitly (for a case no one else holds), and that is logged.

use std::path::{Path, PathBuf};

use custodia_protocol::{AgencyId, CaseId};
use rusqlite::{params, Connection, OptionalExtension};

/// The schema of the guard's tables (a store migration).
pub(crate) const MIGRATION: &str = "
    CREATE TABLE node_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE holds (
        case_id BLOB PRIMARY KEY,
        reason  TEXT NOT NULL,
        since   INTEGER NOT NULL,
        behind  INTEGER,
        peer    BLOB
    );
    CREATE TABLE peer_views (
        case_id BLOB NOT NULL,
        peer    BLOB NOT NULL,
        seq     INTEGER,
        at      INTEGER NOT NULL,
        PRIMARY KEY (case_id, peer)
    );
    CREATE TABLE hold_log (
        case_id BLOB NOT NULL,
        at      INTEGER NOT NULL,
        what    TEXT NOT NULL
    );";

/// Why the node may not author in a case now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The case.
    pub case: CaseId,
    /// Why, in words an operator can act on.
    pub reason: String,
    /// Since when (ms since the Unix epoch).
    pub since: u64,
    /// The highest own sequence number a peer is known to hold beyond the
    /// store's, if a peer showed that.
    pub behind: Option<u64>,
    /// The peer that showed it.
    pub peer: Option<AgencyId>,
}

/// What a peer last said it holds of this agency's chain in a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// The peer.
    pub peer: AgencyId,
    /// Its head of this agency's chain (None: it holds none of it).
    pub seq: Option<u64>,
    /// When it said so (ms since the Unix epoch).
    pub at: u64,
}

/// The seal: a small file beside the store that records the highest
/// change counter (`rev`) committed, written after every commit. The store
/// file holding less than the seal says means committed writes were lost.
#[derive(Debug)]
pub(crate) struct Seal {
    path: PathBuf,
}

/// Width of the seal's one line (a rewrite in place never leaves a mix of
/// two values of different lengths).
const SEAL_WIDTH: usize = 20;

impl Seal {
    pub(crate) fn beside(store: &Path) -> Seal {
        let mut name = store.as_os_str().to_owned();
        name.push(".seal");
        Seal {
            path: PathBuf::from(name),
        }
    }

    /// The recorded revision; None if there is no readable seal.
    pub(crate) fn read(&self) -> Option<i64> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        text.trim().parse().ok()
    }

    /// Records a committed revision. Not synced: a process crash keeps it
    /// (the page cache survives); a power loss may lose it, which only
    /// weakens the check (the seal then says less), never raises a false
    /// alarm.
    pub(crate) fn write(&self, rev: i64) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::{FileExt, OpenOptionsExt};
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&self.path);
            if let Ok(f) = file {
                let line = format!("{rev:0SEAL_WIDTH$}\n");
                let _ = f.write_all_at(line.as_bytes(), 0);
            }
        }
        #[cfg(not(unix))]
        {
            let _ = std::fs::write(&self.path, format!("{rev:0SEAL_WIDTH$}\n"));
        }
    }
}

/// The store file's identity: device and inode. A copy or a restored
/// backup is another file, whatever its contents.
pub(crate) fn file_identity(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // Device and inode, and the birth time where the file system keeps
        // one: a file restored in place may get the inode just freed.
        let m = std::fs::metadata(path).ok()?;
        let born = m
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Some(format!("{}:{}:{born}", m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

pub(crate) fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT value FROM node_meta WHERE key = ?1",
        params![key],
        |r| r.get(0),
    )
    .optional()
}

pub(crate) fn clear_meta(conn: &Connection, key: &str) -> rusqlite::Result<bool> {
    conn.execute("DELETE FROM node_meta WHERE key = ?1", params![key])
        .map(|n| n > 0)
}

pub(crate) fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO node_meta (key, value) VALUES (?1, ?2)",
        params![key, value],
    )
    .map(|_| ())
}

/// The key of the restore mark (`custodia restore` sets it).
pub(crate) const RESTORED: &str = "restored";
/// The key of the store file's identity when last opened.
const IDENTITY: &str = "file_identity";

/// Whether the store may have gone back in time, and why. Updates the
/// recorded file identity; the caller rewrites the seal.
pub(crate) fn suspicion(
    conn: &Connection,
    path: &Path,
    seal: &Seal,
    committed: i64,
) -> rusqlite::Result<Option<String>> {
    let mut why = Vec::new();
    if let Some(mark) = meta(conn, RESTORED)? {
        why.push(mark);
        conn.execute("DELETE FROM node_meta WHERE key = ?1", params![RESTORED])?;
    }
    if let Some(id) = file_identity(path) {
        match meta(conn, IDENTITY)? {
            Some(old) if old != id => why.push(
                "the store file is not the one this node last used: it was copied, moved or restored from a backup".to_string(),
            ),
            _ => {}
        }
        set_meta(conn, IDENTITY, &id)?;
    }
    if let Some(sealed) = seal.read() {
        if sealed > committed {
            why.push(format!(
                "the store holds fewer committed writes than its seal records ({committed} of {sealed}): its write-ahead log was removed or truncated, or the file is older than the node's last write"
            ));
        }
    }
    Ok((!why.is_empty()).then(|| why.join("; ")))
}

pub(crate) fn holds(conn: &Connection, case: Option<&CaseId>) -> rusqlite::Result<Vec<Hold>> {
    let mut stmt = conn.prepare_cached(
        "SELECT case_id, reason, since, behind, peer FROM holds
         WHERE ?1 IS NULL OR case_id = ?1 ORDER BY since, case_id",
    )?;
    let rows = stmt.query_map(params![case.map(|c| c.0.to_vec())], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, Option<Vec<u8>>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (case, reason, since, behind, peer) = row?;
        let Ok(case) = <[u8; 32]>::try_from(case) else {
            continue;
        };
        out.push(Hold {
            case: custodia_protocol::EntryId(case),
            reason,
            since: since as u64,
            behind: behind.map(|b| b as u64),
            peer: peer
                .and_then(|p| <[u8; 32]>::try_from(p).ok())
                .map(AgencyId),
        });
    }
    Ok(out)
}

/// Puts a case on hold (or updates the hold: the highest `behind` and the
/// peer that showed it are kept).
pub(crate) fn hold(
    conn: &Connection,
    case: &CaseId,
    reason: &str,
    behind: Option<u64>,
    peer: Option<&AgencyId>,
    now: u64,
) -> rusqlite::Result<()> {
    let existing = holds(conn, Some(case))?.pop();
    let (behind, peer, reason, since) = match existing {
        Some(h) if h.behind >= behind => (h.behind, h.peer, h.reason, h.since),
        Some(h) => (behind, peer.copied(), reason.to_string(), h.since),
        None => (behind, peer.copied(), reason.to_string(), now),
    };
    conn.execute(
        "INSERT OR REPLACE INTO holds (case_id, reason, since, behind, peer) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            &case.0[..],
            reason,
            since as i64,
            behind.map(|b| b as i64),
            peer.map(|p| p.0.to_vec())
        ],
    )?;
    log(conn, case, &format!("on hold: {reason}"), now)
}

/// Releases a case's hold; true if there was one.
pub(crate) fn release(
    conn: &Connection,
    case: &CaseId,
    why: &str,
    now: u64,
) -> rusqlite::Result<bool> {
    let n = conn.execute("DELETE FROM holds WHERE case_id = ?1", params![&case.0[..]])?;
    if n > 0 {
        log(conn, case, &format!("released: {why}"), now)?;
    }
    Ok(n > 0)
}

fn log(conn: &Connection, case: &CaseId, what: &str, now: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO hold_log (case_id, at, what) VALUES (?1, ?2, ?3)",
        params![&case.0[..], now as i64, what],
    )
    .map(|_| ())
}

/// The hold history of a case, oldest first: (time, what).
pub(crate) fn hold_log(conn: &Connection, case: &CaseId) -> rusqlite::Result<Vec<(u64, String)>> {
    let mut stmt =
        conn.prepare_cached("SELECT at, what FROM hold_log WHERE case_id = ?1 ORDER BY rowid")?;
    let rows = stmt.query_map(params![&case.0[..]], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
    })?;
    rows.collect()
}

pub(crate) fn record_view(
    conn: &Connection,
    case: &CaseId,
    peer: &AgencyId,
    seq: Option<u64>,
    now: u64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO peer_views (case_id, peer, seq, at) VALUES (?1, ?2, ?3, ?4)",
        params![&case.0[..], &peer.0[..], seq.map(|s| s as i64), now as i64],
    )
    .map(|_| ())
}

pub(crate) fn views(conn: &Connection, case: &CaseId) -> rusqlite::Result<Vec<PeerView>> {
    let mut stmt = conn
        .prepare_cached("SELECT peer, seq, at FROM peer_views WHERE case_id = ?1 ORDER BY peer")?;
    let rows = stmt.query_map(params![&case.0[..]], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (peer, seq, at) = row?;
        if let Ok(p) = <[u8; 32]>::try_from(peer) {
            out.push(PeerView {
                peer: AgencyId(p),
                seq: seq.map(|s| s as u64),
                at: at as u64,
            });
        }
    }
    Ok(out)
}
