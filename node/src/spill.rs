//! Where validators put their older records: unnamed temporary files.
//!
//! A validator keeps one 56-byte record per entry of its case, and a node
//! keeps a validator per case for as long as it runs (SPEC.md §8.7): ten
//! million entries were 800 MB. With a [`TempFiles`] it keeps only its
//! newest records in memory and writes the older ones to two files it
//! opens here (a record file and an id table; see
//! `custodia_protocol::RecordSpill`). The files have no name: they vanish
//! when the process ends, crash or not, and nothing else can open them.
//! The store puts them in its own folder, which has room for the store and
//! is not a memory-backed `/tmp`; `custodia verify` in the temporary
//! folder (TMPDIR).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use custodia_protocol::{RecordSpill, SpillFile, Validator, DEFAULT_WINDOW};

/// The environment variable that sets how many records of a case a
/// process keeps in memory before it moves the older ones to files
/// (between one and two times this many stay): a number of records, or
/// `all` to keep every record in memory.
pub const RECORD_WINDOW_VAR: &str = "CUSTODIA_RECORD_WINDOW";

/// Opens unnamed temporary files in a folder, or in the temporary folder.
#[derive(Debug, Clone)]
pub struct TempFiles {
    dir: Option<PathBuf>,
}

impl TempFiles {
    /// Files in `dir`.
    pub fn in_dir(dir: &Path) -> TempFiles {
        TempFiles {
            dir: Some(dir.to_owned()),
        }
    }

    /// Files in the temporary folder (TMPDIR).
    pub fn in_temp_dir() -> TempFiles {
        TempFiles { dir: None }
    }
}

impl RecordSpill for TempFiles {
    fn open(&self) -> std::io::Result<Box<dyn SpillFile>> {
        let file = match &self.dir {
            Some(dir) => tempfile::tempfile_in(dir)?,
            None => tempfile::tempfile()?,
        };
        Ok(Box::new(TempFile(file)))
    }
}

struct TempFile(File);

impl SpillFile for TempFile {
    #[cfg(unix)]
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, bytes, offset)
    }

    #[cfg(unix)]
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }

    #[cfg(not(unix))]
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        self.0.seek(SeekFrom::Start(offset))?;
        self.0.write_all(bytes)
    }

    #[cfg(not(unix))]
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = &self.0;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

/// The window [`RECORD_WINDOW_VAR`] sets: None to keep every record in
/// memory, else the number of records (at least 1). Unset or unreadable:
/// [`DEFAULT_WINDOW`] (an unreadable value is logged).
pub fn record_window() -> Option<usize> {
    let Ok(value) = std::env::var(RECORD_WINDOW_VAR) else {
        return Some(DEFAULT_WINDOW);
    };
    let value = value.trim();
    if value.eq_ignore_ascii_case("all") {
        return None;
    }
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            tracing::warn!(
                value,
                "{RECORD_WINDOW_VAR} is neither a number of records (1 or more) nor `all`; using {DEFAULT_WINDOW}"
            );
            Some(DEFAULT_WINDOW)
        }
    }
}

/// A lean validator whose older records go to `files` (or stay in memory
/// when `window` is None).
pub fn lean_validator(files: &Arc<dyn RecordSpill>, window: Option<usize>) -> Validator {
    match window {
        Some(w) => Validator::lean().with_spill(files.clone(), w),
        None => Validator::lean(),
    }
}
