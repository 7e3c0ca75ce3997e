//! Hypercore 11, the reference of the replication figure (DESIGN.md:
//! "≥ 5× the rate Hypercore 11 replicates the same entries between two
//! processes, Hypercore measured in the same run").
//!
//! `bench/hypercore/` holds a Node.js script and a `package.json` that pins
//! one exact Hypercore version, with its `package-lock.json`. The first run
//! copies them into the build's target directory and installs the locked
//! packages there with `npm ci`, again whenever the lock file changes; the
//! source tree gets no `node_modules`. Without `node` and `npm` on the
//! machine the figure is reported without its reference, saying why.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use serde::Deserialize;

/// The files of the reference, beside this crate's manifest.
const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hypercore");
const FILES: &[&str] = &["package.json", "package-lock.json", "replicate.js"];

/// Whether the reference is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Use {
    /// Run it when `node` and `npm` are on the machine.
    IfPresent,
    /// Do not run it, for this reason (shown in the figure's notes).
    Skip(String),
}

/// An installed reference, ready to run.
#[derive(Debug, Clone)]
pub struct Hypercore {
    dir: PathBuf,
    /// `node --version`.
    pub node: String,
}

/// One run of `replicate.js`.
#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    /// The Hypercore version that ran.
    pub hypercore: String,
    /// Entries replicated.
    pub entries: u64,
    /// Bytes per entry.
    pub entry_bytes: u64,
    /// Appends per second at the writer (batches of 1,000).
    pub append_per_s: f64,
    /// Entries per second received by the second process.
    pub replicate_per_s: f64,
}

fn version_of(program: &str) -> Option<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Where the reference is installed: `hypercore-reference/` in the target
/// directory the benchmark was built in ([`target_dir`]).
pub fn install_dir(bench_bin: Option<&Path>) -> PathBuf {
    target_dir(bench_bin).join("hypercore-reference")
}

/// The target directory the benchmark was built in (`CARGO_TARGET_DIR`,
/// else the directory above the one holding `bench_bin`, else `target/` of
/// the workspace): where the benchmark keeps what it installs or caches.
pub fn target_dir(bench_bin: Option<&Path>) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            bench_bin
                .and_then(Path::parent)
                .and_then(Path::parent)
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")))
}

impl Hypercore {
    /// Installs the reference into `dir` (copying the script and running
    /// `npm ci` when the lock file differs from the installed one), or
    /// says why it cannot be run here.
    pub fn prepare(dir: &Path) -> Result<Hypercore, String> {
        let node = version_of("node").ok_or("`node` is not on this machine's PATH")?;
        version_of("npm").ok_or("`npm` is not on this machine's PATH")?;
        Self::install(dir).map_err(|e| format!("installing Hypercore failed: {e:#}"))?;
        Ok(Hypercore {
            dir: dir.to_path_buf(),
            node,
        })
    }

    fn install(dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        for f in FILES {
            std::fs::copy(Path::new(SOURCE).join(f), dir.join(f))
                .with_context(|| format!("copying {SOURCE}/{f}"))?;
        }
        let stamp = dir.join("node_modules/.installed-from-lock");
        let lock = std::fs::read(dir.join("package-lock.json"))?;
        if std::fs::read(&stamp).is_ok_and(|s| s == lock) {
            return Ok(());
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .context("running npm ci")?;
        anyhow::ensure!(
            out.status.success(),
            "npm ci in {} exited with {}: {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        std::fs::write(stamp, lock)?;
        Ok(())
    }

    /// Appends `entries` entries of `size` bytes in one process and
    /// replicates them to a second process over TCP on 127.0.0.1.
    pub fn replicate(&self, entries: usize, size: usize) -> anyhow::Result<Run> {
        let out = Command::new("node")
            .arg("replicate.js")
            .arg(entries.to_string())
            .arg(size.max(1).to_string())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .context("running node replicate.js")?;
        anyhow::ensure!(
            out.status.success(),
            "node replicate.js exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        parse_run(&String::from_utf8_lossy(&out.stdout))
    }
}

/// The JSON line `replicate.js` prints last.
pub fn parse_run(stdout: &str) -> anyhow::Result<Run> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("replicate.js printed no JSON line")?;
    let run: Run = serde_json::from_str(line).context("replicate.js's JSON line")?;
    anyhow::ensure!(
        run.replicate_per_s.is_finite() && run.replicate_per_s > 0.0,
        "replicate.js reported a rate of {}",
        run.replicate_per_s
    );
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_json_line_is_read() {
        let out = "noise\n{\"hypercore\":\"11.39.5\",\"node\":\"v20.20.2\",\"entries\":100,\"entry_bytes\":200,\"append_per_s\":15000.5,\"replicate_secs\":0.1,\"replicate_per_s\":1000}\n";
        let r = parse_run(out).expect("parsed");
        assert_eq!((r.entries, r.entry_bytes), (100, 200));
        assert_eq!(r.hypercore, "11.39.5");
        assert!((r.replicate_per_s - 1000.0).abs() < 1e-9);
        assert!(parse_run("no json").is_err());
        assert!(parse_run("{\"hypercore\":\"11\",\"entries\":1,\"entry_bytes\":1,\"append_per_s\":1,\"replicate_per_s\":0}").is_err());
    }

    #[test]
    fn the_pinned_version_is_exact_and_locked() {
        let pkg: serde_json::Value = serde_json::from_slice(
            &std::fs::read(Path::new(SOURCE).join("package.json")).expect("package.json"),
        )
        .expect("json");
        let want = pkg["dependencies"]["hypercore"]
            .as_str()
            .expect("hypercore is a dependency");
        assert!(
            want.starts_with("11.") && want.chars().all(|c| c.is_ascii_digit() || c == '.'),
            "hypercore is pinned to one exact 11.x version, not {want:?}"
        );
        let lock: serde_json::Value = serde_json::from_slice(
            &std::fs::read(Path::new(SOURCE).join("package-lock.json")).expect("lock"),
        )
        .expect("json");
        assert_eq!(
            lock["packages"]["node_modules/hypercore"]["version"].as_str(),
            Some(want),
            "package-lock.json matches package.json"
        );
    }
}
