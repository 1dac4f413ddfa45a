//! The real binary, run as a user runs it: exit code and both streams, in a clean environment
//! (no `RUNSECRETS_*` setting of the caller's shell leaks into a test).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// What one run of the binary printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// No secret value of `values` in either stream.
    #[track_caller]
    pub fn assert_no_values(&self, values: &[&str]) {
        for value in values {
            assert!(
                !self.stdout.contains(value),
                "{value} in stdout:\n{}",
                self.stdout
            );
            assert!(
                !self.stderr.contains(value),
                "{value} in stderr:\n{}",
                self.stderr
            );
        }
    }
}

/// Runs `runsecrets ARGS` in `dir` with only `env` in its environment, `stdin` on its input.
pub fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runsecrets"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runsecrets starts");
    if let Some(text) = stdin {
        let mut input = child.stdin.take().expect("stdin");
        // A command that refuses before reading its input exits with the pipe unread.
        match input.write_all(text.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {e}"),
            _ => {}
        }
    }
    let out = child.wait_with_output().expect("runsecrets finishes");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// The three listeners of `runsecrets server` on kernel-chosen loopback ports.
pub const LOOPBACK_LISTENERS: [&str; 6] = [
    "--listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
    "--delivery-listen",
    "127.0.0.1:0",
];

/// Where a server logged that it listens.
pub struct Addrs {
    pub webhook: std::net::SocketAddr,
    pub delivery: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
}

/// `runsecrets server` (or any long-running subcommand) as a child process, every line of its
/// standard error collected, so tests read the log exactly as `main`'s subscriber writes it.
pub struct ServerProcess {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServerProcess {
    /// Runs `runsecrets ARGS` with only `env` in its environment.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_runsecrets"))
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary runs");
        let stderr = child.stderr.take().expect("stderr");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                match line {
                    Ok(line) => sink.lock().expect("lock").push(line),
                    Err(_) => return,
                }
            }
        });
        Self {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// `runsecrets server --data-dir DIR` on kernel-chosen loopback ports with debug logging,
    /// then `extra`; `env` is the whole environment besides `RUST_LOG`.
    pub fn server(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut args = vec!["server", "--data-dir", dir.to_str().expect("utf-8")];
        args.extend_from_slice(&LOOPBACK_LISTENERS);
        args.extend_from_slice(extra);
        let mut env = env.to_vec();
        env.push(("RUST_LOG", "debug"));
        Self::start(&args, &env)
    }

    /// Waits for the server's "serving" line; the addresses it logged.
    pub fn serving(&self) -> Addrs {
        let line = self.wait_for(&["serving", "delivery="]);
        Addrs {
            webhook: Self::addr(&line, "webhook"),
            delivery: Self::addr(&line, "delivery"),
            admin: Self::addr(&line, "admin"),
        }
    }

    /// Waits (up to 30 s) for a line holding every one of `needles`; returns it.
    pub fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let found = self
                .lines
                .lock()
                .expect("lock")
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no line with {needles:?} within 30 s; the log so far:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The address logged as `name=ADDR` in `line` (the server's "serving" line).
    pub fn addr(line: &str, name: &str) -> std::net::SocketAddr {
        line.split_whitespace()
            .find_map(|field| field.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}= in {line}"))
            .trim_matches('"')
            .parse()
            .expect("an address")
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    /// Waits (up to 20 s) for the process to exit by itself; its exit code.
    pub fn exits(&mut self) -> i32 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status.code().unwrap_or(-1);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running after 20 s:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Stops the process and returns every line it wrote.
    pub fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.lines()
    }
}

/// A test that fails before `stop` still ends its process.
impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
