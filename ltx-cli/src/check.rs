//! Parallel verification of a whole file held in memory.

use ltx_core::file::FrameCheck;
use ltx_core::{Error, LtxFile, Summary};
use rayon::prelude::*;

/// Verifies `file` completely, checking frames in parallel (rayon) and
/// combining their checksums in order. As strict as the streaming decoder.
pub fn verify(file: &LtxFile<'_>) -> Result<Summary, Error> {
    let n = file.index().len();
    let ps = file.header().page_size.bytes();
    let checks: Vec<Result<FrameCheck, Error>> = (0..n)
        .into_par_iter()
        .with_min_len(64)
        .map_init(|| vec![0u8; ps], |page, i| file.check_frame(i, page))
        .collect();
    // Report the earliest damaged frame, whatever thread found it first.
    let checks: Vec<FrameCheck> = checks.into_iter().collect::<Result<_, _>>()?;
    file.combine(checks)
}

/// Parses and verifies `bytes`. When the tail or index cannot be parsed
/// (e.g. a truncated file), the streaming decoder is run instead, so the
/// error names the first bad byte rather than a garbage tail.
pub fn verify_bytes(bytes: &[u8]) -> Result<Summary, Error> {
    match LtxFile::parse(bytes) {
        Ok(f) => verify(&f),
        Err(parse_err) => Err(stream_error(bytes).unwrap_or(parse_err)),
    }
}

/// The streaming decoder's verdict on `bytes`, if it rejects them.
pub fn stream_error(bytes: &[u8]) -> Option<Error> {
    let mut dec = ltx_core::Decoder::new();
    let mut input = bytes;
    loop {
        match dec.decode(input) {
            Err(e) => return Some(e),
            Ok((n, ev)) => {
                input = &input[n..];
                match ev {
                    ltx_core::Decoded::NeedMore | ltx_core::Decoded::Done(_)
                        if input.is_empty() =>
                    {
                        break
                    }
                    _ => {}
                }
            }
        }
    }
    dec.finish().err()
}
