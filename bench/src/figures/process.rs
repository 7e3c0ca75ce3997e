//! A node as a child process (`custodia node run`), for the figures that
//! measure its memory: the resident size sampled every 100 ms from spawn,
//! its high-water mark read before it is stopped, and its log read for
//! "node started".

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use crate::measure::proc_status_kb;

/// A `custodia node run` child whose resident memory is sampled every
/// 100 ms and whose log is read for "node started".
pub struct NodeProcess {
    child: Child,
    pid: u32,
    started: mpsc::Receiver<()>,
    log: JoinHandle<Vec<String>>,
    stop: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
    sampler: JoinHandle<()>,
}

impl NodeProcess {
    /// Starts `custodia --dir DIR node run` at log level info.
    pub fn spawn(custodia: &Path, dir: &Path) -> anyhow::Result<NodeProcess> {
        let mut child = Command::new(custodia)
            .arg("--dir")
            .arg(dir)
            .args(["node", "run"])
            .env("CUSTODIA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning custodia node run")?;
        let pid = child.id();
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kb = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (stop, peak) = (stop.clone(), peak_kb.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match proc_status_kb(Some(pid), "VmRSS") {
                        Some(kb) => {
                            peak.fetch_max(kb, Ordering::SeqCst);
                        }
                        None => break, // exited
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let (tx, started) = mpsc::channel();
        let stderr = child.stderr.take();
        let log = std::thread::spawn(move || {
            let mut tail = Vec::new();
            if let Some(e) = stderr {
                for line in BufReader::new(e).lines().map_while(Result::ok) {
                    if line.contains("node started") {
                        let _ = tx.send(());
                    }
                    tail.push(line);
                    if tail.len() > 20 {
                        tail.remove(0);
                    }
                }
            }
            tail
        });
        Ok(NodeProcess {
            child,
            pid,
            started,
            log,
            stop,
            peak_kb,
            sampler,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the log line that says the store is open and the node
    /// listens.
    pub fn wait_started(&self, timeout: Duration) -> anyhow::Result<()> {
        self.started
            .recv_timeout(timeout)
            .map_err(|_| anyhow::anyhow!("the node did not start within {timeout:?}"))
    }

    /// Kills the node (SIGKILL) and returns its peak resident size in MB
    /// and the end of its log.
    pub fn kill(mut self) -> (f64, Vec<String>) {
        let hwm = proc_status_kb(Some(self.pid), "VmHWM").unwrap_or(0);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.sampler.join();
        let tail = self.log.join().unwrap_or_default();
        let peak = self.peak_kb.load(Ordering::SeqCst).max(hwm);
        (peak as f64 / 1024.0, tail)
    }
}
