//! `decoder`: arbitrary bytes into the streaming [`Decoder`], split into
//! chunks; the outcome must not depend on the split.
//!
//! Input layout:
//!
//! - If the first byte is `b'L'` (as in every LTX file, so plain `.ltx`
//!   seeds work as they are) or the input is empty, the whole input is the
//!   stream, and the chunk sizes come from a PRNG seeded with a hash of the
//!   input (every mutation gives a new split).
//! - Otherwise the first byte is a control byte `c`: `n = c & 0x0f` split
//!   bytes follow, then the stream. Each split byte `b` is a chunk length
//!   (`b + 1` for `b < 0x80`, `((b & 0x7f) + 1) * 97` above), used in a
//!   cycle; `n == 0` means one byte at a time. Bit `0x10` of `c` turns on
//!   [`Decoder::with_page_checksums`].
//!
//! The stream is decoded whole (one `decode` call per event), in the chunks
//! above, and (if at most [`BYTEWISE_MAX`] bytes) one byte at a time. The
//! event sequences (header, page info + page hash, summary) and the final
//! result (summary, or error kind + offset + page) must be identical.
//! Also checked: `decode` never reports consuming more than it was given,
//! `NeedMore` consumes all input, progress is made, a failed decoder stays
//! failed (`Poisoned`) and `finish` returns the first error, and a
//! successful decode's summary matches the pages seen.

use ltx_core::{Decoded, Decoder, ErrorKind, Header, PageInfo, Summary};

/// Streams up to this size are also decoded one byte at a time.
pub const BYTEWISE_MAX: usize = 16 * 1024;

/// One decoder event, with the page content reduced to a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `Decoded::Header`.
    Header(Header),
    /// `Decoded::Page`.
    Page {
        /// Where it was.
        info: PageInfo,
        /// FNV-1a of the page bytes.
        hash: u64,
        /// Length of the page bytes.
        len: usize,
    },
    /// `Decoded::Done`.
    Done(Summary),
}

/// An error reduced to what must be split-independent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrSig {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Absolute byte offset.
    pub offset: Option<u64>,
    /// Page number.
    pub pgno: Option<u32>,
}

impl From<&ltx_core::Error> for ErrSig {
    fn from(e: &ltx_core::Error) -> Self {
        ErrSig {
            kind: e.kind().clone(),
            offset: e.offset(),
            pgno: e.pgno(),
        }
    }
}

/// Everything one decode of a stream produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Events in order (`NeedMore` left out: it depends on the split).
    pub events: Vec<Event>,
    /// `finish()` (or the error `decode` returned).
    pub result: Result<Summary, ErrSig>,
}

impl Outcome {
    /// Whether the stream decoded and verified.
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// Decodes `data` fed in chunks of the sizes `chunks` yields (clamped to
/// 1..=rest; the last chunk takes the rest when the iterator ends), and
/// checks the decoder's API contract along the way.
pub fn decode_chunked(
    data: &[u8],
    mut chunks: impl FnMut() -> Option<usize>,
    page_checksums: bool,
) -> Outcome {
    let mut dec = if page_checksums {
        Decoder::new().with_page_checksums()
    } else {
        Decoder::new()
    };
    let mut events = Vec::new();
    let mut pos = 0usize;
    let mut page_size: Option<usize> = None;
    let mut calls = 0usize;
    let max_calls = 2 * data.len() + 16;
    while pos < data.len() {
        let left = data.len() - pos;
        let n = chunks().unwrap_or(left).clamp(1, left);
        let mut input = &data[pos..pos + n];
        pos += n;
        // The documented protocol: call `decode` with the unconsumed rest
        // until it returns `NeedMore` (or `Done`), even when the rest is
        // empty: bytes consumed into the decoder's stage may still hold
        // complete units.
        loop {
            calls += 1;
            assert!(
                calls <= max_calls,
                "decoder makes no progress ({calls} calls)"
            );
            let given = input.len();
            let before = dec.position();
            match dec.decode(input) {
                Err(e) => {
                    let sig = ErrSig::from(&e);
                    assert!(
                        !matches!(e.kind(), ErrorKind::Poisoned),
                        "first error was Poisoned"
                    );
                    // A failed decoder stays failed; finish() keeps the first error.
                    let again = dec
                        .decode(input)
                        .expect_err("decoder usable after an error");
                    assert!(matches!(again.kind(), ErrorKind::Poisoned), "{again:?}");
                    let fin = dec.finish().expect_err("finish ok after an error");
                    assert_eq!(ErrSig::from(&fin), sig, "finish() lost the first error");
                    assert_eq!(dec.error().map(ErrSig::from).as_ref(), Some(&sig));
                    return Outcome {
                        events,
                        result: Err(sig),
                    };
                }
                Ok((used, ev)) => {
                    assert!(used <= given, "decode consumed {used} of {given} bytes");
                    let mut stop = false;
                    match ev {
                        Decoded::NeedMore => {
                            assert_eq!(used, given, "NeedMore left input unconsumed");
                            stop = true;
                        }
                        Decoded::Header(h) => {
                            page_size = Some(h.page_size.bytes());
                            events.push(Event::Header(h));
                        }
                        Decoded::Page { info, data } => {
                            assert_eq!(Some(data.len()), page_size, "page length");
                            events.push(Event::Page {
                                info,
                                hash: crate::fnv1a(data),
                                len: data.len(),
                            });
                        }
                        Decoded::Done(s) => {
                            assert_eq!(used, given, "Done left input unconsumed without an error");
                            events.push(Event::Done(s));
                            stop = true;
                        }
                    }
                    assert_eq!(
                        dec.position(),
                        before + used as u64,
                        "position() does not advance by the bytes consumed"
                    );
                    input = &input[used..];
                    if stop {
                        break;
                    }
                }
            }
        }
    }
    let result = dec.finish().map_err(|e| ErrSig::from(&e));
    if let Ok(s) = &result {
        // The summary agrees with what was streamed.
        let pages: Vec<PageInfo> = events
            .iter()
            .filter_map(|e| match e {
                Event::Page { info, .. } => Some(*info),
                _ => None,
            })
            .collect();
        assert_eq!(s.page_count, pages.len() as u64, "page_count");
        assert_eq!(s.file_size, data.len() as u64, "file_size");
        assert!(matches!(events.first(), Some(Event::Header(h)) if *h == s.header));
        assert!(matches!(events.last(), Some(Event::Done(d)) if d == s));
        assert_eq!(dec.frames().len(), pages.len());
        for (f, p) in dec.frames().iter().zip(&pages) {
            assert_eq!((f.pgno, f.offset, f.size), (p.pgno, p.offset, p.frame_len));
        }
        // A finished decoder accepts an empty slice and rejects more bytes.
        assert!(matches!(dec.decode(&[]), Ok((0, Decoded::Done(_)))));
        assert!(dec.decode(&[0]).is_err());
    } else if let Err(e) = &result {
        assert!(
            matches!(e.kind, ErrorKind::Truncated { .. }) || dec.error().is_some(),
            "finish() failed with {e:?} but decode() never did"
        );
        if dec.error().is_none() {
            assert_eq!(e.offset, Some(data.len() as u64), "truncation offset");
        }
    }
    Outcome { events, result }
}

/// Decodes `data` in one piece.
pub fn decode_whole(data: &[u8], page_checksums: bool) -> Outcome {
    let mut once = Some(data.len());
    decode_chunked(data, || once.take(), page_checksums)
}

fn split_len(b: u8) -> usize {
    if b < 0x80 {
        b as usize + 1
    } else {
        ((b & 0x7f) as usize + 1) * 97
    }
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let (stream, checksums, chunked) = if data.first().is_none_or(|&c| c == b'L') {
        let mut rng = crate::Rng::new(crate::fnv1a(data));
        let checksums = rng.next_u64() & 1 == 1;
        let chunked = decode_chunked(
            data,
            || {
                let r = rng.next_u64();
                Some(match r % 4 {
                    0 => 1 + (r >> 8) as usize % 8,
                    1 => 1 + (r >> 8) as usize % 64,
                    2 => 1 + (r >> 8) as usize % 1024,
                    _ => 1 + (r >> 8) as usize % 16384,
                })
            },
            checksums,
        );
        (data, checksums, chunked)
    } else {
        let c = data[0];
        let n = (c & 0x0f) as usize;
        let splits = &data[1..data.len().min(1 + n)];
        let stream = &data[data.len().min(1 + n)..];
        let checksums = c & 0x10 != 0;
        let mut i = 0usize;
        let chunked = decode_chunked(
            stream,
            || {
                let s = if splits.is_empty() {
                    1
                } else {
                    split_len(splits[i % splits.len()])
                };
                i += 1;
                Some(s)
            },
            checksums,
        );
        (stream, checksums, chunked)
    };
    let whole = decode_whole(stream, checksums);
    compare("whole", &whole, "chunked", &chunked);
    if stream.len() <= BYTEWISE_MAX {
        let bytewise = decode_chunked(stream, || Some(1), checksums);
        compare("whole", &whole, "bytewise", &bytewise);
    }
}

/// Panics with a readable diff when two outcomes differ.
///
/// Two differences are inherent to streaming and normalised first: with
/// bytes after the trailer, a decoder that got the trailer and the extra
/// bytes in one call fails at once, while one fed the extra bytes later
/// first reports `Done` (so a `Done` right before a `TrailingBytes` error is
/// dropped), and `TrailingBytes::extra` counts only the extra bytes seen in
/// the failing call (so it is not compared).
pub fn compare(an: &str, a: &Outcome, bn: &str, b: &Outcome) {
    let (a, b) = (&normalise(a), &normalise(b));
    if a == b {
        return;
    }
    let first_diff = a
        .events
        .iter()
        .zip(&b.events)
        .position(|(x, y)| x != y)
        .unwrap_or(a.events.len().min(b.events.len()));
    panic!(
        "split dependence: {an} gave {} events, {bn} gave {}; first difference at event {first_diff}: \
         {an}={:?} {bn}={:?}; results: {an}={:?} {bn}={:?}",
        a.events.len(),
        b.events.len(),
        a.events.get(first_diff),
        b.events.get(first_diff),
        a.result,
        b.result
    );
}

fn normalise(o: &Outcome) -> Outcome {
    let mut o = o.clone();
    if let Err(e) = &mut o.result {
        if let ErrorKind::TrailingBytes { extra } = &mut e.kind {
            *extra = 0;
            if matches!(o.events.last(), Some(Event::Done(_))) {
                o.events.pop();
            }
        }
    }
    o
}
