//! End to end: nodes meeting in a real Redis (Debian's redis-server, started
//! here on a free loopback port). Two daemons see each other; one that stops
//! leaves the other's view within two intervals; with Redis gone, a node
//! says so in /api/v1/cluster and /metrics and goes on counting, and sees
//! the cluster again when Redis is back.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_tcp_port, skip, temp_file, wait_for, Daemon};
use serde_json::Value;

const REDIS: &str = "/usr/bin/redis-server";

/// A Redis of the test's own, stopped by pid on drop.
struct Redis(Child);

impl Redis {
    fn start(port: u16) -> Redis {
        let dir = temp_file("x", "").parent().unwrap().to_path_buf();
        let child = Command::new(REDIS)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis(child)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(port: u16, node: &str) -> String {
    format!(
        r#"
[ingest]
mode = "userspace"
[window]
period = "4s"
every = "500ms"
[cluster]
redis = "redis://127.0.0.1:{port}"
node = "{node}"
timeout = "200ms"

[[rule]]
name = "top"
measurement = "combined"
group_by = ["ip", "id"]
"#
    )
}

fn cluster(d: &Daemon) -> Value {
    d.get("/api/v1/cluster")
}

fn members(d: &Daemon) -> Vec<String> {
    cluster(d)["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn nodes_meet_in_redis_leave_on_stop_and_count_alone_while_it_is_down() {
    let test = "nodes_meet_in_redis_leave_on_stop_and_count_alone_while_it_is_down";
    if !Path::new(REDIS).exists() {
        skip(
            test,
            "redis-server is not installed (apt-get install redis-server)",
        );
        return;
    }
    let port = free_tcp_port();
    let redis = Redis::start(port);
    let a = Daemon::start(&config(port, "node-a"), &[]);
    let b = Daemon::start(&config(port, "node-b"), &[]);
    let both = vec!["node-a".to_string(), "node-b".to_string()];
    wait_for("both nodes in both views", Duration::from_secs(10), || {
        members(&a) == both && members(&b) == both
    });
    let c = cluster(&a);
    assert_eq!(c["node"], "node-a");
    assert_eq!(c["up"], true);
    assert_eq!(c["redis"][0], format!("redis://127.0.0.1:{port}"));
    let m = a.get_text("/metrics");
    assert!(m.contains("toptraffic_cluster_up 1"), "{m}");
    assert!(m.contains("toptraffic_cluster_members 2"), "{m}");

    // b stops: it takes itself out at once.
    assert!(b.terminate().success());
    wait_for("b gone from a's view", Duration::from_secs(5), || {
        members(&a) == ["node-a"]
    });

    // Redis goes: a says so, and goes on counting its own traffic.
    drop(redis);
    wait_for("a sees Redis down", Duration::from_secs(5), || {
        cluster(&a)["up"] == false
    });
    let c = cluster(&a);
    assert!(
        c["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{c}"
    );
    assert!(a.get_text("/metrics").contains("toptraffic_cluster_up 0"));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..50 {
        sock.send_to(b"combined,ip=192.0.2.1,id=1 count=1", a.udp)
            .unwrap();
    }
    a.wait_stats(
        Duration::from_secs(5),
        "lines counted while Redis is down",
        |s| s["points_userspace"] == 50,
    );
    assert!(
        a.log_text().contains("cluster: Redis does not answer"),
        "{}",
        a.log_text()
    );

    // Redis is back on the same port: a meets it again.
    let _redis = Redis::start(port);
    wait_for("a sees Redis again", Duration::from_secs(10), || {
        let c = cluster(&a);
        c["up"] == true && c["members"][0] == "node-a"
    });
    assert!(a.log_text().contains("cluster: Redis answers"));
    assert!(a.terminate().success());
}

#[test]
fn without_a_cluster_section_the_cluster_api_says_so() {
    let d = Daemon::start(
        "[ingest]\nmode = \"userspace\"\n[[rule]]\nname = \"r\"\nmeasurement = \"m\"\ngroup_by = [\"ip\"]\n",
        &[],
    );
    let (status, body) = d.get_status("/api/v1/cluster");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no [cluster]"), "{body}");
    assert!(!d.get_text("/metrics").contains("cluster_up"));
}
