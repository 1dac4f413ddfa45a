//! Our host processes (the server and the node plugin): started from the built binary, logs
//! in the work dir, a pid file each (so a later run can kill what an interrupted one left),
//! stopped by pid with SIGTERM, then SIGKILL. Dropping `Procs` stops them all, so a panic in a
//! setup step leaves nothing running.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use crate::chart::Launch;

pub struct Procs {
    work: PathBuf,
    running: BTreeMap<String, Child>,
}

impl Procs {
    pub fn new(work: PathBuf) -> Procs {
        Procs {
            work,
            running: BTreeMap::new(),
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.work.join(format!("{name}.log"))
    }

    /// `runsecrets ARGS` with the container's env and otherwise a clean environment (nothing
    /// of the developer's RUNSECRETS_* leaks in), and our crate's debug logs on, so the log scan
    /// sees every line we write.
    pub fn spawn(&mut self, name: &str, launch: &Launch, kubeconfig: Option<&Path>) {
        assert!(!self.running.contains_key(name), "{name} already runs");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name))
            .expect("open log");
        let mut command = Command::new(super::exe());
        command
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("RUST_LOG", "info,runsecrets=debug")
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .args(&launch.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        if let Some(kubeconfig) = kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        std::fs::write(
            self.work.join(format!("{name}.pid")),
            child.id().to_string(),
        )
        .expect("pid file");
        self.running.insert(name.to_string(), child);
    }

    pub fn alive(&mut self, name: &str) -> bool {
        self.running
            .get_mut(name)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
        crate::kit::tail(&text, 20)
    }

    /// SIGTERM, up to 20 s for a graceful exit (the server's --shutdown-delay is 5 s), then
    /// SIGKILL. The exit status.
    pub fn stop(&mut self, name: &str) -> Option<ExitStatus> {
        let mut child = self.running.remove(name)?;
        let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
        if let Some(pid) = pid {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    break child.wait().ok();
                }
            }
        };
        let _ = std::fs::remove_file(self.work.join(format!("{name}.pid")));
        status
    }

    /// Sends SIGTERM to all at once, then waits for each.
    pub fn stop_all(&mut self) {
        for child in self.running.values() {
            if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::TERM);
            }
        }
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            self.stop(&name);
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop_all();
    }
}
