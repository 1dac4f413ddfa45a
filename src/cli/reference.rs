//! The command-line reference (docs/cli.md), generated from the clap definitions so it cannot
//! drift from them: every subcommand with its usage and every flag with its environment
//! variable, default and possible values.
//!
//! Written here rather than with clap-markdown: that crate leaves out the environment
//! variables, and every flag of runsecrets is configured through one (the Helm chart sets them).

use std::fmt::Write;

use clap::{Arg, ArgAction, Command, CommandFactory};

use super::Cli;

/// The command that regenerates every generated file (the CRD, manifests/, docs/cli.md); the
/// tests that find one stale name it.
pub const REGENERATE: &str = "REGENERATE=1 cargo test --test it generated:: -- --include-ignored";

/// docs/cli.md.
pub fn markdown() -> String {
    let mut root = Cli::command();
    root.build();
    let mut out = format!(
        "# runsecrets command-line reference\n\n\
         Generated from the clap definitions in src/ by `{REGENERATE}`; do not edit.\n\
         Every flag can also be set through the environment variable shown; a flag given on the\n\
         command line wins.\n"
    );
    for (path, command) in commands(&root) {
        section(&mut out, &path, command, &root);
    }
    out
}

/// Every visible command, depth first, with its path from the root (`runsecrets secret ls`).
pub fn commands(root: &Command) -> Vec<(String, &Command)> {
    fn walk<'a>(path: String, command: &'a Command, out: &mut Vec<(String, &'a Command)>) {
        out.push((path.clone(), command));
        for sub in command.get_subcommands() {
            if !sub.is_hide_set() && sub.get_name() != "help" {
                walk(format!("{path} {}", sub.get_name()), sub, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root.get_name().to_string(), root, &mut out);
    out
}

/// The command's own flags: those inherited from a parent (global flags) are listed there.
pub fn own_flags<'a>(command: &'a Command, parent: Option<&Command>) -> Vec<&'a Arg> {
    command
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_hide_set())
        .filter(|a| !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
        .filter(|a| {
            let inherited =
                parent.is_some_and(|p| p.get_arguments().any(|b| b.get_id() == a.get_id()));
            !(a.is_global_set() && inherited)
        })
        .collect()
}

/// The command `path` names under `root` (its parent's path is the path minus the last word).
fn parent_of<'a>(root: &'a Command, path: &str) -> Option<&'a Command> {
    let mut words = path.split(' ').skip(1).collect::<Vec<_>>();
    words.pop()?;
    words
        .into_iter()
        .try_fold(root, |command, word| command.find_subcommand(word))
}

fn section(out: &mut String, path: &str, command: &Command, root: &Command) {
    let _ = write!(out, "\n## `{path}`\n\n");
    if let Some(about) = command.get_long_about().or(command.get_about()) {
        let _ = writeln!(out, "{}\n", sentences(&about.to_string()));
    }
    let usage = command.clone().render_usage().to_string();
    let usage = usage.trim().trim_start_matches("Usage:").trim();
    let _ = writeln!(out, "```\n{usage}\n```");
    let positionals: Vec<&Arg> = command
        .get_arguments()
        .filter(|a| a.is_positional() && !a.is_hide_set())
        .collect();
    if !positionals.is_empty() {
        let _ = write!(out, "\n| argument | |\n|---|---|\n");
        for arg in positionals {
            let names = arg
                .get_value_names()
                .map(|n| {
                    n.iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
            let _ = writeln!(out, "| `{}` | {} |", cell(&names), cell(&help(arg)));
        }
    }
    let parent = parent_of(root, path);
    let flags = own_flags(command, parent);
    if !flags.is_empty() {
        let _ = write!(out, "\n| flag | env | default | |\n|---|---|---|---|\n");
        for arg in flags {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&flag(arg)),
                arg.get_env()
                    .map(|e| format!("`{}`", e.to_string_lossy()))
                    .unwrap_or_default(),
                default(arg),
                cell(&help(arg))
            );
        }
    }
    if let Some(parent) = parent {
        if parent
            .get_arguments()
            .any(|a| a.is_global_set() && !is_builtin(a))
        {
            let parent_path = path.rsplit_once(' ').map_or(path, |(p, _)| p);
            let _ = write!(out, "\nThe flags of `{parent_path}` apply too.\n");
        }
    }
}

fn is_builtin(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Help | ArgAction::Version)
}

/// `-n, --namespace <NAMESPACE>`, or `--pretty` for a switch.
fn flag(arg: &Arg) -> String {
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("`-{short}`"));
    }
    if let Some(long) = arg.get_long() {
        let takes_value = matches!(arg.get_action(), ArgAction::Set | ArgAction::Append);
        let value = match arg.get_value_names() {
            Some(names) if takes_value => format!(" <{}>", names.join(" ")),
            _ if takes_value => format!(" <{}>", arg.get_id().as_str().to_uppercase()),
            _ => String::new(),
        };
        names.push(format!("`--{long}{value}`"));
    }
    names.join(", ")
}

/// The default as the flag takes it; nothing for switches, whose default is off.
fn default(arg: &Arg) -> String {
    if matches!(
        arg.get_action(),
        ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
    ) {
        return String::new();
    }
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if values.is_empty() {
        String::new()
    } else {
        format!("`{}`", values.join(","))
    }
}

/// The help text, with the values a value-enum flag takes.
fn help(arg: &Arg) -> String {
    let mut text = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| sentences(&h.to_string()))
        .unwrap_or_default();
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    // A switch's possible values are true and false: not worth saying.
    if !values.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        let _ = write!(text, " Values: {}.", values.join(", "));
    }
    text
}

/// One paragraph ending in a full stop (clap drops the one of a single-sentence doc comment).
fn sentences(text: &str) -> String {
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !text.is_empty() && !text.ends_with(['.', '?', '!']) {
        text.push('.');
    }
    text
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Global flags are listed once, where they are defined; a subcommand's own flags with it.
    #[test]
    fn each_flag_is_listed_with_its_command() {
        let text = markdown();
        assert_eq!(
            text.matches("`--log-format <LOG_FORMAT>`").count(),
            1,
            "{text}"
        );
        let ls = text
            .split("\n## `runsecrets secret ls`")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("secret ls section");
        assert!(ls.contains("`-q`, `--quiet`"), "{ls}");
        assert!(!ls.contains("--namespace"), "{ls}");
        assert!(
            ls.contains("The flags of `runsecrets secret` apply too."),
            "{ls}"
        );
        assert!(
            text.contains("| `--listen <LISTEN>` | `RUNSECRETS_LISTEN` | `127.0.0.1:8443` |"),
            "{text}"
        );
    }
}
