//! The exec sink: runs a command per alert with Kapacitor's alert JSON and a
//! newline on its stdin; a non-zero exit is a failure.
//!
//! The command runs with none of the daemon's privileges: no capabilities
//! (its ambient, inheritable, permitted and effective sets are emptied and,
//! when the daemon holds CAP_SETPCAP, its bounding set too, so that not even
//! a root or set-uid program regains them), and an environment of `PATH`
//! alone ([`CHILD_PATH`]): a command needing more sets it itself.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};

use super::deliver::{Deliver, DeliveryError};
use super::http_util::excerpt;
use crate::alert::event::AlertEvent;
use crate::caps;
use crate::config::ExecSink;

/// Stderr kept for the failure message.
const STDERR_KEPT: usize = 512;
/// How long stderr may stay open after the command exits: a background
/// child of its own may hold it forever.
const STDERR_GRACE: Duration = Duration::from_millis(100);
/// The command's whole environment is `PATH` with this value.
const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(super) struct Exec {
    program: String,
    args: Vec<String>,
}

impl Exec {
    pub(super) fn new(cfg: ExecSink) -> Self {
        let mut command = cfg.command.into_iter();
        Exec {
            program: command.next().unwrap_or_default(),
            args: command.collect(),
        }
    }
}

impl Deliver for Exec {
    async fn deliver(&self, ev: &AlertEvent) -> Result<(), DeliveryError> {
        let mut input = ev.to_json();
        input.push('\n');
        let mut command = Command::new(&self.program);
        // SAFETY: the hook runs in the forked child before exec, where only
        // async-signal-safe calls are allowed: caps::drop_all makes raw
        // system calls only, and allocates nothing.
        unsafe {
            command.pre_exec(caps::drop_all);
        }
        let mut child = command
            .args(&self.args)
            .env_clear()
            .env("PATH", CHILD_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own group, so that a timeout kills what a script started too.
            .process_group(0)
            // When the attempt times out this future is dropped: tokio then
            // kills the child and reaps it in the background.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DeliveryError::chain(&format!("cannot run {:?}", self.program), &e))?;
        let group = child.id().map(GroupKill);
        let stdin = child.stdin.take().expect("stdin is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");

        let mut captured = Vec::new();
        let (written, status) = {
            let reading = read_capped(&mut stderr, &mut captured);
            let running = async { (feed(stdin, input).await, child.wait().await) };
            tokio::pin!(reading, running);
            tokio::select! {
                out = &mut running => {
                    let _ = tokio::time::timeout(STDERR_GRACE, &mut reading).await;
                    out
                }
                () = &mut reading => running.await,
            }
        };
        let status = status.map_err(|e| DeliveryError::chain("waiting for the command", &e))?;
        if let Some(mut group) = group {
            group.disarm();
        }
        check(&self.program, status, written, &captured)
    }
}

/// Writes the alert and closes stdin so that the command sees its end.
async fn feed(mut stdin: ChildStdin, input: String) -> std::io::Result<()> {
    stdin.write_all(input.as_bytes()).await?;
    stdin.shutdown().await
}

/// Reads to the end, keeping the first bytes: the pipe must be drained or a
/// chatty command blocks on it.
async fn read_capped(from: &mut (impl AsyncRead + Unpin), kept: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        let room = STDERR_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

fn check(
    program: &str,
    status: ExitStatus,
    written: std::io::Result<()>,
    stderr: &[u8],
) -> Result<(), DeliveryError> {
    if !status.success() {
        return Err(DeliveryError::new(format!(
            "{program:?} {status}; stderr: {:?}",
            excerpt(stderr)
        )));
    }
    match written {
        // It exited 0 without reading all of stdin: its choice.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(DeliveryError::chain(
            &format!("writing the alert to {program:?}"),
            &e,
        )),
        _ => Ok(()),
    }
}

/// Kills the command's process group when dropped before it is disarmed,
/// that is when the attempt is abandoned before the command exited.
struct GroupKill(u32);

impl GroupKill {
    fn disarm(&mut self) {
        self.0 = 0;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Ok(pgid @ 1..) = i32::try_from(self.0) {
            // SAFETY: kill(2) takes no pointers; a group already gone gives
            // ESRCH, which is fine.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::event::Level;
    use crate::config::SinkConfig;
    use crate::sink::test_support::spawn_fast;
    use crate::sink::test_support::{event, eventually, TempDir};
    use std::path::Path;
    use std::sync::Arc;

    fn sh(script: &str) -> SinkConfig {
        SinkConfig::Exec(ExecSink {
            command: vec!["sh".into(), "-c".into(), script.into()],
            options: None,
        })
    }

    #[tokio::test]
    async fn command_gets_the_alert_json_and_a_newline_on_stdin() {
        let dir = TempDir::new("exec-stdin");
        let out = dir.path().join("got");
        let sink = spawn_fast(
            sh(&format!("cat > '{}'", out.display())),
            0,
            Duration::from_secs(5),
        );
        let ev = event(Level::Critical);
        assert!(sink.offer(Arc::new(ev.clone())));
        eventually(|| sink.stats().snapshot().sent == 1).await;
        assert_eq!(std::fs::read_to_string(&out).unwrap(), ev.to_json() + "\n");
    }

    #[tokio::test]
    async fn args_are_passed_as_given() {
        let dir = TempDir::new("exec-args");
        let out = dir.path().join("got");
        let script = format!("printf '%s|' \"$@\" > '{}'", out.display());
        let cfg = SinkConfig::Exec(ExecSink {
            command: vec![
                "sh".into(),
                "-c".into(),
                script,
                "sh".into(),
                "a b".into(),
                "$c".into(),
            ],
            options: None,
        });
        let sink = spawn_fast(cfg, 0, Duration::from_secs(5));
        sink.offer(Arc::new(event(Level::Warning)));
        eventually(|| sink.stats().snapshot().sent == 1).await;
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a b|$c|");
    }

    #[tokio::test]
    async fn failing_command_is_retried_then_counted_failed() {
        let dir = TempDir::new("exec-fail");
        let runs = dir.path().join("runs");
        let sink = spawn_fast(
            sh(&format!(
                "cat > /dev/null; echo run >> '{}'; echo boom >&2; exit 3",
                runs.display()
            )),
            2,
            Duration::from_secs(5),
        );
        sink.offer(Arc::new(event(Level::Warning)));
        eventually(|| sink.stats().snapshot().failed == 1).await;
        let counts = sink.stats().snapshot();
        assert_eq!((counts.sent, counts.retries), (0, 2));
        assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 3);
    }

    #[tokio::test]
    async fn non_zero_exit_names_status_and_stderr() {
        let exec = Exec::new(ExecSink {
            command: vec!["sh".into(), "-c".into(), "echo boom >&2; exit 3".into()],
            options: None,
        });
        let err = exec.deliver(&event(Level::Warning)).await.unwrap_err();
        assert!(err.0.contains("exit status: 3"), "{err}");
        assert!(err.0.contains("boom"), "{err}");
    }

    #[tokio::test]
    async fn command_ignoring_stdin_and_exiting_zero_succeeds() {
        let exec = Exec::new(ExecSink {
            command: vec!["true".into()],
            options: None,
        });
        exec.deliver(&event(Level::Warning)).await.unwrap();
    }

    #[tokio::test]
    async fn command_runs_without_capabilities_and_with_only_path() {
        let dir = TempDir::new("exec-privileges");
        let out = dir.path().join("got");
        let sink = spawn_fast(
            sh(&format!(
                "grep Cap /proc/self/status > '{0}'; echo ENV >> '{0}'; env >> '{0}'",
                out.display()
            )),
            0,
            Duration::from_secs(5),
        );
        sink.offer(Arc::new(event(Level::Warning)));
        eventually(|| sink.stats().snapshot().sent == 1).await;
        let got = std::fs::read_to_string(&out).unwrap();
        let (caps, env) = got.split_once("ENV\n").unwrap();
        let mut seen = Vec::new();
        for line in caps.lines() {
            let (name, mask) = line.split_once(':').unwrap();
            let mask = u64::from_str_radix(mask.trim(), 16).unwrap();
            assert_eq!(mask, 0, "{name} is not empty: {got}");
            seen.push(name);
        }
        assert_eq!(
            seen,
            ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"],
            "{got}"
        );
        // sh adds PWD (and some add SHLVL and _) to what it was given.
        let vars: Vec<&str> = env
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .filter(|k| !["PWD", "SHLVL", "_", "OLDPWD"].contains(k))
            .collect();
        assert_eq!(vars, ["PATH"], "{env}");
        assert!(env.contains(&format!("PATH={CHILD_PATH}\n")), "{env}");
    }

    #[tokio::test]
    async fn missing_program_fails() {
        let exec = Exec::new(ExecSink {
            command: vec!["/nonexistent/toptraffic-alert".into()],
            options: None,
        });
        let err = exec.deliver(&event(Level::Warning)).await.unwrap_err();
        assert!(err.0.contains("cannot run"), "{err}");
    }

    #[tokio::test]
    async fn hung_command_is_killed_and_reaped_at_the_timeout() {
        let dir = TempDir::new("exec-hang");
        let pidfile = dir.path().join("pid");
        let sink = spawn_fast(
            sh(&format!("echo $$ > '{}'; exec sleep 10", pidfile.display())),
            0,
            Duration::from_millis(300),
        );
        let start = tokio::time::Instant::now();
        sink.offer(Arc::new(event(Level::Warning)));
        eventually(|| sink.stats().snapshot().failed == 1).await;
        assert!(start.elapsed() < Duration::from_secs(3));
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let proc = format!("/proc/{}", pid.trim());
        // Gone from the process table: killed and reaped, not a zombie.
        eventually(|| !Path::new(&proc).exists()).await;
    }

    #[tokio::test]
    async fn timeout_kills_what_the_command_started() {
        let dir = TempDir::new("exec-group");
        let pidfile = dir.path().join("pid");
        // The shell stays, with a sleep of its own running in the background.
        let sink = spawn_fast(
            sh(&format!(
                "sleep 10 & echo $! > '{}'; wait",
                pidfile.display()
            )),
            0,
            Duration::from_millis(300),
        );
        sink.offer(Arc::new(event(Level::Warning)));
        eventually(|| sink.stats().snapshot().failed == 1).await;
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        // The grandchild is not ours to reap; init does, once it is killed.
        eventually(|| {
            std::fs::read_to_string(&stat)
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        })
        .await;
    }
}
