//! The HTTP sink: POSTs Kapacitor's alert JSON, as its httppost handler does.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

use super::deliver::{Deliver, DeliveryError};
use super::http_util::{http_client, post};
use crate::alert::event::AlertEvent;
use crate::config::HttpSink;

pub(super) struct HttpPost {
    client: reqwest::Client,
    url: String,
    /// Content-Type plus the configured headers, which win; an invalid one
    /// fails every delivery with its name.
    headers: Result<HeaderMap, String>,
}

impl HttpPost {
    pub(super) fn new(cfg: HttpSink) -> Self {
        HttpPost {
            client: http_client(),
            headers: headers(&cfg),
            url: cfg.url,
        }
    }
}

fn headers(cfg: &HttpSink) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in &cfg.headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("header name {name:?} is not a valid HTTP header name"))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| format!("header {name}: value is not a valid HTTP header value"))?;
        map.insert(name, value);
    }
    Ok(map)
}

impl Deliver for HttpPost {
    async fn deliver(&self, ev: &AlertEvent) -> Result<(), DeliveryError> {
        let headers = self.headers.clone().map_err(DeliveryError::new)?;
        // Go's json.Encoder ends the body with a newline.
        let mut body = ev.to_json();
        body.push('\n');
        post(&self.client, &self.url, headers, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::event::Level;
    use crate::config::SinkConfig;
    use crate::sink::test_support::spawn_fast;
    use crate::sink::test_support::{event, eventually, Receiver, Reply};
    use std::sync::Arc;
    use std::time::Duration;

    fn cfg(url: String, headers: &[(&str, &str)]) -> SinkConfig {
        SinkConfig::Http(HttpSink {
            url,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            options: None,
        })
    }

    #[tokio::test]
    async fn posts_the_alert_json_with_configured_headers() {
        let mut rx = Receiver::ok().await;
        let sink = spawn_fast(
            cfg(
                rx.url("/alerts"),
                &[("Authorization", "Bearer secret"), ("X-Team", "ingress")],
            ),
            0,
            Duration::from_secs(5),
        );
        let ev = event(Level::Critical);
        sink.offer(Arc::new(ev.clone()));
        let req = rx.next().await;
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/alerts");
        assert_eq!(req.headers["content-type"], "application/json");
        assert_eq!(req.headers["authorization"], "Bearer secret");
        assert_eq!(req.headers["x-team"], "ingress");
        assert_eq!(req.body, ev.to_json() + "\n");
        eventually(|| sink.stats().snapshot().sent == 1).await;
    }

    #[tokio::test]
    async fn configured_content_type_wins() {
        let mut rx = Receiver::ok().await;
        let sink = spawn_fast(
            cfg(rx.url("/"), &[("Content-Type", "text/plain")]),
            0,
            Duration::from_secs(5),
        );
        sink.offer(Arc::new(event(Level::Critical)));
        let req = rx.next().await;
        let types: Vec<_> = req.headers.get_all("content-type").iter().collect();
        assert_eq!(types, ["text/plain"]);
    }

    #[tokio::test]
    async fn non_2xx_fails_and_a_later_2xx_succeeds() {
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = calls.clone();
        let mut rx = Receiver::serve(move |_| {
            match seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
                0 => Reply::Status(503),
                _ => Reply::Status(204),
            }
        })
        .await;
        let sink = spawn_fast(cfg(rx.url("/"), &[]), 3, Duration::from_secs(5));
        sink.offer(Arc::new(event(Level::Warning)));
        rx.next().await;
        rx.next().await;
        eventually(|| sink.stats().snapshot().sent == 1).await;
        let counts = sink.stats().snapshot();
        assert_eq!((counts.retries, counts.failed), (1, 0));
    }

    #[tokio::test]
    async fn invalid_header_fails_every_delivery() {
        let post = HttpPost::new(HttpSink {
            url: "http://127.0.0.1:9/".into(),
            headers: [("bad header".to_string(), "v".to_string())].into(),
            options: None,
        });
        let err = post.deliver(&event(Level::Warning)).await.unwrap_err();
        assert!(err.0.contains("\"bad header\""), "{err}");
    }

    #[tokio::test]
    async fn refused_connection_says_why() {
        // Bind then drop: nothing listens on the port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let post = HttpPost::new(HttpSink {
            url: format!("http://127.0.0.1:{port}/"),
            headers: Default::default(),
            options: None,
        });
        let err = post.deliver(&event(Level::Warning)).await.unwrap_err();
        assert!(err.0.to_lowercase().contains("refused"), "{err}");
    }
}
