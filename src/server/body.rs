//! Request bodies read under a limit, for both HTTPS listeners.
//!
//! A body over the limit is answered 413, but only after the rest of it has been read and
//! thrown away (up to [`DRAIN_MAX`]): answering at once and closing would leave the client's
//! unsent bytes unread, the kernel would reset the connection, and the client would see the
//! reset instead of the 413. Reading on also keeps an HTTP/1.1 connection usable and lets an
//! HTTP/2 stream end cleanly. The request deadline of each listener still bounds the time.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use tokio_stream::StreamExt;

/// Most bytes read past the limit before giving up on draining a body (the connection is
/// then closed, and the client may see a reset): a bound on the work a client can cause.
pub const DRAIN_MAX: usize = 16 * 1024 * 1024;

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The reason a 413 gives.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The client stopped sending or sent malformed framing.
    #[error("the request body could not be read")]
    Unreadable,
}

impl BodyError {
    /// 413 for a body over the limit, 400 for one that could not be read.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads `body` whole when it is at most `limit` bytes.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(DRAIN_MAX)) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut chunks = body.into_data_stream();
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut over = 0usize;
    while let Some(chunk) = chunks.next().await {
        let Ok(data) = chunk else {
            return Err(if over > 0 {
                BodyError::TooLarge { limit }
            } else {
                BodyError::Unreadable
            });
        };
        if over == 0 && buf.len() + data.len() <= limit {
            buf.extend_from_slice(&data);
            continue;
        }
        if over == 0 {
            buf = Vec::new();
        }
        over = over.saturating_add(data.len());
        if over > DRAIN_MAX {
            break;
        }
    }
    if over > 0 {
        Err(BodyError::TooLarge { limit })
    } else {
        Ok(Bytes::from(buf))
    }
}
