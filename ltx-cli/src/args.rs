//! Command-line value parsers shared by the commands: TXIDs and times.

use ltx_core::TxId;

/// Parses a TXID: exactly 16 hex digits is hexadecimal, as the reference
/// prints it (`000000000000002a` is 42); a `0x` prefix is hexadecimal; any
/// other run of decimal digits is decimal. Signs, spaces and TXID 0 are
/// refused.
pub fn parse_txid(s: &str) -> Result<TxId, String> {
    let bad = || format!("{s:?} is not a TXID (16 hex digits, 0x-prefixed hex, or decimal)");
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() || h.len() > 16 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u64::from_str_radix(h, 16).map_err(|_| bad())?
    } else if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u64::from_str_radix(s, 16).map_err(|_| bad())?
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>().map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    if v == 0 {
        return Err(format!(
            "{s:?}: TXID 0 is the empty database; TXIDs start at 1"
        ));
    }
    Ok(TxId(v))
}

/// Parses an RFC 3339 time into milliseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time (e.g. 2026-11-22T14:05:00Z): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txid_forms() {
        assert_eq!(parse_txid("000000000000002a").unwrap(), TxId(42));
        assert_eq!(parse_txid("0000000000000010").unwrap(), TxId(16));
        assert_eq!(parse_txid("0x2a").unwrap(), TxId(42));
        assert_eq!(parse_txid("42").unwrap(), TxId(42));
        assert_eq!(parse_txid("00042").unwrap(), TxId(42));
        assert!(parse_txid("2a").is_err());
        assert!(parse_txid("").is_err());
        assert!(parse_txid("0").is_err());
        assert!(parse_txid("0x").is_err());
        assert!(parse_txid("-1").is_err());
        assert!(parse_txid("+42").is_err());
        assert!(parse_txid(" 42").is_err());
        assert_eq!(parse_txid("1").unwrap(), TxId(1));
        assert_eq!(parse_txid("0x1f").unwrap(), TxId(31));
        assert!(parse_txid("x").is_err());
        assert!(parse_txid("99999999999999999999").is_err());
    }

    #[test]
    fn time_forms() {
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z").unwrap(), 1500);
        assert_eq!(parse_time("1970-01-01T01:00:01+01:00").unwrap(), 1000);
        assert!(parse_time("yesterday").is_err());
    }
}
