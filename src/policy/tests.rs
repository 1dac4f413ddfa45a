use super::detect::Reason;
use super::*;
use ContainerKind::{Ephemeral, Init, Regular};
use Level::{Baseline, Off, Strict};

// Specs are built as k8s-openapi's types, as a client writes them, and judged through the
// review's own view of them.
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, Container, EnvFromSource, EnvVar, EnvVarSource, EphemeralContainer,
    SecretEnvSource, SecretKeySelector,
};

const VALUE: &str = "s3cr3t-Value-XYZ-123456";
const OBJECT: &str = "Pod \"shop/web\"";

fn literal(name: &str, value: &str) -> EnvVar {
    let value = Some(value.into());
    EnvVar {
        name: name.into(),
        value,
        ..Default::default()
    }
}

fn from_secret(name: &str, secret: &str) -> EnvVar {
    let selector = SecretKeySelector {
        name: secret.into(),
        key: "password".into(),
        optional: None,
    };
    let source = EnvVarSource {
        secret_key_ref: Some(selector),
        ..Default::default()
    };
    EnvVar {
        name: name.into(),
        value_from: Some(source),
        ..Default::default()
    }
}

fn env_from_secret(secret: &str, prefix: Option<&str>) -> EnvFromSource {
    let secret_ref = Some(SecretEnvSource {
        name: secret.into(),
        optional: None,
    });
    EnvFromSource {
        secret_ref,
        prefix: prefix.map(Into::into),
        ..Default::default()
    }
}

fn container(name: &str, env: Vec<EnvVar>, env_from: Vec<EnvFromSource>) -> Container {
    let image = Some("registry.example.com/shop/web:1.0".into());
    let (env, env_from) = (Some(env), Some(env_from));
    Container {
        name: name.into(),
        image,
        env,
        env_from,
        ..Default::default()
    }
}

fn pod(containers: Vec<Container>) -> PodSpec {
    viewed(k8s_openapi::api::core::v1::PodSpec {
        containers,
        ..Default::default()
    })
}

/// The spec as the review reads it from the JSON the apiserver sends.
fn viewed(spec: k8s_openapi::api::core::v1::PodSpec) -> PodSpec {
    serde_json::to_value(spec)
        .and_then(serde_json::from_value)
        .expect("a pod spec reads through the review's view")
}

fn levels(enforce: Level, warn: Level, audit: Level) -> Levels {
    Levels {
        enforce,
        warn,
        audit,
    }
}

/// A literal credential in each container list, plus everything only `strict` refuses.
fn mixed_spec() -> PodSpec {
    let settings = Some(ConfigMapEnvSource {
        name: "settings".into(),
        optional: None,
    });
    let config_map = EnvFromSource {
        config_map_ref: settings,
        ..Default::default()
    };
    let env = vec![
        literal("DB_PASSWORD", VALUE),
        literal("LOG_LEVEL", "debug"),
        from_secret("API_TOKEN", "api"),
    ];
    let env_from = vec![
        env_from_secret("db", Some("DB_")),
        env_from_secret("bulk", None),
        config_map,
    ];
    let debugger = EphemeralContainer {
        name: "debugger".into(),
        env: Some(vec![literal("CLIENT_SECRET", VALUE)]),
        ..Default::default()
    };
    let migrate = container("migrate", vec![literal("ADMIN_PASSWORD", VALUE)], vec![]);
    viewed(k8s_openapi::api::core::v1::PodSpec {
        containers: vec![container("app", env, env_from)],
        init_containers: Some(vec![migrate]),
        ephemeral_containers: Some(vec![debugger]),
        ..Default::default()
    })
}

#[track_caller]
fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} not in: {text}");
    }
}

#[track_caller]
fn assert_omits(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(!text.contains(part), "{part:?} in: {text}");
    }
}

/// What a namespace with `levels` reports for `spec`, as the webhook builds it.
fn report(levels: Levels, spec: &PodSpec, allowed: &[&str]) -> Report {
    let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
    let (found, exempted) = check_spec(spec, levels.max(), &allowed);
    Report::new(OBJECT, levels, &found, &exempted)
}

#[test]
fn levels_are_ordered_and_round_trip_through_their_names() {
    assert!(Off < Baseline && Baseline < Strict);
    assert_eq!(Level::default(), Off);
    for level in [Off, Baseline, Strict] {
        assert_eq!(level.to_string().parse::<Level>(), Ok(level));
    }
    assert_eq!("strict".parse::<Level>(), Ok(Strict));
    let err = "Strict".parse::<Level>().unwrap_err();
    assert_mentions(&err, &["\"Strict\"", "off, baseline, strict"]);
    assert!("".parse::<Level>().is_err());
}

#[test]
fn modes_parse_from_their_names_only() {
    for mode in Mode::ALL {
        assert_eq!(mode.as_str().parse::<Mode>(), Ok(mode));
    }
    assert_eq!("warn".parse::<Mode>(), Ok(Mode::Warn));
    let err = "deny".parse::<Mode>().unwrap_err();
    assert_mentions(&err, &["\"deny\"", "enforce, warn, audit"]);
    assert!("Enforce".parse::<Mode>().is_err());
    assert_eq!(Mode::Audit.label(), "runsecrets.io/audit");
}

#[test]
fn levels_only_sets_one_mode_and_max_is_the_strictest() {
    let l = Levels::only(Mode::Warn, Strict);
    assert_eq!(Mode::ALL.map(|m| l.get(m)), [Off, Strict, Off]);
    assert_eq!(l.max(), Strict);
    let only = |mode| Levels::only(mode, Baseline);
    assert_eq!(only(Mode::Audit), levels(Off, Off, Baseline));
    assert_eq!(only(Mode::Enforce), levels(Baseline, Off, Off));
    assert_eq!(levels(Baseline, Strict, Off).max(), Strict);
    assert_eq!(levels(Off, Baseline, Off).max(), Baseline);
    assert_eq!(Levels::default().max(), Off);
}

#[test]
fn level_off_finds_nothing() {
    let (found, exempted) = check_spec(&mixed_spec(), Off, &[]);
    assert!(found.is_empty() && exempted.is_empty(), "{found:?}");
}

#[test]
fn baseline_flags_literals_in_every_container_list_but_not_references() {
    let (found, exempted) = check_spec(&mixed_spec(), Baseline, &[]);
    assert!(exempted.is_empty());
    let summary: Vec<_> = found
        .iter()
        .map(|f| (f.kind, &*f.container, &*f.variable, f.rule.level()))
        .collect();
    #[rustfmt::skip]
    assert_eq!(summary, [
        (Init, "migrate", "ADMIN_PASSWORD", Baseline),
        (Regular, "app", "DB_PASSWORD", Baseline),
        (Ephemeral, "debugger", "CLIENT_SECRET", Baseline),
    ]);
    assert_eq!(found[1].rule, Rule::Literal(Reason::Name("PASSWORD")));
}

#[test]
fn strict_also_flags_secrets_delivered_through_env() {
    let (found, _) = check_spec(&mixed_spec(), Strict, &[]);
    let app: Vec<_> = found.iter().filter(|f| f.container == "app").collect();
    let rules: Vec<_> = app.iter().map(|f| (f.variable.as_str(), &f.rule)).collect();
    let secret = |s: &str| s.to_string();
    #[rustfmt::skip]
    assert_eq!(rules, [
        ("DB_PASSWORD", &Rule::Literal(Reason::Name("PASSWORD"))),
        ("API_TOKEN", &Rule::SecretKeyRef { secret: secret("api") }),
        ("DB_", &Rule::EnvFromSecret { secret: secret("db") }),
        ("", &Rule::EnvFromSecret { secret: secret("bulk") }),
    ]);
    assert!(app[1..].iter().all(|f| f.rule.level() == Strict));
    // LOG_LEVEL and the configMapRef are not findings; the other containers' literals still are.
    assert_eq!(found.len(), 6);
}

#[test]
fn allowed_variables_are_exempted_not_dropped() {
    let allowed = parse_allowed(Some(&"DB_PASSWORD, API_TOKEN;X\n\tY ".to_string()));
    assert_eq!(allowed, ["DB_PASSWORD", "API_TOKEN", "X", "Y"]);
    assert!(parse_allowed(None).is_empty());
    assert!(parse_allowed(Some(&" ,; ".to_string())).is_empty());

    let (found, exempted) = check_spec(&mixed_spec(), Strict, &allowed);
    let names = |fs: &[Finding]| fs.iter().map(|f| f.variable.clone()).collect::<Vec<_>>();
    assert_eq!(names(&exempted), ["DB_PASSWORD", "API_TOKEN"]);
    assert_eq!(
        names(&found),
        ["ADMIN_PASSWORD", "DB_", "", "CLIENT_SECRET"]
    );
}

#[test]
fn enforce_denial_says_where_and_how_to_fix_every_finding() {
    let report = report(Levels::only(Mode::Enforce, Baseline), &mixed_spec(), &[]);
    let denial = report.denial.expect("denied");
    assert!(denial.starts_with(OBJECT), "{denial}");
    assert_mentions(&denial, &["(runsecrets policy baseline)"]);
    for (kind, variable) in [
        ("initContainer \"migrate\"", "ADMIN_PASSWORD"),
        ("container \"app\"", "DB_PASSWORD"),
        ("ephemeralContainer \"debugger\"", "CLIENT_SECRET"),
    ] {
        let fix = format!("{variable}_FILE=/run/secrets/{}", variable.to_lowercase());
        let line = denial.lines().find(|l| l.contains(kind)).expect(kind);
        assert_mentions(line, &[&format!("env {variable} "), &fix]);
    }
    assert_eq!(denial.lines().count(), 4, "{denial}");
    assert!(report.warnings.is_empty() && report.audit.is_empty());
}

/// A `_FILE` variable holding a value instead of a path is already named the right way: the
/// fix is to point it at the file, not to add `DB_PASSWORD_FILE_FILE`.
#[test]
fn a_file_variable_holding_a_value_is_told_to_hold_the_path() {
    let spec = pod(vec![container(
        "app",
        vec![literal("DB_PASSWORD_FILE", "hunter2")],
        vec![],
    )]);
    let both = Levels {
        enforce: Baseline,
        warn: Baseline,
        audit: Off,
    };
    let found = report(both, &spec, &[]);
    let denial = found.denial.expect("denied");
    assert_mentions(
        &denial,
        &["container \"app\": env DB_PASSWORD_FILE holds a literal credential (name contains \"PASSWORD\" \
           and its value is not a path); fix: set DB_PASSWORD_FILE=/run/secrets/db_password and add \
           db_password to runsecrets.io/secrets"],
    );
    assert_omits(&denial, &["_FILE_FILE", "hunter2"]);
    // Over kubectl's 120 characters with the fix, so the warning keeps only the finding.
    assert_eq!(
        found.warnings,
        ["runsecrets: container \"app\" env DB_PASSWORD_FILE: name contains \"PASSWORD\" and its \
          value is not a path"]
    );
    let short = pod(vec![container(
        "a",
        vec![literal("PASS_FILE", "x")],
        vec![],
    )]);
    let warned = report(Levels::only(Mode::Warn, Baseline), &short, &[]);
    assert_eq!(
        warned.warnings,
        ["runsecrets: container \"a\" env PASS_FILE: name contains \"PASSWORD\" and its value is not a \
          path; point it at /run/secrets"]
    );
}

#[test]
fn warn_and_audit_modes_report_without_denying() {
    let warned = report(Levels::only(Mode::Warn, Baseline), &mixed_spec(), &[]);
    assert_eq!((warned.denial.as_deref(), warned.warnings.len()), (None, 3));
    assert_mentions(
        &warned.warnings[1],
        &["container \"app\"", "env DB_PASSWORD"],
    );
    assert!(warned.audit.is_empty());

    let audited = report(Levels::only(Mode::Audit, Baseline), &mixed_spec(), &[]);
    assert!(audited.denial.is_none() && audited.warnings.is_empty());
    let violations = &audited.audit["audit-violations"];
    assert!(violations.starts_with("baseline: "), "{violations}");
    assert_mentions(violations, &["container app env DB_PASSWORD (name)"]);
    assert_eq!(audited.audit.len(), 1);

    let clean = report(levels(Strict, Strict, Strict), &pod(vec![]), &[]);
    assert_eq!(clean, Report::default());
}

#[test]
fn exemptions_are_recorded_for_audit() {
    let enforce = Levels::only(Mode::Enforce, Baseline);
    let report = report(enforce, &mixed_spec(), &["DB_PASSWORD"]);
    let denial = report.denial.expect("the other findings are still denied");
    assert_omits(&denial, &["DB_PASSWORD"]);
    assert_mentions(
        &report.audit["exempted-env"],
        &["container app env DB_PASSWORD"],
    );
    assert!(!report.audit.contains_key("audit-violations"));
}

#[test]
fn each_mode_reports_only_what_its_own_level_covers() {
    let report = report(levels(Baseline, Strict, Off), &mixed_spec(), &[]);
    let denial = report.denial.expect("literal credentials are denied");
    assert_mentions(&denial, &["DB_PASSWORD"]);
    assert_omits(&denial, &["API_TOKEN", "secretKeyRef", "envFrom"]);
    let warnings = &report.warnings;
    assert_eq!(warnings.len(), 6, "{warnings:?}");
    let token = warnings.iter().find(|w| w.contains("API_TOKEN"));
    assert_mentions(token.expect("warned"), &["Secret \"api\""]);
    assert!(warnings.iter().any(|w| w.contains("envFrom Secret \"db\"")));
    assert!(report.audit.is_empty());
}

#[test]
fn warnings_fit_the_apiserver_limit_with_long_names() {
    let long_variable = format!("{}_PASSWORD", "V".repeat(191));
    assert_eq!(long_variable.len(), 200);
    let env = vec![
        literal(&long_variable, VALUE),
        from_secret(&long_variable, &"s".repeat(200)),
    ];
    let env_from = vec![env_from_secret(&"e".repeat(200), Some(&long_variable))];
    let spec = pod(vec![container(&"c".repeat(200), env, env_from)]);
    let warned = report(Levels::only(Mode::Warn, Strict), &spec, &[]);
    assert_eq!(warned.warnings.len(), 3);
    for w in &warned.warnings {
        let n = w.chars().count();
        assert!(n <= WARNING_MAX, "{n} chars: {w}");
        assert!(w.starts_with("runsecrets: container \"ccc"), "{w}");
    }
    // The denial has no length limit, and suggests a placeholder for an invalid secret name.
    let denial = report(Levels::only(Mode::Enforce, Baseline), &spec, &[]).denial;
    let fix = format!("{long_variable}_FILE=/run/secrets/NAME");
    assert_mentions(&denial.expect("denied"), &[&fix]);
}

#[test]
fn values_never_appear_in_any_message() {
    let values = [
        VALUE,
        "AKIAIOSFODNN7EXAMPLE",
        "postgres://app:hunter2-Pass-789@db:5432/app",
        "ghp_EXAMPLEexampleEXAMPLEexample01234567",
    ];
    let env = vec![
        literal("DB_PASSWORD", values[0]),
        literal("KEY_ONE", values[1]),
        literal("DATABASE_URL", values[2]),
        literal("GH", values[3]),
    ];
    let spec = pod(vec![container("app", env, vec![])]);
    let strict = levels(Strict, Strict, Strict);
    let report = report(strict, &spec, &["DATABASE_URL", "GH"]);
    assert_eq!(report.warnings.len(), 2);
    let audit = report.audit.values();
    let text = [report.denial.clone().unwrap_or_default()]
        .into_iter()
        .chain(report.warnings.iter().chain(audit).cloned())
        .collect::<Vec<_>>()
        .join("\n");
    assert_mentions(
        &text,
        &["env KEY_ONE", "env DB_PASSWORD", "env DATABASE_URL (url-"],
    );
    assert_mentions(&text, &["env GH (github-token)"]);
    assert_omits(&text, &values);
    assert_omits(&text, &["hunter2", "s3cr3t", "IOSFODNN", "EXAMPLEexample"]);
}

#[test]
fn long_audit_lists_are_cut_after_twenty() {
    let name = |i| format!("P{i:02}_PASSWORD");
    let env = (1..=25).map(|i| literal(&name(i), VALUE)).collect();
    let spec = pod(vec![container("app", env, vec![])]);
    let report = report(Levels::only(Mode::Audit, Baseline), &spec, &[]);
    let violations = &report.audit["audit-violations"];
    assert!(violations.ends_with(", and 5 more"), "{violations}");
    assert_mentions(violations, &["P01_PASSWORD", "P20_PASSWORD"]);
    assert_omits(violations, &["P21_PASSWORD", "P25_PASSWORD"]);
}
