//! Starting a sink: its kind's delivery, under the shared worker.

use super::alertmanager::Alertmanager;
use super::backoff::Backoff;
use super::exec::Exec;
use super::handle::SinkHandle;
use super::http::HttpPost;
use super::log::LogFile;
use super::slack::Slack;
use super::worker::{spawn_worker, Policy};
use crate::config::SinkConfig;

/// Starts a sink's worker on `rt` and returns the handle that feeds it.
/// `name` identifies the sink in logs and metrics (e.g. `top_ips/#1/http`).
pub fn spawn_sink(cfg: SinkConfig, name: String, rt: &tokio::runtime::Handle) -> SinkHandle {
    let policy = Policy::new(&cfg.options(), Backoff::DEFAULT);
    spawn_config(cfg, name, policy, rt)
}

pub(super) fn spawn_config(
    cfg: SinkConfig,
    name: String,
    policy: Policy,
    rt: &tokio::runtime::Handle,
) -> SinkHandle {
    let kind = cfg.kind();
    match cfg {
        SinkConfig::Log(c) => spawn_worker(LogFile::new(c), name, kind, policy, rt),
        SinkConfig::Exec(c) => spawn_worker(Exec::new(c), name, kind, policy, rt),
        SinkConfig::Slack(c) => spawn_worker(Slack::new(c), name, kind, policy, rt),
        SinkConfig::Http(c) => spawn_worker(HttpPost::new(c), name, kind, policy, rt),
        SinkConfig::Alertmanager(c) => spawn_worker(Alertmanager::new(c), name, kind, policy, rt),
    }
}
