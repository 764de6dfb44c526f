//! The Slack sink: posts to an incoming webhook the payload Kapacitor 1.5.7
//! sends (services/slack/service.go, preparePost).

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde::Serialize;

use super::deliver::{Deliver, DeliveryError};
use super::http_util::{http_client, post};
use crate::alert::event::{AlertEvent, Level};
use crate::config::SlackSink;

pub(super) struct Slack {
    client: reqwest::Client,
    cfg: SlackSink,
}

impl Slack {
    pub(super) fn new(cfg: SlackSink) -> Self {
        Slack {
            client: http_client(),
            cfg,
        }
    }
}

impl Deliver for Slack {
    async fn deliver(&self, ev: &AlertEvent) -> Result<(), DeliveryError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        post(&self.client, &self.cfg.url, headers, payload(&self.cfg, ev)).await
    }
}

/// Kapacitor builds the body as a Go map (services/slack/service.go), which
/// encoding/json writes with its keys sorted: this order.
#[derive(Serialize)]
struct Payload<'a> {
    as_user: bool,
    attachments: [Attachment<'a>; 1],
    channel: &'a str,
    icon_emoji: &'a str,
    text: &'a str,
    username: &'a str,
}

#[derive(Serialize)]
struct Attachment<'a> {
    fallback: &'a str,
    color: &'a str,
    text: &'a str,
    mrkdwn_in: [&'a str; 1],
}

/// The webhook body, ending in a newline as Go's json.Encoder writes it.
fn payload(cfg: &SlackSink, ev: &AlertEvent) -> String {
    let color = match ev.level {
        Level::Warning => "warning",
        Level::Critical => "danger",
        Level::Ok | Level::Info => "good",
    };
    let body = Payload {
        as_user: false,
        channel: &cfg.channel,
        text: "",
        username: &cfg.username,
        icon_emoji: &cfg.icon_emoji,
        attachments: [Attachment {
            fallback: &ev.message,
            color,
            text: &ev.message,
            mrkdwn_in: ["text"],
        }],
    };
    let mut json = crate::goformat::to_json(&body);
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkConfig;
    use crate::sink::test_support::spawn_fast;
    use crate::sink::test_support::{event, Receiver, Reply};
    use std::sync::Arc;
    use std::time::Duration;

    fn cfg(url: String) -> SlackSink {
        SlackSink {
            url,
            channel: "#ops-noise".into(),
            username: "kapacitor".into(),
            icon_emoji: String::new(),
            options: None,
        }
    }

    #[tokio::test]
    async fn webhook_gets_kapacitors_payload() {
        let mut rx = Receiver::ok().await;
        let sink = spawn_fast(
            SinkConfig::Slack(cfg(rx.url("/services/T000/B000/XXXX"))),
            0,
            Duration::from_secs(5),
        );
        let ev = event(Level::Warning);
        sink.offer(Arc::new(ev.clone()));
        let req = rx.next().await;
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/services/T000/B000/XXXX");
        assert_eq!(req.headers["content-type"], "application/json");
        // shared/KAPACITOR.md, "What the handlers receive".
        let m = &ev.message;
        assert_eq!(
            req.body,
            format!(
                r##"{{"as_user":false,"attachments":[{{"fallback":"{m}","color":"warning","text":"{m}","mrkdwn_in":["text"]}}],"channel":"#ops-noise","icon_emoji":"","text":"","username":"kapacitor"}}"##
            ) + "\n"
        );
    }

    #[test]
    fn color_is_danger_for_critical_and_good_otherwise() {
        let c = cfg("http://x".into());
        let color = |level| {
            let j: serde_json::Value = serde_json::from_str(&payload(&c, &event(level))).unwrap();
            j["attachments"][0]["color"].as_str().unwrap().to_string()
        };
        assert_eq!(color(Level::Critical), "danger");
        assert_eq!(color(Level::Warning), "warning");
        assert_eq!(color(Level::Info), "good");
        assert_eq!(color(Level::Ok), "good");
    }

    #[tokio::test]
    async fn non_2xx_is_retried_then_failed() {
        let mut rx = Receiver::serve(|_| Reply::Status(500)).await;
        let sink = spawn_fast(
            SinkConfig::Slack(cfg(rx.url("/hook"))),
            1,
            Duration::from_secs(5),
        );
        sink.offer(Arc::new(event(Level::Critical)));
        rx.next().await;
        rx.next().await;
        crate::sink::test_support::eventually(|| sink.stats().snapshot().failed == 1).await;
        assert_eq!(sink.stats().snapshot().retries, 1);
    }
}
