//! Hashing evidence files: every digest from one sequential read.
//!
//! A file is read once, front to back, in [`CHUNK`]-sized pieces. SHA-256
//! (always) runs on the calling thread; the optional legacy digests
//! (SHA-1, MD5) run at the same time on a second thread, which receives the
//! very same chunks through a bounded channel of shared buffers. With the
//! CPU's SHA extensions SHA-256 and SHA-1 are the fast ones, so the slow MD5
//! runs beside them rather than after them (when both legacy digests are
//! wanted, SHA-1 stays on the calling thread and MD5 has the second one). Buffers come back from the second thread
//! and are reused, so memory stays at a few chunks whatever the file size.
//!
//! The file is opened read-only and never written, moved or copied.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use custodia_protocol::Digests;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Bytes read per chunk.
pub(crate) const CHUNK: usize = 1 << 20;
/// How many bytes of the file's start are kept for media type detection.
pub(crate) const HEAD: usize = 64 * 1024;
/// Chunks queued for the second thread before the reader waits.
const DEPTH: usize = 4;

/// The optional digests wanted besides SHA-256.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted {
    /// SHA-1.
    pub sha1: bool,
    /// MD5.
    pub md5: bool,
}

impl Wanted {
    /// The optional digests a registered item has, so a re-check computes
    /// the same set.
    pub fn like(d: &Digests) -> Self {
        Wanted {
            sha1: d.sha1.is_some(),
            md5: d.md5.is_some(),
        }
    }

    /// Parses a comma-separated list such as `md5,sha1` (`sha256` is
    /// accepted and ignored: it is always computed).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut w = Wanted::default();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.to_ascii_lowercase().replace('-', "").as_str() {
                "sha1" => w.sha1 = true,
                "md5" => w.md5 = true,
                "sha256" => {}
                _ => {
                    return Err(format!(
                        "{part:?} is not an optional digest: use md5, sha1 or md5,sha1"
                    ))
                }
            }
        }
        Ok(w)
    }
}

/// What hashing a file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    /// The digests (the optional ones only when wanted).
    pub digests: Digests,
    /// The number of bytes read.
    pub size: u64,
    /// The first bytes of the content (at most 64 KiB), for media type
    /// detection.
    pub head: Vec<u8>,
}

/// Hashes a file, reading it once. `progress` is called after each chunk
/// with the number of bytes read so far.
pub fn hash_file(path: &Path, wanted: Wanted, progress: &mut dyn FnMut(u64)) -> io::Result<Hashed> {
    let file = File::open(path)?;
    hash_reader(file, wanted, progress)
}

/// Hashes everything a reader yields (see [`hash_file`]).
pub fn hash_reader(
    mut reader: impl Read,
    wanted: Wanted,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Hashed> {
    let mut sha256 = Sha256::new();
    let mut head = Vec::new();
    let mut size = 0u64;
    let mut take = |sha256: &mut Sha256, chunk: &[u8], size: &mut u64| {
        sha256.update(chunk);
        if head.len() < HEAD {
            let n = (HEAD - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..n]);
        }
        *size += chunk.len() as u64;
        progress(*size);
    };
    let (sha1, md5) = if wanted == Wanted::default() {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = read_full(&mut reader, &mut buf)?;
            if n == 0 {
                break;
            }
            take(&mut sha256, &buf[..n], &mut size);
        }
        (None, None)
    } else {
        // MD5 is the slowest (no CPU support): with both legacy digests,
        // SHA-1 (SHA extensions) joins SHA-256 here and MD5 runs alone.
        let sha1_here = wanted.sha1 && wanted.md5;
        let mut local_sha1 = sha1_here.then(Sha1::new);
        std::thread::scope(|scope| -> io::Result<_> {
            let (to_worker, chunks) = mpsc::sync_channel::<Arc<Vec<u8>>>(DEPTH);
            let (give_back, returned) = mpsc::channel::<Arc<Vec<u8>>>();
            let worker = scope.spawn(move || {
                let mut sha1 = (wanted.sha1 && !sha1_here).then(Sha1::new);
                let mut md5 = wanted.md5.then(Md5::new);
                for chunk in chunks {
                    if let Some(h) = &mut md5 {
                        h.update(&chunk[..]);
                    }
                    if let Some(h) = &mut sha1 {
                        h.update(&chunk[..]);
                    }
                    // The reader may have finished; then the buffer is
                    // simply dropped.
                    let _ = give_back.send(chunk);
                }
                (
                    sha1.map(|h| <[u8; 20]>::from(h.finalize())),
                    md5.map(|h| <[u8; 16]>::from(h.finalize())),
                )
            });
            loop {
                let mut buf = returned
                    .try_recv()
                    .ok()
                    .and_then(|b| Arc::try_unwrap(b).ok())
                    .unwrap_or_default();
                buf.resize(CHUNK, 0);
                let n = read_full(&mut reader, &mut buf)?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                let chunk = Arc::new(buf);
                if to_worker.send(chunk.clone()).is_err() {
                    break; // the worker died; join reports it
                }
                take(&mut sha256, &chunk, &mut size);
                if let Some(h) = &mut local_sha1 {
                    h.update(&chunk[..]);
                }
            }
            drop(to_worker);
            let (sha1, md5) = worker
                .join()
                .map_err(|_| io::Error::other("the hashing thread failed"))?;
            Ok((
                sha1.or_else(|| local_sha1.map(|h| <[u8; 20]>::from(h.finalize()))),
                md5,
            ))
        })?
    };
    Ok(Hashed {
        digests: Digests {
            sha256: sha256.finalize().into(),
            sha1,
            md5,
        },
        size,
        head,
    })
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Wanted {
        Wanted {
            sha1: true,
            md5: true,
        }
    }

    #[test]
    fn known_answers_for_abc() {
        let h = hash_reader(&b"abc"[..], all(), &mut |_| {}).expect("hashing works");
        assert_eq!(
            hex::encode(h.digests.sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(h.digests.sha1.expect("sha1")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(h.digests.md5.expect("md5")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(h.size, 3);
        assert_eq!(h.head, b"abc");
    }

    #[test]
    fn empty_input() {
        let h = hash_reader(&b""[..], all(), &mut |_| {}).expect("hashing works");
        assert_eq!(
            hex::encode(h.digests.md5.expect("md5")),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(h.size, 0);
        let h = hash_reader(&b""[..], Wanted::default(), &mut |_| {}).expect("hashing works");
        assert_eq!(
            hex::encode(h.digests.sha256),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(h.digests.sha1, None);
    }

    #[test]
    fn many_chunks_agree_with_one_shot_and_report_progress() {
        let data: Vec<u8> = (0..(3 * CHUNK + 12345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut seen = Vec::new();
        let h = hash_reader(&data[..], all(), &mut |n| seen.push(n)).expect("hashing works");
        assert_eq!(h.size, data.len() as u64);
        assert_eq!(h.digests.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
        assert_eq!(h.digests.sha1, Some(<[u8; 20]>::from(Sha1::digest(&data))));
        assert_eq!(h.digests.md5, Some(<[u8; 16]>::from(Md5::digest(&data))));
        assert_eq!(h.head, &data[..HEAD]);
        assert_eq!(seen.last().copied(), Some(data.len() as u64));
        assert_eq!(seen.len(), 4);
        let only = hash_reader(
            &data[..],
            Wanted {
                sha1: true,
                md5: false,
            },
            &mut |_| {},
        )
        .expect("hashing works");
        assert_eq!(only.digests.md5, None);
        assert_eq!(only.digests.sha1, h.digests.sha1);
    }

    #[test]
    fn read_errors_are_reported() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                self.0 -= 1;
                buf.fill(7);
                Ok(buf.len())
            }
        }
        for w in [Wanted::default(), all()] {
            let e = hash_reader(Failing(3), w, &mut |_| {}).expect_err("the read fails");
            assert_eq!(e.to_string(), "disk on fire");
        }
    }

    #[test]
    fn wanted_parses_lists() {
        assert_eq!(Wanted::parse("md5,sha1"), Ok(all()));
        assert_eq!(
            Wanted::parse("SHA-1"),
            Ok(Wanted {
                sha1: true,
                md5: false
            })
        );
        assert!(Wanted::parse("crc32").is_err());
    }
}
