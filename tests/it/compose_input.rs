//! `compose convert` on bad input (file:line, what to do, exit 2, nothing written) and the
//! output directory (atomic, replaceable only when ours).

use crate::compose_common;

use std::path::Path;

use compose_common::{convert, corpus, run_in, Keys};

/// (case under tests/compose/bad, the message's place, what it must say).
const BAD: &[(&str, &str, &str)] = &[
    ("malformed", "compose.yaml:5:", "not valid YAML"),
    ("undefined-secret", "compose.yaml:5:", "uses secret \"db_password\", which the top-level secrets: section does not define"),
    ("missing-file", "compose.yaml:6:", "secret token: cannot read file does-not-exist.txt (create it, or fix file:)"),
    ("external-with-file", "compose.yaml:8:", "secrets.token is external, so it cannot also set file"),
    ("target-twice", "compose.yaml:7:", "target /run/secrets/creds is declared twice (also at compose.yaml:5)"),
    ("mode-out-of-range", "compose.yaml:6:", "is out of range: it must be between 0 and 0777"),
    ("invalid-name", "compose.yaml:6:", "cannot be a secret name: use 1-64 of [a-zA-Z0-9-_.]"),
    ("required-variable", "compose.yaml:3:", "required variable TAG is missing a value (services.app.image): set TAG to the release to deploy"),
    ("remote-include", "compose.yaml:2:", "include of a remote project (git, OCI or URL) is not supported"),
    ("bad-uid", "compose.yaml:6:", "uid must be a numeric id"),
    ("env-credentials-fail", "compose.yaml:5:", "API_TOKEN (name contains \"TOKEN\")"),
    ("duplicate-key", "compose.yaml:4:", "key \"app\" is defined twice"),
    ("unset-env-secret", "compose.yaml:6:", "environment variable NOT_EXPORTED is not set"),
    ("extends-cycle", "compose.yaml:", "extends cycle through service"),
    ("extends-cycle-parent", "compose.yaml:", "extends cycle through service"),
    ("config-collision", "compose.yaml:8:", "configs app.conf and app_conf would both be ConfigMap app-conf"),
    ("volume-collision", "volumes", "volumes db-data and db_data would both be PersistentVolumeClaim db-data"),
    ("extends-missing", "compose.yaml:5:", "extends: service \"base\" is not defined in compose.yaml"),
    ("include-cycle", "other.yaml:2:", "include cycle: compose.yaml is already being loaded"),
    ("name-collision", "compose.yaml:2:", "services web-app and web_app would both be named web-app in namespace default"),
];

#[test]
fn bad_input_says_where_and_what_exits_2_and_writes_nothing() {
    let keys = Keys::new();
    let env = [("A_VALUE", "Env-A-Value-1"), ("B_VALUE", "Env-B-Value-2")];
    for (case, place, message) in BAD {
        let dir = corpus().join("bad").join(case);
        let out_dir = tempfile::tempdir().expect("temp dir");
        let target = out_dir.path().join("out");
        let target = target.to_str().expect("utf-8");
        let out = convert(
            &format!("bad/{case}"),
            &["--env-credentials", "fail", "-o", target],
            &env,
            &keys,
        );
        assert_eq!(out.code, 2, "{case}: {}", out.stderr);
        let line = out.stderr.lines().next().unwrap_or_default();
        assert!(
            line.starts_with(&format!("runsecrets: {place}")) || line.contains(place),
            "{case}: {line}"
        );
        assert!(out.stderr.contains(message), "{case}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{case}");
        out.assert_no_values();
        assert!(!Path::new(target).exists(), "{case}: output written");
        // Nothing but the temporary directory's parent is left behind either.
        let left: Vec<_> = std::fs::read_dir(out_dir.path()).expect("dir").collect();
        assert!(left.is_empty(), "{case}: {left:?}");
        assert!(dir.is_dir());
    }
}

#[test]
fn output_directory_holds_one_file_per_object_and_a_kustomization() {
    let keys = Keys::new();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("k8s");
    let dir_str = dir.to_str().expect("utf-8");
    let out = convert("wordpress", &["-n", "blog", "-o", dir_str], &[], &keys);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("output dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "deployment-db.yaml",
            "deployment-wordpress.yaml",
            "kustomization.yaml",
            "persistentvolumeclaim-db-data.yaml",
            "runsecret-db-password-2e48e91c.yaml",
            "runsecret-db-root-password-8acc6a1d.yaml",
            "service-wordpress.yaml",
        ]
    );
    let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).expect("read");
    for name in names.iter().filter(|n| *n != "kustomization.yaml") {
        assert!(
            kustomization.contains(&format!("- {name}\n")),
            "{kustomization}"
        );
    }
    for name in &names {
        let text = std::fs::read_to_string(dir.join(name)).expect("read");
        for value in compose_common::VALUES {
            assert!(!text.contains(value), "{value} in {name}");
        }
    }
    // The directory passes the project's own scan at strict.
    let scan = run_in(tmp.path(), &["scan", "--level", "strict", "k8s"], &[], None);
    assert_eq!(
        (scan.code, scan.stdout.as_str(), scan.stderr.as_str()),
        (0, "", "")
    );

    // A second conversion replaces our earlier output whole (a stale file disappears).
    std::fs::write(dir.join("stale.yaml"), "kind: Stale\n").expect("write");
    let again = convert("postgres-pgadmin", &["-o", dir_str], &[], &keys);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!dir.join("stale.yaml").exists());
    assert!(dir.join("deployment-pgadmin.yaml").exists());
    let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("dir").collect();
    assert_eq!(left.len(), 1, "temporary directories left: {left:?}");
}

#[test]
fn output_directory_not_ours_is_refused_and_untouched() {
    let keys = Keys::new();
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::write(tmp.path().join("notes.txt"), "mine\n").expect("write");
    let out = convert(
        "wordpress",
        &["-o", tmp.path().to_str().expect("utf-8")],
        &[],
        &keys,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("was not written by runsecrets compose convert"),
        "{}",
        out.stderr
    );
    let names: Vec<_> = std::fs::read_dir(tmp.path()).expect("dir").collect();
    assert_eq!(names.len(), 1);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("notes.txt")).expect("read"),
        "mine\n"
    );
}

#[test]
fn default_discovery_reads_the_override_file() {
    let keys = Keys::new();
    let out = convert("overrides", &[], &[], &keys);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // compose.override.yaml sets LOG_LEVEL=debug and resets the ports: no Service.
    assert!(out.stdout.contains("value: debug"), "{}", out.stdout);
    assert!(!out.stdout.contains("kind: Service"), "{}", out.stdout);
    assert!(
        out.stderr.contains("(compose.yaml, compose.override.yaml)"),
        "{}",
        out.stderr
    );
}

#[test]
fn output_directory_names_files_by_namespace_when_there_are_several() {
    let keys = Keys::new();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("out");
    let out = convert(
        "namespaces",
        &["-o", dir.to_str().expect("utf-8")],
        &[],
        &keys,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("output dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "apps.deployment-api.yaml",
            "apps.runsecret-shared.yaml",
            "kustomization.yaml",
            "monitoring.persistentvolumeclaim-tsdb.yaml",
            "monitoring.runsecret-shared.yaml",
            "monitoring.statefulset-metrics.yaml",
        ]
    );
}

#[test]
fn profiles_and_env_files_come_from_flags_or_the_environment() {
    let keys = Keys::new();
    // COMPOSE_PROFILES is read like --profile.
    let out = convert("profiles", &[], &[("COMPOSE_PROFILES", "debug")], &keys);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("name: debugger"), "{}", out.stdout);
    // Without it only the service without profiles runs, and no secret is read or sealed.
    let plain = convert("profiles", &[], &[], &keys);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert!(
        !plain.stdout.contains("kind: RunSecret"),
        "{}",
        plain.stdout
    );
    assert!(
        plain.stderr.contains("skipped): debugger, loadtest"),
        "{}",
        plain.stderr
    );
    // Enabling the profile whose secret file is missing fails with its line.
    let test = convert("profiles", &["--profile", "test"], &[], &keys);
    assert_eq!(test.code, 2);
    assert!(
        test.stderr.contains(
            "compose.yaml:15: secret load_token: cannot read file secrets/missing_on_purpose.txt"
        ),
        "{}",
        test.stderr
    );

    // --env-file replaces .env (TAG, DB_HOST); the shell still wins (APP_PORT).
    let staged = convert(
        "dotenv",
        &["--env-file", "staging.env"],
        &[("APP_PORT", "7000")],
        &keys,
    );
    assert_eq!(staged.code, 0, "{}", staged.stderr);
    assert!(
        staged.stdout.contains("image: example/app:9.9"),
        "{}",
        staged.stdout
    );
    assert!(
        staged.stdout.contains("value: db.staging"),
        "{}",
        staged.stdout
    );
    assert!(
        staged.stdout.contains("containerPort: 7000"),
        "{}",
        staged.stdout
    );
    // GREETING came from .env, which is not read now.
    assert!(
        staged.stderr.contains("variable GREETING is not set"),
        "{}",
        staged.stderr
    );
}
