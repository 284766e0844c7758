//! Conformance runner: checks `ltx-core` against a directory of LTX vectors
//! described by a `manifest.json` (format: `testdata/conformance/README.md`).
//!
//! [`run`] reads `DIR/manifest.json`, checks every case and returns a
//! [`Report`]; the `ltx-spec` binary prints it. Every case runs under
//! [`std::panic::catch_unwind`], so a panic in `ltx-core` (or here) is
//! reported as that case failing, never as a crash of the runner.
//!
//! Modules: [`manifest`] (the typed manifest model, also used by the tests
//! that doctor manifests), the decoding harness (every decoding path, the
//! expected values, file access), `cases` (the checks of each kind),
//! [`categories`] (error categories of rejected files and the allowed
//! differences), [`db`] (database images and applying files to them) and
//! [`report`].
//!
//! The decoding paths of one file run on threads of their own (they only
//! read it); cases run one after the other.
//!
//! Every case is read as the format version its `format_version` field (or
//! the manifest's top-level one) names, 3 when absent; versions 1 and 2 use
//! the layouts of `testdata/conformance-old/README.md`. For v1/v2 files the
//! streaming decoder is [`AnyDecoder`](ltx_core::AnyDecoder) with that
//! version, and the second decoding path (instead of `LtxFile`) is version
//! detection over the whole file, which must name the case's version for
//! valid files and find no valid layout for invalid ones. Pages of v1 LZ4
//! files are located by `stream_offset` (offset in the decompressed page
//! block) instead of `frame_offset`; the encodings `v1-raw`, `v1-lz4`,
//! `v2-lz4-frames` are checked against the version and the header's LZ4 flag.
//! Compactions of v1/v2 inputs are merged into v3 with
//! [`merge_any`](ltx_core::old::merge_any) (the v1 LZ4 output flag does not
//! carry over), re-encodes write v3. An incremental file with `db_after` but
//! no base state (no `applies_to`) is checked against a `db` case holding the
//! resulting database, if any.
//!
//! What is checked, per kind:
//!
//! - `valid`: the file decodes with the streaming [`ltx_core::Decoder`]
//!   (whole, and fed in chunks of 4093, 256 and 7 bytes, and of one byte for
//!   files under 64 KiB) and with [`LtxFile::parse`](ltx_core::LtxFile::parse)
//!   and [`LtxFile::verify`](ltx_core::LtxFile::verify); every path must give
//!   the manifest's header, trailer, pages (pgno, sha256, flags, frame offset
//!   and size, in file order), page index size, file size and encoding. The
//!   decoded pages are re-encoded with [`Encoder`](ltx_core::Encoder) and
//!   decoded again (same header, pages and post-apply checksum required).
//!   With `db_after`, the database is built by following `applies_to` and
//!   compared.
//! - `invalid`, `reference-accepts`: every decoding path must reject the
//!   file, with the manifest's `category` or a difference listed, with its
//!   reason, in [`categories::ALLOWED`].
//! - `db`: page count, sha256 and rolling checksum of a database file.
//! - `chain`: each file is checked like a valid case, then applied in order
//!   to a database image; pre-/post-apply checksums, the database after
//!   every step and the final database are compared.
//! - `compaction`: the inputs are merged with
//!   [`merge_files`](ltx_core::merge::merge_files); our output must decode to
//!   the expected header, pages and post-apply checksum; the reference
//!   output is checked like a valid case; with `db_after`, both outputs are
//!   applied to the base state and compared.
//!
//! ## Size limits: none
//!
//! Databases of any size a file can describe are built, compared and hashed
//! page by page ([`db::DbImage`]: an unnamed temporary file holding only the
//! pages written, on top of a shared base state), so memory is a few pages
//! plus a few bytes per page, whatever the database size. The SQLite lock
//! page (`0x40000000 / page_size + 1`) is never in an LTX file; in an image
//! it is zero and the rolling checksum skips it, as in SQLite and the
//! reference.
//!
//! LTX files up to [`Options::in_memory_limit`] (64 MiB by default) are read
//! whole. Larger ones are read in bounded pieces: the streaming decoder is
//! fed 1 MiB reads (instead of the whole input) and the chunk sizes above,
//! except 7 bytes for files over 256 MiB (they would take minutes); the
//! second path is ranged reads ([`ltx_core::file`]'s recipe: header, tail,
//! index, then each frame with [`decode_frame`](ltx_core::decode_frame), the
//! file checksum combined from the frames) instead of `LtxFile`, and for
//! v1/v2 the detection streams the file under each layout. Our re-encodes
//! and compaction outputs go to a temporary file past the limit, and
//! compactions of large v3 inputs are written from ranged reads (the
//! [`plan_merge`](ltx_core::merge::plan_merge) plan, each winning frame read
//! on its own). Compactions of v1/v2 inputs still read the inputs whole:
//! `merge_any` takes slices.

mod cases;
pub mod categories;
pub mod db;
pub(crate) mod harness;
pub mod manifest;
pub mod report;

use std::path::Path;

pub use report::{CaseResult, Report};

/// The LTX format version of cases that do not say (`format_version` on the
/// case or at the top of the manifest overrides it).
pub const FORMAT_VERSION: u64 = 3;

/// The format versions this runner checks.
pub const FORMAT_VERSIONS: [u64; 3] = [1, 2, 3];

/// How to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Whether `ok` lines and notes are printed.
    pub verbose: bool,
    /// LTX files up to this many bytes are read whole; larger ones in
    /// bounded pieces (see the crate doc). 0 reads every file in pieces.
    pub in_memory_limit: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verbose: false,
            in_memory_limit: 64 << 20,
        }
    }
}

/// Checks every case of `dir/manifest.json` with the default [`Options`].
///
/// Never panics on bad vectors: a manifest that cannot be read or parsed sets
/// [`Report::fatal`]; everything else is a per-case result.
pub fn run(dir: &Path, verbose: bool) -> Report {
    run_with(
        dir,
        &Options {
            verbose,
            ..Options::default()
        },
    )
}

/// Checks every case of `dir/manifest.json`.
///
/// A manifest that cannot be read, is not JSON, or has no `cases` array sets
/// [`Report::fatal`]; a case that does not parse fails on its own.
pub fn run_with(dir: &Path, opts: &Options) -> Report {
    let mut report = Report {
        verbose: opts.verbose,
        ..Report::default()
    };
    let manifest = match manifest::Manifest::load(dir) {
        Ok(m) => m,
        Err(e) => {
            report.fatal = Some(e);
            return report;
        }
    };
    let ctx = cases::Ctx::new(dir, &manifest.cases, manifest.format_version, opts);
    for (i, entry) in manifest.cases.iter().enumerate() {
        report.cases.push(ctx.run_case(i, entry));
    }
    report
}
