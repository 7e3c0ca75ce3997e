//! Waking a running node when another process (the command-line tool)
//! has committed to the store they share (SPEC.md §9.9).
//!
//! The node binds a Unix datagram socket beside the store file
//! (`store.sqlite.wake`); a process that commits sends it one byte. The
//! node then loads the new rows at once instead of at its next poll: an
//! entry written by the tool reaches connected peers within a millisecond
//! or two, not a poll interval. Nothing depends on the wake-up arriving:
//! the node still polls (less often), and a tool that finds no node
//! listening carries on.

use std::path::{Path, PathBuf};

/// The socket's path for a store file.
pub(crate) fn socket_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".wake");
    PathBuf::from(name)
}

/// Tells a node running on this store that there is something new.
/// Never blocks and never fails: without a listening node it does nothing.
pub(crate) fn notify(store: &Path) {
    #[cfg(unix)]
    {
        let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
            return;
        };
        let _ = sock.set_nonblocking(true);
        let _ = sock.send_to(b"w", socket_path(store));
    }
    #[cfg(not(unix))]
    let _ = store;
}

/// The node's end: None where Unix sockets are not available or the path
/// is too long for one (the node then relies on polling alone).
#[cfg(unix)]
pub(crate) fn listen(store: &Path) -> Option<tokio::net::UnixDatagram> {
    let path = socket_path(store);
    // A socket left by a node that stopped: replaced.
    if std::fs::symlink_metadata(&path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        let _ = std::fs::remove_file(&path);
    }
    match tokio::net::UnixDatagram::bind(&path) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "no wake-up socket; polling only");
            None
        }
    }
}
