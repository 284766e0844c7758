//! Database building: [`DbImage`], a database image of any size kept in an
//! unnamed temporary file (pages that are all zeros are not stored), layered
//! on a shared base state; [`DbDigest`], its page count, SHA-256 and rolling
//! checksum computed page by page; and `apply`, which applies a decoded
//! LTX file to an image (SPEC section 8).
//!
//! Memory is bounded by a few pages plus a few bytes of bookkeeping per
//! page written, whatever the size of the database: the issue this replaces
//! built databases as `Vec<u8>` and refused those over 1 GiB.
//!
//! The SQLite lock page (`0x40000000 / page_size + 1`) needs no special
//! case here: an LTX file never holds it (every decoder and the encoder
//! refuse it), so in an image it stays zero, as SQLite leaves it in a
//! database file, and [`DbChecksum`] leaves it out of the rolling checksum,
//! as the reference's `ChecksumReader` and `ltx checksum` do.
//!
//! ```
//! use std::rc::Rc;
//! use ltx_core::PageSize;
//! use ltx_spec::db::DbImage;
//! let ps = PageSize::new(512).unwrap();
//! let mut base = DbImage::new();
//! base.set_page_size(ps).unwrap();
//! base.write_page(1, &[1u8; 512]).unwrap();
//! base.set_pages(3);
//! let base = Rc::new(base);
//! let mut next = DbImage::on_top(base.clone());
//! next.write_page(3, &[3u8; 512]).unwrap();
//! let mut page = [9u8; 512];
//! next.read_page(2, &mut page).unwrap();
//! assert_eq!(page, [0u8; 512]);
//! assert_eq!(base.digest().unwrap().bytes, 1536);
//! assert_ne!(next.digest().unwrap().sha256, base.digest().unwrap().sha256);
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::rc::Rc;

use ltx_core::checksum::DbChecksum;
use ltx_core::header::HEADER_SIZE;
use ltx_core::types::CHECKSUM_FLAG;
use ltx_core::{Checksum, FormatVersion, Header, PageInfo, PageSize, Pgno, Trailer};
use sha2::{Digest, Sha256};

use crate::harness::decode::stream_decode;
use crate::harness::expect::show_val;
use crate::harness::source::{read_exact_at, write_all_at, Ltx, READ_SIZE};
use crate::harness::Full;
use crate::manifest::DbDesc;

/// What the manifest says about a database: page count, SHA-256 of the
/// image, rolling checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbDigest {
    /// Size of the image in bytes.
    pub bytes: u64,
    /// SHA-256 of the image.
    pub sha256: [u8; 32],
    /// Rolling checksum (XOR of every page's checksum but the lock page's;
    /// 0 for an empty database).
    pub checksum: Checksum,
}

/// Where a page of an image is.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// All zeros (not stored).
    Zero,
    /// In the store, at this slot (byte offset = slot × page size).
    At(u64),
}

/// A database image: `pages` pages of `page_size` bytes.
///
/// Pages written to it go to an unnamed temporary file (created on the
/// first non-zero page; a page that is all zeros is only noted), one slot
/// per page number; pages it was not given come from its base state (shared,
/// unchanged) up to the base's size, or are zeros (beyond the base's end, or
/// after a truncation). So a state built on top of another costs only the
/// pages that changed, and memory holds one entry per page written.
#[derive(Debug)]
pub struct DbImage {
    page_size: Option<PageSize>,
    pages: u32,
    base: Option<Rc<DbImage>>,
    /// Pages of the base still visible: its size, lowered by truncations.
    base_visible: u32,
    slots: HashMap<Pgno, Slot>,
    store: Option<File>,
    stored: u64,
    digest: Cell<Option<DbDigest>>,
}

impl Default for DbImage {
    fn default() -> Self {
        Self::new()
    }
}

impl DbImage {
    /// An empty database (no pages, no page size yet).
    pub fn new() -> DbImage {
        DbImage {
            page_size: None,
            pages: 0,
            base: None,
            base_visible: 0,
            slots: HashMap::new(),
            store: None,
            stored: 0,
            digest: Cell::new(None),
        }
    }

    /// A copy of `base` to change: `base` itself is shared, never written.
    pub fn on_top(base: Rc<DbImage>) -> DbImage {
        DbImage {
            page_size: base.page_size,
            pages: base.pages,
            base_visible: base.pages,
            digest: Cell::new(base.digest.get()),
            base: Some(base),
            slots: HashMap::new(),
            store: None,
            stored: 0,
        }
    }

    /// The page size, once set.
    pub fn page_size(&self) -> Option<PageSize> {
        self.page_size
    }

    /// The number of pages.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// The size in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.pages) * self.page_size.map_or(0, |p| u64::from(p.get()))
    }

    /// Sets the page size: free while the database is empty.
    ///
    /// # Errors
    /// A non-empty database with another page size.
    pub fn set_page_size(&mut self, ps: PageSize) -> Result<(), String> {
        match self.page_size {
            Some(p) if p != ps && self.pages > 0 => Err(format!(
                "the database has {} pages of {p} bytes, the file has {ps}-byte pages",
                self.pages
            )),
            _ => {
                self.page_size = Some(ps);
                Ok(())
            }
        }
    }

    fn ps(&self) -> io::Result<usize> {
        self.page_size
            .map(PageSize::bytes)
            .ok_or_else(|| io::Error::other("the database has no page size"))
    }

    /// Fills `buf` (one page) with page `pgno` (1..=pages).
    ///
    /// # Errors
    /// A page number out of range or a buffer of the wrong size; I/O errors.
    pub fn read_page(&self, pgno: Pgno, buf: &mut [u8]) -> io::Result<()> {
        let ps = self.ps()?;
        if buf.len() != ps || pgno == 0 || pgno > self.pages {
            return Err(io::Error::other(format!(
                "cannot read page {pgno} of {} into {} bytes",
                self.pages,
                buf.len()
            )));
        }
        match self.slots.get(&pgno) {
            Some(Slot::Zero) => buf.fill(0),
            Some(Slot::At(i)) => {
                let store = self.store.as_ref().expect("a stored page has a store");
                read_exact_at(store, buf, i * ps as u64)?;
            }
            None => match &self.base {
                Some(b) if pgno <= self.base_visible => b.read_page(pgno, buf)?,
                _ => buf.fill(0),
            },
        }
        Ok(())
    }

    /// Writes page `pgno` (growing the database to `pgno` pages if it is
    /// smaller; pages in between are zeros).
    ///
    /// # Errors
    /// No page size, page 0, data of the wrong size; I/O errors.
    pub fn write_page(&mut self, pgno: Pgno, data: &[u8]) -> io::Result<()> {
        let ps = self.ps()?;
        if data.len() != ps || pgno == 0 {
            return Err(io::Error::other(format!(
                "cannot write {} bytes as page {pgno}",
                data.len()
            )));
        }
        self.digest.set(None);
        self.pages = self.pages.max(pgno);
        let slot = match self.slots.get(&pgno) {
            Some(Slot::At(i)) => *i,
            _ if data.iter().all(|&b| b == 0) => {
                self.slots.insert(pgno, Slot::Zero);
                return Ok(());
            }
            _ => {
                self.stored += 1;
                self.stored - 1
            }
        };
        let store = match &mut self.store {
            Some(s) => s,
            None => self.store.insert(tempfile::tempfile()?),
        };
        write_all_at(store, data, slot * ps as u64)?;
        self.slots.insert(pgno, Slot::At(slot));
        Ok(())
    }

    /// Truncates the database to `n` pages, or extends it with zero pages.
    pub fn set_pages(&mut self, n: u32) {
        if n == self.pages {
            return;
        }
        self.digest.set(None);
        if n < self.pages {
            self.slots.retain(|&p, _| p <= n);
            self.base_visible = self.base_visible.min(n);
        }
        self.pages = n;
    }

    /// Page count, SHA-256 and rolling checksum, read page by page (and
    /// kept until the next change).
    ///
    /// # Errors
    /// I/O errors.
    pub fn digest(&self) -> io::Result<DbDigest> {
        if let Some(d) = self.digest.get() {
            return Ok(d);
        }
        let mut sha = Sha256::new();
        let mut sum = self.page_size.map(DbChecksum::new);
        if let (Some(ps), Some(sum)) = (self.page_size, sum.as_mut()) {
            let mut page = vec![0u8; ps.bytes()];
            for pgno in 1..=self.pages {
                self.read_page(pgno, &mut page)?;
                sha.update(&page);
                sum.add(pgno, &page);
            }
        }
        let d = DbDigest {
            bytes: self.bytes(),
            sha256: sha.finalize().into(),
            checksum: sum.map_or(Checksum(0), |s| s.value()),
        };
        self.digest.set(Some(d));
        Ok(d)
    }

    /// Compares the image with the file at `path`, page by page. Returns
    /// `None` when they are identical, else what differs (sizes, the first
    /// page that differs, both SHA-256 values).
    ///
    /// # Errors
    /// I/O errors.
    pub fn diff_file(&self, path: &Path) -> io::Result<Option<String>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let ps = match self.page_size {
            Some(p) => p.bytes(),
            None => 4096,
        };
        let mut ours = vec![0u8; ps];
        let mut theirs = vec![0u8; ps];
        let mut sha = Sha256::new();
        let mut first_diff = None;
        let mut off = 0u64;
        while off < len {
            let n = ps.min((len - off) as usize);
            read_exact_at(&file, &mut theirs[..n], off)?;
            sha.update(&theirs[..n]);
            let pgno = (off / ps as u64 + 1) as Pgno;
            if first_diff.is_none() && pgno <= self.pages {
                self.read_page(pgno, &mut ours)?;
                if ours[..n] != theirs[..n] {
                    first_diff = Some(pgno);
                }
            }
            off += n as u64;
        }
        let d = self.digest()?;
        if len == d.bytes && first_diff.is_none() {
            return Ok(None);
        }
        let at = match first_diff {
            Some(p) => format!(", first difference in page {p}"),
            None => String::new(),
        };
        let theirs: [u8; 32] = sha.finalize().into();
        Ok(Some(format!(
            "sha256 {} ({} bytes), {} has sha256 {} ({len} bytes){at}",
            hex::encode(d.sha256),
            d.bytes,
            path.display(),
            hex::encode(theirs),
        )))
    }
}

/// [`DbDigest`] of a database file with pages of `ps` bytes, read in
/// bounded pieces (a last partial page counts as a page of the checksum).
///
/// # Errors
/// I/O errors.
pub fn digest_file(path: &Path, ps: PageSize) -> io::Result<DbDigest> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; READ_SIZE.max(ps.bytes())];
    let mut sha = Sha256::new();
    let mut sum = DbChecksum::new(ps);
    let mut off = 0u64;
    let mut pgno: Pgno = 0;
    while off < len {
        let n = buf.len().min((len - off) as usize);
        read_exact_at(&file, &mut buf[..n], off)?;
        sha.update(&buf[..n]);
        for page in buf[..n].chunks(ps.bytes()) {
            pgno += 1;
            sum.add(pgno, page);
        }
        off += n as u64;
    }
    Ok(DbDigest {
        bytes: len,
        sha256: sha.finalize().into(),
        checksum: sum.value(),
    })
}

/// The manifest keys of a database description, for messages.
pub(crate) struct DbKeys {
    pub(crate) pages: &'static str,
    pub(crate) sha256: &'static str,
    pub(crate) checksum: &'static str,
}

/// `db_after` and the `db` kind.
pub(crate) const DB_KEYS: DbKeys = DbKeys {
    pages: "pages",
    sha256: "sha256",
    checksum: "checksum",
};

/// A chain step.
pub(crate) const STEP_KEYS: DbKeys = DbKeys {
    pages: "db_pages",
    sha256: "db_sha256",
    checksum: "db_checksum",
};

/// Compares a database digest with a description.
pub(crate) fn db_diffs(d: &DbDigest, ps: PageSize, want: &DbDesc, keys: &DbKeys) -> Vec<String> {
    let mut out = Vec::new();
    let psz = u64::from(ps.get());
    if !d.bytes.is_multiple_of(psz) {
        out.push(format!(
            "{} bytes is not a whole number of {ps}-byte pages",
            d.bytes
        ));
    }
    let pages = i128::from(d.bytes / psz);
    match want.pages {
        Some(w) if w.value() == pages => {}
        Some(w) => out.push(format!(
            "{}: expected {}, got {pages}",
            keys.pages,
            w.value()
        )),
        None => out.push(format!("manifest: no numeric \"{}\"", keys.pages)),
    }
    match want.sha256 {
        Some(w) if w.0 == d.sha256 => {}
        Some(w) => out.push(format!(
            "{}: expected {w}, got {}",
            keys.sha256,
            hex::encode(d.sha256)
        )),
        None => out.push(format!("manifest: no \"{}\"", keys.sha256)),
    }
    match want.checksum {
        Some(w) => {
            let got = d.checksum.0;
            // An empty database: the rolling checksum is 0, a post-apply
            // checksum of one is stored as 8000000000000000.
            let empty_ok = got == 0 && w.value() == i128::from(CHECKSUM_FLAG);
            if w.value() != i128::from(got) && !empty_ok {
                out.push(format!(
                    "{}: expected {}, got {got:016x}",
                    keys.checksum,
                    show_val(w.value(), true)
                ));
            }
        }
        None => out.push(format!("manifest: no \"{}\" checksum", keys.checksum)),
    }
    out
}

/// Compares an image with a description.
pub(crate) fn image_diffs(db: &DbImage, ps: PageSize, want: &DbDesc, keys: &DbKeys) -> Vec<String> {
    match db.digest() {
        Ok(d) => db_diffs(&d, ps, want, keys),
        Err(e) => vec![format!("reading the database: {e}")],
    }
}

/// Applies a decoded file to `db` (SPEC section 8): checks the pre-apply
/// checksum (files that track checksums, except snapshots), writes every
/// page, truncates or extends to `commit` pages, checks the post-apply
/// checksum. Returns the problems.
pub(crate) fn apply(db: &mut DbImage, f: &Full<'_>) -> Vec<String> {
    apply_with(db, &f.header, |sink| {
        f.for_each_page(sink)?;
        Ok(f.trailer)
    })
}

/// Applies the file `src` to `db` as [`apply`] does, decoding it once with
/// the streaming decoder as its pages are written: for building the
/// database states other cases need (each file's own case checks it every
/// way). Returns the file's header, or the problems.
pub(crate) fn apply_file(
    db: &mut DbImage,
    src: &Ltx,
    version: FormatVersion,
) -> Result<Header, Vec<String>> {
    let first = src
        .read_range(0..src.len().min(HEADER_SIZE as u64))
        .map_err(|e| vec![format!("cannot read the header: {e}")])?;
    // Only what the rules need before the pages; the decoder validates the
    // header (for `version`) and must report the same one.
    let h = Header::decode_unvalidated(&first).map_err(|e| vec![format!("stream: {e}")])?;
    let mut decoded = None;
    let mut problems = apply_with(db, &h, |sink| {
        stream_decode(src, usize::MAX, version, false, Some(sink))
            .map(|d| {
                decoded = Some(d.header);
                d.trailer
            })
            .map_err(|e| format!("stream: {e}"))
    });
    if decoded.is_some_and(|d| d != h) {
        problems.push("the decoder reports another header than the file's first bytes".into());
    }
    if problems.is_empty() {
        Ok(h)
    } else {
        Err(problems)
    }
}

type Sink<'a> = &'a mut dyn FnMut(&PageInfo, &[u8]) -> Result<(), String>;

/// The rules of [`apply`]; `pages` streams the pages into the sink it is
/// given and returns the trailer.
fn apply_with(
    db: &mut DbImage,
    h: &Header,
    pages: impl FnOnce(Sink<'_>) -> Result<Trailer, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(e) = db.set_page_size(h.page_size) {
        out.push(e);
        return out;
    }
    let io = |e: io::Error| vec![format!("reading the database: {e}")];
    let tracked = !h.no_checksum();
    if tracked && !h.is_snapshot() {
        let cur = match db.digest() {
            Ok(d) => d.checksum,
            Err(e) => return io(e),
        };
        if cur != h.pre_apply_checksum {
            out.push(format!(
                "pre-apply checksum {} does not match the database checksum {cur}",
                h.pre_apply_checksum
            ));
        }
    }
    let mut write = |info: &PageInfo, data: &[u8]| {
        db.write_page(info.pgno, data)
            .map_err(|e| format!("writing page {}: {e}", info.pgno))
    };
    let trailer = match pages(&mut write) {
        Ok(t) => t,
        Err(e) => {
            out.push(e);
            return out;
        }
    };
    db.set_pages(h.commit);
    if tracked {
        let now = match db.digest() {
            Ok(d) => d.checksum,
            Err(e) => return io(e),
        };
        let post = trailer.post_apply_checksum;
        let empty_ok = db.pages() == 0 && now.0 == 0 && post.0 == CHECKSUM_FLAG;
        if now != post && !empty_ok {
            out.push(format!(
                "post-apply checksum {post} does not match the database checksum {now}"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ltx_core::checksum::database_checksum;

    /// A page that is not all zeros, different for every (pgno, seed).
    fn page(ps: usize, pgno: u32, seed: u8) -> Vec<u8> {
        (0..ps)
            .map(|i| {
                (i as u32)
                    .wrapping_mul(31)
                    .wrapping_add(pgno * 7 + u32::from(seed)) as u8
            })
            .collect()
    }

    /// The image as bytes, read page by page.
    fn bytes(db: &DbImage) -> Vec<u8> {
        let ps = db.page_size().map_or(0, PageSize::bytes);
        let mut v = vec![0u8; db.bytes() as usize];
        for (i, p) in v.chunks_mut(ps.max(1)).enumerate() {
            db.read_page(i as u32 + 1, p).unwrap();
        }
        v
    }

    fn check_digest(db: &DbImage, model: &[u8], ps: PageSize) {
        let d = db.digest().unwrap();
        assert_eq!(bytes(db), model);
        assert_eq!(d.bytes, model.len() as u64);
        assert_eq!(d.sha256, sha2::Sha256::digest(model).as_slice());
        assert_eq!(d.checksum, database_checksum(ps, model));
    }

    /// Every operation against a `Vec<u8>` model, on a state and on a state
    /// built on top of it (which must leave the base unchanged).
    #[test]
    fn image_matches_a_byte_model() {
        let ps = PageSize::new(512).unwrap();
        let n = ps.bytes();
        let mut model = Vec::new();
        let mut db = DbImage::new();
        assert_eq!(db.digest().unwrap().checksum, Checksum(0));
        assert!(db.write_page(1, &[1u8; 512]).is_err(), "no page size yet");
        db.set_page_size(ps).unwrap();
        let write = |db: &mut DbImage, model: &mut Vec<u8>, pgno: u32, data: &[u8]| {
            db.write_page(pgno, data).unwrap();
            let off = (pgno as usize - 1) * n;
            if model.len() < off + n {
                model.resize(off + n, 0);
            }
            model[off..off + n].copy_from_slice(data);
        };
        for p in [1, 2, 5] {
            write(&mut db, &mut model, p, &page(n, p, 0));
        }
        write(&mut db, &mut model, 3, &[0u8; 512]);
        check_digest(&db, &model, ps);
        db.set_pages(8);
        model.resize(8 * n, 0);
        check_digest(&db, &model, ps);
        let base_model = model.clone();
        let base = Rc::new(db);

        let mut next = DbImage::on_top(base.clone());
        check_digest(&next, &model, ps);
        write(&mut next, &mut model, 2, &page(n, 2, 9));
        write(&mut next, &mut model, 1, &[0u8; 512]);
        write(&mut next, &mut model, 10, &page(n, 10, 9));
        check_digest(&next, &model, ps);
        // Truncate below base pages, then grow again: the base's pages 4..
        // must not come back.
        next.set_pages(4);
        model.truncate(4 * n);
        check_digest(&next, &model, ps);
        next.set_pages(7);
        model.resize(7 * n, 0);
        check_digest(&next, &model, ps);
        // Rewrite a stored page with zeros, then with data again.
        write(&mut next, &mut model, 2, &[0u8; 512]);
        write(&mut next, &mut model, 2, &page(n, 2, 3));
        check_digest(&next, &model, ps);
        // The base is unchanged, and so is a third state on top of `next`.
        check_digest(&base, &base_model, ps);
        let next = Rc::new(next);
        let third = DbImage::on_top(next.clone());
        check_digest(&third, &model, ps);
        let mut other = DbImage::on_top(next);
        assert!(other.set_page_size(PageSize::new(1024).unwrap()).is_err());
        other.set_pages(0);
        other.set_page_size(PageSize::new(1024).unwrap()).unwrap();
        assert_eq!(other.digest().unwrap().checksum, Checksum(0));
    }

    /// The lock page: an image past 1 GiB of 64 KiB pages keeps it zero and
    /// leaves it out of the checksum; the digest matches a file with the same
    /// bytes, and a comparison sees a byte in the file's lock page; only the
    /// pages written take disk space. (The one test here that hashes 1 GiB.)
    #[test]
    fn lock_page_and_large_sparse_images() {
        let ps = PageSize::new(65536).unwrap();
        let lock = ps.lock_pgno();
        assert_eq!(lock, 16385);
        let written = [1, lock - 1, lock + 1, lock + 2];
        let mut db = DbImage::new();
        db.set_page_size(ps).unwrap();
        for p in written {
            db.write_page(p, &page(ps.bytes(), p, 1)).unwrap();
        }
        db.set_pages(lock + 5);
        assert_eq!(db.stored, 4);
        let mut buf = vec![1u8; ps.bytes()];
        db.read_page(lock, &mut buf).unwrap();
        assert_eq!(buf, vec![0u8; ps.bytes()]);
        // The checksum: every page but the lock page (CRC only, no reads).
        let mut sum = 0u64;
        let zero = vec![0u8; ps.bytes()];
        for p in (1..=lock + 5).filter(|&p| p != lock) {
            let data = if written.contains(&p) {
                page(ps.bytes(), p, 1)
            } else {
                zero.clone()
            };
            sum ^= ltx_core::checksum::page_checksum(p, &data).0;
        }
        let d = db.digest().unwrap();
        assert_eq!(d.checksum, Checksum(sum | CHECKSUM_FLAG));
        assert_eq!(d.bytes, u64::from(lock + 5) * 65536);
        // The same database as a (sparse) file: the same digest.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let f = File::create(&path).unwrap();
        f.set_len(d.bytes).unwrap();
        for p in written {
            write_all_at(&f, &page(ps.bytes(), p, 1), u64::from(p - 1) * 65536).unwrap();
        }
        assert_eq!(digest_file(&path, ps).unwrap(), d);
        // A non-zero byte in the file's lock page is a difference.
        write_all_at(&f, &[1], u64::from(lock - 1) * 65536 + 7).unwrap();
        let diff = db.diff_file(&path).unwrap().unwrap();
        assert!(
            diff.contains(&format!("first difference in page {lock}")),
            "{diff}"
        );
        assert!(diff.contains(&format!("({} bytes)", d.bytes)), "{diff}");
    }

    /// `diff_file` on small images: identical, longer, shorter.
    #[test]
    fn diff_file_sizes() {
        let ps = PageSize::new(512).unwrap();
        let mut db = DbImage::new();
        db.set_page_size(ps).unwrap();
        db.write_page(2, &page(512, 2, 0)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let mut model = vec![0u8; 512];
        model.extend(page(512, 2, 0));
        std::fs::write(&path, &model).unwrap();
        assert_eq!(db.diff_file(&path).unwrap(), None);
        model.push(0);
        std::fs::write(&path, &model).unwrap();
        let diff = db.diff_file(&path).unwrap().unwrap();
        assert!(
            diff.contains("(1024 bytes)") && diff.contains("(1025 bytes)"),
            "{diff}"
        );
        assert!(!diff.contains("first difference"), "{diff}");
        std::fs::write(&path, &model[..600]).unwrap();
        let diff = db.diff_file(&path).unwrap().unwrap();
        assert!(diff.contains("(600 bytes)"), "{diff}");
        model.pop();
        model[700] ^= 1;
        std::fs::write(&path, &model).unwrap();
        let diff = db.diff_file(&path).unwrap().unwrap();
        assert!(diff.contains("first difference in page 2"), "{diff}");
        assert!(db.diff_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn digests_compare_with_descriptions() {
        use crate::manifest::{Num, Sha256Hex};
        let ps = PageSize::new(512).unwrap();
        let model = [7u8; 1024];
        let d = DbDigest {
            bytes: 1024,
            sha256: sha2::Sha256::digest(model).into(),
            checksum: database_checksum(ps, &model),
        };
        let mut want = DbDesc {
            pages: Some(Num::Int(2)),
            sha256: Some(Sha256Hex(d.sha256)),
            checksum: Some(Num::Hex(d.checksum.0)),
        };
        assert!(db_diffs(&d, ps, &want, &DB_KEYS).is_empty());
        want.pages = Some(Num::Int(3));
        want.sha256 = None;
        assert_eq!(
            db_diffs(&d, ps, &want, &STEP_KEYS),
            ["db_pages: expected 3, got 2", "manifest: no \"db_sha256\""]
        );
        let empty = DbDigest {
            bytes: 0,
            sha256: sha2::Sha256::digest([]).into(),
            checksum: Checksum(0),
        };
        let want = DbDesc {
            pages: Some(Num::Int(0)),
            sha256: Some(Sha256Hex(empty.sha256)),
            checksum: Some(Num::Hex(CHECKSUM_FLAG)),
        };
        assert!(db_diffs(&empty, ps, &want, &DB_KEYS).is_empty());
    }
}
