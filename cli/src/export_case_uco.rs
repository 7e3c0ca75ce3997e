//! `custodia export --format case-uco`: the case's chain of custody in the
//! CASE/UCO ontology (JSON-LD). A placeholder until that export lands.

use std::path::Path;
use std::process::ExitCode;

use crate::output::Out;

/// Refuses: the CASE/UCO export is not yet implemented.
pub(crate) fn run(
    _dir: &Path,
    _case: &str,
    _path: &Path,
    _items: &[String],
    _out: &Out,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("export --format case-uco is not yet implemented")
}
