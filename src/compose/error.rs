//! Conversion failures. Each names the file and line it is about (or the step, when there is
//! no line) and says what to do; none carries a secret value or a line of the input.

use super::yaml::{Pos, YamlError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// Bad input at a known place; the message says what is wrong and what to do.
    #[error("{pos}: {message}")]
    At { pos: Pos, message: String },
    #[error(transparent)]
    Yaml(#[from] YamlError),
    /// Bad input with no single place (options, a missing project).
    #[error("{0}")]
    Input(String),
    /// A file the project needs could not be read.
    #[error("{pos}: {what}")]
    ReadAt {
        pos: Pos,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sealing secret {name:?} for namespace {namespace}")]
    Seal {
        name: String,
        namespace: String,
        #[source]
        source: StoreError,
    },
    #[error("reading the working directory")]
    WorkingDirectory(#[source] std::io::Error),
    #[error("loading the sealing keys")]
    Keys(#[source] StoreError),
    #[error("{step} {path}")]
    Write {
        step: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("printing {what} as YAML")]
    Print {
        what: String,
        #[source]
        source: serde_norway::Error,
    },
}

impl ComposeError {
    pub fn at(pos: &Pos, message: impl Into<String>) -> Self {
        ComposeError::At {
            pos: pos.clone(),
            message: message.into(),
        }
    }
}
