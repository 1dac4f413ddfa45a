//! `../shared/kube`: finding it, starting it in a fresh state directory, and bringing it down.
//!
//! The state directory is `/tmp/rs-kube-<8 hex digits of this target directory's path>`
//! (`RUNSECRETS_KUBE_STATE` overrides it), not under the target directory as the issue first
//! suggested: containerd's, kubelet's and the CSI plugin's unix sockets live under it and a
//! socket path has at most 107 bytes, so the kit refuses state paths over 60 characters.
//! The hash keeps two checkouts on one machine apart.
//!
//! Every run starts from an empty state directory (leftovers of an interrupted run are wiped
//! first): the tests prove first-start behaviour (the server creates its CA and its keyring), so
//! a cluster left up by an earlier run cannot be reused. The end of the run is `kube down
//! --wipe` (`RUNSECRETS_KUBE_KEEP=1` leaves it up for a look; the next run wipes it).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use crate::say;

/// The kit's port settings and their defaults (its README).
const PORTS: [(&str, u16); 7] = [
    ("KUBE_API_PORT", 6443),
    ("KUBE_ETCD_PORT", 2379),
    ("KUBE_ETCD_PEER_PORT", 2380),
    ("KUBE_CM_PORT", 10257),
    ("KUBE_SCHED_PORT", 10259),
    ("KUBE_KUBELET_PORT", 10250),
    ("KUBE_KUBELET_HEALTHZ_PORT", 10248),
];

/// Where our own processes keep their pid files, logs and data, inside the state directory.
const WORK: &str = "rs";

#[derive(Clone)]
pub struct Kit {
    script: PathBuf,
    pub state: PathBuf,
    keep: bool,
}

/// What `kube env` exports.
pub struct Env {
    pub kubeconfig: PathBuf,
    pub bin: PathBuf,
    pub node_name: String,
    pub kubelet_root: PathBuf,
    pub plugins_dir: PathBuf,
}

impl Kit {
    /// The kit beside the clone, or why the cluster tests cannot run here.
    pub fn find() -> Result<Kit, String> {
        let script = std::env::var_os("RUNSECRETS_KUBE_KIT")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/kube/kube"));
        if !script.is_file() {
            return Err(format!(
                "no Kubernetes kit at {} (../shared/kube; RUNSECRETS_KUBE_KIT overrides)",
                script.display()
            ));
        }
        if !rustix::process::geteuid().is_root() {
            return Err("not root: the kit runs a kubelet and the node plugin mounts tmpfs".into());
        }
        let state = match std::env::var_os("RUNSECRETS_KUBE_STATE") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let hash = Sha256::digest(env!("CARGO_TARGET_TMPDIR").as_bytes());
                let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
                PathBuf::from(format!("/tmp/rs-kube-{hex}"))
            }
        };
        Ok(Kit {
            script,
            state,
            keep: crate::flag("RUNSECRETS_KUBE_KEEP"),
        })
    }

    /// Our processes' directory (pid files, logs, data), wiped with the state directory.
    pub fn work(&self) -> PathBuf {
        self.state.join(WORK)
    }

    fn kube(&self, args: &[&str]) -> Output {
        Command::new(&self.script)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.script.display()))
    }

    fn must(&self, args: &[&str]) -> String {
        let out = self.kube(args);
        assert!(
            out.status.success(),
            "kube {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A fresh control plane and node.
    pub fn up(&self) -> Env {
        let _ = std::fs::remove_dir_all(saved_logs());
        let state = self.state.to_str().expect("utf-8 state dir");
        if self.state.exists() {
            say(&format!(
                "{state} is left from an earlier run: bringing it down and wiping it"
            ));
            kill_leftovers(&self.work(), state);
            if self.state.join("settings.env").exists() {
                self.must(&["down", state, "--wipe"]);
            }
            assert!(
                !self.state.exists(),
                "{state} exists and is not a kit state directory: remove it by hand"
            );
        }
        // Defaults where free; another cluster on this machine gets ports of its own.
        let mut up = Command::new(&self.script);
        up.args(["up", state]);
        for (name, default) in PORTS {
            up.env(name, free_port(default).to_string());
        }
        let out = up.output().expect("run kube up");
        assert!(
            out.status.success(),
            "kube up failed ({}):\n{}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 30)
        );
        self.must(&["node-up", state]);
        std::fs::create_dir_all(self.work()).expect("work dir");
        self.env()
    }

    pub fn env(&self) -> Env {
        let out = self.must(&["env", self.state.to_str().expect("utf-8")]);
        let vars: BTreeMap<&str, String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k, unquote(v)))
            .collect();
        let var = |k: &str| {
            vars.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("kube env: no {k}"))
        };
        Env {
            kubeconfig: var("KUBECONFIG").into(),
            bin: self.state.join("bin"),
            node_name: var("KUBE_NODE_NAME"),
            kubelet_root: var("KUBE_KUBELET_ROOT").into(),
            plugins_dir: var("KUBE_PLUGINS_DIR").into(),
        }
    }

    /// node-driver-registrar for `socket`, as the DaemonSet's sidecar would run.
    pub fn registrar(&self, name: &str, socket: &Path, registration_path: &Path) {
        self.must(&[
            "registrar",
            self.state.to_str().expect("utf-8"),
            "start",
            name,
            socket.to_str().expect("utf-8"),
            registration_path.to_str().expect("utf-8"),
        ]);
    }

    /// Every log of the run (the kit's and our processes'), by file name.
    pub fn logs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in [self.state.join("logs"), self.work()] {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                out.extend(
                    entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "log")),
                );
            }
        }
        out.sort();
        out
    }

    /// After a failure, copies the logs to `target/tmp/cluster-logs` (the state directory is
    /// about to be wiped) and returns where.
    pub fn save_logs(&self, failed: bool) -> Option<PathBuf> {
        if !failed || !self.state.exists() {
            return None;
        }
        let dest = saved_logs();
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::create_dir_all(&dest).ok()?;
        for log in self.logs() {
            if let Some(name) = log.file_name() {
                let _ = std::fs::copy(&log, dest.join(name));
            }
        }
        Some(dest)
    }

    /// `kube down --wipe` (or, with RUNSECRETS_KUBE_KEEP=1, leaves it up), then checks that
    /// nothing of the run is left: no process of the kit or ours, no mount under the state
    /// directory. Never panics: it runs after failures too.
    pub fn down(&self) -> Result<(), String> {
        let state = self.state.to_str().ok_or("state dir is not utf-8")?;
        if self.keep {
            say(&format!(
                "RUNSECRETS_KUBE_KEEP=1: the cluster stays up in {state} (eval \"$(kube env {state})\"); the next run wipes it"
            ));
            return Ok(());
        }
        if !self.state.exists() {
            return Ok(());
        }
        kill_leftovers(&self.work(), state);
        if self.state.join("settings.env").exists() {
            let out = self.kube(&["down", state, "--wipe"]);
            if !out.status.success() {
                return Err(format!(
                    "kube down {state} --wipe failed:\n{}",
                    tail(&String::from_utf8_lossy(&out.stderr), 20)
                ));
            }
        }
        let mounts = mounts_under(&self.state);
        let running = processes_mentioning(state);
        match (self.state.exists(), mounts.is_empty(), running.is_empty()) {
            (false, true, true) => Ok(()),
            _ => Err(format!(
                "leftovers after kube down: state dir exists: {}, mounts: {mounts:?}, processes: {running:?}",
                self.state.exists()
            )),
        }
    }
}

/// Where a failed run's logs are kept.
fn saved_logs() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-logs")
}

/// `default` when nothing listens there, else a port the kernel picks.
fn free_port(default: u16) -> u16 {
    if TcpListener::bind(("127.0.0.1", default)).is_ok() {
        return default;
    }
    pick_port()
}

/// A free loopback port (free now; the caller binds it soon after).
pub fn pick_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Our processes of an interrupted run: pid files in the work dir, killed only when the
/// process still names this state directory on its command line.
fn kill_leftovers(work: &Path, state: &str) {
    let Ok(entries) = std::fs::read_dir(work) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "pid") {
            continue;
        }
        let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(state) {
            say(&format!("killing pid {pid} left by an earlier run"));
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// Mount points at or below `dir` (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let base = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == base || m.starts_with(&format!("{base}/")))
        .map(str::to_string)
        .collect()
}

/// Live processes whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()) && *n != me)
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(needle).then(|| format!("{pid}: {cmd}"))
        })
        .collect()
}

/// Undoes bash's `printf %q` for the plain paths and names `kube env` prints.
fn unquote(v: &str) -> String {
    let v = v.trim();
    if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return inner.to_string();
    }
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
