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
        input.write_all(text.as_bytes()).expect("stdin written");
    }
    let out = child.wait_with_output().expect("runsecrets finishes");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}
