//! The process's one outbound HTTP client and small helpers around it.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header::{CACHE_CONTROL, LOCATION};

/// Redirects with 302 Found (never cached: a redirect can depend on the session).
pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((LOCATION, to))
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish()
}

/// A POST from one of this app's own pages: `Origin` is ours, or — since
/// `Referrer-Policy: no-referrer` makes browsers send `Origin: null` — the
/// browser says `Sec-Fetch-Site: same-origin` (a header pages cannot set).
/// A request with neither is refused.
pub fn same_origin(public_url: &url::Url, req: &actix_web::HttpRequest) -> bool {
    let ours = public_url.origin().ascii_serialization();
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    match (
        header(actix_web::http::header::ORIGIN.as_str()),
        header("sec-fetch-site"),
    ) {
        (Some(o), _) if o == ours => true,
        (Some("null") | None, Some("same-origin")) => true,
        _ => false,
    }
}

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
    #[error("the answer could not be assembled: {0}")]
    Invalid(String),
}

impl ReadError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, ReadError::Transport(e) if e.is_timeout())
    }
}

/// Largest token-endpoint answer read (real ones are a few KB).
pub const MAX_TOKEN_RESPONSE: usize = 256 * 1024;

/// The shared client as oauth2's HTTP client, reading answers through the
/// same size cap as every other upstream call (oauth2's own reqwest adapter
/// reads a body whole, however large).
pub struct CappedClient<'a> {
    pub http: &'a reqwest::Client,
    pub limit: usize,
}

type OAuthFuture<'c> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, ReadError>> + Send + 'c>,
>;

impl<'c> oauth2::AsyncHttpClient<'c> for CappedClient<'_> {
    type Error = ReadError;
    type Future = OAuthFuture<'c>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request: reqwest::Request = request.try_into().map_err(ReadError::Transport)?;
            let started = std::time::Instant::now();
            let response = self.http.execute(request).await;
            crate::metrics::upstream(crate::metrics::Service::Identity, started, &response);
            let response = response.map_err(ReadError::Transport)?;
            let mut builder = oauth2::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = read_limited(response, self.limit).await?;
            builder
                .body(body)
                .map_err(|e| ReadError::Invalid(e.to_string()))
        })
    }
}
