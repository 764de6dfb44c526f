//! The state file: every rule's window ring and alert states, written on
//! SIGTERM and read at start, so that a restart (an upgrade, a rolling
//! restart of the DaemonSet) neither blinds the node for a window nor sends
//! an alert twice.
//!
//! A compact binary format: a magic line, a version, the window's shape and
//! the rules, then an FNV-1a checksum of everything before it. A file that
//! is foreign, truncated, corrupt or from another window shape is reported
//! and ignored, never trusted in part.

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::alert::event::Level;
use crate::alert::state::StateParts;
use crate::key::Key;
use crate::sketch::{Shape, Sketch};
use crate::window::{KeyRing, TierState};

const MAGIC: &[u8; 16] = b"TOPTRAFFICSTATE\n";
/// 2 adds the overflow tier and the keys' approximate intervals; 1 is
/// still read.
const VERSION: u32 = 2;
/// Bounds that no sane file exceeds; a larger count means corruption.
const MAX_COUNT: u64 = 200_000_000;
const MAX_BYTES: u64 = 1 << 20;

/// One rule's saved state.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedRule {
    pub name: String,
    /// What the rule counts and how it groups (`config::Grouping::key`):
    /// a rule is restored only into one that groups the same way.
    pub grouping: String,
    pub overflow_lines: u64,
    pub keys: Vec<KeyRing>,
    /// (block, key, state, last value).
    pub alerts: Vec<(String, Key, StateParts, f64)>,
    /// The overflow sketches, for a rule that has them.
    pub tier: Option<TierState>,
}

/// Everything saved.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedState {
    pub saved_at: SystemTime,
    pub every: Duration,
    pub intervals: usize,
    /// The last interval in the window.
    pub current: Option<u64>,
    pub rules: Vec<SavedRule>,
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn time(&mut self, t: Option<SystemTime>) {
        match t {
            Some(t) => {
                self.u8(1);
                self.u64(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64);
            }
            None => self.u8(0),
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

type R<T> = Result<T, String>;

impl Reader<'_> {
    fn take(&mut self, n: usize) -> R<&[u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    /// A byte that only files of some versions have.
    fn u8_if(&mut self, present: bool) -> R<Option<u8>> {
        present.then(|| self.u8()).transpose()
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn f64(&mut self) -> R<f64> {
        Ok(f64::from_bits(self.u64()?))
    }
    fn count(&mut self) -> R<usize> {
        let n = self.u64()?;
        if n > MAX_COUNT {
            return Err(format!("implausible count {n} at byte {}", self.pos));
        }
        Ok(n as usize)
    }
    fn bytes(&mut self) -> R<&[u8]> {
        let n = self.u64()?;
        if n > MAX_BYTES {
            return Err(format!("implausible length {n} at byte {}", self.pos));
        }
        self.take(n as usize)
    }
    fn string(&mut self) -> R<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "a name is not UTF-8".into())
    }
    fn time(&mut self) -> R<Option<SystemTime>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(UNIX_EPOCH + Duration::from_nanos(self.u64()?))),
            b => Err(format!("bad time flag {b}")),
        }
    }
    fn level(&mut self) -> R<Level> {
        match self.u8()? {
            0 => Ok(Level::Ok),
            1 => Ok(Level::Info),
            2 => Ok(Level::Warning),
            3 => Ok(Level::Critical),
            b => Err(format!("bad level {b}")),
        }
    }
}

fn level_byte(l: Level) -> u8 {
    l as u8
}

/// Serializes `s`.
pub fn encode(s: &SavedState) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(1 << 16));
    w.0.extend_from_slice(MAGIC);
    w.u32(VERSION);
    w.time(Some(s.saved_at));
    w.u64(s.every.as_nanos() as u64);
    w.u64(s.intervals as u64);
    w.u64(s.current.map_or(u64::MAX, |c| c));
    w.u64(s.rules.len() as u64);
    for r in &s.rules {
        w.bytes(r.name.as_bytes());
        w.bytes(r.grouping.as_bytes());
        w.u64(r.overflow_lines);
        w.u64(r.keys.len() as u64);
        for k in &r.keys {
            w.bytes(&k.key);
            w.u64(k.cursor);
            w.u64(k.last_seen);
            w.u64(k.ring.len() as u64);
            for v in &k.ring {
                w.f64(*v);
            }
            match k.approx {
                Some((since, bound)) => {
                    w.u8(1);
                    w.u64(since);
                    w.f64(bound);
                }
                None => w.u8(0),
            }
        }
        w.u64(r.alerts.len() as u64);
        for (block, key, p, value) in &r.alerts {
            w.bytes(block.as_bytes());
            w.bytes(key);
            w.u64(p.history.len() as u64);
            for l in &p.history {
                w.u8(level_byte(*l));
            }
            w.u64(p.idx as u64);
            w.u8(p.flapping as u8 | (p.changed as u8) << 1 | (p.expired as u8) << 2);
            w.time(p.first_triggered);
            w.time(p.last_triggered);
            w.u8(level_byte(p.last_sent));
            w.f64(*value);
        }
        match &r.tier {
            Some(t) => {
                w.u8(1);
                encode_tier(&mut w, t);
            }
            None => w.u8(0),
        }
    }
    let sum = toptraffic_common::fnv1a(&w.0);
    w.u64(sum);
    w.0
}

fn encode_tier(w: &mut Writer, t: &TierState) {
    w.f64(t.error);
    let shape = t.by_age.first().map(|s| s.shape());
    w.u64(shape.map_or(0, |s| s.width as u64));
    w.u64(shape.map_or(0, |s| s.depth as u64));
    w.u64(t.by_age.len() as u64);
    for s in &t.by_age {
        let (total, counters) = s.parts();
        w.f64(total);
        for c in counters {
            w.f64(*c);
        }
    }
    w.u64(t.promotions);
    w.u64(t.demotions);
    w.u64(t.lines_estimated);
}

fn decode_tier(r: &mut Reader<'_>, intervals: usize) -> R<TierState> {
    let error = r.f64()?;
    let shape = Shape {
        width: r.count()?,
        depth: r.count()?,
    };
    let cells = shape.width.saturating_mul(shape.depth);
    if shape.width == 0 || shape.depth == 0 || cells as u64 > MAX_COUNT {
        return Err(format!("a sketch of {} x {}", shape.width, shape.depth));
    }
    let n = r.count()?;
    if n != intervals {
        return Err(format!("{n} sketches in a window of {intervals}"));
    }
    let mut by_age = Vec::with_capacity(n);
    for _ in 0..n {
        let total = r.f64()?;
        let counters = (0..cells).map(|_| r.f64()).collect::<R<Vec<f64>>>()?;
        by_age.push(Sketch::from_parts(shape, total, counters).expect("sized by its shape"));
    }
    Ok(TierState {
        error,
        by_age,
        promotions: r.u64()?,
        demotions: r.u64()?,
        lines_estimated: r.u64()?,
    })
}

/// Parses a state file's bytes; any flaw is an error, nothing is half read.
pub fn decode(buf: &[u8]) -> R<SavedState> {
    if buf.len() < MAGIC.len() || &buf[..MAGIC.len()] != MAGIC {
        return Err("not a toptraffic state file".into());
    }
    if buf.len() < MAGIC.len() + 4 + 8 {
        return Err("truncated".into());
    }
    let (body, tail) = buf.split_at(buf.len() - 8);
    let sum = u64::from_le_bytes(tail.try_into().expect("8 bytes"));
    let mut r = Reader {
        buf: body,
        pos: MAGIC.len(),
    };
    let version = r.u32()?;
    if !(1..=VERSION).contains(&version) {
        return Err(format!(
            "state file version {version}; this toptraffic reads {VERSION}"
        ));
    }
    if toptraffic_common::fnv1a(body) != sum {
        return Err("checksum mismatch (truncated or corrupt)".into());
    }
    let saved_at = r.time()?.ok_or("no save time")?;
    let every = Duration::from_nanos(r.u64()?);
    let intervals = r.count()?;
    let current = match r.u64()? {
        u64::MAX => None,
        c => Some(c),
    };
    let n_rules = r.count()?;
    let mut rules = Vec::with_capacity(n_rules.min(1024));
    for _ in 0..n_rules {
        let name = r.string()?;
        let grouping = r.string()?;
        let overflow_lines = r.u64()?;
        let n_keys = r.count()?;
        let mut keys = Vec::with_capacity(n_keys.min(1 << 20));
        for _ in 0..n_keys {
            let key: Key = r.bytes()?.into();
            let cursor = r.u64()?;
            let last_seen = r.u64()?;
            let n = r.count()?;
            if n != intervals {
                return Err(format!("a ring of {n} slots in a window of {intervals}"));
            }
            let ring = (0..n).map(|_| r.f64()).collect::<R<Vec<f64>>>()?;
            let approx = match r.u8_if(version >= 2)? {
                None | Some(0) => None,
                Some(1) => Some((r.u64()?, r.f64()?)),
                Some(b) => return Err(format!("bad approximate flag {b}")),
            };
            keys.push(KeyRing {
                key,
                cursor,
                last_seen,
                ring,
                approx,
            });
        }
        let n_alerts = r.count()?;
        let mut alerts = Vec::with_capacity(n_alerts.min(1 << 20));
        for _ in 0..n_alerts {
            let block = r.string()?;
            let key: Key = r.bytes()?.into();
            let n = r.count()?;
            let history = (0..n).map(|_| r.level()).collect::<R<Vec<Level>>>()?;
            let idx = r.count()?;
            let flags = r.u8()?;
            let parts = StateParts {
                history,
                idx,
                flapping: flags & 1 != 0,
                changed: flags & 2 != 0,
                expired: flags & 4 != 0,
                first_triggered: r.time()?,
                last_triggered: r.time()?,
                last_sent: r.level()?,
            };
            let value = r.f64()?;
            alerts.push((block, key, parts, value));
        }
        let tier = match r.u8_if(version >= 2)? {
            None | Some(0) => None,
            Some(1) => Some(decode_tier(&mut r, intervals)?),
            Some(b) => return Err(format!("bad tier flag {b}")),
        };
        rules.push(SavedRule {
            name,
            grouping,
            overflow_lines,
            keys,
            alerts,
            tier,
        });
    }
    if r.pos != body.len() {
        return Err(format!("{} unread bytes at the end", body.len() - r.pos));
    }
    Ok(SavedState {
        saved_at,
        every,
        intervals,
        current,
        rules,
    })
}

/// The largest state file read: a dozen rules of a million keys each over
/// 60 intervals write about 6.5 GB; the cap keeps a wrong path (a disk
/// image, a log) from exhausting memory.
pub const MAX_FILE: u64 = 8 << 30;

/// The temporary file a write goes through: beside `path` (the rename must
/// stay on its filesystem), never `path` itself, and of this process.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// Writes the state file atomically: a temporary file of mode 0600 (the
/// state names the traffic's keys), written and fsync()ed, renamed over
/// `path`, then the directory fsync()ed so that the rename survives a
/// crash. A failed write leaves the file that was there untouched.
pub fn write(path: &Path, s: &SavedState) -> io::Result<()> {
    write_atomically(path, &encode(s))
}

/// Writes `bytes` to `path` as [`write`] writes the state file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let tmp = temp_path(path);
    let written = (|| {
        // A leftover of an earlier run of the same pid goes: create_new
        // then makes a file of our mode, whatever that one had.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Reads the state file; Ok(None) when there is none. A file larger than
/// [`MAX_FILE`] is refused unread.
pub fn read(path: &Path) -> R<Option<SavedState>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let len = f.metadata().map_err(|e| format!("cannot read: {e}"))?.len();
    let too_large =
        |n: u64| format!("the file is {n} bytes, more than the {MAX_FILE} a state file may have");
    if len > MAX_FILE {
        return Err(too_large(len));
    }
    let mut buf = Vec::with_capacity(len as usize);
    // It may grow while read: never past the cap.
    f.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > MAX_FILE {
        return Err(too_large(buf.len() as u64));
    }
    decode(&buf).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::from_values;

    fn sample() -> SavedState {
        SavedState {
            saved_at: UNIX_EPOCH + Duration::from_secs(1_795_564_660),
            every: Duration::from_secs(5),
            intervals: 3,
            current: Some(359_112_932),
            rules: vec![SavedRule {
                name: "top_combined".into(),
                grouping: "g".into(),
                overflow_lines: 7,
                keys: vec![KeyRing {
                    key: from_values(&["10.0.0.1", "42"]),
                    cursor: 359_112_932,
                    last_seen: 359_112_931,
                    ring: vec![1.0, 2.5, 0.0],
                    approx: Some((359_112_931, 0.75)),
                }],
                alerts: vec![(
                    "#1".into(),
                    from_values(&["10.0.0.1", "42"]),
                    StateParts {
                        history: vec![Level::Ok, Level::Warning],
                        idx: 1,
                        flapping: false,
                        changed: true,
                        expired: false,
                        first_triggered: Some(UNIX_EPOCH + Duration::from_secs(9)),
                        last_triggered: None,
                        last_sent: Level::Warning,
                    },
                    18_630.0,
                )],
                tier: Some(TierState {
                    error: 0.25,
                    by_age: (0..3)
                        .map(|i| {
                            let shape = Shape { width: 4, depth: 2 };
                            let c = (0..8).map(|j| f64::from(i * 8 + j)).collect();
                            Sketch::from_parts(shape, 28.0, c).unwrap()
                        })
                        .collect(),
                    promotions: 1,
                    demotions: 2,
                    lines_estimated: 3,
                }),
            }],
        }
    }

    #[test]
    fn a_version_1_file_is_read_without_tier_or_approximate_keys() {
        // Version 1's layout: no approximate flag after a ring, no tier
        // after the alerts.
        let mut w = Writer(Vec::new());
        w.0.extend_from_slice(MAGIC);
        w.u32(1);
        w.time(Some(UNIX_EPOCH + Duration::from_secs(7)));
        w.u64(5_000_000_000);
        w.u64(2);
        w.u64(40);
        w.u64(1);
        w.bytes(b"r");
        w.bytes(b"g");
        w.u64(9);
        w.u64(1);
        w.bytes(b"k");
        w.u64(40);
        w.u64(39);
        w.u64(2);
        w.f64(1.0);
        w.f64(2.0);
        w.u64(0);
        let sum = toptraffic_common::fnv1a(&w.0);
        w.u64(sum);
        let s = decode(&w.0).unwrap();
        assert_eq!(s.current, Some(40));
        let r = &s.rules[0];
        assert_eq!((r.overflow_lines, r.tier.is_none()), (9, true));
        assert_eq!(r.keys[0].ring, [1.0, 2.0]);
        assert_eq!(r.keys[0].approx, None);
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(decode(&encode(&s)).unwrap(), s);
    }

    #[test]
    fn foreign_truncated_and_corrupt_files_are_refused() {
        let bytes = encode(&sample());
        assert!(decode(b"hello")
            .unwrap_err()
            .contains("not a toptraffic state file"));
        for cut in [20, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        for i in [MAGIC.len() + 5, bytes.len() / 2, bytes.len() - 9] {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode(&b).is_err(), "corrupt at {i}");
        }
        let mut b = bytes.clone();
        b[MAGIC.len()] = 9;
        assert!(decode(&b).unwrap_err().contains("version 9"));
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("toptraffic-persist-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_file_is_written_with_mode_0600_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("mode");
        let path = dir.join("state");
        write(&path, &sample()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(read(&path).unwrap(), Some(sample()));
        // Only the file is left: the temporary one was renamed.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_previous_file_whole() {
        let dir = temp_dir("atomic");
        let path = dir.join("state");
        let tmp = temp_path(&path);
        assert_ne!(tmp, path);
        assert_eq!(tmp.parent(), path.parent(), "renamed on one filesystem");
        write(&path, &sample()).unwrap();
        let before = std::fs::read(&path).unwrap();
        // The temporary file cannot be made: the write fails before the
        // rename, and the state that was there is untouched.
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("x"), b"x").unwrap();
        let mut other = sample();
        other.rules.clear();
        assert!(write(&path, &other).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_oversized_file_is_refused_unread() {
        let dir = temp_dir("huge");
        let path = dir.join("state");
        // Sparse: it takes no disk.
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_FILE + 1).unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.contains("more than the"), "{err}");
        assert!(err.contains(&(MAX_FILE + 1).to_string()), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
