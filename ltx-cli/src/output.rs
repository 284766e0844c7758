//! Shared text forms for printers: timestamps, flags, headers, errors as
//! JSON, aligned tables, hexdumps and progress bars.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ltx_core::Header;
use serde::Serialize;

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with
/// milliseconds, e.g. `2024-01-02T03:04:05.678Z` (the reference's form), by
/// chrono; a time beyond its calendar (±262,000 years, only in hostile
/// headers) prints as the number of milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    ltx_compactor::fetch::rfc3339(ms)
}

/// 16 lower-case hex digits, the reference's form for TXIDs and checksums.
pub fn hex16(v: u64) -> String {
    format!("{v:016x}")
}

/// Names of the header flag bits that are set: `NoChecksum` for 0x2, and
/// `0x........` for each bit the format does not define.
pub fn header_flag_names(flags: u32) -> Vec<String> {
    (0..32)
        .map(|b| 1u32 << b)
        .filter(|bit| flags & bit != 0)
        .map(|bit| match bit {
            0x2 => "NoChecksum".to_string(),
            other => format!("unknown-0x{other:08x}"),
        })
        .collect()
}

/// `0x00000002 (NoChecksum)`, `0x00000000 (none)`.
pub fn header_flags_text(flags: u32) -> String {
    let names = header_flag_names(flags);
    if names.is_empty() {
        format!("0x{flags:08x} (none)")
    } else {
        format!("0x{flags:08x} ({})", names.join(", "))
    }
}

/// The payload encoding a page header's flags announce.
pub fn page_encoding(flags: u16) -> &'static str {
    match flags {
        0x0001 => "block",
        0x0000 => "legacy-frame",
        _ => "invalid",
    }
}

/// `page_size / frame_size`: how much the frame compresses its page.
pub fn ratio(page_size: u32, frame_size: u64) -> f64 {
    if frame_size == 0 {
        0.0
    } else {
        f64::from(page_size) / frame_size as f64
    }
}

/// A ratio rounded to two decimals, for JSON.
pub fn ratio_json(page_size: u32, frame_size: u64) -> f64 {
    (ratio(page_size, frame_size) * 100.0).round() / 100.0
}

/// Writes `v` (a view struct deriving [`Serialize`]) as pretty-printed JSON
/// and a newline. Every object's keys come out in alphabetical order,
/// whatever the order of the struct's fields: the order ltx's JSON has
/// always had (serde_json's maps are sorted without its `preserve_order`
/// feature), kept byte for byte.
///
/// # Errors
/// Serialisation or write errors.
pub fn write_json(out: &mut dyn Write, v: &impl Serialize) -> anyhow::Result<()> {
    let sorted = serde_json::to_value(v)?;
    serde_json::to_writer_pretty(&mut *out, &sorted)?;
    writeln!(out)?;
    Ok(())
}

/// The 100 header bytes read without any validation, so that a damaged
/// header can still be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // the header's fields as SPEC.md §3 names them
pub struct RawHeader {
    pub magic: [u8; 4],
    pub flags: u32,
    pub page_size: u32,
    pub commit: u32,
    pub min_txid: u64,
    pub max_txid: u64,
    pub timestamp: i64,
    pub pre_apply_checksum: u64,
    pub wal_offset: i64,
    pub wal_size: i64,
    pub wal_salt1: u32,
    pub wal_salt2: u32,
    pub node_id: u64,
    pub reserved: [u8; 20],
}

impl RawHeader {
    /// Reads the fields from the first 100 bytes of `b` (`None` if shorter).
    pub fn from_bytes(b: &[u8]) -> Option<RawHeader> {
        if b.len() < 100 {
            return None;
        }
        let u32_at = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().unwrap());
        Some(RawHeader {
            magic: b[0..4].try_into().unwrap(),
            flags: u32_at(4),
            page_size: u32_at(8),
            commit: u32_at(12),
            min_txid: u64_at(16),
            max_txid: u64_at(24),
            timestamp: u64_at(32) as i64,
            pre_apply_checksum: u64_at(40),
            wal_offset: u64_at(48) as i64,
            wal_size: u64_at(56) as i64,
            wal_salt1: u32_at(64),
            wal_salt2: u32_at(68),
            node_id: u64_at(72),
            reserved: b[80..100].try_into().unwrap(),
        })
    }

    /// The fields of a decoded (validated) header.
    pub fn from_header(h: &Header) -> RawHeader {
        RawHeader::from_bytes(&h.to_bytes()).expect("100 bytes")
    }

    /// The magic as text (`"LTX1"`), escaping non-printable bytes.
    pub fn magic_text(&self) -> String {
        self.magic.iter().map(|&b| printable(b)).collect()
    }

    /// `snapshot` (min TXID 1) or `incremental`.
    pub fn kind(&self) -> &'static str {
        if self.min_txid == 1 {
            "snapshot"
        } else {
            "incremental"
        }
    }

    /// The header as a JSON object with the manifest's field names.
    pub fn to_json(self) -> HeaderJson {
        HeaderJson {
            magic: self.magic_text(),
            flags: self.flags,
            flag_names: header_flag_names(self.flags),
            page_size: self.page_size,
            commit: self.commit,
            min_txid: hex16(self.min_txid),
            max_txid: hex16(self.max_txid),
            timestamp: self.timestamp,
            timestamp_rfc3339: rfc3339_ms(self.timestamp),
            pre_apply_checksum: hex16(self.pre_apply_checksum),
            wal_offset: self.wal_offset,
            wal_size: self.wal_size,
            wal_salt1: self.wal_salt1,
            wal_salt2: self.wal_salt2,
            node_id: self.node_id,
            snapshot: self.min_txid == 1,
            reserved_zero: self.reserved.iter().all(|&b| b == 0),
        }
    }

    /// The header as indented `key: value` lines.
    pub fn write_text(&self, w: &mut dyn Write, indent: &str) -> std::io::Result<()> {
        let tracking = if self.flags & 0x2 != 0 {
            "checksums not tracked"
        } else {
            "checksums tracked"
        };
        writeln!(w, "{indent}magic: {}", self.magic_text())?;
        writeln!(w, "{indent}flags: {}", header_flags_text(self.flags))?;
        writeln!(w, "{indent}page_size: {}", self.page_size)?;
        writeln!(w, "{indent}commit: {}", self.commit)?;
        writeln!(
            w,
            "{indent}min_txid: {} ({})",
            hex16(self.min_txid),
            self.min_txid
        )?;
        writeln!(
            w,
            "{indent}max_txid: {} ({})",
            hex16(self.max_txid),
            self.max_txid
        )?;
        writeln!(
            w,
            "{indent}timestamp: {} ({} ms)",
            rfc3339_ms(self.timestamp),
            self.timestamp
        )?;
        writeln!(
            w,
            "{indent}pre_apply_checksum: {}",
            hex16(self.pre_apply_checksum)
        )?;
        writeln!(w, "{indent}wal_offset: {}", self.wal_offset)?;
        writeln!(w, "{indent}wal_size: {}", self.wal_size)?;
        writeln!(
            w,
            "{indent}wal_salt1: {} (0x{:08x})",
            self.wal_salt1, self.wal_salt1
        )?;
        writeln!(
            w,
            "{indent}wal_salt2: {} (0x{:08x})",
            self.wal_salt2, self.wal_salt2
        )?;
        writeln!(w, "{indent}node_id: {}", self.node_id)?;
        if self.reserved.iter().any(|&b| b != 0) {
            writeln!(w, "{indent}reserved: {} (NON-ZERO)", hex(&self.reserved))?;
        }
        writeln!(w, "{indent}type: {}, {tracking}", self.kind())
    }
}

/// Lower-case hex of `b`, no separators.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn printable(b: u8) -> char {
    if b.is_ascii_graphic() || b == b' ' {
        b as char
    } else {
        '.'
    }
}

/// A header in JSON ([`RawHeader::to_json`]): the manifest's field names,
/// TXIDs and checksums as 16 hex digits.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)] // the header's fields as SPEC.md §3 names them
pub struct HeaderJson {
    pub magic: String,
    pub flags: u32,
    pub flag_names: Vec<String>,
    pub page_size: u32,
    pub commit: u32,
    pub min_txid: String,
    pub max_txid: String,
    pub timestamp: i64,
    pub timestamp_rfc3339: String,
    pub pre_apply_checksum: String,
    pub wal_offset: i64,
    pub wal_size: i64,
    pub wal_salt1: u32,
    pub wal_salt2: u32,
    pub node_id: u64,
    pub snapshot: bool,
    pub reserved_zero: bool,
}

/// An error in JSON: message, category, offset, pgno.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorJson {
    /// What was wrong.
    pub message: String,
    /// The error category (`io` for a read error).
    pub category: Option<&'static str>,
    /// Byte offset, when known.
    pub offset: Option<u64>,
    /// Page number, when known.
    pub pgno: Option<u32>,
}

/// An LTX error as JSON: message, category, offset, pgno.
pub fn error_json(e: &ltx_core::Error) -> ErrorJson {
    ErrorJson {
        message: e.to_string(),
        category: e.category(),
        offset: e.offset(),
        pgno: e.pgno(),
    }
}

/// A read error as JSON (category `io`, no offset or page).
pub fn io_error_json(message: &str) -> ErrorJson {
    ErrorJson {
        message: message.to_string(),
        category: Some("io"),
        offset: None,
        pgno: None,
    }
}

/// Writes `data` as a classic `xxd` hexdump: offset, 16 bytes per line in
/// groups of two, ASCII. With `squeeze`, runs of all-zero lines after the
/// first are replaced by a single `*` (like `xxd -a`).
pub fn hexdump(w: &mut dyn Write, data: &[u8], squeeze: bool) -> std::io::Result<()> {
    let mut skipping = false;
    let n = data.len();
    for (i, line) in data.chunks(16).enumerate() {
        let off = i * 16;
        let zero = line.iter().all(|&b| b == 0);
        let prev_zero = i > 0 && data[off - 16..off].iter().all(|&b| b == 0);
        let last = off + 16 >= n;
        if squeeze && zero && prev_zero && !last {
            if !skipping {
                writeln!(w, "*")?;
                skipping = true;
            }
            continue;
        }
        skipping = false;
        let mut s = String::with_capacity(68);
        s.push_str(&format!("{off:08x}:"));
        for k in 0..16 {
            if k % 2 == 0 {
                s.push(' ');
            }
            match line.get(k) {
                Some(b) => s.push_str(&format!("{b:02x}")),
                None => s.push_str("  "),
            }
        }
        s.push_str("  ");
        s.extend(line.iter().map(|&b| printable(b)));
        writeln!(w, "{s}")?;
    }
    Ok(())
}

/// Column alignment in [`write_table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Padded on the right.
    Left,
    /// Padded on the left.
    Right,
}

/// Writes an aligned table: a header row, then rows, columns separated by two
/// spaces. The last column is never padded.
pub fn write_table(
    w: &mut dyn Write,
    indent: &str,
    headers: &[&str],
    align: &[Align],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut s = String::from(indent);
        let cells: Vec<&str> = cells.collect();
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = widths[i].saturating_sub(c.chars().count());
            if align[i] == Align::Right {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i != last {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s
    };
    writeln!(w, "{}", line(&mut headers.iter().copied()))?;
    for r in rows {
        writeln!(w, "{}", line(&mut r.iter().map(String::as_str)))?;
    }
    Ok(())
}

/// Whether standard error is a terminal (progress bars are drawn only then).
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether standard output is a terminal.
pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// A byte-count progress bar on standard error, or a hidden one when
/// `show` is false or standard error is not a terminal. `total` of `None`
/// gives a spinner (standard input).
pub fn progress(show: bool, total: Option<u64>, msg: &str) -> ProgressBar {
    if !show || !stderr_is_tty() {
        return ProgressBar::hidden();
    }
    let pb = match total {
        Some(t) => {
            let pb = ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr());
            pb.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            pb
        }
        None => {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            pb.set_style(
                ProgressStyle::with_template("{spinner} {msg} {bytes} {binary_bytes_per_sec}")
                    .expect("valid template"),
            );
            pb
        }
    };
    pb.set_message(msg.to_string());
    pb
}

/// Pages of a sorted list as compact ranges: `1-2, 4-8, 11`.
pub fn ranges(pgnos: &[u32], max_ranges: usize) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    let mut total = 0;
    while i < pgnos.len() {
        let start = pgnos[i];
        let mut end = start;
        while i + 1 < pgnos.len() && pgnos[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = pgnos[i];
        }
        total += 1;
        if out.len() < max_ranges {
            out.push(if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            });
        }
        i += 1;
    }
    let mut s = out.join(", ");
    if total > max_ranges {
        s.push_str(&format!(", ... ({} more ranges)", total - max_ranges));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        // Extremes must not panic.
        let _ = rfc3339_ms(i64::MIN);
        let _ = rfc3339_ms(i64::MAX);
    }

    #[test]
    fn flags() {
        assert_eq!(header_flags_text(0), "0x00000000 (none)");
        assert_eq!(header_flags_text(2), "0x00000002 (NoChecksum)");
        assert_eq!(
            header_flags_text(3),
            "0x00000003 (unknown-0x00000001, NoChecksum)"
        );
    }

    #[test]
    fn hexdump_like_xxd() {
        let mut data = b"SQLite format 3\0".to_vec();
        data.extend_from_slice(&[0u8; 64]);
        data.extend_from_slice(b"abc");
        let mut out = Vec::new();
        hexdump(&mut out, &data, true).unwrap();
        let s = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "00000000: 5351 4c69 7465 2066 6f72 6d61 7420 3300  SQLite format 3."
        );
        assert_eq!(
            lines[1],
            "00000010: 0000 0000 0000 0000 0000 0000 0000 0000  ................"
        );
        assert_eq!(lines[2], "*");
        assert_eq!(
            lines[3],
            "00000050: 6162 63                                  abc"
        );
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn page_ranges() {
        assert_eq!(ranges(&[1, 2, 4, 5, 6, 8], 10), "1-2, 4-6, 8");
        assert_eq!(ranges(&[1, 3, 5], 2), "1, 3, ... (1 more ranges)");
        assert_eq!(ranges(&[], 2), "");
    }
}
