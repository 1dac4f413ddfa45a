//! Errors shown outside `main`. Each error's text names the step that failed and its cause
//! travels as its `source`, so `main` (anyhow's `{:#}`) says every part once; a log line or a
//! message built from an error writes the same chain with [`Chain`].

use std::error::Error;
use std::fmt;

/// Text from elsewhere (a peer's message, a caller's field) as a message or a log line may
/// show it: at most `max` characters, control characters replaced, so it can neither forge
/// a line nor flood one.
pub fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Displays an error followed by each of its sources, joined by `": "`.
pub struct Chain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{printable, Chain};

    /// A caller's newline cannot start a forged line, and a flood is cut.
    #[test]
    fn printable_text_has_no_line_breaks_and_a_bound() {
        assert_eq!(
            printable("web\nlevel=ERROR forged", 64),
            "web?level=ERROR forged"
        );
        assert_eq!(printable(&"é".repeat(1000), 10).chars().count(), 10);
    }

    /// How many times `needle` appears in the error's chain, as `main` prints it.
    fn said(e: &dyn std::error::Error, needle: &str) -> (usize, String) {
        let text = Chain(e).to_string();
        (text.matches(needle).count(), text)
    }

    /// A store under a path that is a file: the path and the OS's reason, each once.
    #[test]
    fn a_store_io_error_names_its_path_and_cause_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").expect("write");
        let Err(e) = crate::store::FileStore::open(&file) else {
            panic!("a store under a file opened");
        };
        let path = file.join("secrets").display().to_string();
        assert_eq!(said(&e, &path).0, 1, "{}", said(&e, &path).1);
        let (count, text) = said(&e, "Not a directory");
        assert_eq!(count, 1, "{text}");
        assert!(text.starts_with("creating "), "{text}");
    }

    /// A record opened under another name: "sealing", then why it does not open, once.
    #[test]
    fn a_seal_error_in_the_store_says_its_cause_once() {
        let ring = crate::seal::Keyring::generate();
        let keys = ring.public_keys().expect("public keys");
        let record = crate::store::SecretRecord::seal(
            &keys,
            "shop",
            "db",
            b"value",
            Default::default(),
            vec![],
        )
        .expect("seals");
        let e = record
            .unseal(&ring, "shop", "other")
            .expect_err("bound to shop/db");
        let (count, text) = said(&e, "ciphertext does not open");
        assert_eq!(count, 1, "{text}");
        assert!(text.starts_with("sealing: "), "{text}");
    }

    /// `runsecrets review /nope` and `scan /nope`: the file and the reason, once each.
    #[test]
    fn an_unreadable_input_file_is_named_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("nope.yaml");
        let e = crate::offline::read_input(&missing).expect_err("missing");
        let (count, text) = said(&e, "No such file");
        assert_eq!(count, 1, "{text}");
        assert_eq!(said(&e, &missing.display().to_string()).0, 1, "{text}");
        let scanned = crate::offline::scan(
            std::slice::from_ref(&missing),
            crate::policy::Level::Baseline,
        );
        let [error] = scanned.errors.as_slice() else {
            panic!("one error: {:?}", scanned.errors);
        };
        assert_eq!(error.matches("No such file").count(), 1, "{error}");
    }
}
