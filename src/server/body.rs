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
    // A body that arrives as one chunk (the usual review over HTTP/1.1) is kept as it is;
    // only a second chunk starts a buffer the chunks are copied into.
    let mut first: Option<Bytes> = None;
    let mut buf = Vec::new();
    let mut over = 0usize;
    while let Some(chunk) = chunks.next().await {
        let Ok(data) = chunk else {
            return Err(if over > 0 {
                BodyError::TooLarge { limit }
            } else {
                BodyError::Unreadable
            });
        };
        let held = first.as_ref().map_or(0, Bytes::len) + buf.len();
        if over == 0 && held + data.len() <= limit {
            match first.take() {
                None if buf.is_empty() => first = Some(data),
                earlier => {
                    if let Some(earlier) = earlier {
                        buf.reserve(declared.unwrap_or(0).min(limit));
                        buf.extend_from_slice(&earlier);
                    }
                    buf.extend_from_slice(&data);
                }
            }
            continue;
        }
        if over == 0 {
            (first, buf) = (None, Vec::new());
        }
        over = over.saturating_add(data.len());
        if over > DRAIN_MAX {
            break;
        }
    }
    if over > 0 {
        Err(BodyError::TooLarge { limit })
    } else {
        Ok(first.unwrap_or_else(|| Bytes::from(buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&'static [u8]]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(tokio_stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_body_in_one_chunk_is_kept_without_a_copy() {
        let sent = Bytes::from(vec![b'x'; 4096]);
        let read = read(&HeaderMap::new(), Body::from(sent.clone()), 8192)
            .await
            .expect("under the limit");
        assert_eq!(read, sent);
        assert_eq!(read.as_ptr(), sent.as_ptr(), "the chunk itself, not a copy");
    }

    #[tokio::test]
    async fn chunks_are_joined_in_order_and_the_limit_counts_them_all() {
        let parts: &[&'static [u8]] = &[b"{\"a\":", b"", b"1", b"}"];
        let joined = read(&HeaderMap::new(), chunked(parts), 16).await;
        assert_eq!(
            joined.expect("under the limit"),
            Bytes::from_static(b"{\"a\":1}")
        );
        let over = read(&HeaderMap::new(), chunked(&[b"12345678", b"9"]), 8).await;
        assert_eq!(over, Err(BodyError::TooLarge { limit: 8 }));
    }
}
