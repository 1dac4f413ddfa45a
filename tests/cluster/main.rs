//! The whole system on a real Kubernetes: kube-apiserver v1.32.13, etcd, controller-manager,
//! scheduler and a kubelet with containerd, from `../shared/kube` (see its README).
//!
//! `runsecrets server` and `runsecrets node` run as host processes with the arguments the Helm
//! chart renders (listen addresses, data directory and in-cluster paths swapped for host ones);
//! the webhook configurations, the CSIDriver and the RBAC are applied exactly as rendered, except
//! that each webhook's Service becomes a `https://127.0.0.1:PORT` URL. The kit has no pod network
//! and no Services, so the chart itself is never applied.
//!
//! One `#[test]` drives everything in order, because the scenarios share one cluster and cargo
//! would run separate tests in parallel threads: setup steps first (a failure stops the run),
//! then the scenarios (each runs even when an earlier one failed; every failure is reported by
//! the scenario's name), then the teardown, which always runs. Progress goes straight to stderr
//! (not captured), one line per step.
//!
//! Ignored by plain `cargo test` (it needs root, the kit and PyPI); run with `--include-ignored`
//! (CI does). Then skipped, loudly, without `../shared/kube` or without root, unless
//! `RUNSECRETS_REQUIRE_CLUSTER=1` (CI sets it), which turns that into a failure.
//! `RUNSECRETS_CLUSTER_BENCH=1` also runs the benchmark in `bench.rs`.

mod api;
mod bench;
mod chart;
mod kit;
#[path = "../common/legacy_layout.rs"]
mod legacy_layout;
mod scenarios;
mod system;

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use kit::Kit;
use system::System;

/// Set to 1 where the cluster tests must run (CI): a missing kit is then a failure.
const REQUIRE: &str = "RUNSECRETS_REQUIRE_CLUSTER";
/// Set to 1 to run the benchmark after the scenarios.
const BENCH: &str = "RUNSECRETS_CLUSTER_BENCH";

/// A line on the real stderr: libtest captures `eprintln!`, and a skip or a step must be seen.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "cluster: {line}");
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

#[test]
#[ignore = "needs root: runs ../shared/kube's apiserver and kubelet; and PyPI for Helm's SDK"]
fn cluster() {
    let kit = match Kit::find() {
        Ok(kit) => kit,
        Err(reason) if flag(REQUIRE) => {
            panic!("{REQUIRE}=1 but the cluster tests cannot run: {reason}")
        }
        Err(reason) => {
            let bar = "#".repeat(78);
            let _ = writeln!(
                std::io::stderr(),
                "\n{bar}\n# SKIPPED: the cluster tests did not run: {reason}\n\
                 # (set {REQUIRE}=1 to make this a failure; CI does)\n{bar}"
            );
            return;
        }
    };
    let started = Instant::now();
    let mut run = Run::default();
    let mut system = run.setup("start the kit and the system", || System::start(&kit));
    if let Some(system) = system.as_mut() {
        for (name, scenario) in scenarios::ALL {
            run.check(name, || scenario(system));
        }
        if flag(BENCH) {
            run.check("benchmark", || bench::run(system));
        }
    }
    let kept = kit.save_logs(!run.failures.is_empty());
    let teardown = Instant::now();
    if let Some(system) = system {
        system.stop();
    }
    let leftovers = kit.down();
    say(&format!(
        "teardown in {:.1}s; whole run {:.1}s",
        teardown.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    ));
    if let Err(e) = leftovers {
        run.failures.push(("teardown".into(), e));
    }
    if !run.failures.is_empty() {
        let list: Vec<String> = run
            .failures
            .iter()
            .map(|(name, why)| format!("- {name}: {why}"))
            .collect();
        let logs = kept
            .map(|d| format!("\nlogs of the run: {}", d.display()))
            .unwrap_or_default();
        panic!(
            "{} cluster step(s) failed:\n{}{logs}",
            list.len(),
            list.join("\n")
        );
    }
}

/// Step results, in order.
#[derive(Default)]
struct Run {
    failures: Vec<(String, String)>,
}

impl Run {
    /// A step the rest depends on: `None` when it failed.
    fn setup<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> Option<T> {
        self.timed(name, f)
    }

    /// A scenario: its failure is recorded and the next one runs.
    fn check(&mut self, name: &str, f: impl FnOnce()) {
        self.timed(name, f);
    }

    fn timed<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> Option<T> {
        let t0 = Instant::now();
        say(&format!("{name} ..."));
        let result = catch_unwind(AssertUnwindSafe(f));
        let secs = t0.elapsed().as_secs_f64();
        match result {
            Ok(value) => {
                say(&format!("{name}: ok ({secs:.1}s)"));
                Some(value)
            }
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into());
                say(&format!("{name}: FAILED ({secs:.1}s): {why}"));
                self.failures.push((name.to_string(), why));
                None
            }
        }
    }
}

/// Polls `f` every `every` until it returns `Some`, or panics after `timeout` with `what`.
pub fn eventually<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}
