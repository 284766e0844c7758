//! `header`: [`Header::decode`] on the first 100 bytes; file names.
//!
//! - `decode` succeeds ⇔ `decode_unvalidated` succeeds and `validate` passes;
//! - on success `to_bytes()` gives the 100 input bytes back exactly (also for
//!   `decode_unvalidated`, which keeps every field);
//! - shorter inputs are `Truncated`;
//! - `Trailer::from_bytes` / `to_bytes` round-trip on the next 16 bytes, and
//!   `Trailer::validate` never panics;
//! - if the input is UTF-8 and `parse_filename` accepts it,
//!   `format_filename` gives it back exactly.

use ltx_core::header::{Trailer, HEADER_SIZE, TRAILER_SIZE};
use ltx_core::{format_filename, parse_filename, ErrorKind, Header};

/// The fuzz target.
pub fn run(data: &[u8]) {
    let strict = Header::decode(data);
    let loose = Header::decode_unvalidated(data);
    if data.len() < HEADER_SIZE {
        assert!(
            matches!(
                strict.as_ref().map_err(|e| e.kind()),
                Err(ErrorKind::Truncated { .. })
            ),
            "{strict:?}"
        );
        assert!(loose.is_err());
    } else {
        let bytes = &data[..HEADER_SIZE];
        match (&strict, &loose) {
            (Ok(s), Ok(l)) => {
                assert_eq!(s, l, "decode and decode_unvalidated differ");
                assert_eq!(&s.to_bytes()[..], bytes, "Header round-trip");
                s.validate().expect("decoded header fails validate()");
            }
            (Ok(_), Err(e)) => panic!("decode accepts but decode_unvalidated rejects: {e}"),
            (Err(_), Ok(l)) => {
                assert_eq!(&l.to_bytes()[..], bytes, "unvalidated Header round-trip");
                assert!(
                    l.validate().is_err(),
                    "decode rejects a header validate() accepts"
                );
            }
            (Err(_), Err(_)) => {}
        }
        if let Some(tb) = data.get(HEADER_SIZE..HEADER_SIZE + TRAILER_SIZE) {
            let tb: &[u8; TRAILER_SIZE] = tb.try_into().unwrap();
            let t = Trailer::from_bytes(tb);
            assert_eq!(&t.to_bytes(), tb, "Trailer round-trip");
            if let Ok(h) = &loose {
                let _ = t.validate(h, 1000);
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok((a, b)) = parse_filename(s) {
            assert_eq!(format_filename(a, b), s, "file name round-trip");
        }
    }
}
