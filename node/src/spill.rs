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
//! folder (TMPDIR, else /tmp: where /tmp is memory, TMPDIR on a disk keeps
//! them out of memory), with its report's notes ([`TempFiles::notes`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use custodia_protocol::bundle::NoteSpill;
use custodia_protocol::{RecordSpill, SpillFile, Validator, DEFAULT_WINDOW};

/// The environment variable that sets how many records of a case a
/// process keeps in memory before it moves the older ones to files
/// (between one and two times this many stay): a number of records (at
/// most `custodia_protocol::MAX_WINDOW`, 2^28; more is taken as that), or `all` to keep every
/// record in memory.
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

impl TempFiles {
    fn file(&self) -> std::io::Result<File> {
        match &self.dir {
            Some(dir) => tempfile::tempfile_in(dir),
            None => tempfile::tempfile(),
        }
    }

    /// A file for a report's notes (`custodia verify`): a bundle may be
    /// mostly notes, and the report shows every one, so they would
    /// otherwise be most of the memory of verifying a large bundle. It
    /// holds the notes' texts, as the bundle itself does, and is readable
    /// by this process only.
    pub fn notes(&self) -> std::io::Result<Box<dyn NoteSpill>> {
        Ok(Box::new(NoteFile {
            file: self.file()?,
            len: 0,
        }))
    }
}

impl RecordSpill for TempFiles {
    fn open(&self) -> std::io::Result<Box<dyn SpillFile>> {
        Ok(Box::new(TempFile(self.file()?)))
    }
}

/// Notes appended at the end, read back by offset.
struct NoteFile {
    file: File,
    len: u64,
}

impl NoteSpill for NoteFile {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        write_at(&self.file, self.len, bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        read_at(&self.file, offset, buf)
    }
}

struct TempFile(File);

impl SpillFile for TempFile {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        let written = write_at(&self.0, offset, bytes);
        if let Err(e) = &written {
            // The validator keeps the records in memory from now on.
            tracing::warn!(
                "a temporary file for records out of memory could not be written ({e}); they stay in memory"
            );
        }
        written
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        read_at(&self.0, offset, buf)
    }
}

#[cfg(unix)]
fn write_at(f: &File, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, bytes, offset)
}

#[cfg(unix)]
fn read_at(f: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
}

#[cfg(windows)]
fn write_at(f: &File, mut offset: u64, mut bytes: &[u8]) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !bytes.is_empty() {
        let n = f.seek_write(bytes, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(windows)]
fn read_at(f: &File, mut offset: u64, mut buf: &mut [u8]) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = f.seek_read(buf, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn write_at(_: &File, _: u64, _: &[u8]) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(not(any(unix, windows)))]
fn read_at(_: &File, _: u64, _: &mut [u8]) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
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
