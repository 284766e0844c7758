//! Whether a file we write tracks checksums: the `--checksum auto|track|none`
//! choice of `encode-db`, `diff -o` and `compact`.
//!
//! Litestream 0.5.17 writes every file with the NoChecksum flag and zero
//! pre-/post-apply checksums, and its restore refuses a last file whose
//! post-apply checksum is not zero (`validate trailer: post-apply checksum
//! not allowed`). A file meant for a Litestream bucket must therefore be
//! NoChecksum. `auto` (the default) decides from where the file goes and
//! what it is made of:
//!
//! 1. an output inside a replica layout (`<db>/ltx/<level>/` or
//!    `<db>/<level as %04x>/`) follows that replica's files: NoChecksum when
//!    its newest file is (or when it holds none yet: a replica layout is
//!    Litestream's), tracked when its newest file tracks checksums;
//! 2. else a merge of inputs any of which is NoChecksum is NoChecksum (the
//!    output's post-apply checksum cannot be known);
//! 3. else checksums are tracked (the format's complete form: every reader,
//!    `ltx apply` and `ltx verify` check them).
//!
//! `track` and `none` force the choice (`--no-checksum` is `--checksum none`).

use std::path::{Path, PathBuf};

use ltx_core::Header;

/// The `--checksum` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChecksumMode {
    /// Follow the destination replica's convention, else the inputs'; else track.
    #[default]
    Auto,
    /// Track checksums (flags 0, pre-/post-apply checksums set).
    Track,
    /// The NoChecksum flag, pre-/post-apply checksums 0 (as Litestream writes).
    None,
}

/// The `--checksum` / `--no-checksum` pair, flattened into a command's args.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ChecksumArg {
    /// Whether the output tracks checksums: `auto` follows the replica the
    /// output goes into (Litestream's files are NoChecksum, and Litestream
    /// refuses a file that carries a post-apply checksum), else the inputs;
    /// `track` or `none` force it.
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub checksum: ChecksumMode,
    /// Same as `--checksum none`: the NoChecksum flag, checksums 0 (as
    /// Litestream writes).
    #[arg(long)]
    pub no_checksum: bool,
}

/// What was decided, and why (for a note on standard error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Write the NoChecksum flag.
    pub no_checksum: bool,
    /// Why, when `auto` decided from the destination or the inputs.
    pub reason: Option<String>,
}

impl ChecksumArg {
    /// Decides for an output at `out` (a file path; for a directory output,
    /// any path inside it) merged from inputs of which `inputs_no_checksum`
    /// says whether any is NoChecksum.
    pub fn decide(&self, out: &Path, inputs_no_checksum: bool) -> Decision {
        let mode = if self.no_checksum {
            ChecksumMode::None
        } else {
            self.checksum
        };
        match mode {
            ChecksumMode::Track => Decision {
                no_checksum: false,
                reason: None,
            },
            ChecksumMode::None => Decision {
                no_checksum: true,
                reason: None,
            },
            ChecksumMode::Auto => auto(out, inputs_no_checksum),
        }
    }
}

fn auto(out: &Path, inputs_no_checksum: bool) -> Decision {
    if let Some(root) = replica_root(out) {
        let newest = newest_header(&root, out);
        let (no_checksum, why) = match newest {
            Some((p, h)) => (
                h.no_checksum(),
                format!(
                    "its newest file {} {}",
                    p.display(),
                    if h.no_checksum() {
                        "is NoChecksum"
                    } else {
                        "tracks checksums"
                    }
                ),
            ),
            None => (
                true,
                "it holds no file yet; Litestream writes NoChecksum".into(),
            ),
        };
        return Decision {
            no_checksum,
            reason: Some(format!(
                "{} goes into the replica {} ({why}): {}",
                out.display(),
                root.display(),
                if no_checksum {
                    "written NoChecksum (--checksum track to override)"
                } else {
                    "checksums tracked (--checksum none to override)"
                }
            )),
        };
    }
    if inputs_no_checksum {
        return Decision {
            no_checksum: true,
            reason: Some(
                "an input is NoChecksum: the output is NoChecksum (its post-apply checksum cannot be known)"
                    .into(),
            ),
        };
    }
    Decision {
        no_checksum: false,
        reason: None,
    }
}

/// The database directory of a replica layout `out` lies in (`<db>` of
/// `<db>/ltx/<level>/FILE` or `<db>/<%04x level>/FILE`), if any.
pub fn replica_root(out: &Path) -> Option<PathBuf> {
    let out = std::path::absolute(out).ok()?;
    crate::input::level_of(&out)?;
    let level_dir = out.parent()?;
    let up = level_dir.parent()?;
    if up.file_name().is_some_and(|n| n == "ltx") {
        up.parent().map(Path::to_path_buf)
    } else {
        Some(up.to_path_buf())
    }
}

/// The header of the file with the highest max TXID among the replica's
/// level directories (`out` itself excluded).
fn newest_header(root: &Path, out: &Path) -> Option<(PathBuf, Header)> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for l in 0..=9u32 {
        dirs.push(root.join("ltx").join(l.to_string()));
        dirs.push(root.join(format!("{l:04x}")));
    }
    let out = std::path::absolute(out).ok();
    let mut best: Option<(ltx_core::TxId, PathBuf)> = None;
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if out.as_deref() == std::path::absolute(&p).ok().as_deref() {
                continue;
            }
            let Some((_, max)) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| ltx_core::parse_filename(n).ok())
            else {
                continue;
            };
            if best.as_ref().is_none_or(|(m, _)| max > *m) {
                best = Some((max, p));
            }
        }
    }
    let (_, p) = best?;
    use std::io::Read;
    let mut b = [0u8; ltx_core::header::HEADER_SIZE];
    std::fs::File::open(&p).ok()?.read_exact(&mut b).ok()?;
    let h = Header::decode_unvalidated(&b).ok()?;
    Some((p, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_roots() {
        assert_eq!(
            replica_root(Path::new(
                "/b/app/ltx/0/0000000000000001-0000000000000001.ltx"
            )),
            Some(PathBuf::from("/b/app"))
        );
        assert_eq!(
            replica_root(Path::new(
                "/b/app/0009/0000000000000001-0000000000000001.ltx"
            )),
            Some(PathBuf::from("/b/app"))
        );
        assert_eq!(replica_root(Path::new("/tmp/snap.ltx")), None);
    }

    #[test]
    fn forced_modes() {
        let a = ChecksumArg {
            checksum: ChecksumMode::Track,
            no_checksum: false,
        };
        assert!(!a.decide(Path::new("/b/app/ltx/0/x.ltx"), true).no_checksum);
        let a = ChecksumArg {
            checksum: ChecksumMode::Auto,
            no_checksum: true,
        };
        assert!(a.decide(Path::new("/tmp/x.ltx"), false).no_checksum);
        let a = ChecksumArg::default();
        assert!(!a.decide(Path::new("/tmp/x.ltx"), false).no_checksum);
        assert!(a.decide(Path::new("/tmp/x.ltx"), true).no_checksum);
    }
}
