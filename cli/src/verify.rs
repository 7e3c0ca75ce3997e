//! `custodia verify FILE [--trust KEYS] [--json] [--html OUT]`: checks a
//! court bundle with nothing but the file (SPEC.md §10.5) and prints the
//! report (`report::{text, json, html}`): verdict first,
//! then the case, the members, every item's custody timeline, conflicts,
//! withheld positions and problems, and the verdict again. The checking is
//! the protocol's engine (`custodia_protocol::bundle::engine`); this
//! module finds the bytes, names them ([`Source`]) and prints.
//!
//! Exit codes: 0 valid, 1 invalid, 2 unreadable or not a bundle.
//!
//! The file is read as a stream, twice. A pipe or a device cannot be read
//! twice: the first pass reads it and keeps what it read in a temporary
//! file for the second, so a stream that is not a bundle is refused at its
//! first bytes having cost one read (not a copy of everything it would
//! give), and the copy is bounded by [`STREAM_LIMIT`].

use std::io::{IsTerminal, Read, Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use anyhow::Context;
use custodia_protocol::bundle::{engine, Report, TrustList};
use custodia_protocol::RecordSpill;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest as _, Sha256};

use crate::output::{Out, EXIT_REFUSED};
use crate::report::Source;

/// A progress bar is drawn for bundles with at least this many elements.
const BAR_FROM: usize = 20_000;

/// Verifies `file`; prints the report; returns the exit code.
pub(crate) fn run(
    file: &Path,
    trust: Option<&Path>,
    html: Option<&Path>,
    out: &Out,
) -> anyhow::Result<ExitCode> {
    let trust = match trust {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the trust file {}", p.display()))?;
            Some(TrustList::parse(&text).with_context(|| format!("trust file {}", p.display()))?)
        }
        None => None,
    };
    let (report, source) = check_file(file, trust.as_ref())?;
    if let Some(warning) = report.notes.warning() {
        tracing::warn!("{warning}");
    }
    if let Some(path) = html {
        write_private(path, |w| {
            crate::report::html::write(&report, &source, w)?;
            incomplete(&report)
        })?;
    }
    // Written as it is rendered; a closed pipe (`custodia verify F | head`)
    // ends the output quietly.
    let stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let written = if out.json() {
        let mut stdout = stdout;
        crate::report::json::write(&report, &source, &mut stdout)
    } else {
        let last = html.map(|p| format!("HTML report written to {}", p.display()));
        let mut lines = crate::report::text::Lines::new(stdout);
        crate::report::text::text(&report, &source, last.as_deref(), &mut lines);
        lines.finish()
    };
    crate::output::written(written);
    incomplete(&report)?;
    Ok(if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}

/// An error if a note could not be read back from its temporary file
/// while the report was written: what was written lacks notes.
fn incomplete(report: &Report) -> std::io::Result<()> {
    match report.notes.error() {
        Some(why) => Err(std::io::Error::other(why.to_owned())),
        None => Ok(()),
    }
}

/// Writes a file readable by its owner only (mode 0600, as bundles are):
/// the report holds the case's text, TLP:RED included. `content` writes
/// it; it goes beside the target and is renamed, so a reader never sees
/// half a report, and an existing file of another mode is replaced, not
/// reused.
fn write_private(
    path: &Path,
    content: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("{}: cannot create a file there", parent.display()))?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, tmp.as_file_mut());
        content(&mut w)
            .and_then(|()| w.flush())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A reader that hashes and counts what passes through it. The hashing
/// runs on a thread of its own, beside the first pass's reading and
/// structure checks (a large bundle's SHA-256 took two thirds of that
/// pass on one core); what is read is copied to it, and the copies come
/// back to be reused.
struct Hashing<R> {
    src: R,
    to_hash: SyncSender<Vec<u8>>,
    spares: Receiver<Vec<u8>>,
    hasher: std::thread::JoinHandle<[u8; 32]>,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.src.read(buf)?;
        if n > 0 {
            let mut copy = self.spares.try_recv().unwrap_or_default();
            copy.clear();
            copy.extend_from_slice(&buf[..n]);
            self.to_hash
                .send(copy)
                .map_err(|_| std::io::Error::other("internal error: the hashing stopped"))?;
        }
        self.size += n as u64;
        Ok(n)
    }
}

impl<R> Hashing<R> {
    fn new(src: R) -> Self {
        let (to_hash, read) = sync_channel::<Vec<u8>>(4);
        let (spare, spares) = std::sync::mpsc::channel();
        let hasher = std::thread::spawn(move || {
            let mut hash = Sha256::new();
            for bytes in read {
                hash.update(&bytes);
                let _ = spare.send(bytes);
            }
            hash.finalize().into()
        });
        Hashing {
            src,
            to_hash,
            spares,
            hasher,
            size: 0,
        }
    }

    /// The source back, and what was read of it named: its hash and size.
    fn finish(self, name: String) -> anyhow::Result<(R, Source)> {
        let Hashing {
            src,
            to_hash,
            hasher,
            size,
            ..
        } = self;
        // The hashing ends with what was sent.
        drop(to_hash);
        let sha256 = hasher
            .join()
            .ok()
            .context("internal error: the hashing stopped")?;
        Ok((src, Source { name, sha256, size }))
    }
}

/// The most `verify` copies from a pipe or a device for its second pass
/// (4 GiB, about eight million entries): beyond it, the input is refused
/// with a message saying to save it to a file first. A regular file has
/// no limit: it is read twice in place.
pub(crate) const STREAM_LIMIT: u64 = 4 << 30;

/// A source that cannot be read twice, read once for the first pass; what
/// is read is kept in `copy` for the second pass, up to `limit` bytes.
struct Tee<R> {
    src: R,
    copy: std::fs::File,
    copied: u64,
    limit: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.src.read(buf)?;
        self.copied += n as u64;
        if self.copied > self.limit {
            return Err(std::io::Error::other(format!(
                "the input is a pipe or a device giving more than {} bytes, the most verify keeps for its second reading; save it to a file and verify the file",
                self.limit
            )));
        }
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Verifies a bundle file, read as a stream twice (SPEC.md §10.5): the
/// first pass checks its structure and finds the export time and the
/// signature, the second replays the elements and checks the exporter's
/// signature over the bytes it reads. Memory holds one read buffer, one
/// chunk of elements and what the replay keeps, never the file.
fn check_file(file: &Path, trust: Option<&TrustList>) -> anyhow::Result<(Report, Source)> {
    check_file_within(file, trust, STREAM_LIMIT)
}

/// [`check_file`], copying at most `limit` bytes of a pipe or device.
fn check_file_within(
    file: &Path,
    trust: Option<&TrustList>,
    limit: u64,
) -> anyhow::Result<(Report, Source)> {
    let reading = || format!("reading {}", file.display());
    let name = file.display().to_string();
    let mut f = std::fs::File::open(file).with_context(reading)?;
    let (summary, source) = if f.metadata().with_context(reading)?.is_file() {
        let mut h = Hashing::new(f);
        let summary = engine::first_pass(&mut h);
        let (g, source) = h.finish(name)?;
        f = g;
        f.seek(SeekFrom::Start(0)).with_context(reading)?;
        (summary, source)
    } else {
        // A pipe or device cannot be read twice: the first pass keeps a
        // copy (on disk, not in memory) of what it reads, and stops at
        // the first byte that is not a bundle's.
        let copy = tempfile::tempfile().context("creating a temporary file")?;
        let mut tee = Hashing::new(Tee {
            src: f,
            copy,
            copied: 0,
            limit,
        });
        let summary = engine::first_pass(&mut tee);
        let (tee, source) = tee.finish(name)?;
        f = tee.copy;
        f.seek(SeekFrom::Start(0)).with_context(reading)?;
        (summary, source)
    };
    let summary = summary
        .with_context(reading)?
        .with_context(|| file.display().to_string())?;
    let bar = progress_bar(summary.len());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The notes and the validator's older records go to unnamed files in
    // TMPDIR; without a temporary file the notes stay in memory.
    let temp = custodia_node::TempFiles::in_temp_dir();
    let notes = match temp.notes() {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!("no temporary file for the notes ({e}): they are kept in memory");
            None
        }
    };
    let report = engine::second_pass_spilling(
        &mut f,
        &summary,
        trust,
        threads,
        &mut |done| {
            if let Some(bar) = &bar {
                bar.set_position(done);
            }
        },
        engine::Spills {
            notes,
            records: custodia_node::record_window()
                .map(|w| (Arc::new(temp) as Arc<dyn RecordSpill>, w)),
        },
    );
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report
        .with_context(reading)?
        .with_context(|| file.display().to_string())?;
    Ok((report, source))
}

/// A progress bar on a terminal, for bundles of [`BAR_FROM`] elements or
/// more.
fn progress_bar(total: usize) -> Option<ProgressBar> {
    (total >= BAR_FROM && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "verifying [{bar:30}] {human_pos}/{human_len} entries  ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodia_protocol::bundle::engine::{read_pass, READ_CHUNK as READ};
    use custodia_protocol::bundle::{
        self, Bundle, BundleAgency, BundleError, Element, Header, StreamDecoder,
    };
    use custodia_protocol::{Body, CaseOpened, Entry, Identity, Note, Payload, Tlp};

    const T0: u64 = 1_795_000_000_000;

    /// A valid bundle of one author's genesis and `notes` notes: larger
    /// than one read when `notes` is a few hundred.
    fn bundle(notes: usize) -> Vec<u8> {
        let alpha = Identity::from_seed([7; 32]);
        let genesis = Entry::sign(
            &alpha,
            &Payload::genesis(
                alpha.agency(),
                T0,
                Tlp::Amber,
                CaseOpened {
                    title: "Streaming".into(),
                    reference: "S-1".into(),
                    jurisdiction: None,
                    name: "Alpha".into(),
                    country: "PH".into(),
                },
            ),
        );
        let mut entries = vec![genesis];
        for i in 0..notes {
            let prev = entries.last().map(Entry::id);
            let mut p = entries[0].payload().clone();
            p.case = Some(entries[0].id());
            p.seq = i as u64 + 1;
            p.prev = prev;
            p.body = Body::Note(Note {
                text: format!(
                    "note {i}: long enough to fill the bundle quickly, {}",
                    "x".repeat(200)
                ),
                item: None,
            });
            entries.push(Entry::sign(&alpha, &p));
        }
        let elements: Vec<Element<'_>> =
            entries.iter().map(|e| Element::Entry(e.bytes())).collect();
        let header = Header {
            case: entries[0].id(),
            items: None,
            proofs: Vec::new(),
            agencies: vec![BundleAgency {
                agency: alpha.agency(),
                name: "Alpha".into(),
                country: "PH".into(),
            }],
            exported_at: T0 + 1_000,
            keys: None,
            key_histories: false,
        };
        bundle::write(&alpha, &header, &elements)
    }

    fn in_memory(bytes: &[u8]) -> Result<Report, BundleError> {
        Bundle::decode(bytes).map(|b| bundle::verify(&b, None))
    }

    #[test]
    fn a_file_read_in_pieces_gives_the_report_of_the_whole_file() {
        let bytes = bundle(600);
        assert!(bytes.len() > 3 * READ, "{} bytes", bytes.len());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.custodia");
        std::fs::write(&path, &bytes).expect("write");
        let (report, source) = check_file(&path, None).expect("readable");
        assert!(report.is_valid(), "{:?}", report.problems);
        assert_eq!(source.size, bytes.len() as u64);
        assert_eq!(source.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
        assert_eq!(report.elements, 601);
        assert_eq!(Ok(report), in_memory(&bytes));

        // An edited byte in the middle of the file: the same problems.
        let mut edited = bytes.clone();
        let mid = edited.len() / 2;
        let at = mid + edited[mid..].iter().position(|b| *b == b'x').expect("an x");
        edited[at] = b'y';
        std::fs::write(&path, &edited).expect("write");
        let (report, _) = check_file(&path, None).expect("readable");
        assert!(!report.is_valid());
        assert_eq!(Ok(report), in_memory(&edited));
    }

    #[test]
    fn notes_beyond_a_block_go_to_the_temporary_file_and_come_back_the_same() {
        // 5,000 notes of about 320 bytes a record: more than one block of
        // the notes' temporary file (1 MiB), so most of them are read back
        // from it; the report is the one made with every note in memory.
        let bytes = bundle(5_000);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.custodia");
        std::fs::write(&path, &bytes).expect("write");
        let (report, _) = check_file(&path, None).expect("readable");
        assert!(report.is_valid(), "{:?}", report.problems);
        assert_eq!((report.notes.error(), report.notes.warning()), (None, None));
        assert_eq!(report.notes.len(), 5_000);
        assert_eq!(
            report.notes.iter().nth(4_999).map(|n| n.text),
            Some(format!(
                "note 4999: long enough to fill the bundle quickly, {}",
                "x".repeat(200)
            ))
        );
        assert_eq!(Ok(report), in_memory(&bytes));
    }

    #[test]
    fn a_stream_is_copied_for_the_second_reading_up_to_the_limit_only() {
        let bytes = bundle(600);
        let tee = |limit: u64| Tee {
            src: std::io::Cursor::new(bytes.clone()),
            copy: tempfile::tempfile().expect("tempfile"),
            copied: 0,
            limit,
        };
        // Within the limit: the first pass reads it all, and the copy is
        // the stream, byte for byte.
        let mut t = tee(bytes.len() as u64);
        let first = read_pass(&mut t, StreamDecoder::new(), |_| {}).expect("read");
        assert!(first.is_ok());
        let mut copy = Vec::new();
        t.copy.seek(SeekFrom::Start(0)).expect("seek");
        t.copy.read_to_end(&mut copy).expect("read");
        assert_eq!(copy, bytes);
        // One byte over: refused, with what to do instead, having kept no
        // more than the limit.
        let mut t = tee(bytes.len() as u64 - 1);
        let err = read_pass(&mut t, StreamDecoder::new(), |_| {}).expect_err("too long");
        assert!(
            err.to_string()
                .contains("save it to a file and verify the file"),
            "{err}"
        );
        assert!(t.copy.metadata().expect("metadata").len() < bytes.len() as u64);
        // Not a bundle: refused at the first read.
        let mut t = Tee {
            src: std::io::repeat(0),
            copy: tempfile::tempfile().expect("tempfile"),
            copied: 0,
            limit: STREAM_LIMIT,
        };
        let err = read_pass(&mut t, StreamDecoder::new(), |_| {})
            .expect("read")
            .expect_err("not a bundle");
        assert!(matches!(err, BundleError::NotABundle(_)), "{err:?}");
        assert_eq!(t.copied, READ as u64);
    }

    #[test]
    fn truncated_and_garbage_files_are_typed_errors_with_the_offset() {
        let bytes = bundle(600);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.custodia");
        for cut in [1, READ - 1, READ, READ + 1, 2 * READ + 17, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).expect("write");
            let err = check_file(&path, None).expect_err("truncated");
            let want = in_memory(&bytes[..cut]).expect_err("truncated");
            assert!(matches!(want, BundleError::Truncated { at, .. } if at == cut));
            assert_eq!(
                err.downcast_ref::<BundleError>(),
                Some(&want),
                "cut at {cut}"
            );
            assert!(
                format!("{err:#}").contains(&format!("truncated at byte {cut}")),
                "{err:#}"
            );
        }
        // Garbage in the middle of the entries: the first damaged byte.
        let mut garbage = bytes.clone();
        let mid = garbage.len() / 2;
        garbage[mid..mid + 4000].fill(0xFF);
        std::fs::write(&path, &garbage).expect("write");
        let err = check_file(&path, None).expect_err("damaged");
        let want = in_memory(&garbage).expect_err("damaged");
        assert!(
            matches!(want, BundleError::Schema { at, .. } if at >= mid && at < mid + 4000),
            "{want:?}"
        );
        assert_eq!(err.downcast_ref::<BundleError>(), Some(&want));
        // Bytes after the end.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0u8; 3 * READ]);
        std::fs::write(&path, &longer).expect("write");
        let err = check_file(&path, None).expect_err("trailing");
        assert_eq!(
            err.downcast_ref::<BundleError>(),
            Some(&BundleError::TrailingBytes {
                at: bytes.len(),
                extra: 3 * READ
            })
        );
    }
}
