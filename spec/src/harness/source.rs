//! The bytes of an LTX file: in memory up to [`crate::Options::in_memory_limit`],
//! otherwise read from the file in bounded pieces (sequential reads for
//! streaming, positioned reads for random access), and [`Spool`], where our
//! own outputs (re-encodes, compactions) go.

use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;

/// Bytes read from disk at a time when streaming a file that is not in memory.
pub(crate) const READ_SIZE: usize = 1 << 20;

/// An LTX file (or any file) being checked.
pub(crate) struct Ltx {
    data: Data,
}

enum Data {
    Mem(Vec<u8>),
    Disk { file: File, len: u64 },
}

impl Ltx {
    /// Opens `dir/rel`: read whole if it is at most `limit` bytes.
    pub(crate) fn open(dir: &Path, rel: &str, limit: u64) -> Result<Ltx, String> {
        let err = |e: io::Error| format!("cannot read {rel}: {e}");
        let file = File::open(dir.join(rel)).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len <= limit {
            let mut bytes = vec![0u8; len as usize];
            read_exact_at(&file, &mut bytes, 0).map_err(err)?;
            Ok(Ltx::mem(bytes))
        } else {
            Ok(Ltx {
                data: Data::Disk { file, len },
            })
        }
    }

    /// A file held in memory.
    pub(crate) fn mem(bytes: Vec<u8>) -> Ltx {
        Ltx {
            data: Data::Mem(bytes),
        }
    }

    /// Total bytes.
    pub(crate) fn len(&self) -> u64 {
        match &self.data {
            Data::Mem(b) => b.len() as u64,
            Data::Disk { len, .. } => *len,
        }
    }

    /// The whole file, when it is in memory.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match &self.data {
            Data::Mem(b) => Some(b),
            Data::Disk { .. } => None,
        }
    }

    /// Fills `buf` from offset `off`.
    ///
    /// # Errors
    /// `UnexpectedEof` when the range is not inside the file; I/O errors.
    pub(crate) fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        match &self.data {
            Data::Mem(b) => {
                let start = usize::try_from(off).ok().filter(|&s| s <= b.len());
                match start.and_then(|s| b.get(s..s + buf.len())) {
                    Some(src) => {
                        buf.copy_from_slice(src);
                        Ok(())
                    }
                    None => Err(io::ErrorKind::UnexpectedEof.into()),
                }
            }
            Data::Disk { file, len } => {
                if off
                    .checked_add(buf.len() as u64)
                    .is_none_or(|end| end > *len)
                {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                read_exact_at(file, buf, off)
            }
        }
    }

    /// The bytes in `r`.
    pub(crate) fn read_range(&self, r: Range<u64>) -> io::Result<Vec<u8>> {
        let n = usize::try_from(r.end.saturating_sub(r.start))
            .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let mut v = vec![0u8; n];
        self.read_at(&mut v, r.start)?;
        Ok(v)
    }

    /// Calls `f` with the whole file in consecutive pieces of `chunk` bytes
    /// (the last may be shorter); `usize::MAX` means the whole file in one
    /// piece when it is in memory, and [`READ_SIZE`] pieces when it is not.
    /// Memory: one piece (at most `max(chunk, READ_SIZE)` bytes) for a file
    /// on disk.
    pub(crate) fn pieces<E: From<io::Error>>(
        &self,
        chunk: usize,
        mut f: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let chunk = chunk.max(1);
        match &self.data {
            Data::Mem(b) => {
                for piece in b.chunks(chunk) {
                    f(piece)?;
                }
                Ok(())
            }
            Data::Disk { file, len } => {
                let piece = chunk.min(READ_SIZE);
                let mut buf = vec![0u8; (READ_SIZE / piece).max(1) * piece];
                let mut off = 0u64;
                while off < *len {
                    let n = buf.len().min((*len - off) as usize);
                    read_exact_at(file, &mut buf[..n], off)?;
                    for p in buf[..n].chunks(piece) {
                        f(p)?;
                    }
                    off += n as u64;
                }
                Ok(())
            }
        }
    }

    /// Whether two files hold the same bytes (compared in bounded pieces).
    pub(crate) fn same_bytes(&self, other: &Ltx) -> io::Result<bool> {
        if self.len() != other.len() {
            return Ok(false);
        }
        if let (Some(a), Some(b)) = (self.bytes(), other.bytes()) {
            return Ok(a == b);
        }
        let mut a = vec![0u8; READ_SIZE];
        let mut b = vec![0u8; READ_SIZE];
        let mut off = 0u64;
        while off < self.len() {
            let n = READ_SIZE.min((self.len() - off) as usize);
            self.read_at(&mut a[..n], off)?;
            other.read_at(&mut b[..n], off)?;
            if a[..n] != b[..n] {
                return Ok(false);
            }
            off += n as u64;
        }
        Ok(true)
    }
}

/// An output being written (an `Encoder` appends to [`Spool::buf`]): kept in
/// memory while it is at most `limit` bytes, then moved to an unnamed
/// temporary file, so memory stays bounded by `limit` plus one frame.
pub(crate) struct Spool {
    buf: Vec<u8>,
    file: Option<File>,
    written: u64,
    limit: u64,
}

impl Spool {
    pub(crate) fn new(limit: u64) -> Spool {
        Spool {
            buf: Vec::new(),
            file: None,
            written: 0,
            limit,
        }
    }

    /// Where the encoder appends.
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Moves the buffered bytes to the temporary file once the output is
    /// larger than the limit. Call after every append.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.file.is_none() && self.buf.len() as u64 <= self.limit {
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(tempfile::tempfile()?),
        };
        file.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// The finished output.
    pub(crate) fn finish(mut self) -> io::Result<Ltx> {
        if self.file.is_none() {
            return Ok(Ltx::mem(std::mem::take(&mut self.buf)));
        }
        self.flush()?;
        let file = self.file.take().expect("spooled");
        Ok(Ltx {
            data: Data::Disk {
                file,
                len: self.written,
            },
        })
    }
}

/// Fills `buf` from `file` at `off` (positioned read; no shared cursor).
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, off)
    }
    #[cfg(windows)]
    {
        let (mut buf, mut off) = (buf, off);
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_read(file, buf, off) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    off += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Writes all of `buf` to `file` at `off` (positioned write).
pub(crate) fn write_all_at(file: &File, buf: &[u8], off: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, off)
    }
    #[cfg(windows)]
    {
        let (mut buf, mut off) = (buf, off);
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_write(file, buf, off) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    off += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_disk(bytes: &[u8]) -> (tempfile::TempDir, Ltx) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), bytes).unwrap();
        let l = Ltx::open(dir.path(), "f", 0).unwrap();
        assert!(l.bytes().is_none());
        (dir, l)
    }

    #[test]
    fn pieces_cover_the_file_in_order() {
        let data: Vec<u8> = (0..3 * READ_SIZE as u32 + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let (_d, disk) = on_disk(&data);
        let mem = Ltx::mem(data.clone());
        for l in [&disk, &mem] {
            for chunk in [usize::MAX, 4093, 7] {
                let mut got = Vec::new();
                let mut sizes = std::collections::BTreeSet::new();
                l.pieces(chunk, |p| -> io::Result<()> {
                    got.extend_from_slice(p);
                    sizes.insert(p.len());
                    Ok(())
                })
                .unwrap();
                assert_eq!(got, data);
                assert!(*sizes.last().unwrap() <= chunk.min(data.len()));
                if chunk != usize::MAX {
                    assert!(sizes.contains(&chunk));
                }
            }
        }
        let mut b = [0u8; 5];
        disk.read_at(&mut b, 251).unwrap();
        assert_eq!(b, [0, 1, 2, 3, 4]);
        mem.read_at(&mut b, 252).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5]);
        let end = data.len() as u64;
        for l in [&disk, &mem] {
            assert!(l.read_at(&mut b, end - 4).is_err());
            assert!(l.read_at(&mut b, u64::MAX).is_err());
            assert_eq!(l.read_range(end - 2..end).unwrap(), data[data.len() - 2..]);
        }
        assert!(disk.same_bytes(&mem).unwrap());
        let mut other = data.clone();
        *other.last_mut().unwrap() ^= 1;
        assert!(!disk.same_bytes(&Ltx::mem(other)).unwrap());
    }

    #[test]
    fn spool_moves_to_disk_past_its_limit() {
        let mut s = Spool::new(10);
        s.buf().extend_from_slice(b"0123456789");
        s.flush().unwrap();
        let small = s.finish().unwrap();
        assert_eq!(small.bytes(), Some(&b"0123456789"[..]));
        let mut s = Spool::new(10);
        for i in 0..5u8 {
            s.buf().extend_from_slice(&[i; 7]);
            s.flush().unwrap();
        }
        let big = s.finish().unwrap();
        assert!(big.bytes().is_none());
        assert_eq!(big.len(), 35);
        assert_eq!(big.read_range(6..8).unwrap(), [0, 1]);
    }
}
