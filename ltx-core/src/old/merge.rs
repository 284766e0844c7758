//! Merging files of any layout into one v3 file.

use super::any::AnyDecoder;
use crate::decoder::Decoded;
use crate::encoder::Encoder;
use crate::error::{Error, ErrorKind, Result};
use crate::header::{Header, Trailer, HEADER_SIZE, TRAILER_SIZE};
use crate::index::PageIndex;
use crate::merge::{plan_merge, MergeInput, MergeOptions};
use crate::types::FormatVersion;

/// Merges whole files of any format version (`(bytes, version)` in TXID
/// order) into one v3 file appended to `out`. Pages are decompressed and
/// re-encoded as v3 block frames; the header follows [`plan_merge`]'s rules
/// (the v1 LZ4 flag never carries over: the output flags are `opts.flags`).
///
/// The inputs are streamed side by side (a k-way merge by page number, as
/// every decoder requires ascending pages), so memory stays at one page per
/// input whatever their size; every input is verified completely (file
/// checksum included) before the output is finished.
///
/// # Errors
/// [`plan_merge`] errors; any input's decoding error, as
/// [`ErrorKind::MergeInput`] (with its position in the list); encoder rules.
///
/// ```
/// use ltx_core::merge::MergeOptions;
/// use ltx_core::old::{detect, merge_any};
/// use ltx_core::FormatVersion;
/// let v1 = ltx_core::old::v1::tests_support::tiny_v1(true);
/// let mut out = Vec::new();
/// merge_any(&[(&v1[..], FormatVersion::V1)], &MergeOptions::default(), &mut out).unwrap();
/// assert_eq!(detect(&out).unwrap(), FormatVersion::V3);
/// ```
pub fn merge_any(
    inputs: &[(&[u8], FormatVersion)],
    opts: &MergeOptions,
    out: &mut Vec<u8>,
) -> Result<Trailer> {
    let mut meta = Vec::with_capacity(inputs.len());
    for (i, (b, _)) in inputs.iter().enumerate() {
        let ctx = |e: Error| merge_input(i, e);
        if b.len() < HEADER_SIZE + TRAILER_SIZE {
            return Err(ctx(Error::new(ErrorKind::Truncated {
                expected: "header and trailer",
            })));
        }
        let header = Header::decode_unvalidated(b).map_err(ctx)?;
        let trailer = Trailer::from_bytes(b[b.len() - TRAILER_SIZE..].try_into().unwrap());
        meta.push(MergeInput {
            header,
            trailer,
            index: PageIndex::default(),
        });
    }
    let plan = plan_merge(&meta, opts)?;
    let commit = plan.header.commit;
    let mut enc = Encoder::new(plan.header, out)?;

    struct Cursor<'a> {
        dec: AnyDecoder,
        rest: &'a [u8],
        page: Option<(u32, Vec<u8>)>,
    }
    let advance = |i: usize, c: &mut Cursor<'_>| -> Result<()> {
        let wrap = |e: Error| merge_input(i, e);
        loop {
            let (n, ev) = c.dec.decode(c.rest).map_err(wrap)?;
            c.rest = &c.rest[n..];
            match ev {
                Decoded::Page { info, data } => {
                    match &mut c.page {
                        Some((p, buf)) => {
                            *p = info.pgno;
                            buf.copy_from_slice(data);
                        }
                        None => c.page = Some((info.pgno, data.to_vec())),
                    }
                    return Ok(());
                }
                Decoded::Header(_) => {}
                Decoded::NeedMore | Decoded::Done(_) => {
                    c.dec.finish().map_err(wrap)?;
                    c.page = None;
                    return Ok(());
                }
            }
        }
    };
    let mut cursors = Vec::with_capacity(inputs.len());
    for (i, (b, v)) in inputs.iter().enumerate() {
        let mut c = Cursor {
            dec: AnyDecoder::new(*v),
            rest: b,
            page: None,
        };
        advance(i, &mut c)?;
        cursors.push(c);
    }
    while let Some(pgno) = cursors
        .iter()
        .filter_map(|c| c.page.as_ref().map(|p| p.0))
        .min()
    {
        let winner = cursors
            .iter()
            .rposition(|c| c.page.as_ref().is_some_and(|p| p.0 == pgno))
            .expect("some input holds the page");
        if pgno <= commit {
            let data = &cursors[winner].page.as_ref().expect("page").1;
            enc.write_page(out, pgno, data)?;
        }
        for (i, c) in cursors.iter_mut().enumerate() {
            if c.page.as_ref().is_some_and(|p| p.0 == pgno) {
                advance(i, c)?;
            }
        }
    }
    enc.finish(out, plan.post_apply)
}

/// Input `input`'s error `e`, as a merge error.
fn merge_input(input: usize, e: Error) -> Error {
    Error::new(ErrorKind::MergeInput {
        input,
        error: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::old::v1::tests_support::tiny_v1;

    #[test]
    fn an_input_error_names_the_input() {
        let good = tiny_v1(false);
        let mut bad = tiny_v1(true);
        let n = bad.len();
        bad[n - 1] ^= 1;
        let opts = MergeOptions::default();
        let err = merge_any(&[(&bad[..], FormatVersion::V1)], &opts, &mut Vec::new()).unwrap_err();
        let ErrorKind::MergeInput { input: 0, error } = err.kind() else {
            panic!("{err}")
        };
        assert_eq!(error.category(), Some("file-checksum-mismatch"));
        assert_eq!(err.to_string(), format!("cannot merge: input 0: {error}"));
        merge_any(&[(&good[..], FormatVersion::V1)], &opts, &mut Vec::new()).unwrap();
    }
}
