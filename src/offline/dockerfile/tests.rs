use super::*;
use crate::policy::detect::ValueKind;

fn word(src: &str) -> (String, bool) {
    let w = words::shell_word(src, '\\');
    (w.text, w.literal)
}

/// (instruction, variable, value text) of every declaration.
fn declared(text: &str) -> Vec<(String, String, Option<String>)> {
    declarations(text)
        .into_iter()
        .flat_map(|d| {
            let instruction = d.instruction;
            d.variables
                .into_iter()
                .map(move |v| (instruction.clone(), v.name, v.value.map(|w| w.text)))
        })
        .collect()
}

fn owned(rows: &[(&str, &str, Option<&str>)]) -> Vec<(String, String, Option<String>)> {
    rows.iter()
        .map(|(i, n, v)| (i.to_string(), n.to_string(), v.map(str::to_string)))
        .collect()
}

/// (line, variable) of every finding.
fn found(text: &str) -> Vec<(usize, String)> {
    findings(text)
        .into_iter()
        .map(|f| (f.line, f.variable))
        .collect()
}

#[test]
fn words_split_on_unquoted_whitespace_and_keep_quotes() {
    let split = |s| words::split(s, '\\');
    assert_eq!(
        split(r#"a=1 b="x y" c='p q'"#),
        [r#"a=1"#, r#"b="x y""#, "c='p q'"]
    );
    assert_eq!(split(r"a\ b c"), [r"a\ b", "c"]);
    assert_eq!(split(r#"k="" z"#), [r#"k="""#, "z"]);
    assert_eq!(split("\"\""), ["\"\""]);
    assert_eq!(split("  "), Vec::<String>::new());
    assert_eq!(words::split("a`\tb c", '`'), ["a`\tb", "c"]);
}

#[test]
fn shell_words_lose_quotes_and_escapes_as_buildkit_reads_them() {
    assert_eq!(word(r#""v 2""#), ("v 2".into(), true));
    assert_eq!(word(r"'a\b'"), (r"a\b".into(), true));
    assert_eq!(word(r#""a\"b\$c\\d\e""#), (r#"a"b$c\d\e"#.into(), true));
    assert_eq!(word(r"a\ b\$c"), ("a b$c".into(), true));
    assert_eq!(word(r#"x"y"'z'"#), ("xyz".into(), true));
    assert_eq!(word("\"\""), (String::new(), false));
    // Backtick escape: the backslash is an ordinary character.
    let w = words::shell_word(r"C:\dir` x`$y", '`');
    assert_eq!(w.text, r"C:\dir x$y");
}

#[test]
fn references_become_markers_and_defaults_are_literal() {
    assert_eq!(word("$TOKEN"), ("$(TOKEN)".into(), false));
    assert_eq!(word("${TOKEN}"), ("$(TOKEN)".into(), false));
    assert_eq!(word("\"$A${B}\""), ("$(A)$(B)".into(), false));
    assert_eq!(word("Bearer ${T}"), ("Bearer $(T)".into(), true));
    assert_eq!(word("${T:-dev-token}"), ("dev-token".into(), true));
    assert_eq!(word("${T-x}${U:+y}"), ("xy".into(), true));
    assert_eq!(word("${T:-}"), (String::new(), false));
    assert_eq!(word("${T:?missing value}"), ("$(T)".into(), false));
    assert_eq!(
        word("${T#prefix}${U%%.*}${V/a/b}"),
        ("$(T)$(U)$(V)".into(), false)
    );
    assert_eq!(word("${A:-${B:-z}}"), ("z".into(), true));
    assert_eq!(word("$1$@"), ("$(1)$(@)".into(), false));
    // A lone dollar, or `${` that BuildKit refuses, is literal text.
    assert_eq!(word("cost: $"), ("cost: $".into(), true));
    assert_eq!(word("${"), ("${".into(), true));
    assert_eq!(word("'$T'"), ("$T".into(), true));
}

#[test]
fn heredoc_names_are_one_unquoted_word() {
    assert_eq!(words::plain_word("EOF").as_deref(), Some("EOF"));
    assert_eq!(words::plain_word("\"EOF\"").as_deref(), Some("EOF"));
    assert_eq!(words::plain_word("'E O F'").as_deref(), Some("E O F"));
    assert_eq!(words::plain_word("E\\OF").as_deref(), Some("EOF"));
    assert_eq!(words::plain_word("A B"), None);
    assert_eq!(words::plain_word(""), None);
}

#[test]
fn env_and_arg_forms() {
    let text = "FROM x\n\
        ENV A=1 B=\"two words\" C='three'\n\
        ENV LEGACY value with  spaces\n\
        ENV QUOTED \"x y\"\n\
        ARG PLAIN\n\
        ARG D=4 E F=\"\"\n\
        env lower=case\n";
    let want = owned(&[
        ("ENV", "A", Some("1")),
        ("ENV", "B", Some("two words")),
        ("ENV", "C", Some("three")),
        ("ENV", "LEGACY", Some("value with  spaces")),
        ("ENV", "QUOTED", Some("x y")),
        ("ARG", "PLAIN", None),
        ("ARG", "D", Some("4")),
        ("ARG", "E", None),
        ("ARG", "F", Some("")),
        ("ENV", "lower", Some("case")),
    ]);
    assert_eq!(declared(text), want);
}

#[test]
fn continuations_join_lines_and_skip_comments_and_blank_lines() {
    let text = "FROM x\n\
        ENV A=1 \\\n\
        \x20   # a comment inside the instruction\n\
        \n\
        \x20   B=2 \\   \n\
        \x20   C=3\n\
        ENV D=4\n";
    let lines = lines::read(text);
    let starts: Vec<usize> = lines.instructions.iter().map(|l| l.line).collect();
    assert_eq!(starts, [1, 2, 7]);
    let names: Vec<String> = declared(text).into_iter().map(|(_, n, _)| n).collect();
    assert_eq!(names, ["A", "B", "C", "D"]);
}

#[test]
fn escape_directive_switches_to_backtick() {
    let text = "# escape=`\nFROM mcr.microsoft.com/windows\nENV DIR=C:\\tools `\n    TOKEN=abc\n";
    let lines = lines::read(text);
    assert_eq!(lines.escape, '`');
    assert_eq!(
        declared(text),
        owned(&[
            ("ENV", "DIR", Some("C:\\tools")),
            ("ENV", "TOKEN", Some("abc"))
        ])
    );
    // After any other line the directive is a comment; a backslash continues again.
    let late = "FROM x\n# escape=`\nENV A=1 \\\n B=2\n";
    assert_eq!(lines::read(late).escape, '\\');
    assert_eq!(declared(late).len(), 2);
    let after_blank = "\n# escape=`\nFROM x\n";
    assert_eq!(lines::read(after_blank).escape, '\\');
    let after_syntax = "# syntax=docker/dockerfile:1\n#escape = `\nFROM x\n";
    assert_eq!(lines::read(after_syntax).escape, '`');
}

#[test]
fn heredoc_bodies_are_not_instructions() {
    let text = "FROM x\n\
        RUN <<EOF\n\
        ENV INSIDE=ghp_EXAMPLEexampleEXAMPLEexample01234567\n\
        EOF\n\
        COPY <<-\"CONF\" /etc/app.conf\n\
        \tARG ALSO_INSIDE\n\
        \tCONF\n\
        RUN <<A cat > /a && <<'B' cat > /b\n\
        ENV NOT_AN_INSTRUCTION=1\n\
        A\n\
        ARG STILL_INSIDE\n\
        B\n\
        ENV AFTER=1\n";
    assert_eq!(declared(text), owned(&[("ENV", "AFTER", Some("1"))]));
    assert_eq!(found(text), []);
    // ENV and exec form open no heredoc; a quoted `<<` is not one either.
    let not_heredocs =
        "FROM x\nENV A=<<EOF\nRUN [\"sh\", \"<<EOF\"]\nRUN echo \"<<EOF\"\nENV B=1\n";
    let names: Vec<String> = declared(not_heredocs)
        .into_iter()
        .map(|(_, n, _)| n)
        .collect();
    assert_eq!(names, ["A", "B"]);
    // ONBUILD RUN opens one too; an unterminated heredoc runs to the end of the file.
    let onbuild = "FROM x\nONBUILD RUN <<EOF\nENV X=1\nEOF\nRUN <<END\nENV Y=2\n";
    assert_eq!(declared(onbuild), []);
}

#[test]
fn stages_and_onbuild_are_tracked() {
    let text = "ARG GLOBAL_TOKEN\n\
        FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n\
        ARG GITHUB_TOKEN\n\
        FROM alpine\n\
        ONBUILD ENV API_KEY=dev-key-0001\n\
        FROM build as final\n\
        ENV DB_PASSWORD=hunter2-S3cret\n";
    let f = findings(text);
    let at: Vec<(usize, Option<String>, &str, &str)> = f
        .iter()
        .map(|f| {
            (
                f.line,
                f.stage.as_ref().map(Stage::label),
                f.instruction.as_str(),
                f.variable.as_str(),
            )
        })
        .collect();
    assert_eq!(
        at,
        [
            (1, None, "ARG", "GLOBAL_TOKEN"),
            (3, Some("build".into()), "ARG", "GITHUB_TOKEN"),
            (5, Some("1".into()), "ONBUILD ENV", "API_KEY"),
            (7, Some("final".into()), "ENV", "DB_PASSWORD"),
        ]
    );
}

#[test]
fn judged_by_name_and_by_value_with_the_webhook_detector() {
    let text = "FROM x\n\
        ENV NPM_TOKEN=${NPM_TOKEN}\n\
        ENV SLACK=https://hooks.slack.com/services/T000/B000/XXXX\n\
        ENV DATABASE_URL=postgres://app:hunter2@db/app\n\
        ENV SAFE_URL=postgres://app:${DB_PASS}@db/app\n\
        ENV PASSWORD_FILE=/run/secrets/db MYSQL_ROOT_PASSWORD_FILE=/run/secrets/root\n\
        ENV REQUIRE_PASSWORD=true\n\
        ENV GITHUB_TOKEN=\"\"\n\
        ARG CI_JOB_TOKEN=\n\
        ARG SIGNING_KEY\n\
        ENV PATH=/usr/local/bin:$PATH NODE_ENV=production VERSION=1.2.3\n\
        ENV GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D\n\
        ARG PUBLIC_KEY\n";
    let reasons: Vec<(String, Reason)> = findings(text)
        .into_iter()
        .map(|f| (f.variable, f.reason))
        .collect();
    let want = [
        ("NPM_TOKEN", Reason::Name("TOKEN")),
        ("SLACK", Reason::Value(ValueKind::SlackToken)),
        ("DATABASE_URL", Reason::Value(ValueKind::UrlPassword)),
        ("CI_JOB_TOKEN", Reason::Name("TOKEN")),
        ("SIGNING_KEY", Reason::Name("SIGNING KEY")),
    ];
    let want: Vec<(String, Reason)> = want.iter().map(|(n, r)| (n.to_string(), *r)).collect();
    assert_eq!(reasons, want);
}

#[test]
fn lines_are_counted_with_crlf_bom_and_comments() {
    let text = "\u{feff}# comment\r\nFROM x\r\n\r\n# ENV COMMENTED_TOKEN=abc\r\n  ENV API_TOKEN=abc \\\r\n  OTHER=1\r\nENV SECRET=s\r\n";
    assert_eq!(
        found(text),
        [(5, "API_TOKEN".to_string()), (7, "SECRET".to_string())]
    );
}

#[test]
fn flags_before_arguments_are_skipped() {
    assert_eq!(
        split_command("COPY --from=build --chmod=0644 a b"),
        ("COPY", "a b")
    );
    assert_eq!(
        split_command("RUN --mount=type=secret,id=\"a b\" -- echo"),
        ("RUN", "echo")
    );
    assert_eq!(split_command("  ENV\tA=1 "), ("ENV", "A=1"));
    assert_eq!(split_command("HEALTHCHECK"), ("HEALTHCHECK", ""));
}

#[test]
fn deep_nesting_is_bounded() {
    let deep = "${A:-".repeat(10_000) + &"}".repeat(10_000);
    let w = words::shell_word(&deep, '\\');
    assert!(w.text.len() < deep.len());
    let text = format!("FROM x\nENV TOKEN={deep}\n");
    assert_eq!(found(&text), [(2, "TOKEN".to_string())]);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Dockerfile-ish text: instruction keywords, quotes, escapes, `$`, heredoc markers and
    /// line breaks, so the interesting paths are hit far more often than by random text.
    fn dockerfile_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("FROM ".to_string()),
            Just("ENV ".to_string()),
            Just("ARG ".to_string()),
            Just("RUN <<".to_string()),
            Just("ONBUILD ".to_string()),
            Just("# escape=`\n".to_string()),
            Just("\\\n".to_string()),
            Just("`\n".to_string()),
            Just("\n".to_string()),
            Just("EOF".to_string()),
            Just("${".to_string()),
            Just("}".to_string()),
            Just(":-".to_string()),
            Just("=".to_string()),
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("\t".to_string()),
            "[A-Z_]{1,8}",
            "\\PC{0,6}",
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..60).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(crate::corpus::config(512))]

        #[test]
        fn reader_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
            let _ = findings(&text);
        }

        #[test]
        fn reader_never_panics_on_dockerfile_shaped_text(text in dockerfile_text()) {
            let f = findings(&text);
            let lines = text.split('\n').count();
            for finding in &f {
                prop_assert!(finding.line >= 1 && finding.line <= lines);
            }
        }
    }
}
