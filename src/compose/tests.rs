//! Unit tests of the Compose loader: interpolation, `.env`, YAML positions/anchors/tags, the
//! merge rules, `mode`, and a property test that no input panics the loader; `once`: each
//! file a conversion needs is read once.

mod once;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;

use super::dotenv::{self, Lookup};
use super::interpolate::{expand, TemplateError};
use super::merge::merge;
use super::mode::{self, Mode, ModeError};
use super::yaml::{self, Kind, Node, Tag};
use super::Environment;

fn env(vars: &[(&str, &str)]) -> Environment {
    Environment::from_map(
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn sub(template: &str, vars: &[(&str, &str)]) -> Result<String, TemplateError> {
    expand(template, &env(vars), &mut BTreeSet::new()).map(|e| e.text)
}

#[test]
fn interpolation_operators() {
    let set = [("A", "a"), ("EMPTY", "")];
    let cases: &[(&str, &str)] = &[
        ("$A", "a"),
        ("${A}", "a"),
        ("x${A}y$A.z", "xaya.z"),
        ("${A:-d}", "a"),
        ("${EMPTY:-d}", "d"),
        ("${UNSET:-d}", "d"),
        ("${A-d}", "a"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${UNSET:+alt}", ""),
        ("${A+alt}", "alt"),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${A:?err}", "a"),
        ("${EMPTY?err}", ""),
        ("$$A", "$A"),
        ("$${A}", "${A}"),
        ("cost $5 and $", "cost $5 and $"),
        ("${UNSET:-${A}}", "a"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${UNSET:-x${A}y}-tail", "xay-tail"),
        ("${UNSET:-{braces}}", "{braces}"),
        ("${A:+${UNSET:-z}}", "z"),
        ("$UNSET", ""),
        ("${a_1}", ""),
    ];
    for (template, want) in cases {
        assert_eq!(sub(template, &set).as_deref(), Ok(*want), "{template}");
    }
}

#[test]
fn interpolation_errors_and_unset_names() {
    let set = [("EMPTY", "")];
    let required = |name: &str, message: &str| {
        Err(TemplateError::Required {
            name: name.into(),
            message: message.into(),
        })
    };
    assert_eq!(sub("${UNSET:?set it}", &set), required("UNSET", "set it"));
    assert_eq!(
        sub("${EMPTY:?no empty}", &set),
        required("EMPTY", "no empty")
    );
    assert_eq!(sub("${UNSET?}", &set), required("UNSET", ""));
    // The message as written: no variable's value reaches an error.
    let with_secret = [("P", "hunter2")];
    assert_eq!(
        sub("${UNSET?need ${P:-x}}", &with_secret),
        required("UNSET", "need ${P:-x}")
    );
    let deep = format!("{}x{}", "${A:-".repeat(10_000), "}".repeat(10_000));
    assert_eq!(
        sub(&deep, &set),
        Err(TemplateError::Invalid),
        "nesting bounded"
    );
    let fine = format!("{}x{}", "${A:-".repeat(30), "}".repeat(30));
    assert_eq!(sub(&fine, &set).as_deref(), Ok("x"));
    for bad in ["${}", "${1A}", "${A", "${A:x}", "${A/b}", "${ A}", "x${-}"] {
        assert_eq!(sub(bad, &set), Err(TemplateError::Invalid), "{bad}");
    }
    let mut unset = BTreeSet::new();
    expand("$X ${Y:-d} ${Z}", &env(&[]), &mut unset).expect("expands");
    assert_eq!(unset.into_iter().collect::<Vec<_>>(), ["X", "Z"]);
}

#[test]
fn interpolation_marks_values_from_variables() {
    let e = env(&[("P", "secret"), ("EMPTY", "")]);
    let mut unset = BTreeSet::new();
    assert!(expand("${P}", &e, &mut unset).expect("ok").from_vars);
    assert!(!expand("${EMPTY}lit", &e, &mut unset).expect("ok").from_vars);
    assert!(!expand("$$P", &e, &mut unset).expect("ok").from_vars);
}

#[test]
fn dotenv_format() {
    let text = "\u{feff}# comment\nA=1\nexport B = two words # trailing\nC: colon\nD='single $A'\nE=\"dq \\\"q\\\" ${A}\\n$$x\"\nF=\"multi\nline\"\nINHERITED\nG=${A}-${SHELL_ONLY}\n";
    let entries = dotenv::parse(
        text,
        Lookup::Vars(&env(&[("INHERITED", "from-shell"), ("SHELL_ONLY", "s")])),
    )
    .expect("parses");
    let got: BTreeMap<&str, (&str, usize)> = entries
        .iter()
        .map(|e| (e.name.as_str(), (e.value.as_str(), e.line)))
        .collect();
    assert_eq!(got["A"], ("1", 2));
    assert_eq!(got["B"], ("two words", 3));
    assert_eq!(got["C"], ("colon", 4));
    assert_eq!(got["D"], ("single $A", 5));
    assert_eq!(got["E"], ("dq \"q\" 1\n$x", 6));
    assert_eq!(got["F"], ("multi\nline", 7));
    assert_eq!(got["INHERITED"], ("from-shell", 9));
    assert_eq!(got["G"], ("1-s", 10));
    let bad = dotenv::parse("OK=1\nBAD KEY=x\n", Lookup::AsWritten).expect_err("refused");
    assert_eq!(bad.line, 2);
    let open = dotenv::parse("A=1\nB=\"never closed\n", Lookup::AsWritten).expect_err("refused");
    assert_eq!(
        (open.line, open.problem.as_str()),
        (2, "unterminated quoted value")
    );
}

/// `scan` reads env files without the shell: a required variable that is not set is kept as
/// written instead of stopping the file, and marked as coming from a variable.
#[test]
fn dotenv_as_written_keeps_templates_and_marks_them() {
    let text = "HOST=${DB_HOST:?set DB_HOST}\nQ=\"a ${B?b}\"\nLIT=plain\nS='${x}'\nBARE\n";
    let entries = dotenv::parse(text, Lookup::AsWritten).expect("parses");
    let got: Vec<(&str, &str, bool)> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str(), e.from_vars))
        .collect();
    assert_eq!(
        got,
        [
            ("HOST", "${DB_HOST:?set DB_HOST}", true),
            ("Q", "a ${B?b}", true),
            ("LIT", "plain", false),
            ("S", "${x}", false),
        ]
    );
    let required = dotenv::parse(text, Lookup::Vars(&env(&[]))).expect_err("required");
    assert_eq!(required.line, 1);
}

fn parse(text: &str) -> Node {
    let mut docs = yaml::parse(&Arc::from("t.yaml"), text).expect("parses");
    docs.remove(0)
}

fn text(node: &Node, path: &[&str]) -> String {
    let mut n = node;
    for p in path {
        n = n.get(p).unwrap_or_else(|| panic!("no {p}"));
    }
    n.as_str().expect("scalar").to_string()
}

#[test]
fn yaml_positions_anchors_merge_keys_and_tags() {
    let doc = parse(
        "x-base: &base\n  image: a\n  env: &env {K: v}\nservices:\n  web:\n    <<: *base\n    image: b\n  db:\n    <<: [*base, {user: u, image: c}]\n    env: *env\n  r: !reset null\n  o: !override [1]\n",
    );
    assert_eq!(text(&doc, &["services", "web", "image"]), "b");
    assert_eq!(text(&doc, &["services", "db", "image"]), "a");
    assert_eq!(text(&doc, &["services", "db", "user"]), "u");
    assert_eq!(text(&doc, &["services", "db", "env", "K"]), "v");
    let web = doc.get("services").and_then(|s| s.get("web")).expect("web");
    assert_eq!(
        (web.pos.line, web.pos.to_string()),
        (6, "t.yaml:6".to_string())
    );
    let services = doc.get("services").expect("services");
    assert_eq!(services.get("r").map(|n| n.tag), Some(Tag::Reset));
    assert_eq!(services.get("o").map(|n| n.tag), Some(Tag::Override));
    let quoted = parse("a: \"0440\"\nb: 0440\nc: !!str 0440\n");
    let plain = |k: &str| match &quoted.get(k).expect(k).kind {
        Kind::Scalar(s) => s.plain,
        _ => panic!("scalar"),
    };
    assert_eq!((plain("a"), plain("b"), plain("c")), (false, true, false));
}

#[test]
fn yaml_refusals_name_the_line() {
    let cases = [
        ("a: 1\na: 2\n", 2, "defined twice"),
        ("a: [1, 2\n", 2, ""),
        ("? [a]\n: 1\n", 1, "mapping keys must be strings"),
        ("a: *nope\n", 1, ""),
        (
            "a: &x 1\nb:\n  <<: *x\n",
            3,
            "a << merge key needs a mapping",
        ),
    ];
    for (input, line, reason) in cases {
        let e = yaml::parse(&Arc::from("t.yaml"), input).expect_err(input);
        assert_eq!(e.pos.line, line, "{input}: {e}");
        assert!(e.reason.contains(reason), "{input}: {e}");
    }
    // A "billion laughs" document is refused instead of expanded.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let prev = format!("*a{}", i - 1);
        bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    let e = yaml::parse(&Arc::from("t.yaml"), &bomb).expect_err("bomb");
    assert!(e.reason.contains("too many nodes"), "{e}");
    let deep = "[".repeat(1000);
    assert!(yaml::parse(&Arc::from("t.yaml"), &deep).is_err());
}

fn merged(base: &str, over: &str) -> Node {
    let mut m = merge(parse(base), parse(over), &mut Vec::new()).expect("merges");
    super::merge::strip_resets(&mut m);
    m
}

fn secrets_of(n: &Node) -> Vec<String> {
    n.get("services")
        .and_then(|s| s.get("a"))
        .and_then(|a| a.get("secrets"))
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            s.as_str().map(str::to_string).unwrap_or_else(|| {
                format!(
                    "{}->{}",
                    text(s, &["source"]),
                    s.get("target").and_then(Node::as_str).unwrap_or("")
                )
            })
        })
        .collect()
}

#[test]
fn merge_rules() {
    let base = "services:\n  a:\n    image: x\n    command: [a, b]\n    environment: [K=1, L=2]\n    ports: ['80:80']\n    secrets: [s1, {source: s2, target: t}]\n    labels: {l: 1}\n";
    let m = merged(
        base,
        "services:\n  a:\n    image: y\n    command: [c]\n    environment: {L: 3, M: 4}\n    ports: ['81:81', '80:80']\n    secrets: [{source: s3, target: /run/secrets/t}, s4]\n    labels: !reset {}\n",
    );
    assert_eq!(text(&m, &["services", "a", "image"]), "y");
    let a = m.get("services").and_then(|s| s.get("a")).expect("a");
    let words: Vec<&str> = a
        .get("command")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(Node::as_str)
        .collect();
    assert_eq!(words, ["c"], "command is replaced, not appended");
    let envs: Vec<(String, String)> = a
        .get("environment")
        .and_then(Node::as_map)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| (k.name.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(
        envs,
        [
            ("K".into(), "1".into()),
            ("L".into(), "3".into()),
            ("M".into(), "4".into())
        ]
    );
    let ports: Vec<&str> = a
        .get("ports")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(Node::as_str)
        .collect();
    assert_eq!(ports, ["80:80", "81:81"]);
    // The relative target `t` and `/run/secrets/t` are one target: the override replaces it.
    assert_eq!(secrets_of(&m), ["s1", "s3->/run/secrets/t", "s4"]);
    assert!(a.get("labels").is_none(), "!reset removes the key");

    let o = merged(base, "services:\n  a:\n    secrets: !override [only]\n");
    assert_eq!(secrets_of(&o), ["only"]);
    let err = merge(
        parse(base),
        parse("services:\n  a:\n    secrets: {x: 1}\n"),
        &mut Vec::new(),
    )
    .expect_err("mismatch");
    assert!(err.to_string().starts_with("t.yaml:3:"), "{err}");
}

#[test]
fn modes_as_compose_reads_them() {
    let ok = |t: &str, plain: bool| mode::parse(t, plain).expect(t);
    assert_eq!(
        ok("0440", true),
        Mode {
            bits: 0o440,
            suspicious_decimal: false
        }
    );
    assert_eq!(ok("0o440", true).bits, 0o440);
    assert_eq!(ok("0x1a0", true).bits, 0o640);
    assert_eq!(
        ok("288", true),
        Mode {
            bits: 288,
            suspicious_decimal: false
        }
    );
    assert_eq!(
        ok("440", true),
        Mode {
            bits: 440,
            suspicious_decimal: true
        }
    );
    assert_eq!(ok("400", true).bits, 0o620, "swarmkit#3190: 400 is 0620");
    assert_eq!(ok("0", true).bits, 0);
    assert_eq!(ok("\"440\"".trim_matches('"'), false).bits, 0o440);
    assert_eq!(ok("0440", false).bits, 0o440);
    assert_eq!(ok("0o400", false).bits, 0o400);
    assert_eq!(mode::parse("1000", true), Err(ModeError::OutOfRange(1000)));
    assert_eq!(
        mode::parse("01000", true),
        Err(ModeError::OutOfRange(0o1000))
    );
    assert_eq!(mode::parse("-1", true), Err(ModeError::OutOfRange(-1)));
    for bad in ["0999", "abc", "", "4.4"] {
        assert_eq!(mode::parse(bad, true), Err(ModeError::NotANumber), "{bad}");
    }
    assert_eq!(mode::parse("0x1a", false), Err(ModeError::NotANumber));
    assert_eq!(mode::effective(0o670), 0o450);
    assert_eq!(mode::effective(0o777), 0o555);
}

#[test]
fn project_names_follow_compose() {
    assert_eq!(
        super::model::normalise_project_name("My App_1.x"),
        "myapp_1x"
    );
    assert_eq!(super::model::normalise_project_name("-_x"), "x");
}

#[test]
fn shell_words_split_like_compose() {
    use super::syntax::shell_words;
    assert_eq!(
        shell_words("echo 'a b' \"c \\\"d\\\"\" e\\ f").expect("ok"),
        ["echo", "a b", "c \"d\"", "e f"]
    );
    assert_eq!(shell_words("''").expect("ok"), [""]);
    assert!(shell_words("echo 'open").is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn loader_never_panics_on_text(input in "\\PC{0,300}") {
        let _ = yaml::parse(&Arc::from("p.yaml"), &input);
        let _ = dotenv::parse(&input, Lookup::Vars(&Environment::default()));
        let _ = expand(&input, &env(&[("A", "1")]), &mut BTreeSet::new());
        let _ = super::scan::looks_like_compose(&input);
    }

    #[test]
    fn loader_never_panics_on_compose_shapes(
        keys in proptest::collection::vec(prop_oneof![
            Just("services"), Just("secrets"), Just("image"), Just("environment"), Just("mode"),
            Just("<<"), Just("source"), Just("target"), Just("uid"), Just("extends"), Just("x-a"),
            Just("include"), Just("profiles"), Just("file"), Just("external"), Just("ports"),
        ], 1..12),
        values in proptest::collection::vec(prop_oneof![
            Just("0440"), Just("\"${A:-x}\""), Just("&a {k: v}"), Just("*a"), Just("!reset []"),
            Just("[a, {source: b, mode: 999}]"), Just("{file: ./x}"), Just("null"), Just("${"),
            Just("- a\n- b"), Just("!override {x: 1}"), Just("true"), Just("'8080:80'"),
        ], 1..12),
        depth in 0usize..4,
    ) {
        let mut text = String::new();
        for (i, (k, v)) in keys.iter().zip(values.iter().cycle()).enumerate() {
            let indent = "  ".repeat(i % (depth + 1));
            text.push_str(&format!("{indent}{k}: {v}\n"));
        }
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, &text).expect("write");
        let opts = super::Options {
            files: vec![file],
            cwd: dir.path().to_path_buf(),
            os_env: env(&[("A", "1")]),
            ..super::Options::default()
        };
        let keys = || Ok(crate::seal::Keyring::generate().public_keys()?);
        let _ = super::convert(&opts, &keys);
        let _ = super::scan::scan_file(&dir.path().join("compose.yaml"), &text);
    }
}

#[test]
fn durations_too_long_to_count_saturate_instead_of_overflowing() {
    let doc = parse("a: 99999999999999999999h\nb: 1m30s\nc: 1ms\n");
    let seconds =
        |key: &str| super::syntax::seconds(doc.get(key).expect("key")).expect("a duration");
    assert_eq!(seconds("a"), i64::MAX / 1000);
    assert_eq!(seconds("b"), 90);
    assert_eq!(seconds("c"), 1);
}
