//! Where LTX bytes come from: memory-mapped local files, standard input,
//! directories and Litestream replica layouts.
//!
//! Bucket URLs (`s3://`, `gs://`, `az://`, `file://`) will slot in here as
//! another [`Source`] once the compactor's storage layer exists.

use std::fs::File;
use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ltx_core::{parse_filename, TxId};

/// The bytes of one input: a read-only memory map, or owned bytes.
pub enum Source {
    /// A memory-mapped local file.
    Mmap(memmap2::Mmap),
    /// Bytes held in memory (empty files, standard input).
    Bytes(Vec<u8>),
}

impl Deref for Source {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Source::Mmap(m) => m,
            Source::Bytes(b) => b,
        }
    }
}

/// Opens a local file read-only and maps it.
pub fn open(path: &Path) -> Result<Source> {
    let f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("{}: cannot stat", path.display()))?
        .len();
    if len == 0 {
        return Ok(Source::Bytes(Vec::new()));
    }
    // SAFETY: the map is read-only; a file truncated by another process while
    // mapped can fault (SIGBUS), the accepted trade-off of every mmap reader.
    let m = unsafe { memmap2::Mmap::map(&f) }
        .with_context(|| format!("{}: cannot map", path.display()))?;
    Ok(Source::Mmap(m))
}

/// Whether `path` means standard input (`-`).
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Reads all of standard input (for commands that need random access).
pub fn read_stdin() -> Result<Source> {
    let mut v = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut v)
        .context("reading standard input")?;
    Ok(Source::Bytes(v))
}

/// One LTX file found among the paths given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LtxPath {
    /// Where it is (`-` for standard input).
    pub path: PathBuf,
    /// Compaction level, when the path is inside a replica layout.
    pub level: Option<u32>,
    /// TXID range from the file name, when it is `%016x-%016x.ltx`.
    pub txids: Option<(TxId, TxId)>,
}

impl LtxPath {
    /// Display name.
    pub fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// The level encoded by the directory `path` lies in, in a Litestream
/// replica: `ltx/<level>/` or `<level as %04x>/`, by the bucket catalog's
/// rule ([`ltx_compactor::catalog::parse_level_dir`]: levels 0..=9 only,
/// lower-case hex), so that a directory and a `file://` bucket agree.
pub fn level_of(path: &Path) -> Option<u32> {
    let key = key_of(path)?;
    let (dir, _) = key.rsplit_once('/')?;
    ltx_compactor::catalog::parse_level_dir(dir).map(|(_, _, level)| u32::from(level))
}

/// The last three components of `path` (`<db or ltx>/<level>/<name>`) as
/// a bucket key, for the catalog's parser.
fn key_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let parent = path.parent()?;
    let dir = parent.file_name()?.to_str()?;
    Some(
        match parent
            .parent()
            .and_then(|g| g.file_name())
            .and_then(|g| g.to_str())
        {
            Some(grand) => format!("{grand}/{dir}/{name}"),
            None => format!("{dir}/{name}"),
        },
    )
}

/// Whether the catalog reads `path` as a Litestream file (a level
/// directory and a `%016x-%016x.ltx` name in lower-case hex).
fn is_litestream_file(path: &Path) -> bool {
    key_of(path).is_some_and(|k| ltx_compactor::catalog::parse_key(&k).is_some())
}

fn describe(path: PathBuf) -> LtxPath {
    let txids = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| parse_filename(n).ok());
    let level = level_of(&path);
    LtxPath { path, level, txids }
}

fn walk(dir: &Path, out: &mut Vec<LtxPath>, depth: usize) -> Result<()> {
    if depth > 8 {
        return Ok(());
    }
    let rd = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list directory", dir.display()))?;
    for ent in rd {
        let ent = ent.with_context(|| format!("{}: cannot list directory", dir.display()))?;
        let p = ent.path();
        let ft = ent.file_type()?;
        if ft.is_dir() {
            walk(&p, out, depth + 1)?;
        } else if p.extension().is_some_and(|e| e == "ltx") {
            let d = describe(p);
            // In a replica layout, a name Litestream does not read (it
            // matches `^[0-9a-f]{16}-[0-9a-f]{16}\.ltx$`: upper-case hex is
            // ignored) is not part of the replica: skipped, and said so, as
            // for a bucket (the catalog's rule).
            if d.level.is_some() && !is_litestream_file(&d.path) {
                eprintln!(
                    "ltx: ignoring {}: not a Litestream file name (%016x-%016x.ltx, lower-case hex); Litestream does not read it either",
                    d.path.display()
                );
                continue;
            }
            out.push(d);
        }
    }
    Ok(())
}

/// Expands command-line paths: files as given, directories recursively to
/// their `*.ltx` files. The result is sorted by level, then TXID, then path.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<LtxPath>> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(LtxPath {
                path: p.clone(),
                level: None,
                txids: None,
            });
        } else if p.is_dir() {
            walk(p, &mut out, 0)?;
        } else if p.exists() {
            out.push(describe(p.clone()));
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    out.sort_by(|a, b| (a.level, a.txids, &a.path).cmp(&(b.level, b.txids, &b.path)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_from_layouts() {
        assert_eq!(
            level_of(Path::new("db/ltx/0/0000000000000001-0000000000000001.ltx")),
            Some(0)
        );
        assert_eq!(level_of(Path::new("db/ltx/9/a.ltx")), Some(9));
        assert_eq!(level_of(Path::new("db/0009/a.ltx")), Some(9));
        // Litestream's levels are 0..=9 in lower-case hex: `000a` and
        // `000A` are not level directories (the compactor's catalog agrees).
        assert_eq!(level_of(Path::new("db/000a/a.ltx")), None);
        assert_eq!(level_of(Path::new("db/000A/a.ltx")), None);
        assert_eq!(level_of(Path::new("db/x/a.ltx")), None);
        // One decimal digit only, as Litestream names them (the catalog agrees).
        assert_eq!(level_of(Path::new("db/ltx/10/a.ltx")), None);
        assert_eq!(level_of(Path::new("db/ltx/01/a.ltx")), None);
        assert_eq!(level_of(Path::new("ltx/3/a.ltx")), Some(3));
        assert_eq!(level_of(Path::new("0003/a.ltx")), Some(3));
        assert_eq!(level_of(Path::new("/0003/a.ltx")), Some(3));
        assert_eq!(level_of(Path::new("/ltx/3/a.ltx")), Some(3));
        // Every directory the catalog reads as a level, and no other.
        for dir in [
            "ltx/0",
            "db/ltx/9",
            "db/0000",
            "db/0009",
            "db/000a",
            "db/000A",
            "db/ltx/10",
        ] {
            let path = format!("/{dir}/0000000000000001-0000000000000001.ltx");
            let key = format!("x/{dir}/0000000000000001-0000000000000001.ltx");
            let catalog = ltx_compactor::catalog::parse_key(&key).map(|k| u32::from(k.level));
            assert_eq!(level_of(Path::new(&path)), catalog, "{dir}");
        }
    }
}
