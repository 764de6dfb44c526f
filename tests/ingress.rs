//! End to end: the ingress examples of deploy/ingress/, run as shipped
//! (Debian's haproxy 2.6, and nginx 1.22 with its Lua module, on loopback)
//! in front of a small backend, send toptraffic a line per request. Real
//! HTTP requests with hostile paths and store ids (commas, equals signs,
//! spaces, backslashes, quotes, %-encodings, a tab, UTF-8, none at all) are
//! counted per (ip, id) exactly: none lost, none under a wrong key.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_tcp_port, skip, temp_file, Daemon};

const HAPROXY: &str = "/usr/sbin/haproxy";
const NGINX: &str = "/usr/sbin/nginx";
const NGINX_LUA: &str = "/usr/lib/nginx/modules/ngx_http_lua_module.so";

/// An ingress proxy, stopped by pid on drop.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master then stops its workers, which a
        // SIGKILL of the master would leave running.
        common::stop::stop(&mut self.0, Duration::from_secs(10));
    }
}

/// A backend answering 200 to each connection, for `limit` of them or a
/// minute, whichever ends first.
fn backend(limit: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while served < limit && Instant::now() < end {
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    let mut buf = [0u8; 8192];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    );
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    addr
}

/// One request with exactly these bytes in its path and X-Store-Id (none
/// when None); its status.
fn request(to: SocketAddr, path: &str, id: Option<&str>) -> u16 {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let header = id.map_or(String::new(), |id| format!("X-Store-Id: {id}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: shop\r\n{header}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The store id toptraffic shows for a request's X-Store-Id: the value, a
/// backslash written %5C (line protocol cannot escape it in a tag value),
/// and "-" for none or an empty one.
fn shown(id: Option<&str>) -> String {
    match id {
        None | Some("") => "-".into(),
        Some(id) => id.replace('\\', "%5C"),
    }
}

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/ingress")
        .join(name)
}

/// The daemon the proxies feed: one rule by (ip, id), a minute's window.
fn daemon(name: &str) -> Daemon {
    let config = format!(
        "[ingest]\npin_dir = \"{}\"\n[window]\nperiod = \"1m\"\nevery = \"1s\"\n\n\
         [[rule]]\nname = \"ingress\"\nmeasurement = \"combined\"\n\
         group_by = [\"ip\", \"id\"]\nfield = \"count\"\nas = \"totalCount\"\n",
        common::pin_dir(name)
    );
    Daemon::start(&config, &[])
}

/// Starts `cmd` (a proxy listening on `bind`) and waits until it accepts.
fn start_proxy(mut cmd: Command, bind: SocketAddr) -> Proxy {
    let log = temp_file("proxy.log", "");
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .expect("start the proxy");
    let proxy = Proxy(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(bind).is_err() {
        assert!(
            Instant::now() < deadline,
            "the proxy did not come up: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy
}

const PATHS: [&str; 8] = [
    "/p",
    "/a,b=c%20d",
    "/kv/k=v/0",
    "/end\\",
    "/x\\,y\\=z\\ ",
    "/q\"uote\"",
    "/%2C%3D%25%5C",
    "/p?a=1,2&b=c%20d",
];
const IDS: [Option<&str>; 11] = [
    Some("42"),
    Some("st ore"),
    Some("a,b"),
    Some("k=v"),
    Some("tail\\"),
    Some("\"quoted\""),
    Some("é∂"),
    Some("x\ty"),
    Some("L052\\\\x"),
    Some(""),
    None,
];

/// Sends every id with every path, three times, through the proxy on
/// `bind`, and checks the daemon's count of every (ip, id).
fn every_request_counted_under_its_key(d: &Daemon, bind: SocketAddr) {
    let total = PATHS.len() * IDS.len() * 3;
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for _ in 0..3 {
        for id in IDS {
            for path in PATHS {
                let status = request(bind, path, id);
                assert_eq!(status, 200, "{path:?} {id:?}");
                *want.entry(shown(id)).or_default() += 1.0;
            }
        }
    }
    // The empty and the missing id are one key, "-".
    assert_eq!(want.len(), IDS.len() - 1);

    let got = || -> BTreeMap<String, f64> {
        let top = d.get("/api/v1/top?rule=ingress&limit=100");
        top["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["tags"]["ip"], "127.0.0.1", "{r}");
                (
                    r["tags"]["id"].as_str().unwrap().to_string(),
                    r["value"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let g = got();
        if g == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counts per id\n got {g:?}\nwant {want:?}\nstats {}",
            d.stats()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = d.stats();
    let points = s["points_kernel"].as_u64().unwrap() + s["points_userspace"].as_u64().unwrap();
    assert_eq!(points, total as u64, "{s}");
    assert_eq!(s["dropped"]["parse_error"], 0, "{s}");
    eprintln!(
        "{total} requests, {} keys, counted exactly: {s}",
        want.len()
    );
}

#[test]
fn haproxy_feeds_every_request_under_its_own_key_whatever_the_path_and_store_id() {
    let test = "haproxy_feeds_every_request_under_its_own_key_whatever_the_path_and_store_id";
    if !Path::new(HAPROXY).exists() {
        skip(test, "haproxy is not installed (apt-get install haproxy)");
        return;
    }
    let d = daemon("haproxy");
    let app = backend(PATHS.len() * IDS.len() * 3 + 8);
    let bind: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let mut cmd = Command::new(HAPROXY);
    cmd.arg("-db")
        .arg("-f")
        .arg(example("haproxy.cfg"))
        .env("TOPTRAFFIC_ADDR", d.udp.to_string())
        .env("HAPROXY_BIND", bind.to_string())
        .env("APP_ADDR", app.to_string());
    let _proxy = start_proxy(cmd, bind);
    every_request_counted_under_its_key(&d, bind);
}

#[test]
fn nginx_feeds_every_request_under_its_own_key_whatever_the_path_and_store_id() {
    let test = "nginx_feeds_every_request_under_its_own_key_whatever_the_path_and_store_id";
    if !Path::new(NGINX).exists() || !Path::new(NGINX_LUA).exists() {
        skip(
            test,
            "nginx with its Lua module is not installed (apt-get install nginx-light libnginx-mod-http-lua)",
        );
        return;
    }
    let d = daemon("nginx");
    let app = backend(PATHS.len() * IDS.len() * 3 + 8);
    let bind: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    // The example as shipped, but for the addresses nginx takes only
    // literally, its pid file and its temporary files.
    let dir = temp_file("x", "").parent().unwrap().to_path_buf();
    let text = std::fs::read_to_string(example("nginx.conf"))
        .unwrap()
        .replace("listen 127.0.0.1:8000", &format!("listen {bind}"))
        .replace("server 127.0.0.1:8080", &format!("server {app}"))
        .replace(
            "/tmp/toptraffic-ingress-nginx",
            &dir.join("nginx").display().to_string(),
        );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, text).unwrap();
    let mut cmd = Command::new(NGINX);
    cmd.arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&dir)
        .env("TOPTRAFFIC_ADDR", d.udp.to_string());
    let _proxy = start_proxy(cmd, bind);
    every_request_counted_under_its_key(&d, bind);
}
