//! Replacing a file atomically: write a temporary file beside it, fsync,
//! rename over it, fsync the directory. A reader, or a crash at any
//! moment, sees either the old file or the complete new one. Used by
//! `ltx restore` (through [`crate::fetch`]), `ltx apply`, `encode-db`,
//! `diff -o` and `compact`.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};

/// A temporary file beside its destination, named
/// `.<name>.ltx-<tag>-<pid>.tmp`, removed on drop unless committed. Commit
/// = fsync the file, rename it over the destination, fsync the directory:
/// a reader (or a crash at any moment) sees either the old file or the
/// complete new one.
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates the temporary file for `dest` (which need not exist).
    ///
    /// # Errors
    /// I/O errors creating it.
    pub fn beside(dest: &Path, tag: &str) -> Result<TempFile> {
        let name = dest
            .file_name()
            .ok_or_else(|| Error::usage(format!("{}: not a file path", dest.display())))?;
        let dir = parent_dir(dest);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".ltx-{tag}-{}.tmp", std::process::id()));
        let path = dir.join(tmp_name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .context_with(|| format!("{}: cannot create temporary file", path.display()))?;
        Ok(TempFile {
            path,
            file: Some(file),
        })
    }

    /// The open file (read/write).
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("open until commit")
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// fsync, rename over `dest`, fsync the directory.
    ///
    /// # Errors
    /// I/O errors; the temporary file is removed and `dest` is unchanged.
    pub fn commit(mut self, dest: &Path) -> Result<()> {
        let file = self.file.take().expect("open until commit");
        file.sync_all()
            .context_with(|| format!("{}: fsync failed", self.path.display()))?;
        drop(file);
        std::fs::rename(&self.path, dest).context_with(|| {
            format!(
                "cannot rename {} to {}",
                self.path.display(),
                dest.display()
            )
        })?;
        // Renamed: nothing left to clean up.
        self.path = PathBuf::new();
        sync_dir(&parent_dir(dest))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            self.file.take();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The directory holding `p` (`.` for a bare file name).
pub fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs a directory so a rename in it is durable.
///
/// # Errors
/// I/O errors.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).context_with(|| format!("{}: cannot open directory", dir.display()))?;
    d.sync_all()
        .context_with(|| format!("{}: fsync of directory failed", dir.display()))
}
