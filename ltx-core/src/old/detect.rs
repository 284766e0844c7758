//! Format versions 1, 2 and 3 share the magic `LTX1` and the 100-byte header;
//! nothing in a file says which layout follows. [`detect`] decodes a whole
//! file under each layout and keeps the one whose structure and file checksum
//! validate; [`super::AnyDecoder`] streams a file under a known (or forced)
//! layout.
//!
//! ```
//! use ltx_core::old::detect;
//! use ltx_core::FormatVersion;
//! let v3 = ltx_core::doc_example_file();
//! assert_eq!(detect(&v3).unwrap(), FormatVersion::V3);
//! let v1 = ltx_core::old::v1::tests_support::tiny_v1(true);
//! assert_eq!(detect(&v1).unwrap(), FormatVersion::V1);
//! let err = detect(b"LTX1 but nothing else").unwrap_err();
//! assert!(err.to_string().contains("no format version"));
//! ```

use std::fmt;

use super::any::verify_as;
use crate::decoder::Summary;
use crate::error::Error;
use crate::types::FormatVersion;

/// Why [`detect`] could not settle on one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectError {
    /// No layout validates the file; what each one said, oldest first.
    None(Vec<(FormatVersion, Error)>),
    /// More than one layout validates the file (structure and file checksum).
    Ambiguous(Vec<FormatVersion>),
}

impl DetectError {
    /// The error of `version`'s decoder, when no layout validated.
    pub fn error_for(&self, version: FormatVersion) -> Option<&Error> {
        match self {
            DetectError::None(v) => v.iter().find(|(ver, _)| *ver == version).map(|(_, e)| e),
            DetectError::Ambiguous(_) => None,
        }
    }

    /// The error of the layout the file most likely has ([`likely_version`]),
    /// when no layout validated.
    pub fn likeliest(&self, bytes: &[u8]) -> Option<(FormatVersion, &Error)> {
        let v = likely_version(bytes);
        self.error_for(v).map(|e| (v, e))
    }
}

/// A guess of a file's layout from a few bytes after the header, for
/// reporting which error of a damaged file to show first; never a substitute
/// for [`detect`]. In order: an LZ4 frame magic at offset 100 means v1 (LZ4
/// page block); files without pages are told apart by their length (v1 120,
/// v2 129, v3 131 bytes); an LZ4 frame magic at 104 (after the first page
/// number) means v2; v3 page header flags at 104 (`00 01`, or `00 00`
/// followed by an LZ4 frame magic) mean v3; a length of `120 + n * (4 +
/// page_size)` means v1 (raw pages); a zero byte at 104 (a small page header
/// flags value) means v3; anything else is v1, and input too short to tell
/// is v3.
pub fn likely_version(bytes: &[u8]) -> FormatVersion {
    const MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
    if bytes.len() < 106 {
        return FormatVersion::V3;
    }
    if bytes[100..104] == MAGIC {
        return FormatVersion::V1;
    }
    if bytes[100..104] == [0; 4] {
        return match bytes.len() {
            120 => FormatVersion::V1,
            129 => FormatVersion::V2,
            _ => FormatVersion::V3,
        };
    }
    if bytes.get(104..108) == Some(&MAGIC[..]) {
        return FormatVersion::V2;
    }
    if bytes[104..106] == [0, 1]
        || (bytes[104..106] == [0, 0] && bytes.get(106..110) == Some(&MAGIC[..]))
    {
        return FormatVersion::V3;
    }
    let ps = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
    if ps >= 512 && (bytes.len() - 120).is_multiple_of(ps + 4) {
        return FormatVersion::V1;
    }
    if bytes[104] == 0 {
        // A small 16-bit value: a (damaged) v3 page header flags field.
        return FormatVersion::V3;
    }
    FormatVersion::V1
}

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetectError::None(v) => {
                write!(f, "no format version validates this file")?;
                for (ver, e) in v {
                    write!(f, "; as {ver}: {e}")?;
                }
                Ok(())
            }
            DetectError::Ambiguous(v) => {
                let names: Vec<String> = v.iter().map(|v| v.to_string()).collect();
                write!(
                    f,
                    "ambiguous format version: the file validates as {}",
                    names.join(" and ")
                )
            }
        }
    }
}

impl std::error::Error for DetectError {}

/// Detects the version of a whole file: decodes it under every layout and
/// returns the one that validates.
///
/// # Errors
/// [`DetectError::None`] (with each layout's error) or
/// [`DetectError::Ambiguous`].
pub fn detect(bytes: &[u8]) -> Result<FormatVersion, DetectError> {
    detect_summary(bytes).map(|s| s.format_version)
}

/// As [`detect`], returning the summary of the layout that validated.
///
/// # Errors
/// As [`detect`].
pub fn detect_summary(bytes: &[u8]) -> Result<Summary, DetectError> {
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for v in FormatVersion::ALL {
        match verify_as(bytes, v) {
            Ok(s) => ok.push(s),
            Err(e) => errs.push((v, e)),
        }
    }
    match ok.len() {
        0 => Err(DetectError::None(errs)),
        1 => Ok(ok[0]),
        _ => Err(DetectError::Ambiguous(
            ok.iter().map(|s| s.format_version).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_reports_none_and_ambiguity_clearly() {
        let v3 = crate::encoder::doc_example_file();
        assert_eq!(detect(&v3), Ok(FormatVersion::V3));
        let v1 = crate::old::v1::tests_support::tiny_v1(false);
        assert_eq!(detect(&v1), Ok(FormatVersion::V1));
        assert_eq!(likely_version(&v1), FormatVersion::V1);
        assert_eq!(likely_version(&v3), FormatVersion::V3);
        let mut bad = v1.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let e = detect(&bad).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("no format version validates this file"),
            "{msg}"
        );
        for v in ["as v1:", "as v2:", "as v3:"] {
            assert!(msg.contains(v), "{msg}");
        }
        assert_eq!(
            e.likeliest(&bad).unwrap().1.category(),
            Some("file-checksum-mismatch")
        );
        let amb = DetectError::Ambiguous(vec![FormatVersion::V1, FormatVersion::V3]);
        assert_eq!(
            amb.to_string(),
            "ambiguous format version: the file validates as v1 and v3"
        );
    }
}
