//! What a replay reads: line protocol whose timestamps stand for the
//! arrival times (one datagram a line), or a pcap/pcapng capture of UDP
//! datagrams (the capture's timestamps are the arrival times).
//!
//! Captures are read with `pcap-file` (both formats) and their frames
//! sliced with `etherparse` (Ethernet with VLANs, Linux cooked captures,
//! raw IP and BSD loopback; IPv4 and IPv6). A datagram split into IP
//! fragments is not reassembled: it is skipped and counted, as is every
//! frame that is not UDP to the listen port.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, PcapError};

use crate::lineproto::Lines;

/// One datagram and when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub at: SystemTime,
    pub data: Vec<u8>,
}

/// The unit of line protocol timestamps (`influx -precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ns" | "n" => Precision::Nanoseconds,
            "us" | "u" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            _ => return Err(format!("unknown precision {s:?}: ns, us, ms or s")),
        })
    }
}

impl Precision {
    fn nanos(self, t: i64) -> Option<i128> {
        let per = match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
        };
        let n = i128::from(t) * per;
        (n >= 0).then_some(n)
    }
}

/// What reading an input skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Frames that were not UDP datagrams to the listen port.
    pub other_frames: u64,
    /// IP fragments (not reassembled).
    pub fragments: u64,
    /// Lines that do not parse (counted as the daemon counts them, at the
    /// time of the line before).
    pub unparsed_lines: u64,
    /// Of those, the ones before any line with a timestamp: there is no
    /// time to replay them at, so they are not.
    pub unplaced_lines: u64,
    /// A capture that ends inside a packet (what a killed tcpdump
    /// leaves): read up to it, as tcpdump reads it.
    pub cut_short: bool,
}

/// A reason an input cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{file}: {message}")]
    Format { file: String, message: String },
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Reads `path`: a capture (by its magic number) or line protocol.
/// `port` picks the datagrams of a capture.
pub fn read(
    path: &Path,
    precision: Precision,
    port: u16,
    out: &mut Vec<Datagram>,
    skipped: &mut Skipped,
) -> Result<(), InputError> {
    let name = path.display().to_string();
    let io = |e| InputError::Io(name.clone(), e);
    let mut f = File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(io)?;
    let magic: [u8; 4] = bytes
        .get(..4)
        .and_then(|m| m.try_into().ok())
        .unwrap_or_default();
    let format = |message: String| InputError::Format {
        file: name.clone(),
        message,
    };
    if PCAP_MAGICS.contains(&magic) {
        read_pcap(&bytes, port, out, skipped).map_err(format)
    } else if magic == PCAPNG_MAGIC {
        read_pcapng(&bytes, port, out, skipped).map_err(format)
    } else {
        read_line_protocol(&bytes, precision, out, skipped).map_err(format)
    }
}

/// One datagram a line, at the line's timestamp.
fn read_line_protocol(
    bytes: &[u8],
    precision: Precision,
    out: &mut Vec<Datagram>,
    skipped: &mut Skipped,
) -> Result<(), String> {
    let mut lines = Lines::new(bytes);
    let mut last: Option<SystemTime> = None;
    let mut line_no = 0usize;
    let mut seen = 0usize;
    while let Some(raw) = lines.next_raw() {
        // The line's number, for errors: newlines up to where it starts.
        let start = raw.as_ptr() as usize - bytes.as_ptr() as usize;
        line_no += bytes[seen..start].iter().filter(|&&c| c == b'\n').count();
        seen = start;
        let at = match Lines::new(raw).next() {
            Some(Ok(line)) => match line.timestamp {
                Some(t) => {
                    let n = precision.nanos(t).ok_or_else(|| {
                        format!("line {}: timestamp {t} is before 1970", line_no + 1)
                    })?;
                    UNIX_EPOCH + Duration::from_nanos(u64::try_from(n).map_err(|_| {
                        format!("line {}: timestamp {t} is too large", line_no + 1)
                    })?)
                }
                None => {
                    return Err(format!(
                        "line {}: no timestamp; a replay takes each line's timestamp as its arrival time",
                        line_no + 1
                    ))
                }
            },
            _ => {
                skipped.unparsed_lines += 1;
                match last {
                    Some(t) => t,
                    None => {
                        skipped.unplaced_lines += 1;
                        continue;
                    }
                }
            }
        };
        last = Some(at);
        out.push(Datagram {
            at,
            data: raw.to_vec(),
        });
    }
    Ok(())
}

fn read_pcap(
    bytes: &[u8],
    port: u16,
    out: &mut Vec<Datagram>,
    skipped: &mut Skipped,
) -> Result<(), String> {
    let mut r = PcapReader::new(BufReader::new(bytes)).map_err(|e| e.to_string())?;
    let link = r.header().datalink;
    while let Some(p) = r.next_packet() {
        let Some(p) = unless_cut(p, skipped)? else {
            break;
        };
        frame(link, UNIX_EPOCH + p.timestamp, &p.data, port, out, skipped);
    }
    Ok(())
}

/// What a capture's reader gave: its packet or block; None when it
/// stopped at the end of the bytes, inside one (the capture was cut short,
/// which `skipped` notes); an error otherwise.
fn unless_cut<T>(read: Result<T, PcapError>, skipped: &mut Skipped) -> Result<Option<T>, String> {
    match read {
        Ok(v) => Ok(Some(v)),
        Err(PcapError::IncompleteBuffer) => {
            skipped.cut_short = true;
            Ok(None)
        }
        Err(PcapError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            skipped.cut_short = true;
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

fn read_pcapng(
    bytes: &[u8],
    port: u16,
    out: &mut Vec<Datagram>,
    skipped: &mut Skipped,
) -> Result<(), String> {
    let mut r = PcapNgReader::new(BufReader::new(bytes)).map_err(|e| e.to_string())?;
    while let Some(b) = r.next_block() {
        let Some(b) = unless_cut(b, skipped)? else {
            break;
        };
        // Owned, so that the reader can be asked about the interface.
        let b = b.into_owned();
        let Block::EnhancedPacket(p) = b else {
            continue;
        };
        let Some(iface) = r.packet_interface(&p) else {
            return Err(format!(
                "a packet names interface {}, which the capture does not describe",
                p.interface_id
            ));
        };
        // pcap-file hands the raw timestamp over as nanoseconds; its unit
        // is the interface's if_tsresol (microseconds unless given).
        let resol = iface
            .options
            .iter()
            .find_map(|o| match o {
                InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                _ => None,
            })
            .unwrap_or(6);
        let raw = p.timestamp.as_nanos();
        let nanos = if resol & 0x80 == 0 {
            let exp = u32::from(resol);
            if exp <= 9 {
                raw * 10u128.pow(9 - exp)
            } else {
                raw / 10u128.pow(exp - 9)
            }
        } else {
            (raw * 1_000_000_000) >> (resol & 0x7f)
        };
        let at = UNIX_EPOCH + Duration::from_nanos(nanos as u64);
        frame(iface.linktype, at, &p.data, port, out, skipped);
    }
    Ok(())
}

/// The UDP payload of a frame to `port`, if it is one.
fn frame(
    link: DataLink,
    at: SystemTime,
    data: &[u8],
    port: u16,
    out: &mut Vec<Datagram>,
    skipped: &mut Skipped,
) {
    let sliced = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(data),
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(data),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(data),
        // BSD loopback: a 4-byte address family, then the IP packet.
        DataLink::NULL | DataLink::LOOP if data.len() > 4 => SlicedPacket::from_ip(&data[4..]),
        // Linux cooked v2: a 20-byte header, then the IP packet.
        DataLink::LINUX_SLL2 if data.len() > 20 => SlicedPacket::from_ip(&data[20..]),
        _ => {
            skipped.other_frames += 1;
            return;
        }
    };
    let Ok(p) = sliced else {
        skipped.other_frames += 1;
        return;
    };
    let fragmented = match &p.net {
        Some(NetSlice::Ipv4(v4)) => v4.is_payload_fragmented(),
        Some(NetSlice::Ipv6(v6)) => v6.is_payload_fragmented(),
        _ => false,
    };
    if fragmented {
        skipped.fragments += 1;
        return;
    }
    match p.transport {
        Some(TransportSlice::Udp(udp)) if udp.destination_port() == port => out.push(Datagram {
            at,
            data: udp.payload().to_vec(),
        }),
        _ => skipped.other_frames += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(text: &str, precision: Precision) -> Result<(Vec<Datagram>, Skipped), String> {
        let mut out = Vec::new();
        let mut skipped = Skipped::default();
        read_line_protocol(text.as_bytes(), precision, &mut out, &mut skipped)?;
        Ok((out, skipped))
    }

    #[test]
    fn each_line_is_a_datagram_at_its_timestamp() {
        let (d, s) = lp(
            "# a comment\ncombined,ip=a,id=1 count=1 1700000000\n\nnot a line\ncombined,ip=b,id=2 count=1 1700000005\n",
            Precision::Seconds,
        )
        .unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            d.iter().map(|d| d.at).collect::<Vec<_>>(),
            [t0, t0, t0 + Duration::from_secs(5)]
        );
        assert_eq!(d[1].data, b"not a line");
        assert_eq!(s.unparsed_lines, 1);
    }

    #[test]
    fn lines_that_do_not_parse_before_any_timestamp_are_counted_unplaced() {
        let (d, s) = lp(
            "garbage\n\u{1}\u{2}\ncombined,ip=a,id=1 count=1 1700000000\nbad again\n",
            Precision::Seconds,
        )
        .unwrap();
        assert_eq!(d.len(), 2, "the line and the bad one after it");
        assert_eq!((s.unparsed_lines, s.unplaced_lines), (3, 2));
    }

    /// A capture cut inside its last packet (a killed tcpdump) is read up
    /// to the cut, and says so.
    #[test]
    fn a_capture_cut_short_is_read_up_to_the_cut() {
        use pcap_file::pcap::{PcapPacket, PcapWriter};
        let mut pcap = Vec::new();
        let mut w = PcapWriter::new(&mut pcap).unwrap();
        for (i, payload) in [
            &b"combined,ip=a,id=1 count=1"[..],
            b"combined,ip=b,id=2 count=1",
        ]
        .into_iter()
        .enumerate()
        {
            let mut frame = Vec::new();
            etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
                .ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
                .udp(40000, 9100)
                .write(&mut frame, payload)
                .unwrap();
            let at = Duration::from_secs(1_700_000_000 + i as u64);
            w.write_packet(&PcapPacket::new(at, frame.len() as u32, &frame))
                .unwrap();
        }
        w.into_writer();
        let whole = pcap.len();
        let mut out = Vec::new();
        let mut skipped = Skipped::default();
        read_pcap(&pcap[..whole - 10], 9100, &mut out, &mut skipped).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, b"combined,ip=a,id=1 count=1");
        assert!(skipped.cut_short);
        let (mut out, mut skipped) = (Vec::new(), Skipped::default());
        read_pcap(&pcap, 9100, &mut out, &mut skipped).unwrap();
        assert_eq!((out.len(), skipped.cut_short), (2, false));
    }

    #[test]
    fn a_line_without_a_timestamp_is_an_error_naming_it() {
        let e = lp("m,a=1 f=1 1\n\nm,a=1 f=1\n", Precision::Nanoseconds).unwrap_err();
        assert_eq!(
            e,
            "line 3: no timestamp; a replay takes each line's timestamp as its arrival time"
        );
    }

    #[test]
    fn precisions_scale_to_nanoseconds() {
        for (p, t) in [
            (Precision::Nanoseconds, 1_500_000_000i64),
            (Precision::Microseconds, 1_500_000),
            (Precision::Milliseconds, 1_500),
        ] {
            let (d, _) = lp(&format!("m f=1 {t}"), p).unwrap();
            assert_eq!(d[0].at, UNIX_EPOCH + Duration::from_millis(1_500));
        }
        assert_eq!("u".parse::<Precision>(), Ok(Precision::Microseconds));
        assert!("h".parse::<Precision>().is_err());
    }
}
