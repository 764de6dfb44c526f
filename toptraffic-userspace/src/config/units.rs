//! The units a user writes: durations (`"5s"`, `"1m30s"`) and byte sizes
//! (`65536`, `"64MiB"`).

use std::time::Duration;

use serde::Deserialize;

/// Durations as `"5s"`, `"1m"`, `"1m30s"`; zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("bad duration {s:?} ({e}); write e.g. \"5s\", \"1m\", \"2m30s\""))?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be more than zero"));
    }
    Ok(d)
}

/// Byte sizes as an integer or a string with a binary suffix (`"64MiB"`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size {s:?}; write e.g. 65536, \"512KiB\", \"64MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        _ => return Err(format!("bad size unit in {s:?}; use B, KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawBytes {
    Int(u64),
    Str(String),
}

pub(super) fn de_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match RawBytes::deserialize(d)? {
        RawBytes::Int(n) => Ok(n),
        RawBytes::Str(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

pub(super) fn de_opt_bytes<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    de_bytes(d).map(Some)
}

pub(super) fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}
