//! What the benches that run the release daemon share: starting it on the
//! embedded default config, and stopping it so that it removes its pins.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../../tests/common/stop.rs"]
mod stop;

use serde_json::Value;
use toptraffic_loadgen as loadgen;

const BIN: &str = env!("CARGO_BIN_EXE_toptraffic");

/// The release daemon, stopped with SIGTERM when dropped.
pub struct Daemon {
    child: Child,
    pub http: SocketAddr,
    pub udp: SocketAddr,
}

impl Daemon {
    /// Starts the daemon on the embedded default with `ingest` added to
    /// its `[ingest]` table and its maps pinned under
    /// /sys/fs/bpf/toptraffic-`name`-<pid>; its config and logs go to
    /// `dir` as `name`.toml, .out and .log. Returns once its API answers,
    /// in `mode`, with the kernel `attach` it reports (None: not checked).
    // Each bench program compiles this module; the flood bench starts its
    // own config only.
    #[allow(dead_code)]
    pub fn start(dir: &Path, name: &str, mode: &str, ingest: &str, attach: Option<&str>) -> Daemon {
        let config = toptraffic::config::DEFAULT_CONFIG.replacen(
            "[ingest]\n",
            &format!("[ingest]\n{ingest}"),
            1,
        );
        Daemon::start_config(dir, name, mode, &config, attach)
    }

    /// As [`Daemon::start`], on `config` (which must have an `[ingest]`
    /// table) instead of the embedded default.
    pub fn start_config(
        dir: &Path,
        name: &str,
        mode: &str,
        config: &str,
        attach: Option<&str>,
    ) -> Daemon {
        let pins = format!("/sys/fs/bpf/toptraffic-{name}-{}", std::process::id());
        assert!(config.contains("[ingest]\n"), "the config needs [ingest]");
        let config = config.replacen(
            "[ingest]\n",
            &format!("[ingest]\npin_dir = \"{pins}\"\n"),
            1,
        );
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, config).expect("write the daemon's config");
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let log = |ext: &str| {
            Stdio::from(
                std::fs::File::create(dir.join(format!("{name}.{ext}"))).expect("a log file"),
            )
        };
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&file)
            .args(["--mode", mode, "--listen", "127.0.0.1:0"])
            .args(["--http", &http.to_string()])
            .stdout(log("out"))
            .stderr(log("log"))
            .spawn()
            .expect("start the daemon");
        let mut d = Daemon {
            child,
            http,
            udp: "0.0.0.0:0".parse().expect("valid"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = loadgen::get_json(http, "/api/v1/stats") {
                assert_eq!(s["mode"], mode, "{s}");
                if let Some(attach) = attach {
                    assert_eq!(s["kernel"]["setup"]["attach"], attach, "{s}");
                }
                d.udp = s["listen"].as_str().unwrap().parse().unwrap();
                return d;
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!(
                    "the daemon exited with {st}; see {}",
                    dir.join(format!("{name}.log")).display()
                );
            }
            assert!(Instant::now() < deadline, "the daemon did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stats(&self) -> Value {
        loadgen::get_json(self.http, "/api/v1/stats").expect("read the daemon's stats")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first, so that the daemon removes its pins.
        stop::stop(&mut self.child, Duration::from_secs(15));
    }
}
