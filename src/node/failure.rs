//! A failed step of a CSI call, as kubelet gets it: the gRPC code it acts on (retry, give up,
//! report) and a message. Every node module returns this; only the service turns it into a
//! gRPC status, so it depends on nothing else in the plugin.
//!
//! The text names the step; what went wrong is either a short detail of a check that failed
//! or the underlying error as `source`, so the message kubelet shows is one chain, each part
//! once. Never holds a token or a secret value.

use std::error::Error;
use std::fmt;

use tonic::{Code, Status};

use crate::error::Chain;

type Cause = Box<dyn Error + Send + Sync + 'static>;

#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub step: &'static str,
    /// What a check found wrong, when no underlying error says it.
    detail: Option<String>,
    source: Option<Cause>,
    /// What the failure left in place, said after the cause (a republish keeps its files).
    outcome: Option<&'static str>,
}

impl Failure {
    /// A check that failed: `detail` says what was wrong.
    pub fn new(code: Code, step: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            step,
            detail: Some(detail.into()),
            source: None,
            outcome: None,
        }
    }

    /// A step whose underlying error says what went wrong.
    pub fn caused(code: Code, step: &'static str, source: impl Into<Cause>) -> Self {
        Self {
            code,
            step,
            detail: None,
            source: Some(source.into()),
            outcome: None,
        }
    }

    /// The same failure, with the underlying error behind its detail.
    pub fn because(mut self, source: impl Into<Cause>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The same failure, saying what it left in place.
    pub fn leaving(mut self, outcome: &'static str) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// The whole message: step, detail, each cause, then what was left in place.
    pub fn message(&self) -> String {
        match self.outcome {
            Some(outcome) => format!("{}; {outcome}", Chain(self)),
            None => Chain(self).to_string(),
        }
    }

    /// Metric label: the gRPC code in snake case.
    pub fn reason(&self) -> &'static str {
        match self.code {
            Code::InvalidArgument => "invalid_argument",
            Code::PermissionDenied => "permission_denied",
            Code::NotFound => "not_found",
            Code::FailedPrecondition => "failed_precondition",
            Code::Unavailable => "unavailable",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::Internal => "internal",
            _ => "other",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(detail) => write!(f, "{}: {detail}", self.step),
            None => f.write_str(self.step),
        }
    }
}

impl Error for Failure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl From<Failure> for Status {
    fn from(f: Failure) -> Self {
        Status::new(f.code, f.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_says_each_part_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let f = Failure::caused(Code::Internal, "mounting the tmpfs", io);
        assert_eq!(f.to_string(), "mounting the tmpfs", "the step alone");
        assert_eq!(f.message(), "mounting the tmpfs: no such file");
        let f = Failure::new(Code::Unavailable, "loading the server CA", "/etc/ca.crt")
            .because(std::io::Error::other("denied"))
            .leaving("the volume keeps its last good files");
        let status = Status::from(f);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "loading the server CA: /etc/ca.crt: denied; the volume keeps its last good files"
        );
    }
}
