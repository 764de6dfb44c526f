//! The log sink: Kapacitor's alert JSON, one object a line, appended to a
//! file that is rotated by size, or written to stdout.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::deliver::{Deliver, DeliveryError};
use crate::alert::event::AlertEvent;
use crate::config::LogSink;

pub(super) struct LogFile {
    out: Arc<Mutex<Output>>,
    /// For error messages.
    target: String,
}

enum Output {
    Stdout,
    File(Rotating),
}

impl LogFile {
    pub(super) fn new(cfg: LogSink) -> Self {
        let out = if cfg.path == "-" {
            Output::Stdout
        } else {
            Output::File(Rotating {
                path: PathBuf::from(&cfg.path),
                max_size: cfg.max_size,
                max_files: cfg.max_files,
                open: None,
            })
        };
        LogFile {
            out: Arc::new(Mutex::new(out)),
            target: cfg.path,
        }
    }
}

impl Deliver for LogFile {
    // Lines from concurrent deliveries could land out of order.
    const SERIAL: bool = true;

    async fn deliver(&self, ev: &AlertEvent) -> Result<(), DeliveryError> {
        let mut line = ev.to_json();
        line.push('\n');
        let out = self.out.clone();
        // A file write can stall (full disk, NFS); keep it off the runtime.
        let written = tokio::task::spawn_blocking(move || {
            // A panic mid-write leaves nothing half-updated worth refusing.
            let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
            match &mut *out {
                Output::Stdout => {
                    let mut stdout = io::stdout().lock();
                    stdout.write_all(line.as_bytes())?;
                    stdout.flush()
                }
                Output::File(f) => f.write_line(line.as_bytes()),
            }
        })
        .await
        .map_err(|e| DeliveryError::new(format!("writing to {}: {e}", self.target)))?;
        written.map_err(|e| DeliveryError::chain(&format!("writing to {}", self.target), &e))
    }
}

/// A file that is renamed to `<path>.1` (and older ones shifted) when the
/// next line would take it past `max_size`.
struct Rotating {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    /// The open file and its size; None until the first write, and after an
    /// error so that the next write reopens it.
    open: Option<(File, u64)>,
}

impl Rotating {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let (mut file, mut size) = match self.open.take() {
            Some(open) => open,
            None => self.open()?,
        };
        let len = line.len() as u64;
        // An empty file takes the line whatever its length, so one line
        // longer than max_size cannot rotate forever.
        if size > 0 && size + len > self.max_size {
            drop(file);
            self.rotate()?;
            (file, size) = self.open()?;
        }
        file.write_all(line)?;
        self.open = Some((file, size + len));
        Ok(())
    }

    fn open(&self) -> io::Result<(File, u64)> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    /// `<path>.{n-1}` → `.{n}`, …, `<path>` → `.1`; the rename onto `.{n}`
    /// replaces the oldest.
    fn rotate(&self) -> io::Result<()> {
        if self.max_files == 0 {
            return ignore_missing(fs::remove_file(&self.path));
        }
        for i in (1..self.max_files).rev() {
            ignore_missing(fs::rename(self.numbered(i), self.numbered(i + 1)))?;
        }
        ignore_missing(fs::rename(&self.path, self.numbered(1)))
    }

    fn numbered(&self, i: u32) -> PathBuf {
        numbered(&self.path, i)
    }
}

fn numbered(path: &Path, i: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{i}"));
    PathBuf::from(name)
}

/// A rotated file that is not there (yet, or any more) is not an error.
fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::event::Level;
    use crate::config::SinkConfig;
    use crate::sink::spawn_sink;
    use crate::sink::test_support::{event, eventually, TempDir};
    use std::time::Duration;

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn lines_are_kapacitors_json_in_a_created_directory() {
        let dir = TempDir::new("log-json");
        let path = dir.path().join("nested/deeper/alerts.log");
        let sink = spawn_sink(
            SinkConfig::Log(LogSink {
                path: path.to_str().unwrap().into(),
                max_size: 1 << 20,
                max_files: 2,
                options: None,
            }),
            "log".into(),
            &tokio::runtime::Handle::current(),
        );
        let a = event(Level::Warning);
        let b = event(Level::Critical);
        assert!(sink.offer(Arc::new(a.clone())));
        assert!(sink.offer(Arc::new(b.clone())));
        eventually(|| sink.stats().snapshot().sent == 2).await;
        assert_eq!(lines(&path), [a.to_json(), b.to_json()]);
    }

    #[test]
    fn file_rotates_before_it_would_pass_max_size() {
        let dir = TempDir::new("log-rotate");
        let path = dir.path().join("alerts.log");
        let line = |i: u32| format!("{i:09}\n"); // 10 bytes
        let mut f = Rotating {
            path: path.clone(),
            max_size: 25,
            max_files: 2,
            open: None,
        };
        for i in 0..7 {
            f.write_line(line(i).as_bytes()).unwrap();
        }
        // Two lines fit in 25 bytes; the third starts a new file. Lines 0-1
        // went to .2 and were pushed out by 2-3; the oldest beyond .2 is gone.
        assert_eq!(lines(&path), ["000000006"]);
        assert_eq!(lines(&numbered(&path, 1)), ["000000004", "000000005"]);
        assert_eq!(lines(&numbered(&path, 2)), ["000000002", "000000003"]);
        assert!(!numbered(&path, 3).exists());
    }

    #[test]
    fn existing_file_size_counts_and_a_long_line_still_lands() {
        let dir = TempDir::new("log-existing");
        let path = dir.path().join("alerts.log");
        fs::write(&path, "0123456789\n").unwrap();
        let mut f = Rotating {
            path: path.clone(),
            max_size: 15,
            max_files: 1,
            open: None,
        };
        let long = "x".repeat(40) + "\n";
        f.write_line(long.as_bytes()).unwrap();
        assert_eq!(lines(&numbered(&path, 1)), ["0123456789"]);
        assert_eq!(fs::read_to_string(&path).unwrap(), long);
        f.write_line(b"y\n").unwrap();
        assert_eq!(lines(&path), ["y"]);
        assert_eq!(lines(&numbered(&path, 1)), ["x".repeat(40)]);
    }

    #[test]
    fn no_rotated_files_kept_when_max_files_is_zero() {
        let dir = TempDir::new("log-zero");
        let path = dir.path().join("alerts.log");
        let mut f = Rotating {
            path: path.clone(),
            max_size: 5,
            max_files: 0,
            open: None,
        };
        f.write_line(b"abcd\n").unwrap();
        f.write_line(b"efgh\n").unwrap();
        assert_eq!(lines(&path), ["efgh"]);
        assert!(!numbered(&path, 1).exists());
    }

    #[tokio::test]
    async fn unwritable_path_fails_after_retries() {
        let dir = TempDir::new("log-unwritable");
        // A directory where the file should be: open() fails every time.
        let path = dir.path().join("alerts.log");
        fs::create_dir(&path).unwrap();
        let cfg = SinkConfig::Log(LogSink {
            path: path.to_str().unwrap().into(),
            max_size: 1 << 20,
            max_files: 1,
            options: None,
        });
        let sink = crate::sink::test_support::spawn_fast(cfg, 2, Duration::from_secs(1));
        assert!(sink.offer(Arc::new(event(Level::Warning))));
        eventually(|| sink.stats().snapshot().failed == 1).await;
        assert_eq!(sink.stats().snapshot().retries, 2);
    }
}
