//! Verification: parallel over a whole file held in memory, or streaming
//! (standard input, damaged files) with [`Streamer`].

use std::io::Read;

use anyhow::Context;
use ltx_core::checksum::page_checksum;
use ltx_core::error::ErrorKind;
use ltx_core::file::FrameCheck;
use ltx_core::{
    AnyDecoder, Checksum, Decoded, Error, FormatVersion, Header, LtxFile, PageInfo, Summary,
};
use rayon::prelude::*;

/// Read size for streaming input.
pub const CHUNK: usize = 64 * 1024;

/// Verifies `file` completely, checking frames in parallel (rayon) and
/// combining their checksums in order. As strict as the streaming decoder.
/// `progress` is called with each frame's size as it is checked.
pub fn verify_with(file: &LtxFile<'_>, progress: &(dyn Fn(u64) + Sync)) -> Result<Summary, Error> {
    verify_collecting(file, progress, false).map(|(s, _)| s)
}

/// As [`verify_with`]; with `page_sums`, also returns every page's
/// [`page_checksum`] in index (= ascending page) order, computed from the
/// page each thread has just decoded, for replaying a chain's database
/// checksum without keeping or decoding the pages again.
pub fn verify_collecting(
    file: &LtxFile<'_>,
    progress: &(dyn Fn(u64) + Sync),
    page_sums: bool,
) -> Result<(Summary, Option<Vec<Checksum>>), Error> {
    let n = file.index().len();
    let ps = file.header().page_size.bytes();
    let entries = file.index().entries();
    let checks: Vec<Result<(FrameCheck, Checksum), Error>> = (0..n)
        .into_par_iter()
        .with_min_len(64)
        .map_init(
            || vec![0u8; ps],
            |page, i| {
                let r = file.check_frame(i, page).map(|c| {
                    // Snapshots that track checksums already computed it.
                    let sum = match c.page_checksum {
                        Some(x) => x,
                        None if page_sums => page_checksum(entries[i].pgno, page),
                        None => Checksum::ZERO,
                    };
                    (c, sum)
                });
                progress(entries[i].size);
                r
            },
        )
        .collect();
    // Report the earliest damaged frame, whatever thread found it first.
    let mut sums = Vec::with_capacity(if page_sums { n } else { 0 });
    let mut frames = Vec::with_capacity(n);
    for c in checks {
        let (c, sum) = c?;
        if page_sums {
            sums.push(sum);
        }
        frames.push(c);
    }
    let summary = file.combine(frames)?;
    Ok((summary, page_sums.then_some(sums)))
}

/// Verifies `file` completely, in parallel.
#[allow(dead_code)] // shared API for subcommands that verify their inputs
pub fn verify(file: &LtxFile<'_>) -> Result<Summary, Error> {
    verify_with(file, &|_| {})
}

/// Parses and verifies `bytes`. When the tail or index cannot be parsed
/// (e.g. a truncated file), the streaming decoder is run instead, so the
/// error names the first bad byte rather than a garbage tail.
#[allow(dead_code)] // shared API for subcommands that verify their inputs
pub fn verify_bytes(bytes: &[u8]) -> Result<Summary, Error> {
    match LtxFile::parse(bytes) {
        Ok(f) => verify(&f),
        Err(parse_err) => Err(stream_error(bytes).unwrap_or(parse_err)),
    }
}

/// The streaming decoder's verdict on `bytes`, if it rejects them.
pub fn stream_error(bytes: &[u8]) -> Option<Error> {
    let mut s = Streamer::new();
    s.feed(bytes, &mut |_| Ok(()))
        .expect("the callback does not fail");
    s.finish().err()
}

/// Something the streaming decoder found.
pub enum Event<'a> {
    /// The header was decoded and validated.
    Header(Header),
    /// A page was decoded.
    Page(PageInfo, &'a [u8]),
}

/// Drives a decoder ([`AnyDecoder`]) over input that arrives in pieces, keeping the first
/// 100 bytes (to show a header that fails validation) and counting bytes
/// after the trailer. A format error stops decoding; later input is ignored
/// (except to count trailing bytes).
pub struct Streamer {
    dec: AnyDecoder,
    head: Vec<u8>,
    fed: u64,
    summary: Option<Summary>,
    error: Option<Error>,
    trailing: u64,
}

impl Default for Streamer {
    fn default() -> Self {
        Self::new()
    }
}

impl Streamer {
    /// A streamer at the start of a (v3) file.
    pub fn new() -> Streamer {
        Self::with_version(FormatVersion::V3)
    }

    /// A streamer for a file of format `version`.
    pub fn with_version(version: FormatVersion) -> Streamer {
        Streamer {
            dec: AnyDecoder::new(version),
            head: Vec::with_capacity(100),
            fed: 0,
            summary: None,
            error: None,
            trailing: 0,
        }
    }

    /// The first (up to) 100 bytes of the input.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Bytes fed so far.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// The summary, once the trailer was read and verified.
    pub fn summary(&self) -> Option<&Summary> {
        self.summary.as_ref()
    }

    /// The decoder (for `frames()` once done).
    pub fn decoder(&self) -> &AnyDecoder {
        &self.dec
    }

    /// Feeds the next piece of input; `on` sees every header and page.
    ///
    /// # Errors
    /// Only what `on` returns; format errors are kept and returned by [`Streamer::finish`].
    pub fn feed(
        &mut self,
        mut chunk: &[u8],
        on: &mut dyn FnMut(Event<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if self.head.len() < 100 {
            let k = (100 - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..k]);
        }
        self.fed += chunk.len() as u64;
        if self.summary.is_some() || self.trailing > 0 {
            self.trailing += chunk.len() as u64;
            return Ok(());
        }
        if self.error.is_some() {
            return Ok(());
        }
        loop {
            match self.dec.decode(chunk) {
                Err(e) => {
                    if let ErrorKind::TrailingBytes { extra } = e.kind() {
                        // Count every byte after the trailer, not just this chunk's.
                        self.trailing = *extra;
                        self.summary = self.dec.summary().copied();
                    } else {
                        self.error = Some(e);
                    }
                    return Ok(());
                }
                Ok((n, ev)) => {
                    chunk = &chunk[n..];
                    match ev {
                        Decoded::NeedMore => {
                            if chunk.is_empty() {
                                return Ok(());
                            }
                            if n == 0 {
                                anyhow::bail!("internal error: the decoder made no progress");
                            }
                        }
                        Decoded::Header(h) => on(Event::Header(h))?,
                        Decoded::Page { info, data } => on(Event::Page(info, data))?,
                        Decoded::Done(s) => {
                            self.summary = Some(s);
                            if chunk.is_empty() {
                                return Ok(());
                            }
                            self.trailing += chunk.len() as u64;
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Declares the end of input: the summary, or the first format error
    /// (truncation if the trailer was never reached, trailing bytes if any
    /// followed it).
    pub fn finish(&self) -> Result<Summary, Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if let Some(s) = self.summary {
            if self.trailing > 0 {
                return Err(Error::new(ErrorKind::TrailingBytes {
                    extra: self.trailing,
                })
                .at(s.file_size));
            }
            return Ok(s);
        }
        self.dec.finish()
    }

    /// Feeds everything `r` yields in [`CHUNK`]-sized reads, then finishes.
    /// `progress` gets the byte count of each read.
    ///
    /// # Errors
    /// I/O errors (named with `what`) and errors from `on`. Format errors are
    /// returned inside the `Ok`.
    pub fn run(
        &mut self,
        r: &mut dyn Read,
        what: &str,
        on: &mut dyn FnMut(Event<'_>) -> anyhow::Result<()>,
        progress: &dyn Fn(u64),
    ) -> anyhow::Result<Result<Summary, Error>> {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("{what}: read error")),
            };
            self.feed(&buf[..n], on)?;
            progress(n as u64);
        }
        Ok(self.finish())
    }

    /// Feeds a slice held in memory in pieces of `piece` bytes (so that
    /// `progress` moves), then finishes.
    ///
    /// # Errors
    /// Errors from `on`. Format errors are returned inside the `Ok`.
    pub fn run_slice(
        &mut self,
        data: &[u8],
        piece: usize,
        on: &mut dyn FnMut(Event<'_>) -> anyhow::Result<()>,
        progress: &dyn Fn(u64),
    ) -> anyhow::Result<Result<Summary, Error>> {
        for c in data.chunks(piece.max(1)) {
            self.feed(c, on)?;
            progress(c.len() as u64);
            if self.error.is_some() {
                break;
            }
        }
        Ok(self.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamer_counts_trailing_bytes_across_chunks() {
        let mut f = ltx_core::doc_example_file();
        let len = f.len() as u64;
        f.extend_from_slice(&[1u8; 10]);
        for piece in [1, 7, 64, 100_000] {
            let mut s = Streamer::new();
            let mut pages = 0;
            let r = s
                .run_slice(
                    &f,
                    piece,
                    &mut |e| {
                        if let Event::Page(..) = e {
                            pages += 1
                        }
                        Ok(())
                    },
                    &|_| {},
                )
                .unwrap();
            let e = r.unwrap_err();
            assert_eq!(e.category(), Some("trailing-bytes"), "piece {piece}");
            assert_eq!(e.offset(), Some(len));
            assert!(e.to_string().contains("10 unexpected bytes"), "{e}");
            assert_eq!(pages, 2);
        }
    }

    #[test]
    fn streamer_reports_truncation() {
        let f = ltx_core::doc_example_file();
        for cut in [0, 50, 100, 120, f.len() - 1] {
            let mut s = Streamer::new();
            let r = s
                .run_slice(&f[..cut], 13, &mut |_| Ok(()), &|_| {})
                .unwrap();
            assert_eq!(r.unwrap_err().category(), Some("truncated"), "cut {cut}");
        }
    }
}
