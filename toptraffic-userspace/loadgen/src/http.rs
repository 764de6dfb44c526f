//! Reading the daemon's API over plain HTTP, without an async runtime.

use std::error::Error as _;
use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use serde::de::DeserializeOwned;

/// The process's client; reqwest's blocking client runs its own thread, so
/// it must not be used from inside an async runtime.
fn client() -> io::Result<&'static reqwest::blocking::Client> {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    // The workspace builds reqwest with rustls and no crypto provider;
    // building any client needs one, even one that never speaks TLS. Err
    // only when a provider is already installed: fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::blocking::Client::builder()
        .user_agent(concat!("toptraffic-loadgen/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        // The daemon is on this machine or a test's: no proxy from the
        // environment.
        .no_proxy()
        // A connection per request: an idle one could belong to a daemon
        // that stopped, on a port that another now has.
        .pool_max_idle_per_host(0)
        .build()
        .map_err(io_error)?;
    Ok(CLIENT.get_or_init(|| c))
}

/// An HTTP error as an I/O error: the kind of the I/O error under it, if
/// any, and the whole chain of causes as the message.
fn io_error(e: reqwest::Error) -> io::Error {
    let mut msg = e.to_string();
    let mut kind = io::ErrorKind::Other;
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            kind = io.kind();
        }
        msg += &format!(": {c}");
        cause = c.source();
    }
    if e.is_timeout() {
        kind = io::ErrorKind::TimedOut;
    }
    io::Error::new(kind, msg)
}

/// A blocking HTTP GET: status and body. Enough for a tool and tests to
/// read the daemon's API without an async runtime.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let resp = client()?
        .get(format!("http://{addr}{path}"))
        .send()
        .map_err(io_error)?;
    let status = resp.status().as_u16();
    let body = resp.text().map_err(io_error)?;
    Ok((status, body))
}

/// A blocking HTTP POST of a JSON body: status and answer (tests drive
/// real receivers, such as Alertmanager's API, with it).
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> io::Result<(u16, String)> {
    let resp = client()?
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .map_err(io_error)?;
    let status = resp.status().as_u16();
    let body = resp.text().map_err(io_error)?;
    Ok((status, body))
}

/// GETs a JSON document from the daemon.
pub fn get_json(addr: SocketAddr, path: &str) -> io::Result<serde_json::Value> {
    get(addr, path)
}

/// GETs an answer of the daemon as its type (`toptraffic_api::Stats`,
/// `toptraffic_api::Top`, ...); anything but 200 is an error.
pub fn get<T: DeserializeOwned>(addr: SocketAddr, path: &str) -> io::Result<T> {
    let (status, body) = http_get(addr, path)?;
    if status != 200 {
        return Err(io::Error::other(format!(
            "GET {path}: HTTP {status}: {body}"
        )));
    }
    serde_json::from_str(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Answers each of `answers` to one connection, in turn.
    fn serve(answers: Vec<&'static str>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for a in answers {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                s.write_all(a.as_bytes()).unwrap();
            }
        });
        addr
    }

    #[test]
    fn reads_status_and_body_chunked_or_not() {
        let addr = serve(vec![
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 17\r\n\r\n{\"error\":\"nope\"}\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 17\r\n\r\n{\"error\":\"nope\"}\n",
        ]);
        assert_eq!(get_json(addr, "/x").unwrap(), serde_json::json!({"a": 1}));
        assert_eq!(
            http_get(addr, "/y").unwrap(),
            (404, "{\"error\":\"nope\"}\n".to_string())
        );
        let e = get_json(addr, "/z").unwrap_err().to_string();
        assert!(e.starts_with("GET /z: HTTP 404"), "{e}");
    }

    #[test]
    fn a_closed_port_is_an_error() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = http_get(addr, "/").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    }
}
