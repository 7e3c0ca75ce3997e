//! Measuring: medians and spreads, timing, resident memory of processes,
//! child processes with their peak memory, and the machine's description.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The median and the spread (min, max) of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// The median.
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Stat {
    /// The statistic of `values` (NaN when empty).
    pub fn of(values: &[f64]) -> Stat {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Stat {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                n: 0,
            };
        }
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Stat {
            median,
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        }
    }

    /// Element-wise ratio of paired measurements (a_i / b_i).
    pub fn ratio_of(a: &[f64], b: &[f64]) -> Stat {
        let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        Stat::of(&r)
    }
}

/// The `p`-th percentile (0..=100) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `f` and returns its result and the seconds it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
}

/// A field of /proc/PID/status in kB (VmRSS, VmHWM, …); `pid` None for
/// this process.
pub fn proc_status_kb(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// What running a child process measured.
#[derive(Debug, Clone)]
pub struct ChildRun {
    /// Wall-clock seconds from spawn to exit.
    pub secs: f64,
    /// Peak resident set size in kB, when it could be read.
    pub max_rss_kb: Option<u64>,
    /// The exit status.
    pub status: ExitStatus,
    /// What it printed on standard output.
    pub stdout: String,
    /// What it printed on standard error (the end of it).
    pub stderr: String,
}

/// Runs a program to completion and measures its wall time and peak
/// resident memory (through GNU time's maximum resident set size when
/// /usr/bin/time exists, else by sampling /proc/PID/status VmHWM).
pub fn run_measured(program: &Path, args: &[OsString]) -> anyhow::Result<ChildRun> {
    let gnu_time = Path::new("/usr/bin/time");
    let out_file = tempfile::NamedTempFile::new()?;
    let mut cmd = if gnu_time.exists() {
        let mut c = Command::new(gnu_time);
        c.arg("-f").arg("%M").arg("-o").arg(out_file.path());
        c.arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = std::io::Read::read_to_string(o, &mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stderr.as_mut() {
            let _ = std::io::Read::read_to_string(o, &mut s);
        }
        s
    });
    let mut sampled: Option<u64> = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if !gnu_time.exists() {
            if let Some(kb) = proc_status_kb(Some(pid), "VmHWM") {
                sampled = Some(sampled.map_or(kb, |s| s.max(kb)));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let secs = start.elapsed().as_secs_f64();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let max_rss_kb = if gnu_time.exists() {
        std::fs::read_to_string(out_file.path())
            .ok()
            .and_then(|t| t.lines().rev().find_map(|l| l.trim().parse().ok()))
    } else {
        sampled
    };
    let tail: String = {
        let chars: Vec<char> = stderr.chars().collect();
        chars[chars.len().saturating_sub(2000)..].iter().collect()
    };
    Ok(ChildRun {
        secs,
        max_rss_kb,
        status,
        stdout,
        stderr: tail,
    })
}

/// The machine the run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores available to this process.
    pub nproc: usize,
    /// CPU model (from /proc/cpuinfo).
    pub cpu: String,
    /// CPU flags relevant to the figures (sha_ni, avx2, avx512f).
    pub cpu_flags: Vec<String>,
    /// Total memory.
    pub memory: String,
    /// Kernel release.
    pub kernel: String,
    /// The Rust compiler.
    pub rustc: String,
    /// The commit of the workspace, when git knows it.
    pub commit: String,
    /// When the run started (UTC).
    pub date: String,
}

fn first_line_of(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    })
}

impl Machine {
    /// Describes this machine.
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|r| r.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, m)| m.trim().to_string());
        let flags_line = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("flags"))
            .unwrap_or("");
        let cpu_flags = ["sha_ni", "avx2", "avx512f", "aes"]
            .iter()
            .filter(|f| flags_line.split_whitespace().any(|x| x == **f))
            .map(|f| f.to_string())
            .collect();
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
            })
            .map_or_else(
                || "unknown".into(),
                |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0),
            );
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let rustc = first_line_of(
            &std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()),
            &["--version"],
        )
        .unwrap_or_else(|| "unknown".into());
        let commit = first_line_of(
            "git",
            &[
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "rev-parse",
                "--short",
                "HEAD",
            ],
        )
        .unwrap_or_else(|| "unknown".into());
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            cpu_flags,
            memory,
            kernel,
            rustc,
            commit,
            date: iso_now(),
        }
    }
}

/// The current time as ISO 8601 UTC to the second.
pub fn iso_now() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    custodia_protocol::utc::iso_seconds(ms)
}

/// Where the `custodia` binary is: next to `exe` (the benchmark's own
/// executable, or a test's parent directory).
pub fn sibling_binary(exe: &Path, name: &str) -> Option<PathBuf> {
    let mut dir = exe.parent()?;
    for _ in 0..2 {
        let p = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        if p.exists() {
            return Some(p);
        }
        dir = dir.parent()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = Stat::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stat::of(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert!(Stat::of(&[]).median.is_nan());
        let r = Stat::ratio_of(&[2.0, 4.0, 9.0], &[1.0, 2.0, 3.0]);
        assert_eq!(r.median, 2.0);
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
    }

    #[test]
    fn own_memory_is_readable() {
        assert!(proc_status_kb(None, "VmRSS").is_some_and(|kb| kb > 0));
        assert!(iso_now().ends_with('Z'));
    }
}
