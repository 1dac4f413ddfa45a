//! Errors shown outside `main`. Each error's text names the step that failed and its cause
//! travels as its `source`, so `main` (anyhow's `{:#}`) says every part once; a log line or a
//! message built from an error writes the same chain with [`Chain`].

use std::error::Error;
use std::fmt;

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
