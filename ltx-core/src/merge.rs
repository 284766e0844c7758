//! Merge planning (the compaction core) and the frame-copying writer.
//!
//! [`plan_merge`] needs only each input's header, trailer and page index, so
//! a caller reading from object storage fetches just the tails and indexes,
//! then only the winning frames ([`MergePlan::frames`]). [`prepare_frame`]
//! decompresses one frame to hash it (parallelisable); [`MergePlan::write`]
//! copies the frames, in order, into the output.

use crate::encoder::Encoder;
use crate::error::{Error, ErrorKind, MergeError, Result};
use crate::file::LtxFile;
use crate::frame::{compress_frame, decode_frame, FrameDigest};
use crate::header::{Header, Trailer, HEADER_FLAG_MASK, HEADER_FLAG_NO_CHECKSUM};
use crate::index::{IndexEntry, PageIndex};
use crate::types::Checksum;

/// What the planner needs to know about one input.
#[derive(Debug, Clone)]
pub struct MergeInput {
    /// The input's header.
    pub header: Header,
    /// The input's trailer.
    pub trailer: Trailer,
    /// The input's page index.
    pub index: PageIndex,
}

impl MergeInput {
    /// Takes what the planner needs from a parsed file.
    pub fn from_file(f: &LtxFile<'_>) -> MergeInput {
        MergeInput {
            header: *f.header(),
            trailer: *f.trailer(),
            index: f.index().clone(),
        }
    }
}

/// Merge options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeOptions {
    /// Header flags of the output (e.g. [`HEADER_FLAG_NO_CHECKSUM`], as Litestream writes).
    pub flags: u32,
    /// Accept TXID gaps between consecutive inputs (`next.min > prev.max + 1`).
    pub allow_gaps: bool,
}

/// One output frame: which input supplies it and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedFrame {
    /// Position of the input in the list given to [`plan_merge`].
    pub input: usize,
    /// The frame in that input.
    pub entry: IndexEntry,
}

/// The output of [`plan_merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePlan {
    /// The output header.
    pub header: Header,
    /// The output post-apply checksum.
    pub post_apply: Checksum,
    /// Output frames in page order.
    pub frames: Vec<PlannedFrame>,
}

/// Plans the merge of `inputs` (in TXID order).
///
/// Rules: at least one input; equal page sizes; for consecutive inputs
/// `next.min_txid <= prev.max_txid + 1` (unless `allow_gaps`) and
/// `next.max_txid > prev.max_txid`. The output takes min TXID and pre-apply
/// checksum from the first input; max TXID, commit, timestamp and post-apply
/// checksum from the last; node ID and WAL fields are zero; the flags come
/// from `opts`. Each page comes from the newest input holding it; pages above
/// the final commit are dropped.
///
/// # Errors
/// [`ErrorKind::Merge`] with a [`MergeError`] naming the offending inputs
/// by position; header rules of the output.
///
/// ```
/// use ltx_core::merge::{plan_merge, MergeInput, MergeOptions};
/// # let bytes = ltx_core::doc_example_file();
/// let f = ltx_core::LtxFile::parse(&bytes).unwrap();
/// let plan = plan_merge(&[MergeInput::from_file(&f)], &MergeOptions::default()).unwrap();
/// assert_eq!(plan.frames.len(), f.index().len());
/// ```
pub fn plan_merge(inputs: &[MergeInput], opts: &MergeOptions) -> Result<MergePlan> {
    let merr = |m: MergeError| Err(Error::new(ErrorKind::Merge(m)));
    let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
        return merr(MergeError::NoInputs);
    };
    if opts.flags & !HEADER_FLAG_MASK != 0 {
        return merr(MergeError::UnknownFlags(opts.flags));
    }
    for (i, w) in inputs.windows(2).enumerate() {
        let (p, n) = (&w[0].header, &w[1].header);
        let input = i + 1;
        if p.page_size != n.page_size {
            return merr(MergeError::PageSize {
                input,
                prev: p.page_size,
                page_size: n.page_size,
            });
        }
        let (prev, txids) = ((p.min_txid, p.max_txid), (n.min_txid, n.max_txid));
        if !opts.allow_gaps && n.min_txid.0 > p.max_txid.0.saturating_add(1) {
            return merr(MergeError::Gap { input, prev, txids });
        }
        if n.max_txid <= p.max_txid {
            return merr(MergeError::NotAdvancing { input, prev, txids });
        }
    }
    let no_checksum = opts.flags & HEADER_FLAG_NO_CHECKSUM != 0;
    let mut header = Header::new(
        first.header.page_size,
        first.header.min_txid,
        last.header.max_txid,
    );
    header.flags = opts.flags;
    header.commit = last.header.commit;
    header.timestamp = last.header.timestamp;
    let post_apply = if no_checksum {
        Checksum(0)
    } else {
        last.trailer.post_apply_checksum
    };
    if !no_checksum {
        if !header.is_snapshot() {
            header.pre_apply_checksum = first.header.pre_apply_checksum;
            if first.header.no_checksum() {
                return merr(MergeError::NoChecksumInput {
                    input: 0,
                    last: false,
                });
            }
        }
        if last.header.no_checksum() {
            return merr(MergeError::NoChecksumInput {
                input: inputs.len() - 1,
                last: true,
            });
        }
    }
    header.validate()?;

    let commit = header.commit;
    let mut all: Vec<PlannedFrame> = Vec::with_capacity(inputs.iter().map(|i| i.index.len()).sum());
    for (input, inp) in inputs.iter().enumerate() {
        all.extend(
            inp.index
                .entries()
                .iter()
                .filter(|e| e.pgno <= commit)
                .map(|&entry| PlannedFrame { input, entry }),
        );
    }
    // Newest input first within each page, then keep the first of each page.
    all.sort_unstable_by(|a, b| a.entry.pgno.cmp(&b.entry.pgno).then(b.input.cmp(&a.input)));
    all.dedup_by_key(|f| f.entry.pgno);
    Ok(MergePlan {
        header,
        post_apply,
        frames: all,
    })
}

/// A frame ready to be written: the bytes to copy and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreparedFrame {
    /// Copy the input frame unchanged (block frames).
    Copy(FrameDigest),
    /// Legacy LZ4-frame payloads are rewritten as block frames, as the
    /// reference compactor does; these are the new frame bytes.
    Reencoded(Vec<u8>, FrameDigest),
}

/// Decodes one input frame to hash it; `page` is a page-sized scratch
/// buffer. Independent per frame, so callers can run it in parallel.
///
/// # Errors
/// Frame errors (corrupt input); `PageIndexMismatch` if the frame holds
/// another page than planned.
pub fn prepare_frame(
    plan: &MergePlan,
    f: &PlannedFrame,
    frame: &[u8],
    page: &mut [u8],
) -> Result<PreparedFrame> {
    let d = decode_frame(frame, plan.header.page_size, page)
        .map_err(|e| e.offset_by(f.entry.offset).page(f.entry.pgno))?;
    if d.header.pgno != f.entry.pgno {
        return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
            "input {} index says page {}, its frame holds page {}",
            f.input, f.entry.pgno, d.header.pgno
        )))
        .at(f.entry.offset));
    }
    if d.header.is_block() {
        Ok(PreparedFrame::Copy(d))
    } else {
        let mut out = Vec::with_capacity(frame.len());
        let nd = compress_frame(f.entry.pgno, page, &mut out);
        Ok(PreparedFrame::Reencoded(out, nd))
    }
}

impl MergePlan {
    /// Starts the output: validates the header and appends it to `out`.
    ///
    /// # Errors
    /// Header rules.
    pub fn encoder(&self, out: &mut Vec<u8>) -> Result<Encoder> {
        Encoder::new(self.header, out)
    }

    /// Appends one prepared frame (`frame` = the input frame's bytes, used
    /// for [`PreparedFrame::Copy`]).
    ///
    /// # Errors
    /// Encoder ordering rules.
    pub fn write_frame(
        &self,
        enc: &mut Encoder,
        out: &mut Vec<u8>,
        frame: &[u8],
        prepared: &PreparedFrame,
    ) -> Result<()> {
        match prepared {
            PreparedFrame::Copy(d) => enc.write_frame(out, frame, d),
            PreparedFrame::Reencoded(bytes, d) => enc.write_frame(out, bytes, d),
        }
    }

    /// Writes the whole output from inputs held in memory (sequentially).
    ///
    /// # Errors
    /// Frame errors in the inputs; encoder rules.
    pub fn write(&self, inputs: &[LtxFile<'_>], out: &mut Vec<u8>) -> Result<Trailer> {
        let mut enc = self.encoder(out)?;
        let mut page = vec![0u8; self.header.page_size.bytes()];
        for f in &self.frames {
            let frame = inputs[f.input].frame(&f.entry);
            let p = prepare_frame(self, f, frame, &mut page)?;
            self.write_frame(&mut enc, out, frame, &p)?;
        }
        enc.finish(out, self.post_apply)
    }
}

/// Plans and writes a merge of files held in memory.
///
/// # Errors
/// [`plan_merge`] and [`MergePlan::write`] errors.
pub fn merge_files(
    inputs: &[LtxFile<'_>],
    opts: &MergeOptions,
    out: &mut Vec<u8>,
) -> Result<Trailer> {
    let meta: Vec<MergeInput> = inputs.iter().map(MergeInput::from_file).collect();
    plan_merge(&meta, opts)?.write(inputs, out)
}
