//! Chain rules shared by `ltx verify DIR` (files of a directory, see
//! `cmd::verify`) and `ltx verify URL` (objects of a bucket, see
//! [`crate::remote`]): pure functions over headers and trailers that
//! return the problem's message, naming the files as the caller does (a
//! path, a file name or a key).
//!
//! Which pairs of files are compared differs between the two: a
//! directory's files are compared with the file before them in their
//! directory (or the coarser files they follow), a bucket's with every
//! verified file ending just before them.

use ltx_core::{Header, Trailer, TxId};

/// A file whose name (`%016x-%016x.ltx`: `named`) gives other TXIDs than
/// its header: the message, else `None`.
///
/// ```
/// use ltx_core::{Header, PageSize, TxId};
/// let h = Header::new(PageSize::new(4096).unwrap(), TxId(2), TxId(3));
/// let m = ltx_cli::chain::name_mismatch("a.ltx", (TxId(2), TxId(4)), &h).unwrap();
/// assert_eq!(m, "a.ltx: the name says TXIDs 0000000000000002-0000000000000004, the header says 0000000000000002-0000000000000003");
/// assert!(ltx_cli::chain::name_mismatch("a.ltx", (TxId(2), TxId(3)), &h).is_none());
/// ```
pub fn name_mismatch(name: &str, named: (TxId, TxId), h: &Header) -> Option<String> {
    let (a, b) = named;
    ((h.min_txid, h.max_txid) != named).then(|| {
        format!(
            "{name}: the name says TXIDs {a}-{b}, the header says {}-{}",
            h.min_txid, h.max_txid
        )
    })
}

/// The checksum link between `prev` (header `hp`, verified trailer `tp`)
/// and `next` (header `hn`), which starts right after it: when both track
/// checksums, `next`'s pre-apply checksum must be `prev`'s post-apply
/// checksum. The message when it is not, else `None`.
///
/// ```
/// use ltx_core::{Checksum, Header, PageSize, Trailer, TxId};
/// let ps = PageSize::new(4096).unwrap();
/// let hp = Header::new(ps, TxId(1), TxId(1));
/// let tp = Trailer { post_apply_checksum: Checksum(0x8000_0000_0000_0001), file_checksum: Checksum(0) };
/// let mut hn = Header::new(ps, TxId(2), TxId(2));
/// hn.pre_apply_checksum = Checksum(0x8000_0000_0000_0002);
/// let m = ltx_cli::chain::checksum_link("a", &hp, &tp, "b", &hn).unwrap();
/// assert_eq!(m, "b expects pre-apply checksum 8000000000000002, but a leaves the database at 8000000000000001");
/// hn.pre_apply_checksum = tp.post_apply_checksum;
/// assert!(ltx_cli::chain::checksum_link("a", &hp, &tp, "b", &hn).is_none());
/// ```
pub fn checksum_link(
    prev: &str,
    hp: &Header,
    tp: &Trailer,
    next: &str,
    hn: &Header,
) -> Option<String> {
    if hp.no_checksum() || hn.no_checksum() {
        return None;
    }
    let post = tp.post_apply_checksum;
    (hn.pre_apply_checksum != post).then(|| {
        format!(
            "{next} expects pre-apply checksum {}, but {prev} leaves the database at {post}",
            hn.pre_apply_checksum
        )
    })
}
