//! `custodia agency …`

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use crate::output::Out;
use crate::untrusted::safe;

#[derive(Subcommand, Debug)]
pub(crate) enum AgencyCommand {
    /// List the agencies this node knows (itself, its peers, the members of its cases): name, country, fingerprint, peer name.
    ///
    /// The name and country are the ones the agency signed in its key log where its log has reached this node (marked), else the ones a case recorded, else the local peer name.
    ///
    /// Any of these names, a fingerprint or a full key can be given wherever a command takes an agency.
    ///
    /// Example: custodia --dir ./nbi agency list
    List,
}

pub(crate) fn run(dir: &Path, cmd: AgencyCommand, out: &Out) -> anyhow::Result<ExitCode> {
    let l = crate::passphrase::open(dir)?;
    match cmd {
        AgencyCommand::List => {
            let all = l.agencies();
            let width = all
                .iter()
                .map(|a| safe(&a.name).chars().count())
                .max()
                .unwrap_or(0);
            let mut text = String::new();
            let mut rows = Vec::new();
            for a in &all {
                let mut line = format!(
                    "{:<width$}  {}  {}",
                    safe(&a.name),
                    safe(&a.country),
                    a.agency.fingerprint()
                );
                if let Some(p) = &a.peer {
                    line.push_str(&format!("  peer {}", safe(p)));
                }
                if a.me {
                    line.push_str("  (this node)");
                }
                if a.signed {
                    line.push_str("  (name signed by the agency)");
                }
                text.push_str(line.trim_end());
                text.push('\n');
                rows.push(serde_json::json!({
                    "agency": a.agency.to_hex(), "fingerprint": a.agency.fingerprint(),
                    "name": a.name, "country": a.country, "peer": a.peer, "me": a.me,
                    "signed": a.signed,
                }));
            }
            out.record_list(text.trim_end(), "agencies", rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}
