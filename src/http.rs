//! The process's one outbound HTTP client and small helpers around it.

use std::time::Duration;

/// Builds the shared client: keep-alive pool, a timeout, and no redirects
/// (a token endpoint or API that redirects is an error, not something to follow
/// with a bearer token or client secret attached).
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("outlook-inbox/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Reads a response body, refusing to buffer more than `limit` bytes.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the body is too large")]
    TooLarge,
    #[error(transparent)]
    Transport(reqwest::Error),
}

impl ReadError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, ReadError::Transport(e) if e.is_timeout())
    }
}
