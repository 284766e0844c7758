//! `old_formats`: arbitrary bytes into the v1 and v2 streaming decoders
//! (through `AnyDecoder`), whole, in chunks from a hash of the input, and
//! (≤ 16 KiB) byte by byte; plus `detect`.
//!
//! Oracle: no panic; for each version the same events (header, page info +
//! page hash, summary) and the same result (error kind and offset; for
//! trailing bytes only the kind, as the count depends on the split) for
//! every split; errors poison; `finish()` keeps the first error; `detect`
//! names a version exactly when that version's decoder accepts the input.

use ltx_core::old::{detect, verify_as, DetectError};
use ltx_core::{AnyDecoder, Decoded, ErrorKind, FormatVersion};

use crate::{fnv1a, Rng};

#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Header(ltx_core::Header),
    Page(ltx_core::PageInfo, u64),
    Done(ltx_core::Summary),
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok(ltx_core::Summary),
    Err(String, Option<u64>),
}

fn outcome(r: ltx_core::Result<ltx_core::Summary>) -> Outcome {
    match r {
        Ok(s) => Outcome::Ok(s),
        Err(e) => match e.kind() {
            ErrorKind::TrailingBytes { .. } => Outcome::Err("trailing".into(), None),
            k => Outcome::Err(format!("{:?}", std::mem::discriminant(k)), e.offset()),
        },
    }
}

/// Bytes after the trailer: whether the `Done` event came before the error
/// depends on where the input was split (as for the v3 decoder), so it is
/// left out of the comparison.
fn stream(version: FormatVersion, pieces: &[&[u8]]) -> (Vec<Ev>, Outcome) {
    let (mut evs, out) = stream_raw(version, pieces);
    if out == Outcome::Err("trailing".into(), None) {
        evs.retain(|e| !matches!(e, Ev::Done(_)));
    }
    (evs, out)
}

fn stream_raw(version: FormatVersion, pieces: &[&[u8]]) -> (Vec<Ev>, Outcome) {
    let mut dec = AnyDecoder::new(version);
    let mut evs = Vec::new();
    let mut page_size = 0;
    for piece in pieces {
        let mut input = *piece;
        let mut idle = 0;
        loop {
            match dec.decode(input) {
                Err(e) => {
                    // Poisoned from now on; finish keeps the first error.
                    assert!(matches!(
                        dec.decode(b"x").unwrap_err().kind(),
                        ErrorKind::Poisoned
                    ));
                    assert_eq!(dec.finish().unwrap_err(), e);
                    return (evs, outcome(Err(e)));
                }
                Ok((n, ev)) => {
                    assert!(n <= input.len());
                    input = &input[n..];
                    idle = if n == 0 { idle + 1 } else { 0 };
                    assert!(idle < 100_000, "no progress");
                    match ev {
                        Decoded::NeedMore => {
                            assert!(input.is_empty(), "NeedMore with input left");
                            break;
                        }
                        Decoded::Header(h) => {
                            page_size = h.page_size.bytes();
                            evs.push(Ev::Header(h))
                        }
                        Decoded::Page { info, data } => {
                            assert_eq!(data.len(), page_size);
                            evs.push(Ev::Page(info, fnv1a(data)))
                        }
                        Decoded::Done(s) => {
                            evs.push(Ev::Done(s));
                            if input.is_empty() {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
    (evs, outcome(dec.finish()))
}

/// The fuzz target body.
pub fn run(data: &[u8]) {
    let mut rng = Rng::new(fnv1a(data));
    let mut accepted = Vec::new();
    for v in [FormatVersion::V1, FormatVersion::V2, FormatVersion::V3] {
        let whole = stream(v, &[data]);
        // Random splits.
        for _ in 0..3 {
            let mut pieces = Vec::new();
            let mut rest = data;
            while !rest.is_empty() {
                let n = (rng.next_u64() % 700) as usize + 1;
                let (a, b) = rest.split_at(n.min(rest.len()));
                pieces.push(a);
                rest = b;
            }
            assert_eq!(stream(v, &pieces), whole, "{v}: split differs");
        }
        if data.len() <= 16 * 1024 {
            let ones: Vec<&[u8]> = data.chunks(1).collect();
            assert_eq!(stream(v, &ones), whole, "{v}: byte by byte differs");
        }
        assert_eq!(
            verify_as(data, v).is_ok(),
            matches!(whole.1, Outcome::Ok(_))
        );
        if let Outcome::Ok(s) = whole.1 {
            assert_eq!(s.format_version, v);
            accepted.push(v);
        }
    }
    match detect(data) {
        Ok(v) => assert_eq!(accepted, [v]),
        Err(DetectError::Ambiguous(vs)) => assert_eq!(accepted, vs),
        Err(DetectError::None(errs)) => {
            assert!(accepted.is_empty());
            assert_eq!(errs.len(), 3);
        }
    }
}
