//! What the HTTP sinks share: a client each, a POST whose failure names the
//! status and the start of the reply.

use super::deliver::DeliveryError;

/// POSTs `body` with `headers`; anything but a 2xx status is a failure that
/// names the status and the start of the reply.
pub(super) async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: reqwest::header::HeaderMap,
    body: String,
) -> Result<(), DeliveryError> {
    let mut resp = client
        .post(url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| DeliveryError::chain(&format!("POST {url}"), &e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let reply = match resp.chunk().await {
        Ok(Some(bytes)) => excerpt(&bytes),
        _ => String::new(),
    };
    Err(DeliveryError::new(format!(
        "POST {url}: status {status}: {reply:?}"
    )))
}

/// The start of a peer's reply or stderr, enough to say what went wrong.
pub(super) fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 256;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    text.trim().to_string()
}

/// A client for the HTTP sinks; one per sink so each has its own pool.
pub(super) fn http_client() -> reqwest::Client {
    crate::http_client()
        .build()
        // Fails only when the TLS backend cannot initialize, which it can
        // once its provider is installed (crate::http_client does that).
        .expect("an HTTP client builds")
}
