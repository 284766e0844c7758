//! Error categories of rejected files: the manifest's `category` against
//! [`ltx_core::Error::category`], and the differences allowed.
//!
//! A case of kind `invalid` or `reference-accepts` fails unless every
//! decoding path (the streaming decoder at every chunk size, and the second
//! path: `LtxFile`, ranged reads or version detection) rejects the file
//! *with the manifest's category*, or with a category [`ALLOWED`] lists for
//! that path. A decoder that rejects a file for the wrong reason may have a
//! bug that only happens to reject it.
//!
//! `reference-accepts` files get the same assertion: the reference accepts
//! them, so our rejection is only justified by the violation the manifest
//! names (`page-order`, `lock-page`, ...); the README says a conforming
//! decoder *may* reject them, and ours must do so for that reason.
//!
//! Every entry of [`ALLOWED`] is a difference reasoned about case by case,
//! with the reason next to it; each names the kind, the decoding path and
//! (where it matters) the format version it holds for.

use ltx_core::FormatVersion;

/// Which decoding path reported an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// The streaming decoder (any chunk size): reads the file in order, as
    /// the reference does.
    Stream,
    /// The second path: `LtxFile` or ranged reads (header, then tail and
    /// page index, then frames), or version detection for v1/v2.
    File,
}

/// One allowed difference between the manifest's category and ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// Case kind (`invalid`, `reference-accepts`); `None` = both.
    pub kind: Option<&'static str>,
    /// Format version; `None` = any.
    pub version: Option<FormatVersion>,
    /// Decoding path; `None` = every path.
    pub path: Option<PathKind>,
    /// The manifest's category.
    pub expected: &'static str,
    /// Ours.
    pub ours: &'static str,
    /// Why this is not a decoder bug.
    pub why: &'static str,
}

/// The differences allowed, each with its reason.
pub const ALLOWED: &[Allowed] = &[
    // conformance-old names bytes after the trailer `trailing-data`
    // (README: "trailing-data: bytes after the trailer"); ltx-core's
    // ErrorKind::TrailingBytes is the same defect under another name.
    Allowed {
        kind: None,
        version: None,
        path: None,
        expected: "trailing-data",
        ours: "trailing-bytes",
        why: "the same defect (bytes after the trailer) under the old set's name",
    },
    // A cut file: LtxFile (and the ranged path) read the last 24 bytes
    // first, as the index size field and trailer (parse_tail). In a cut
    // file those are page or index bytes, so the size field is nonsense and
    // points outside the file. Nothing at the end of a file says it was
    // cut; the streaming decoders, which read in order as the reference
    // does, must (and do) say `truncated`.
    Allowed {
        kind: Some("invalid"),
        version: Some(FormatVersion::V3),
        path: Some(PathKind::File),
        expected: "truncated",
        ours: "page-index-mismatch",
        why: "random access reads the tail first; in a cut file it is not a tail",
    },
    // A frame whose page number is 0 (flags still 0x0001): random access
    // reads the page index before any frame, and the index entry of page 0
    // is a zero varint, i.e. the index terminator, so the index ends early
    // and does not fill its size field. The streaming decoders meet the
    // frame first and must say `bad-page-header`.
    Allowed {
        kind: Some("invalid"),
        version: Some(FormatVersion::V3),
        path: Some(PathKind::File),
        expected: "bad-page-header",
        ours: "page-index-mismatch",
        why: "random access reads the index first; page 0's entry ends the index",
    },
    // Bytes of the page index changed without recomputing the file checksum
    // (checksum-flip-page-index, v2-checksum-mismatch-page-index: an entry's
    // offset). The reference never checks index contents (README,
    // "Reference behaviours"), so only its file checksum notices. ltx-core
    // compares every index entry with the frames before it reaches the
    // trailer (streaming) or reads the index first (random access), so it
    // reports the entry that disagrees: the corruption itself, found first.
    Allowed {
        kind: Some("invalid"),
        version: None,
        path: None,
        expected: "file-checksum-mismatch",
        ours: "page-index-mismatch",
        why: "the changed bytes are in the page index, which ltx-core checks before the trailer",
    },
    // Frames out of order or duplicated in a file whose page index is
    // sorted and holds each page once (as the reference's map-based index
    // does). Random access sees only the index: what is wrong there is that
    // its offsets do not tile the page block in order. The streaming
    // decoders see the frames and must say `page-order`.
    Allowed {
        kind: Some("reference-accepts"),
        version: Some(FormatVersion::V3),
        path: Some(PathKind::File),
        expected: "page-order",
        ours: "page-index-mismatch",
        why: "random access sees only the sorted index, whose offsets do not tile the frames",
    },
    // v1-lz4-flag-missing: the LZ4 header flag is cleared on a v1 file whose
    // page block is an LZ4 frame, so the block is read as raw pages and its
    // first four bytes, the LZ4 frame magic 04 22 4d 18, as page number
    // 69356824. The reference reads on and fails on the short page data
    // ("unexpected EOF", recorded as lz4-corrupt); ltx-core checks that the
    // page number is at most the commit first, at the page header.
    Allowed {
        kind: Some("invalid"),
        version: Some(FormatVersion::V1),
        path: None,
        expected: "lz4-corrupt",
        ours: "page-out-of-range",
        why: "without the LZ4 flag the frame magic reads as a page number above the commit",
    },
];

/// How our category compares with the manifest's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The same category.
    Same,
    /// A difference [`ALLOWED`] lists.
    Allowed(&'static Allowed),
    /// A difference nobody reasoned about: the case fails.
    Differs,
}

/// Compares `ours` (None = an error without a category) with `expected`
/// for a case of `kind` and `version`, reported by `path`.
pub fn verdict(
    kind: &str,
    version: FormatVersion,
    path: PathKind,
    expected: &str,
    ours: Option<&str>,
) -> Verdict {
    let Some(ours) = ours else {
        return Verdict::Differs;
    };
    if ours == expected {
        return Verdict::Same;
    }
    ALLOWED
        .iter()
        .find(|a| {
            a.expected == expected
                && a.ours == ours
                && a.kind.is_none_or(|k| k == kind)
                && a.version.is_none_or(|v| v == version)
                && a.path.is_none_or(|p| p == path)
        })
        .map_or(Verdict::Differs, Verdict::Allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        use FormatVersion::*;
        use PathKind::*;
        assert_eq!(
            verdict("invalid", V3, Stream, "truncated", Some("truncated")),
            Verdict::Same
        );
        assert!(matches!(
            verdict(
                "invalid",
                V3,
                File,
                "truncated",
                Some("page-index-mismatch")
            ),
            Verdict::Allowed(_)
        ));
        // Only for the path it was reasoned about.
        assert_eq!(
            verdict(
                "invalid",
                V3,
                Stream,
                "truncated",
                Some("page-index-mismatch")
            ),
            Verdict::Differs
        );
        // Only for the kind and version.
        assert_eq!(
            verdict(
                "reference-accepts",
                V3,
                File,
                "truncated",
                Some("page-index-mismatch")
            ),
            Verdict::Differs
        );
        assert_eq!(
            verdict(
                "invalid",
                V3,
                File,
                "lz4-corrupt",
                Some("page-out-of-range")
            ),
            Verdict::Differs
        );
        assert!(matches!(
            verdict(
                "invalid",
                V1,
                Stream,
                "lz4-corrupt",
                Some("page-out-of-range")
            ),
            Verdict::Allowed(_)
        ));
        assert_eq!(
            verdict("invalid", V3, Stream, "bad-magic", None),
            Verdict::Differs
        );
        for a in ALLOWED {
            assert_ne!(a.expected, a.ours);
            assert!(!a.why.is_empty());
        }
    }
}
