//! Running one test alone in a process of its own.
//!
//! A test that points the in-process server at its stub apiserver sets `KUBECONFIG`: kube's
//! `Client::try_default` reads the environment and nothing else, and the environment belongs to
//! the whole process. The tests of a binary share one process (several threads at once), so
//! such a test runs again as a child of the test binary, filtered to itself, where it is the
//! only test and its setting reaches no other.

use std::process::Command;

/// Set in the child to the name of the test it runs.
const CHILD: &str = "RUNSECRETS_TEST_ALONE";

/// Call first in such a test, with its name as libtest prints it (`delivery::cluster_mode…`),
/// and return when it says `true`: that was the test binary's own run, and the test has just
/// passed in a child process (a failure there panics here, with the child's output). In that
/// child it returns `false`, and the test goes on, alone in its process.
#[track_caller]
pub fn rerun_alone(test: &str) -> bool {
    if std::env::var(CHILD).is_ok_and(|name| name == test) {
        return false;
    }
    let binary = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(&binary)
        .args([test, "--exact", "--include-ignored", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .unwrap_or_else(|e| panic!("{}: cannot run: {e}", binary.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A name that matches no test would run nothing and exit 0.
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test}, alone in its own process, {}:\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    true
}
