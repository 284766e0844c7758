//! The decoding harness: every way of decoding a file ([`decode`]), what a
//! decoding must give ([`expect`]), the file bytes in memory or on disk
//! ([`source`]), and the checks built from them: every path against a
//! description, and the re-encode round trip.

pub(crate) mod decode;
pub(crate) mod expect;
pub(crate) mod source;

use ltx_core::old::v1::V1_FLAG_LZ4;
use ltx_core::{Encoder, Error, FormatVersion, Header, PageInfo, Trailer};

use crate::manifest::FileDesc;
use crate::report::Out;
use decode::{
    chunk_label, decode_every_way, file_decode, file_path_label, stream_decode, Decoding, PageRec,
};
use expect::Want;
use source::{Ltx, Spool};

/// A file that every decoding path accepted (and agreed on): its header,
/// trailer and frames, and the file, to stream its pages again when they
/// are needed (applying, re-encoding); pages are never kept.
pub(crate) struct Full<'a> {
    pub(crate) header: Header,
    pub(crate) trailer: Trailer,
    pub(crate) pages: Vec<PageRec>,
    pub(crate) version: FormatVersion,
    pub(crate) src: &'a Ltx,
}

impl Full<'_> {
    /// Streams the file again, calling `f` with every page in file order.
    ///
    /// # Errors
    /// `f`'s error, or a decoding that differs from the first one.
    pub(crate) fn for_each_page(
        &self,
        mut f: impl FnMut(&PageInfo, &[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let d = stream_decode(self.src, usize::MAX, self.version, false, Some(&mut f))
            .map_err(|e| format!("streaming the pages again: {e}"))?;
        let same = d.pages.len() == self.pages.len()
            && d.pages.iter().zip(&self.pages).all(|(a, b)| {
                (a.pgno, a.flags, a.offset, a.size) == (b.pgno, b.flags, b.offset, b.size)
            });
        if same {
            Ok(())
        } else {
            Err("streaming the pages again gives other frames".into())
        }
    }
}

/// Decodes `src` with the whole-input stream and with the second path
/// (`LtxFile`, ranged reads, or detection for v1/v2); both must accept it
/// and agree. For files whose description is checked elsewhere.
pub(crate) fn decode_full(src: &Ltx, version: FormatVersion) -> Result<Full<'_>, String> {
    let d =
        stream_decode(src, usize::MAX, version, true, None).map_err(|e| format!("stream: {e}"))?;
    let f =
        file_decode(src, version).map_err(|e| format!("{}: {e}", file_path_label(version, src)))?;
    if d.header != f.header || d.trailer != f.trailer || d.pages != f.pages {
        return Err(format!(
            "streaming decoder and {} disagree",
            file_path_label(version, src)
        ));
    }
    Ok(Full {
        header: d.header,
        trailer: d.trailer,
        pages: d.pages,
        version,
        src,
    })
}

/// What one decoding path gave: its differences, or why it rejected the file.
type PathOutcome = Result<Vec<String>, String>;

/// Decodes `src` every way (streams of several chunk sizes, the second
/// path) and compares each with `want`. Identical differences from several
/// paths are reported once, naming the paths. Returns the differences and,
/// if the whole-input stream accepted the file, its [`Full`] decoding.
pub(crate) fn check_decodings<'a>(
    src: &'a Ltx,
    want: &Want,
    version: FormatVersion,
) -> (Vec<String>, Option<Full<'a>>) {
    let file_label = file_path_label(version, src);
    let mut results: Vec<(String, PathOutcome)> = Vec::new();
    let mut whole: Option<Decoding> = None;
    let (streams, file) = decode_every_way(src, version, true);
    for (chunk, r) in streams {
        let label = format!("stream ({})", chunk_label(chunk, src));
        match r {
            Ok(d) => {
                results.push((label, Ok(want.diffs(&d, src.len()))));
                if chunk == usize::MAX {
                    whole = Some(d);
                }
            }
            Err(e) => results.push((label, Err(e.to_string()))),
        }
    }
    match file {
        Ok(d) => {
            results.push((file_label.into(), Ok(want.diffs(&d, src.len()))));
            if whole.as_ref().is_some_and(|w| w.pages != d.pages) {
                results.push((
                    file_label.into(),
                    Ok(vec!["pages differ from the streaming decoder's".into()]),
                ));
            }
        }
        Err(e) => results.push((file_label.into(), Err(e.to_string()))),
    }
    let full = whole.map(|d| Full {
        header: d.header,
        trailer: d.trailer,
        pages: d.pages,
        version,
        src,
    });
    // Group identical outcomes.
    let mut groups: Vec<(Vec<String>, PathOutcome)> = Vec::new();
    for (label, r) in results {
        if let Some(g) = groups.iter_mut().find(|(_, gr)| *gr == r) {
            g.0.push(label);
        } else {
            groups.push((vec![label], r));
        }
    }
    let mut out = Vec::new();
    let all = groups.len() == 1;
    for (labels, r) in groups {
        let who = if all {
            format!("every decoder (streamed whole and in chunks, {file_label})")
        } else {
            labels.join(", ")
        };
        match r {
            Ok(diffs) if diffs.is_empty() => {}
            Ok(diffs) => out.push(format!("{who}: {}", diffs.join(", "))),
            Err(e) => out.push(format!("{who}: rejected: {e}")),
        }
    }
    (out, full)
}

/// Checks `src` against a description: every decoding path, then the
/// re-encode round trip. Failures go to `out` prefixed with `prefix`.
/// Returns the decoded file if the streaming decoder accepted it.
pub(crate) fn check_description<'a>(
    src: &'a Ltx,
    desc: &FileDesc,
    prefix: &str,
    out: &mut Out,
    version: FormatVersion,
    limit: u64,
) -> Option<Full<'a>> {
    let want = Want::from_desc(desc, out, &format!("{prefix}manifest: "));
    let (diffs, full) = check_decodings(src, &want, version);
    out.fail_all(prefix, diffs);
    if let Some(f) = &full {
        out.fail_all(&format!("{prefix}re-encode: "), reencode(f, limit));
    }
    full
}

/// Re-encodes a decoded file with our [`Encoder`] (as v3, pages streamed
/// from the file, output spooled past `limit` bytes) and checks that our
/// bytes decode to the same header, pages and post-apply checksum. A v1 LZ4
/// file's flag 0x1 does not carry over (it names the v1 layout).
pub(crate) fn reencode(full: &Full<'_>, limit: u64) -> Vec<String> {
    let mut header = full.header;
    header.flags &= !V1_FLAG_LZ4;
    let mut spool = Spool::new(limit);
    let r = (|| -> Result<Trailer, String> {
        let ltx_err = |e: Error| format!("Encoder fails: {e}");
        let io_err = |e: std::io::Error| format!("spooling our output: {e}");
        let mut enc = Encoder::new(header, spool.buf()).map_err(ltx_err)?;
        full.for_each_page(|info, data| {
            enc.write_page(spool.buf(), info.pgno, data)
                .map_err(ltx_err)?;
            spool.flush().map_err(io_err)
        })?;
        let t = enc
            .finish(spool.buf(), full.trailer.post_apply_checksum)
            .map_err(ltx_err)?;
        spool.flush().map_err(io_err)?;
        Ok(t)
    })();
    let trailer = match r {
        Ok(t) => t,
        Err(e) => return vec![e],
    };
    let ours = match spool.finish() {
        Ok(o) => o,
        Err(e) => return vec![format!("spooling our output: {e}")],
    };
    let mut out = Vec::new();
    if trailer.post_apply_checksum != full.trailer.post_apply_checksum {
        out.push(format!(
            "Encoder wrote post-apply {}, expected {}",
            trailer.post_apply_checksum, full.trailer.post_apply_checksum
        ));
    }
    let want = Want::reencoded(&header, &full.pages, full.trailer.post_apply_checksum.0);
    let (diffs, decoded) = check_decodings(&ours, &want, FormatVersion::V3);
    out.extend(diffs);
    if let Some(o) = decoded {
        if o.header != header {
            out.push("decoded header differs (reserved bytes)".into());
        }
        if o.trailer != trailer {
            out.push(format!(
                "Encoder returned trailer {}/{}, the file holds {}/{}",
                trailer.post_apply_checksum,
                trailer.file_checksum,
                o.trailer.post_apply_checksum,
                o.trailer.file_checksum
            ));
        }
    }
    out
}

/// Formats a rejection for notes and failures: `category (message)`.
pub(crate) fn describe_err(e: &Error) -> String {
    format!("{} ({e})", e.category().unwrap_or("uncategorised"))
}
