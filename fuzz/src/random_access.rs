//! `random_access`: [`LtxFile`] (parse, read_page, check_frame/combine,
//! verify) against the streaming decoder, on the same bytes.
//!
//! Differential properties:
//!
//! - the streaming decoder accepts ⇒ `LtxFile::parse` and `verify` accept,
//!   with the same summary, and `read_page` returns the same page contents;
//! - `parse` + `verify` accept ⇒ the streaming decoder accepts.
//!
//! Plus: `read_page` of an indexed page never says "absent", of a page not
//! in the index always says `Ok(false)`, and a wrong-sized buffer is an
//! error, not a panic; `combine` with the wrong number of checks is an
//! error; `verify` equals per-frame `check_frame` + `combine`.

use std::collections::BTreeMap;

use ltx_core::{LtxFile, Pgno};

use crate::decoder::{decode_whole, Event};

/// The fuzz target.
pub fn run(data: &[u8]) {
    let stream = decode_whole(data, false);
    let parsed = LtxFile::parse(data);
    let file = match parsed {
        Err(e) => {
            assert!(
                !stream.is_ok(),
                "DIFFERENTIAL: streaming decoder accepts but LtxFile::parse rejects: {e}"
            );
            return;
        }
        Ok(f) => f,
    };
    let h = *file.header();
    let ps = h.page_size.bytes();
    let mut page = vec![0u8; ps];

    // Every indexed page.
    let mut read: BTreeMap<Pgno, u64> = BTreeMap::new();
    let mut read_all_ok = true;
    for e in file.index().entries() {
        match file.read_page(e.pgno, &mut page) {
            Ok(true) => {
                read.insert(e.pgno, crate::fnv1a(&page));
            }
            Ok(false) => panic!("read_page({}) says absent, but the index lists it", e.pgno),
            Err(_) => read_all_ok = false,
        }
    }

    // Arbitrary page numbers: edges, and words taken from the input.
    let lock = h.lock_pgno();
    let mut probes: Vec<Pgno> = vec![
        0,
        1,
        2,
        lock.wrapping_sub(1),
        lock,
        lock.wrapping_add(1),
        h.commit,
        h.commit.wrapping_add(1),
        u32::MAX,
    ];
    probes.extend(
        data.chunks_exact(4)
            .rev()
            .take(8)
            .map(|w| u32::from_be_bytes(w.try_into().unwrap())),
    );
    for pgno in probes {
        let r = file.read_page(pgno, &mut page);
        if file.index().get(pgno).is_none() {
            assert!(
                matches!(r, Ok(false)),
                "read_page({pgno}) of a page not in the index gave {r:?}"
            );
        }
        // A buffer of the wrong size is refused, never a panic.
        let mut short = vec![0u8; ps / 2];
        let r = file.read_page(pgno, &mut short);
        if file.index().get(pgno).is_some() {
            assert!(
                r.is_err(),
                "read_page({pgno}) into a {}-byte buffer",
                ps / 2
            );
        }
    }

    // Split verification: check_frame per entry, then combine.
    let mut checks = Vec::with_capacity(file.index().len());
    let mut split_err = None;
    for i in 0..file.index().len() {
        match file.check_frame(i, &mut page) {
            Ok(c) => checks.push(c),
            Err(e) => {
                split_err = Some(e);
                break;
            }
        }
    }
    if split_err.is_none() && !checks.is_empty() {
        // Wrong number of checks: an error, never a panic or a wrong verdict.
        assert!(file
            .combine(checks[..checks.len() - 1].iter().copied())
            .is_err());
    }
    let split = match split_err {
        Some(e) => Err(e),
        None => file.combine(checks),
    };
    let verified = file.verify();
    assert_eq!(
        verified.as_ref().map_err(|e| e.kind().clone()),
        split.as_ref().map_err(|e| e.kind().clone()),
        "verify() differs from check_frame + combine"
    );

    match (&verified, &stream.result) {
        (Ok(v), Ok(s)) => {
            assert_eq!(v, s, "DIFFERENTIAL: verify() and the decoder give different summaries");
            assert!(read_all_ok, "verify() accepts but read_page failed");
            let streamed: BTreeMap<Pgno, u64> = stream
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::Page { info, hash, .. } => Some((info.pgno, *hash)),
                    _ => None,
                })
                .collect();
            assert_eq!(read, streamed, "DIFFERENTIAL: read_page contents differ from the decoder's pages");
        }
        (Ok(v), Err(e)) => panic!(
            "DIFFERENTIAL: LtxFile::verify accepts (summary {v:?}) but the streaming decoder rejects: {e:?}"
        ),
        (Err(e), Ok(_)) => panic!(
            "DIFFERENTIAL: the streaming decoder accepts but LtxFile::verify rejects: {e}"
        ),
        (Err(_), Err(_)) => {}
    }
}
