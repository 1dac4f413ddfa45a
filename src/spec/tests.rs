use super::*;

fn one(value: &str) -> SecretRef {
    let refs = parse_secrets(value).expect("valid");
    assert_eq!(refs.len(), 1, "{refs:?}");
    refs.into_iter().next().expect("one")
}

fn problems(value: &str) -> Vec<String> {
    parse_secrets(value)
        .expect_err("invalid")
        .0
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn short_syntax_takes_compose_defaults() {
    let r = one("mysql_root_password");
    assert_eq!(r.source, "mysql_root_password");
    assert_eq!(r.target, Target::InVolume("mysql_root_password".into()));
    assert_eq!((r.uid, r.gid, r.mode), (0, 0, 0o444));
    assert_eq!(
        r.target.container_path(),
        "/run/secrets/mysql_root_password"
    );
}

#[test]
fn long_syntax_with_src_alias_relative_and_absolute_targets() {
    let refs = parse_secrets(
        "mysql_root_password\nsource=tls_key,target=tls/key.pem,uid=999,gid=999,mode=0400\n\
         src=api_token,target=/etc/app/token,mode=0440\n",
    )
    .expect("valid");
    assert_eq!(refs.len(), 3);
    assert_eq!(refs[1].target.container_path(), "/run/secrets/tls/key.pem");
    assert_eq!((refs[1].uid, refs[1].gid, refs[1].mode), (999, 999, 0o400));
    assert_eq!(refs[2].target, Target::External("/etc/app/token".into()));
    assert_eq!(refs[2].target.volume_path(), ".external/etc/app/token");
    assert_eq!(refs[2].mode, 0o440);
}

#[test]
fn semicolons_spaces_and_blank_lines_separate_entries() {
    let refs = parse_secrets(" a ; b\n\n;source = c , target = x/y ;").expect("valid");
    let names: Vec<_> = refs.iter().map(|r| r.source.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(refs[2].target.as_written(), "x/y");
}

#[test]
fn absolute_target_under_run_secrets_is_in_the_volume() {
    let r = one("source=a,target=/run/secrets/db/pass");
    assert_eq!(r.target, Target::InVolume("db/pass".into()));
}

#[test]
fn var_run_secrets_is_the_same_place_as_run_secrets() {
    let r = one("source=a,target=/var/run/secrets/db/pass");
    assert_eq!(r.target, Target::InVolume("db/pass".into()));
    let p = problems("source=a,target=/var/run/secrets/x;source=b,target=x");
    assert!(p[0].contains("declared twice"), "{p:?}");
}

#[test]
fn errors_never_quote_what_may_be_a_pasted_value() {
    for value in [
        "DB_PASSWORD=hunter2-S3cret",
        "source=db,hunter2-S3cret",
        "hunter2-S3cret!",
        "source=db,uid=hunter2-S3cret",
        "source=db,mode=hunter2-S3cret",
        "source=db,hunter2-S3cret=x",
    ] {
        let p = problems(value).join(" ");
        assert!(!p.contains("hunter2"), "{value}: {p}");
    }
}

#[test]
fn writable_bits_are_ignored() {
    assert_eq!(one("source=a,mode=0666").mode, 0o444);
    assert_eq!(one("source=a,mode=0700").mode, 0o500);
    assert_eq!(one("source=a,mode=0").mode, 0);
}

#[test]
fn canonical_form_round_trips() {
    let refs = parse_secrets("a;source=b,target=/etc/b,uid=1,gid=2,mode=400").expect("valid");
    let canonical = canonical_list(&refs);
    assert_eq!(
        canonical,
        "source=a,target=a,uid=0,gid=0,mode=0444\nsource=b,target=/etc/b,uid=1,gid=2,mode=0400"
    );
    assert_eq!(parse_secrets(&canonical).expect("valid"), refs);
}

#[test]
fn the_bad_fixture_names_every_bad_entry() {
    let p = problems(
        "source=x,target=../../etc/passwd;source=,mode=9999;source=a,target=t;source=b,target=t;unknownkey=1",
    );
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(
        p[0].starts_with("entry 1 (source \"x\"): target \"../../etc/passwd\""),
        "{}",
        p[0]
    );
    assert!(p[1].starts_with("entry 2: missing source"), "{}", p[1]);
    assert!(
        p[2].starts_with("entry 4 (source \"b\"): target \"t\" is declared twice"),
        "{}",
        p[2]
    );
    assert!(
        p[3].starts_with("entry 5: unknown key \"unknownkey\""),
        "{}",
        p[3]
    );
}

#[test]
fn hostile_targets_are_refused() {
    for (target, needle) in [
        ("../x", "\"..\""),
        ("a/../../x", "\"..\""),
        ("a//b", "empty component"),
        ("a/", "empty component"),
        ("./a", "\".\""),
        ("..data/x", "reserved for atomic"),
        ("kubernetes.io/serviceaccount/token", "service-account"),
        ("kubernetes.io", "service-account"),
        ("kubernetes.io/token", "service-account"),
        ("/etc/..data/x", "reserved for atomic"),
        ("/var/run/secrets", "mount itself"),
        (".external/x", "absolute targets"),
        ("/run/secrets", "mount itself"),
        ("/run", "mount itself"),
        ("/proc/self/environ", "/proc"),
        (
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            "service-account",
        ),
        ("/", "empty component"),
    ] {
        let p = problems(&format!("source=s,target={target}"));
        assert!(p[0].contains(needle), "{target}: {p:?}");
    }
    let nul = problems("source=s,target=a\0b");
    assert!(nul[0].contains("control character"), "{nul:?}");
    let long = problems(&format!("source=s,target={}", "a/".repeat(600)));
    assert!(long[0].contains("longer than"), "{long:?}");
    let component = problems(&format!("source=s,target={}", "a".repeat(300)));
    assert!(component[0].contains("component longer"), "{component:?}");
}

#[test]
fn file_and_directory_collisions_are_refused() {
    let p = problems("source=a,target=x;source=b,target=x/y");
    assert!(p[0].contains("cannot also be a directory"), "{p:?}");
    let p = problems("source=a,target=/run/secrets/x;source=b,target=x");
    assert!(p[0].contains("declared twice"), "{p:?}");
}

#[test]
fn ids_and_modes_are_checked() {
    assert!(problems("source=a,uid=abc")[0].contains("not a numeric id"));
    assert!(problems("source=a,gid=-1")[0].contains("not a numeric id"));
    assert!(problems("source=a,uid=4294967296")[0].contains("out of range"));
    assert!(problems("source=a,mode=9999")[0].contains("octal"));
    assert!(problems("source=a,mode=1777")[0].contains("octal"));
    assert!(problems("source=a,mode=")[0].contains("octal"));
    assert!(problems("source=a,source=b")[0].contains("twice"));
    assert!(problems("source=a,target")[0].contains("not key=value"));
}

#[test]
fn names_follow_swarm_rules() {
    for bad in ["-a", "a-", "a b", "a/b", &"x".repeat(65), "ä"] {
        let p = problems(&format!("source={bad}"));
        assert!(p[0].contains("invalid secret name"), "{bad}: {p:?}");
    }
    assert_eq!(one(&"x".repeat(64)).source.len(), 64);
    assert_eq!(one("a.b-c_d").source, "a.b-c_d");
}

#[test]
fn empty_annotation_is_an_error() {
    assert!(problems(" \n ; ")[0].contains("declares no secret"));
}

#[test]
fn too_many_references_are_refused() {
    let many: Vec<String> = (0..=MAX_REFERENCES).map(|i| format!("s{i}")).collect();
    let p = problems(&many.join(";"));
    assert!(p.last().expect("one").contains("at most"), "{p:?}");
}

#[test]
fn containers_annotation_splits_on_commas_and_space() {
    assert_eq!(parse_containers("mysql,migrate"), ["mysql", "migrate"]);
    assert_eq!(parse_containers(" a, b\nc "), ["a", "b", "c"]);
    assert!(parse_containers("  ").is_empty());
}

#[test]
fn every_annotation_runsecrets_reads_has_the_prefix_reviews_keep() {
    for name in [
        SECRETS_ANNOTATION,
        CONTAINERS_ANNOTATION,
        INJECTED_ANNOTATION,
        ALLOW_ENV_ANNOTATION,
    ] {
        assert!(name.starts_with(ANNOTATION_PREFIX), "{name}");
    }
}
