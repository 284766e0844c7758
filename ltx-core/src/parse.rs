//! Domain values from untrusted names and numbers, with typed errors:
//! LTX file names, page sizes, format version numbers. ([`crate::types`]
//! holds the values themselves and knows no errors; [`crate::error`] names
//! those values in its kinds.)

use crate::error::{Error, ErrorKind};
use crate::types::{FormatVersion, PageSize, TxId};

/// [`FormatVersion::from_number`] as a typed error, for callers that take a
/// version number from their user.
///
/// # Errors
/// [`ErrorKind::Misuse`] unless `n` is 1, 2 or 3.
pub fn parse_version_number(n: u64) -> Result<FormatVersion, Error> {
    FormatVersion::from_number(n)
        .ok_or_else(|| Error::new(ErrorKind::Misuse("format version must be 1, 2 or 3")))
}

impl PageSize {
    /// Validates `v`, as a typed error.
    ///
    /// # Errors
    /// [`ErrorKind::BadPageSize`] when `v` is not a valid page size.
    pub fn try_new(v: u32) -> Result<PageSize, Error> {
        Self::new(v).ok_or_else(|| Error::new(ErrorKind::BadPageSize(v)))
    }
}

/// Formats an LTX file name, `%016x-%016x.ltx`.
///
/// ```
/// use ltx_core::{format_filename, parse_filename, TxId};
/// let name = format_filename(TxId(1), TxId(0x2a));
/// assert_eq!(name, "0000000000000001-000000000000002a.ltx");
/// assert_eq!(parse_filename(&name).unwrap(), (TxId(1), TxId(0x2a)));
/// ```
pub fn format_filename(min: TxId, max: TxId) -> String {
    format!("{min}-{max}.ltx")
}

/// Parses an LTX file name (the base name only, lower-case hex as the reference writes).
///
/// # Errors
/// [`ErrorKind::BadFileName`] when the name is not exactly `%016x-%016x.ltx`.
pub fn parse_filename(name: &str) -> Result<(TxId, TxId), Error> {
    let bad = || Error::new(ErrorKind::BadFileName(name.to_string()));
    let b = name.as_bytes();
    if b.len() != 37 || &b[16..17] != b"-" || &b[33..] != b".ltx" {
        return Err(bad());
    }
    let hex = |s: &[u8]| -> Option<u64> {
        if s.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        {
            u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
        } else {
            None
        }
    };
    match (hex(&b[..16]), hex(&b[17..33])) {
        (Some(a), Some(z)) => Ok((TxId(a), TxId(z))),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames() {
        assert!(parse_filename("0000000000000001-0000000000000002.ltx").is_ok());
        assert!(parse_filename("0000000000000001-000000000000000A.ltx").is_err());
        assert!(parse_filename("0000000000000001-0000000000000002.ltx.tmp").is_err());
        assert!(parse_filename("000000000000001-0000000000000002.ltx").is_err());
        assert!(parse_filename("0000000000000001_0000000000000002.ltx").is_err());
        assert!(parse_filename("+000000000000001-0000000000000002.ltx").is_err());
    }
}
