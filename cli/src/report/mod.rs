//! The verification report as people and programs read it: the
//! explanations shared by every form ([`explain`]), and one renderer per
//! form: [`text`] for a terminal, [`json`] for programs, [`html`] for a
//! page to print. The report model itself is the protocol's
//! ([`custodia_protocol::bundle::Report`]); the engine that builds it is
//! the protocol's too ([`custodia_protocol::bundle::engine`]). Nothing
//! here reads a file: the command (`verify`) does, and hands over the
//! report and the [`Source`] it came from.

pub(crate) mod explain;
pub(crate) mod html;
pub(crate) mod json;
pub(crate) mod text;

/// The bundle file as the report names it, so that a printed report can
/// be tied to one file: its path, the SHA-256 and length of the bytes
/// verified (hashed as the first pass reads them), and the verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    /// The path as given.
    pub(crate) name: String,
    /// SHA-256 of the bytes read.
    pub(crate) sha256: [u8; 32],
    /// Bytes read.
    pub(crate) size: u64,
}

impl Source {
    /// The verifier's name and version, e.g. `custodia 0.1.0`.
    pub(crate) fn verifier(&self) -> String {
        format!("{} {}", env!("CARGO_BIN_NAME"), env!("CARGO_PKG_VERSION"))
    }
}
