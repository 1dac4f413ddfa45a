//! Every generated file in the repository is what its generator makes now. With
//! `REGENERATE=1` each test writes the fresh file instead of failing, so
//! `REGENERATE=1 cargo test --test it generated:: -- --include-ignored` (runsecrets::cli::reference::REGENERATE)
//! regenerates all of them: the CRD, manifests/ and docs/cli.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use runsecrets::cli::reference::{self, REGENERATE};

/// Whether the tests write fresh files instead of failing.
fn regenerating() -> bool {
    std::env::var_os("REGENERATE").is_some_and(|v| v == "1")
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fails when the committed `rel` differs from `fresh`, naming the first line that differs
/// and the command that regenerates it; writes `fresh` instead under REGENERATE=1.
fn check(rel: &str, fresh: &str) {
    let path = repo().join(rel);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed == fresh {
        return;
    }
    if regenerating() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the directory");
        }
        std::fs::write(&path, fresh).unwrap_or_else(|e| panic!("writing {rel}: {e}"));
        eprintln!("regenerated {rel}");
        return;
    }
    let line = committed
        .lines()
        .zip(fresh.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
    panic!(
        "{rel} is stale (first difference at line {}): regenerate it with `{REGENERATE}`\n\
         committed: {:?}\nfresh:     {:?}",
        line + 1,
        committed.lines().nth(line).unwrap_or("<end of file>"),
        fresh.lines().nth(line).unwrap_or("<end of file>"),
    );
}

#[test]
fn crd_is_the_rust_type() {
    check(
        "charts/runsecrets/templates/crd-runsecret.yaml",
        &runsecrets::store::resource::crd_yaml(),
    );
}

#[test]
fn cli_reference_is_the_clap_definitions() {
    check("docs/cli.md", &reference::markdown());
}

/// manifests/runsecrets.yaml is the chart rendered by Helm (tests/helm/render.py, in the
/// virtualenv the chart tests use; needs python3 with venv and PyPI).
#[test]
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
fn manifests_are_the_chart_rendered() {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-venv");
    let out = Command::new("python3")
        .arg(repo().join("tests/helm/render.py"))
        .arg("--manifests")
        .arg("--venv")
        .arg(&venv)
        .current_dir(repo())
        .output()
        .expect("run python3 tests/helm/render.py");
    assert!(
        out.status.success(),
        "tests/helm/render.py --manifests failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(
        "manifests/runsecrets.yaml",
        &String::from_utf8(out.stdout).expect("UTF-8 YAML"),
    );
}

/// Every flag of every subcommand is documented: in README.md or in docs/cli.md.
#[test]
fn every_flag_is_documented() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    // Regenerating, docs/cli.md is being written by another test: read what it will hold.
    let cli_md = if regenerating() {
        reference::markdown()
    } else {
        std::fs::read_to_string(repo().join("docs/cli.md")).unwrap_or_default()
    };
    let mut root = runsecrets::cli::Cli::command();
    root.build();
    let mut missing = Vec::new();
    for (path, command) in reference::commands(&root) {
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let written = format!("--{long}");
            // A whole flag: not the start of a longer one (--tls-san in --tls-sans).
            let documented = |text: &str| {
                text.match_indices(&written).any(|(i, _)| {
                    !text[i + written.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
                })
            };
            if !documented(&readme) && !documented(&cli_md) {
                missing.push(format!("{path} {written}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags in neither README.md nor docs/cli.md (regenerate docs/cli.md with `{REGENERATE}`): {missing:?}"
    );
}
