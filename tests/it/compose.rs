//! `runsecrets compose convert` over the corpus of Compose projects in tests/compose, run as
//! the real binary: golden output (ciphertext masked), no secret value in any output, every
//! sealed value opens to what Compose would mount, and the output passes the project's own
//! review at `--level strict`.

use crate::compose_common;

use std::collections::BTreeMap;

use base64::Engine;
use compose_common::{convert, documents, golden, mask, run_in, Keys};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

/// A corpus project, how it is converted and what its secrets hold.
struct Case {
    project: &'static str,
    golden: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// namespace/secret name → value it must open to.
    sealed: &'static [(&'static str, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        project: "wordpress",
        golden: "wordpress",
        args: &["-n", "blog"],
        env: &[],
        sealed: &[
            ("blog/db_password", "Wp-Db-Value-1101"),
            ("blog/db_root_password", "Wp-Root-Value-1102"),
        ],
    },
    Case {
        project: "postgres-pgadmin",
        golden: "postgres-pgadmin",
        args: &[],
        env: &[],
        sealed: &[
            ("default/postgres_password", "Pg-Super-Value-2201"),
            ("default/pgadmin_password", "Pgadmin-Login-Value-2202"),
        ],
    },
    Case {
        project: "tls-proxy",
        golden: "tls-proxy",
        args: &["-n", "edge"],
        env: &[],
        sealed: &[
            (
                "edge/site_key",
                "-----BEGIN PRIVATE KEY-----\nTls-Key-Value-3302\n-----END PRIVATE KEY-----\n",
            ),
            (
                "edge/site_crt",
                "-----BEGIN CERTIFICATE-----\nTls-Cert-Value-3301\n-----END CERTIFICATE-----\n",
            ),
            ("edge/dhparam", "Tls-Dh-Value-3303"),
        ],
    },
    Case {
        project: "overrides",
        golden: "overrides",
        args: &[],
        env: &[],
        sealed: &[("default/api_key", "Api-Key-Value-4401")],
    },
    Case {
        project: "overrides",
        golden: "overrides-prod",
        args: &["-f", "compose.yaml", "-f", "prod.yaml"],
        env: &[],
        sealed: &[("default/api_key_prod", "Api-Key-Prod-Value-4402")],
    },
    Case {
        project: "anchors",
        golden: "anchors",
        args: &[],
        env: &[],
        sealed: &[("default/queue_password", "Worker-Queue-Value-5501")],
    },
    Case {
        project: "dotenv",
        golden: "dotenv",
        // The shell wins over .env.
        args: &[],
        env: &[("APP_PORT", "9000"), ("FEATURE", "on")],
        sealed: &[("default/db", "Dotenv-Db-Value-6601")],
    },
    Case {
        project: "external",
        golden: "external",
        args: &["-n", "prod"],
        env: &[],
        sealed: &[],
    },
    Case {
        project: "env-sourced",
        golden: "env-sourced",
        args: &[],
        env: &[("OAUTH_TOKEN", "Oauth-Env-Value-7601")],
        sealed: &[("default/oauth_token", "Oauth-Env-Value-7601")],
    },
    Case {
        project: "profiles",
        golden: "profiles",
        args: &["--profile", "debug"],
        env: &[],
        sealed: &[("default/debug_token", "Debug-Value-7701")],
    },
    Case {
        project: "literal-creds",
        golden: "literal-creds",
        args: &[],
        env: &[("SESSION_SECRET", "Shell-Session-Value-8804")],
        sealed: &[
            (
                "default/db_mariadb_root_password",
                "Literal-Root-Value-8802",
            ),
            (
                "default/shop_stripe_key",
                "sk_live_51HqLiteralValue8801xyzABCDEF",
            ),
            (
                "default/shop_database_url",
                "mysql://shop:Url-Pass-Value-8803@db/shop",
            ),
            ("default/shop_session_secret", "Shell-Session-Value-8804"),
        ],
    },
    Case {
        project: "extends",
        golden: "extends",
        args: &[],
        env: &[],
        sealed: &[("default/shared_token", "Shared-Token-Value-9901")],
    },
    Case {
        project: "namespaces",
        golden: "namespaces",
        args: &[],
        env: &[],
        sealed: &[
            ("apps/shared", "Ns-Shared-Value-1301"),
            ("monitoring/shared", "Ns-Shared-Value-1301"),
        ],
    },
    Case {
        project: "include",
        golden: "include",
        args: &[],
        env: &[],
        sealed: &[("shop/cache_password", "Included-Value-9911")],
    },
];

/// Opens every RunSecret of `docs` and checks it against the case's values.
fn check_sealed(case: &Case, docs: &[Value], keys: &Keys) {
    let mut found = BTreeMap::new();
    for doc in docs.iter().filter(|d| d["kind"] == "RunSecret") {
        let ns = doc["metadata"]["namespace"].as_str().expect("namespace");
        let name = doc["spec"]["name"].as_str().expect("spec.name");
        let envelope = base64::engine::general_purpose::STANDARD
            .decode(doc["spec"]["ciphertext"].as_str().expect("ciphertext"))
            .expect("base64");
        let plain = runsecrets::seal::open(&keys.keyring, ns, name, &envelope).expect("opens");
        assert_eq!(
            doc["metadata"]["name"].as_str(),
            Some(runsecrets::store::object_name(name).as_str())
        );
        found.insert(
            format!("{ns}/{name}"),
            String::from_utf8(plain.to_vec()).expect("utf-8"),
        );
    }
    let expected: BTreeMap<String, String> = case
        .sealed
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(found, expected, "{}", case.golden);
}

#[test]
fn corpus_converts_to_the_golden_output_without_any_value() {
    let keys = Keys::new();
    for case in CASES {
        let out = convert(case.project, case.args, case.env, &keys);
        assert_eq!(out.code, 0, "{}: {}", case.golden, out.stderr);
        out.assert_no_values();
        golden(&format!("golden/{}.yaml", case.golden), &mask(&out.stdout));
        golden(&format!("golden/{}.txt", case.golden), &out.stderr);
        let docs = documents(&out.stdout);
        check_sealed(case, &docs, &keys);
        // The same input gives the same bytes, apart from the sealed ciphertext.
        let again = convert(case.project, case.args, case.env, &keys);
        assert_eq!(mask(&again.stdout), mask(&out.stdout), "{}", case.golden);
    }
}

#[test]
fn corpus_output_passes_review_at_strict() {
    let keys = Keys::new();
    for case in CASES {
        let out = convert(case.project, case.args, case.env, &keys);
        assert_eq!(out.code, 0, "{}: {}", case.golden, out.stderr);
        let review = run_in(
            &compose_common::corpus(),
            &["review", "--level", "strict", "-"],
            &[],
            Some(&out.stdout),
        );
        assert_eq!(review.code, 0, "{}: {}", case.golden, review.stderr);
        review.assert_no_values();
        let scan = run_in(
            &compose_common::corpus(),
            &["scan", "--level", "strict", "-"],
            &[],
            Some(&out.stdout),
        );
        assert_eq!(
            (scan.code, scan.stdout.as_str()),
            (0, ""),
            "{}",
            case.golden
        );
    }
}

/// The pod template of `kind`/`name` in a converted stream, as a Pod.
fn template(docs: &[Value], kind: &str, name: &str) -> Value {
    let w = docs
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": w["metadata"]["namespace"], "annotations": w["spec"]["template"]["metadata"]["annotations"]},
        "spec": w["spec"]["template"]["spec"],
    })
}

#[test]
fn tls_proxy_pod_gets_compose_paths_owners_and_modes() {
    let keys = Keys::new();
    let out = convert("tls-proxy", &["-n", "edge"], &[], &keys);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let docs = documents(&out.stdout);
    let mut pod_json = template(&docs, "Deployment", "proxy");
    let pod: Pod = serde_json::from_value(pod_json.clone()).expect("a Pod");
    let annotations = pod.metadata.annotations.clone().expect("annotations");
    // Our own parser reads what Compose would mount, path for path and bit for bit.
    let refs =
        runsecrets::spec::parse_secrets(&annotations["runsecrets.io/secrets"]).expect("parses");
    let got: Vec<(String, String, u32, u32, u32)> = refs
        .iter()
        .map(|r| {
            (
                r.source.clone(),
                r.target.container_path(),
                r.uid,
                r.gid,
                r.mode,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "site_key".into(),
                "/run/secrets/site.key".into(),
                101,
                101,
                0o400
            ),
            (
                "site_crt".into(),
                "/etc/nginx/tls/site.crt".into(),
                0,
                101,
                0o440
            ),
            (
                "dhparam".into(),
                "/run/secrets/tls/dhparam.pem".into(),
                0,
                0,
                0o444
            ),
            // `mode: 440` is decimal in Compose: 0o670, writable bits dropped.
            (
                "dhparam".into(),
                "/run/secrets/legacy/dhparam.pem".into(),
                0,
                0,
                0o450
            ),
        ]
    );
    assert!(
        out.stderr
            .contains("compose.yaml:25: mode 440 is a decimal number"),
        "{}",
        out.stderr
    );

    // The webhook's patch for this pod applies and gives a valid Pod with the mounts.
    let spec = serde_json::from_value(pod_json["spec"].clone()).expect("spec");
    let patch = match runsecrets::admission::mutate(Some(&annotations), &spec, &[]) {
        Ok(runsecrets::admission::Mutation::Patch(p)) => p,
        other => panic!(
            "expected a patch, got {:?}",
            other.map(|_| ()).map_err(|d| d.message)
        ),
    };
    json_patch::patch(&mut pod_json, &patch.to_json_patch().expect("a JSON patch"))
        .expect("patch applies");
    let mutated: Pod = serde_json::from_value(pod_json).expect("still a Pod");
    let spec = mutated.spec.expect("spec");
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "runsecrets")
        .expect("volume");
    let attributes = volume
        .csi
        .as_ref()
        .and_then(|c| c.volume_attributes.clone())
        .expect("attributes");
    assert_eq!(
        attributes["runsecrets.io/secrets"],
        annotations["runsecrets.io/secrets"]
    );
    let mounts = spec.containers[0].volume_mounts.clone().unwrap_or_default();
    assert!(mounts
        .iter()
        .any(|m| m.mount_path == "/run/secrets" && m.read_only == Some(true)));
    assert!(mounts
        .iter()
        .any(|m| m.mount_path == "/etc/nginx/tls/site.crt"));
    assert!(mounts
        .iter()
        .any(|m| m.mount_path == "/etc/nginx/conf.d/default.conf"
            && m.sub_path.as_deref() == Some("content")));
}

#[test]
fn numeric_user_owns_secrets_without_uid_and_gid() {
    let keys = Keys::new();
    let out = convert("postgres-pgadmin", &[], &[], &keys);
    let docs = documents(&out.stdout);
    let pod: Pod = serde_json::from_value(template(&docs, "Deployment", "postgres")).expect("Pod");
    let annotations = pod.metadata.annotations.expect("annotations");
    let refs =
        runsecrets::spec::parse_secrets(&annotations["runsecrets.io/secrets"]).expect("parses");
    assert_eq!((refs[0].uid, refs[0].gid, refs[0].mode), (70, 70, 0o400));
    let sc = pod.spec.expect("spec").containers[0]
        .security_context
        .clone()
        .expect("securityContext");
    assert_eq!((sc.run_as_user, sc.run_as_group), (Some(70), Some(70)));
    assert!(
        out.stderr
            .contains("owner: service postgres: secret postgres_password"),
        "{}",
        out.stderr
    );
}

#[test]
fn literal_credentials_become_file_secrets() {
    let keys = Keys::new();
    let shell = [("SESSION_SECRET", "Shell-Session-Value-8804")];
    let out = convert("literal-creds", &[], &shell, &keys);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let docs = documents(&out.stdout);
    let pod: Pod = serde_json::from_value(template(&docs, "Deployment", "shop")).expect("Pod");
    let c = &pod.spec.as_ref().expect("spec").containers[0];
    let env: BTreeMap<String, String> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        env.get("STRIPE_KEY_FILE").map(String::as_str),
        Some("/run/secrets/shop_stripe_key")
    );
    assert_eq!(
        env.get("DATABASE_URL_FILE").map(String::as_str),
        Some("/run/secrets/shop_database_url")
    );
    assert_eq!(env.get("APP_MODE").map(String::as_str), Some("production"));
    for gone in ["STRIPE_KEY", "DATABASE_URL", "SESSION_SECRET"] {
        assert!(!env.contains_key(gone), "{gone} still in env");
    }
    // The generated secrets are owned by the service's numeric user, like declared ones.
    let annotations = pod.metadata.annotations.expect("annotations");
    let refs =
        runsecrets::spec::parse_secrets(&annotations["runsecrets.io/secrets"]).expect("parses");
    assert!(refs.iter().all(|r| r.uid == 1000), "{refs:?}");
    assert!(
        out.stderr.contains("interpolated from the shell"),
        "{}",
        out.stderr
    );

    // keep: the values stay, and the report still lists them; the output then fails review.
    let kept = convert(
        "literal-creds",
        &["--env-credentials", "keep"],
        &shell,
        &keys,
    );
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    assert!(kept.stderr.contains("kept in env (--env-credentials keep)"));
    let review = run_in(
        &compose_common::corpus(),
        &["review", "-"],
        &[],
        Some(&kept.stdout),
    );
    assert_eq!(review.code, 1, "{}", review.stderr);
}

#[test]
fn external_secrets_are_reported_and_not_created() {
    let keys = Keys::new();
    let out = convert("external", &["-n", "prod"], &[], &keys);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let docs = documents(&out.stdout);
    assert!(docs.iter().all(|d| d["kind"] != "RunSecret"));
    for name in ["prod/registry_token", "prod/prod_cert_2026"] {
        assert!(
            out.stderr.contains(&format!("must exist: secret {name}")),
            "{}",
            out.stderr
        );
    }
    let pod: Pod = serde_json::from_value(template(&docs, "Deployment", "app")).expect("Pod");
    let annotations = pod.metadata.annotations.expect("annotations");
    let refs =
        runsecrets::spec::parse_secrets(&annotations["runsecrets.io/secrets"]).expect("parses");
    // `name:` picks the secret; the file keeps the Compose key's target.
    assert_eq!(refs[1].source, "prod_cert_2026");
    assert_eq!(refs[1].target.container_path(), "/run/secrets/server.cert");
    assert_eq!((refs[1].uid, refs[1].gid, refs[1].mode), (103, 103, 0o440));
}
