//! Format versions 1, 2 and 3: detection for whole files held in memory, and
//! the `--format-version N` option that forces one.
//!
//! Detection decodes the file under every layout and keeps the one that
//! validates (structure and file checksum). v1 and v2 are tried with the
//! streaming decoders (they reject a v3 file within its first frames); v3 is
//! verified with the parallel fast path ([`crate::check::verify_bytes`]), and
//! its verdict is kept so the caller does not verify twice.

use anyhow::{bail, Result};
use ltx_core::old::{likely_version, verify_as, DetectError};
use ltx_core::{Error, FormatVersion, Summary};

/// `--format-version N`, shared by the commands that read LTX files.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct VersionArg {
    /// Read the input(s) as LTX format version N (1, 2 or 3) instead of
    /// detecting it (v1: LiteFS / Litestream before v0.5; v2: superfly/ltx
    /// v0.4; v3: current). The version of a file cannot be read from its
    /// header: without this option every layout is tried and the one whose
    /// structure and file checksum validate is used.
    #[arg(long = "format-version", value_name = "N", value_parser = clap::value_parser!(u8).range(1..=3))]
    pub format_version: Option<u8>,
}

impl VersionArg {
    /// The forced version, if any.
    pub fn forced(&self) -> Option<FormatVersion> {
        self.format_version
            .and_then(|n| FormatVersion::from_number(u64::from(n)))
    }
}

/// The outcome of detection on one file.
#[derive(Debug, Clone)]
pub struct Detected {
    /// The version used: forced, the only one that validates, or (when none
    /// does) the likeliest one, whose error is in `verdict`.
    pub version: FormatVersion,
    /// Whether `--format-version` chose it.
    pub forced: bool,
    /// That version's verdict on the whole file.
    pub verdict: Result<Summary, Error>,
    /// When no version validates: what each said.
    pub none: Option<DetectError>,
}

impl Detected {
    /// The error to report: the chosen layout's, and, when detection found no
    /// valid layout, what every layout said.
    pub fn error_message(&self) -> Option<String> {
        let e = self.verdict.as_ref().err()?;
        Some(match &self.none {
            Some(n) => format!("{e} [{n}]"),
            None if self.forced => format!("{e} (read as format {})", self.version),
            None => e.to_string(),
        })
    }
}

/// As [`detect_with`], verifying v3 with [`crate::check::verify_bytes`].
///
/// # Errors
/// As [`detect_with`].
pub fn detect(bytes: &[u8], forced: Option<FormatVersion>) -> Result<Detected> {
    detect_with(bytes, forced, crate::check::verify_bytes)
}

/// Detects (or, with `forced`, uses) the version of a whole file and
/// verifies the file under it; `v3` verifies a v3 file (the caller's fast
/// path), v1 and v2 use the streaming decoders.
///
/// # Errors
/// Only ambiguity (more than one layout validates); invalid files come back
/// as `Ok` with an `Err` verdict.
pub fn detect_with(
    bytes: &[u8],
    forced: Option<FormatVersion>,
    v3: impl FnOnce(&[u8]) -> Result<Summary, Error>,
) -> Result<Detected> {
    let mut v3 = Some(v3);
    let mut verdict = |v: FormatVersion| match v {
        FormatVersion::V3 => (v3.take().expect("v3 verified once"))(bytes),
        v => verify_as(bytes, v),
    };
    if let Some(v) = forced {
        return Ok(Detected {
            version: v,
            forced: true,
            verdict: verdict(v),
            none: None,
        });
    }
    let results: Vec<(FormatVersion, Result<Summary, Error>)> = FormatVersion::ALL
        .iter()
        .map(|&v| (v, verdict(v)))
        .collect();
    let ok: Vec<FormatVersion> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(v, _)| *v)
        .collect();
    if ok.len() > 1 {
        bail!(
            "{} (force one with --format-version)",
            DetectError::Ambiguous(ok)
        );
    }
    if let Some(&v) = ok.first() {
        let r = results.into_iter().find(|(x, _)| *x == v).expect("found").1;
        return Ok(Detected {
            version: v,
            forced: false,
            verdict: r,
            none: None,
        });
    }
    let errs: Vec<(FormatVersion, Error)> = results
        .into_iter()
        .map(|(v, r)| (v, r.expect_err("none validated")))
        .collect();
    let none = DetectError::None(errs);
    let v = likely_version(bytes);
    let e = none.error_for(v).cloned().expect("every version tried");
    Ok(Detected {
        version: v,
        forced: false,
        verdict: Err(e),
        none: Some(none),
    })
}

/// Whether a whole file is of format version 1 or 2: with `forced` v1/v2,
/// that version and its verdict; with `forced` v3, `None`; otherwise the
/// first of v1, v2 whose decoder validates the file (they reject a v3 file
/// within its first frames), or `None` (then it is read as v3, with the v3
/// fast paths).
pub fn old_version(
    bytes: &[u8],
    forced: Option<FormatVersion>,
) -> Option<(FormatVersion, Result<Summary, Error>)> {
    match forced {
        Some(FormatVersion::V3) => None,
        Some(v) => Some((v, verify_as(bytes, v))),
        None => [FormatVersion::V1, FormatVersion::V2]
            .into_iter()
            .map(|v| (v, verify_as(bytes, v)))
            .find(|(_, r)| r.is_ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_and_forces() {
        let v3 = ltx_core::doc_example_file();
        let d = detect(&v3, None).unwrap();
        assert_eq!(d.version, FormatVersion::V3);
        assert!(d.verdict.is_ok());
        let v1 = ltx_core::old::v1::tests_support::tiny_v1(false);
        assert_eq!(detect(&v1, None).unwrap().version, FormatVersion::V1);
        let forced = detect(&v1, Some(FormatVersion::V2)).unwrap();
        assert!(forced.verdict.is_err());
        assert!(forced
            .error_message()
            .unwrap()
            .contains("read as format v2"));
        let bad = detect(&v1[..50], None).unwrap();
        let m = bad.error_message().unwrap();
        assert!(m.contains("no format version validates"), "{m}");
        assert!(
            m.contains("as v1:") && m.contains("as v2:") && m.contains("as v3:"),
            "{m}"
        );
    }
}
