//! `toptraffic top`: asks a running daemon for a rule's top-N and prints it as
//! a table.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use toptraffic_api::{ErrorAnswer, Top, TopQuery};

/// Fetches `/api/v1/top` from the daemon at `http`: its own values, or
/// with `cluster` those the nodes exchanged.
pub async fn fetch(http: SocketAddr, rule: &str, limit: usize, cluster: bool) -> Result<Top> {
    let url = format!("http://{http}/api/v1/top");
    let query = TopQuery {
        rule: Some(rule.to_string()),
        limit: Some(limit),
        scope: cluster.then(|| "cluster".to_string()),
    };
    let resp = crate::http_client()
        .build()?
        .get(&url)
        .query(&query)
        .send()
        .await
        .with_context(|| format!("cannot reach the daemon at {url} (is `toptraffic run` up? --http sets the address)"))?;
    let status = resp.status();
    let body = resp.bytes().await.context("reading the daemon's answer")?;
    if !status.is_success() {
        let msg = match serde_json::from_slice::<ErrorAnswer>(&body) {
            Ok(e) => e.error,
            Err(e) if e.is_data() => "unknown error".into(),
            Err(e) => return Err(e).context("the daemon's answer is not JSON"),
        };
        bail!("{status}: {msg}");
    }
    serde_json::from_slice(&body).context("the daemon's answer is not a top list")
}

/// Renders a `/api/v1/top` answer as an aligned text table.
pub fn render(top: &Top) -> String {
    let rule = &top.rule;
    let as_name = &top.as_name;
    let rows = &top.top;
    // Tag columns in the rule's group_by order.
    let tag_names = &top.group_by;
    let mut header: Vec<String> = vec!["RANK".into()];
    header.extend(tag_names.iter().map(|t| t.to_uppercase()));
    header.push(as_name.to_uppercase());
    let value_col = header.len() - 1;
    if top.cluster.is_some() {
        header.push("SHARES".into());
    }
    let mut table: Vec<Vec<String>> = vec![header];
    for (i, r) in rows.iter().enumerate() {
        let mut line = vec![(i + 1).to_string()];
        for t in tag_names {
            line.push(r.tags.get(t).cloned().unwrap_or_default());
        }
        // A value still partly estimated says so, with its bound.
        line.push(match r.error_bound {
            Some(b) if r.approximate => format!("~{} (+{b})", r.value),
            _ => r.value.to_string(),
        });
        if let Some(shares) = &r.shares {
            let each: Vec<String> = shares.iter().map(|(n, v)| format!("{n} {v}")).collect();
            line.push(each.join(", "));
        }
        table.push(line);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|c| {
            table
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!(
        "{rule}: {as_name} over {}s ending {}, {} keys\n",
        top.period_s,
        top.window_end
            .as_deref()
            .unwrap_or("(no interval closed yet)"),
        top.keys
    );
    if let Some(c) = &top.cluster {
        out.push_str(&format!(
            "cluster of {} nodes ({}): every key at {} or more on some node, exactly{}\n",
            c.nodes.len(),
            c.nodes.join(", "),
            c.threshold,
            if c.complete {
                ""
            } else {
                "; a node missed the exchange: its shares are missing"
            }
        ));
    }
    for l in &table {
        let last = l.len() - 1;
        for (c, cell) in l.iter().enumerate() {
            // Numbers right-aligned, text left-aligned.
            if c == 0 || c == value_col {
                out.push_str(&format!("{cell:>w$}", w = widths[c]));
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[c]));
            }
            out.push_str(if c == last { "\n" } else { "  " });
        }
    }
    if rows.is_empty() {
        out.push_str("(no keys in the window)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_an_aligned_table() {
        let v: Top = serde_json::from_value(json!({
            "rule": "top_combined", "as": "totalCount", "window_end": "2026-11-25T10:00:05Z",
            "period_s": 60, "keys": 2, "group_by": ["ip", "id"],
            "top": [
                {"tags": {"ip": "10.0.0.1", "id": "42"}, "value": 1234},
                {"tags": {"ip": "10.0.0.22", "id": "7"}, "value": 5},
                {"tags": {"ip": "10.0.0.3", "id": "9"}, "value": 2,
                 "approximate": true, "error_bound": 1.5}
            ]
        }))
        .unwrap();
        let s = render(&v);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "top_combined: totalCount over 60s ending 2026-11-25T10:00:05Z, 2 keys"
        );
        assert_eq!(lines[1], "RANK  IP         ID  TOTALCOUNT");
        assert_eq!(lines[2], "   1  10.0.0.1   42        1234");
        assert_eq!(lines[3], "   2  10.0.0.22  7            5");
        assert_eq!(lines[4], "   3  10.0.0.3   9    ~2 (+1.5)");
    }
}
