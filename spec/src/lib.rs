//! Conformance runner: checks `ltx-core` against a directory of LTX vectors
//! described by a `manifest.json` (format: `testdata/conformance/README.md`).
//!
//! [`run`] reads `DIR/manifest.json`, checks every case and returns a
//! [`Report`]; the `ltx-spec` binary prints it. Every case runs under
//! [`std::panic::catch_unwind`], so a panic in `ltx-core` (or here) is
//! reported as that case failing, never as a crash of the runner.
//!
//! Every case is read as the format version its `format_version` field (or
//! the manifest's top-level one) names, 3 when absent; versions 1 and 2 use
//! the layouts of `testdata/conformance-old/README.md`. For v1/v2 files the
//! streaming decoder is [`AnyDecoder`] with that version, and the second
//! decoding path (instead of `LtxFile`) is version detection over the whole
//! file, which must name the case's version for valid files and find no
//! valid layout for invalid ones. Pages of v1 LZ4 files are located by
//! `stream_offset` (offset in the decompressed page block) instead of
//! `frame_offset`; the encodings `v1-raw`, `v1-lz4`, `v2-lz4-frames` are
//! checked against the version and the header's LZ4 flag. Compactions of
//! v1/v2 inputs are merged into v3 with [`merge_any`] (the v1 LZ4 output flag
//! does not carry over), re-encodes write v3. An incremental file with
//! `db_after` but no base state (no `applies_to`) is checked against a `db`
//! case holding the resulting database, if any.
//!
//! What is checked, per kind:
//!
//! - `valid`: the file decodes with the streaming [`ltx_core::Decoder`] (whole, and fed
//!   in chunks of several sizes, down to one byte for files under 64 KiB) and
//!   with [`LtxFile::parse`] + [`LtxFile::verify`]; every path must give the
//!   manifest's header, trailer, pages (pgno, sha256, flags, frame offset and
//!   size, in file order), page index size, file size and encoding. The
//!   decoded pages are re-encoded with [`Encoder`] and decoded again (same
//!   header, pages and post-apply checksum required). With `db_after`, the
//!   database is built by following `applies_to` and compared.
//! - `invalid`, `reference-accepts`: every decoding path must reject the
//!   file (a different error category is only reported in verbose mode).
//! - `db`: page count, sha256 and rolling checksum of a database file.
//! - `chain`: each file is checked like a valid case, then applied in order
//!   to an in-memory database; pre-/post-apply checksums, the database after
//!   every step and the final database are compared.
//! - `compaction`: the inputs are merged with [`merge_files`]; our output
//!   must decode to the expected header, pages and post-apply checksum; the
//!   reference output is checked like a valid case; with `db_after`, both
//!   outputs are applied to the base state and compared.

pub mod manifest;

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ltx_core::checksum::database_checksum;
use ltx_core::detect::{detect_summary, for_each_page, DetectError};
use ltx_core::merge::merge_any;
use ltx_core::merge::{merge_files, MergeOptions};
use ltx_core::types::CHECKSUM_FLAG;
use ltx_core::v1::V1_FLAG_LZ4;
use ltx_core::{
    AnyDecoder, Decoded, Encoder, Error, FormatVersion, Header, LtxFile, PageSize, Trailer,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The LTX format version of cases that do not say (`format_version` on the
/// case or at the top of the manifest overrides it).
pub const FORMAT_VERSION: u64 = 3;

/// The format versions this runner checks.
pub const FORMAT_VERSIONS: [u64; 3] = [1, 2, 3];

/// Files up to this size are also streamed one byte at a time.
const ONE_BYTE_LIMIT: usize = 64 * 1024;

/// Databases larger than this are not built in memory.
const MAX_DB_BYTES: u64 = 1 << 30;

/// How many differences of one kind to list before summarising.
const MAX_LISTED: usize = 5;

/// The outcome of one manifest case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case's `name` (or `#index` when the manifest gives none).
    pub name: String,
    /// The case's `kind` (empty when missing).
    pub kind: String,
    /// What differed; empty when the case passed.
    pub failures: Vec<String>,
    /// Extra information for verbose output (e.g. error categories).
    pub notes: Vec<String>,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The outcome of a whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One result per manifest case, in manifest order.
    pub cases: Vec<CaseResult>,
    /// Set when the run could not start (missing or unreadable manifest).
    pub fatal: Option<String>,
    /// Whether `ok` lines and notes are included in [`Report::lines`].
    pub verbose: bool,
}

impl Report {
    /// Number of cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }

    /// Number of cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    /// Names of the failed cases, in manifest order.
    pub fn failed_names(&self) -> Vec<&str> {
        self.cases
            .iter()
            .filter(|c| !c.passed())
            .map(|c| c.name.as_str())
            .collect()
    }

    /// The per-case output lines: `FAIL <name>: <what>` for every failed
    /// case, and in verbose mode `ok <name>` lines (with notes).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.cases {
            let notes = if self.verbose && !c.notes.is_empty() {
                format!(" [{}]", c.notes.join("; "))
            } else {
                String::new()
            };
            if c.passed() {
                if self.verbose {
                    out.push(format!("ok {}{notes}", c.name));
                }
            } else {
                out.push(format!("FAIL {}: {}{notes}", c.name, c.failures.join("; ")));
            }
        }
        out
    }

    /// The closing line: `N passed, N failed`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }

    /// Process exit code: 0 if every case passed, 1 if any failed, 2 if the
    /// run could not start.
    pub fn exit_code(&self) -> u8 {
        if self.fatal.is_some() {
            2
        } else if self.failed() > 0 {
            1
        } else {
            0
        }
    }
}

/// Checks every case of `dir/manifest.json`.
///
/// Never panics on bad vectors: a manifest that cannot be read or parsed sets
/// [`Report::fatal`]; everything else is a per-case result.
pub fn run(dir: &Path, verbose: bool) -> Report {
    let mut report = Report {
        verbose,
        ..Report::default()
    };
    let path = dir.join("manifest.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) => {
            report.fatal = Some(format!("cannot read {}: {e}", path.display()));
            return report;
        }
    };
    let manifest: Value = match serde_json::from_slice(&text) {
        Ok(v) => v,
        Err(e) => {
            report.fatal = Some(format!("cannot parse {}: {e}", path.display()));
            return report;
        }
    };
    let Some(cases) = manifest.get("cases").and_then(Value::as_array) else {
        report.fatal = Some(format!("{}: no \"cases\" array", path.display()));
        return report;
    };
    let ctx = Ctx::new(dir, cases, manifest.get("format_version"));
    for (i, case) in cases.iter().enumerate() {
        report.cases.push(ctx.run_case(i, case));
    }
    report
}

// ---------------------------------------------------------------------------
// Context: the manifest, file access, and cached database states.

struct Ctx<'m> {
    dir: PathBuf,
    by_name: HashMap<&'m str, &'m Value>,
    top_version: Option<&'m Value>,
    dbs: RefCell<HashMap<String, Result<Vec<u8>, String>>>,
}

/// Collects what a case found.
#[derive(Default)]
struct Out {
    fails: Vec<String>,
    notes: Vec<String>,
}

impl Out {
    fn fail(&mut self, m: impl Into<String>) {
        self.fails.push(m.into());
    }
    fn fail_all(&mut self, prefix: &str, ms: Vec<String>) {
        for m in ms {
            self.fails.push(format!("{prefix}{m}"));
        }
    }
}

/// Runs one case's check, turning a panic into a failure naming the case.
fn guarded(name: &str, check: impl FnOnce(&mut Out)) -> Out {
    let mut out = Out::default();
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| check(&mut out))) {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into());
        out.fail(format!("PANIC while checking {name}: {msg}"));
    }
    out
}

impl<'m> Ctx<'m> {
    fn new(dir: &Path, cases: &'m [Value], top_version: Option<&'m Value>) -> Ctx<'m> {
        let mut by_name = HashMap::new();
        for c in cases {
            if let Some(n) = c.get("name").and_then(Value::as_str) {
                by_name.entry(n).or_insert(c);
            }
        }
        Ctx {
            dir: dir.to_path_buf(),
            by_name,
            top_version,
            dbs: RefCell::new(HashMap::new()),
        }
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        std::fs::read(self.dir.join(rel)).map_err(|e| format!("cannot read {rel}: {e}"))
    }

    fn run_case(&self, i: usize, case: &Value) -> CaseResult {
        let name = case.get("name").and_then(Value::as_str);
        let kind = case.get("kind").and_then(Value::as_str);
        let mut res = CaseResult {
            name: name.map_or_else(|| format!("#{i}"), str::to_string),
            kind: kind.unwrap_or("").to_string(),
            failures: Vec::new(),
            notes: Vec::new(),
        };
        if !case.is_object() {
            res.failures.push("case is not a JSON object".into());
            return res;
        }
        if name.is_none() {
            res.failures.push("case has no \"name\"".into());
        }
        let Some(kind) = kind else {
            res.failures.push("case has no \"kind\"".into());
            return res;
        };
        let version = match self.version_of(case) {
            Ok(v) => v,
            Err(e) => {
                res.failures.push(e);
                return res;
            }
        };
        let out = guarded(&res.name, |out| match kind {
            "valid" => self.check_valid(case, out, version),
            "invalid" | "reference-accepts" => self.check_rejected(case, out, version),
            "db" => self.check_db(case, out),
            "chain" => self.check_chain(case, out, version),
            "compaction" => self.check_compaction(case, out, version),
            other => out.fail(format!(
                "unknown kind \"{other}\": this runner cannot check it"
            )),
        });
        res.failures.extend(out.fails);
        res.notes.extend(out.notes);
        res
    }

    /// The case's format version: its own `format_version`, else the
    /// manifest's top-level one, else 3.
    fn version_of(&self, case: &Value) -> Result<FormatVersion, String> {
        match case.get("format_version").or(self.top_version) {
            None => Ok(FormatVersion::V3),
            Some(v) => v
                .as_u64()
                .filter(|n| FORMAT_VERSIONS.contains(n))
                .and_then(FormatVersion::from_number)
                .ok_or_else(|| format!("format version {} not supported", show_json(v))),
        }
    }

    // -- kinds ---------------------------------------------------------------

    fn check_valid(&self, case: &Value, out: &mut Out, version: FormatVersion) {
        let Some(bytes) = self.read_field(case, "file", "", out) else {
            return;
        };
        let Some(full) = check_description(&bytes, case, "", out, version) else {
            return;
        };
        if let Some(after) = case.get("db_after") {
            let name = case.get("name").and_then(Value::as_str).unwrap_or("");
            if !full.header.is_snapshot() && case.get("applies_to").is_none() {
                self.check_unanchored(&full, after, out);
                return;
            }
            match self.db_for_valid(name, &mut Vec::new()) {
                Ok(db) => out.fail_all(
                    "db_after: ",
                    db_diffs(
                        &db,
                        full.header.page_size,
                        after,
                        "pages",
                        "sha256",
                        "checksum",
                    ),
                ),
                Err(e) => out.fail(format!("db_after: cannot build the database: {e}")),
            }
        }
    }

    fn check_rejected(&self, case: &Value, out: &mut Out, version: FormatVersion) {
        let Some(bytes) = self.read_field(case, "file", "", out) else {
            return;
        };
        let want = case.get("category").and_then(Value::as_str).unwrap_or("?");
        let mut stream_cat = None;
        let mut accepted = Vec::new();
        for chunk in chunk_sizes(bytes.len()) {
            match stream_decode(&bytes, chunk, false, version) {
                Ok(_) => accepted.push(chunk_label(chunk, bytes.len())),
                Err(StreamError::Contract(m)) => out.fail(format!(
                    "streaming decoder ({}) broke its contract: {m}",
                    chunk_label(chunk, bytes.len())
                )),
                Err(StreamError::Ltx(e)) => {
                    stream_cat.get_or_insert_with(|| describe_err(&e));
                }
            }
        }
        if !accepted.is_empty() {
            out.fail(format!(
                "accepted by the streaming decoder ({}), expected a {want} error",
                accepted.join(", ")
            ));
        }
        let file_cat = match file_decode(&bytes, version) {
            Ok(_) => {
                let by = if version == FormatVersion::V3 {
                    "LtxFile::parse+verify"
                } else {
                    "detect (some format version validates it)"
                };
                out.fail(format!("accepted by {by}, expected a {want} error"));
                None
            }
            Err(StreamError::Contract(m)) => {
                out.fail(format!(
                    "{} broke its contract: {m}",
                    file_path_label(version)
                ));
                None
            }
            Err(StreamError::Ltx(e)) => Some(describe_err(&e)),
        };
        let show = |c: Option<String>| c.unwrap_or_else(|| "accepted".into());
        let same = |c: &Option<String>| {
            c.as_deref()
                .is_some_and(|s| s.split(' ').next() == Some(want))
        };
        let verdict = if same(&stream_cat) && same(&file_cat) {
            "same category"
        } else {
            "CATEGORY DIFFERS (not a failure)"
        };
        out.notes.push(format!(
            "manifest: {} {want}; ours: stream {}, file {}; {verdict}",
            case.get("kind").and_then(Value::as_str).unwrap_or(""),
            show(stream_cat),
            show(file_cat),
        ));
    }

    fn check_db(&self, case: &Value, out: &mut Out) {
        let Some(bytes) = self.read_field(case, "file", "", out) else {
            return;
        };
        let Some(ps) = page_size_field(case, out) else {
            return;
        };
        out.fail_all(
            "",
            db_diffs(&bytes, ps, case, "pages", "sha256", "checksum"),
        );
    }

    fn check_chain(&self, case: &Value, out: &mut Out, version: FormatVersion) {
        let steps = case.get("steps").and_then(Value::as_array);
        let files = case.get("files").and_then(Value::as_array);
        let step_files: Vec<Option<&str>> = match (steps, files) {
            (Some(s), _) => s
                .iter()
                .map(|s| s.get("file").and_then(Value::as_str))
                .collect(),
            (None, Some(f)) => f.iter().map(Value::as_str).collect(),
            (None, None) => {
                out.fail("chain has neither \"steps\" nor \"files\"");
                return;
            }
        };
        if let (Some(s), Some(f)) = (steps, files) {
            let listed: Vec<Option<&str>> = f.iter().map(Value::as_str).collect();
            if listed.len() != s.len() {
                out.fail(format!(
                    "manifest: {} files but {} steps",
                    listed.len(),
                    s.len()
                ));
            } else if listed != step_files {
                out.fail("manifest: \"files\" and the steps' files differ");
            }
        }
        let want_flags = case.get("header_flags").and_then(json_int);
        let want_ps = case.get("page_size").and_then(json_int);
        let mut db: Vec<u8> = Vec::new();
        let mut page_size: Option<PageSize> = None;
        let mut prev_max: Option<u64> = None;
        for (i, file) in step_files.iter().enumerate() {
            let Some(file) = file else {
                out.fail(format!("step {}: manifest gives no file", i + 1));
                return;
            };
            let label = format!("step {} ({file}): ", i + 1);
            let bytes = match self.read(file) {
                Ok(b) => b,
                Err(e) => {
                    out.fail(format!("{label}{e}"));
                    return;
                }
            };
            let full = match steps.map(|s| &s[i]) {
                Some(step) => check_description(&bytes, step, &label, out, version),
                None => match decode_full(&bytes, version) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        out.fail(format!("{label}{e}"));
                        None
                    }
                },
            };
            let Some(full) = full else {
                out.fail(format!("{label}chain stopped: the file does not decode"));
                return;
            };
            let h = &full.header;
            if let Some(f) = want_flags {
                if i128::from(h.flags) != f {
                    out.fail(format!(
                        "{label}header flags {}, chain header_flags {f}",
                        h.flags
                    ));
                }
            }
            if let Some(p) = want_ps {
                if i128::from(h.page_size.get()) != p {
                    out.fail(format!(
                        "{label}page size {}, chain page_size {p}",
                        h.page_size
                    ));
                }
            }
            match prev_max {
                None if !h.is_snapshot() => {
                    out.fail(format!("{label}first file of the chain is not a snapshot"))
                }
                Some(m) if h.min_txid.0 != m.wrapping_add(1) => out.fail(format!(
                    "{label}min TXID {} does not follow the previous max TXID {m:016x}",
                    h.min_txid
                )),
                _ => {}
            }
            prev_max = Some(h.max_txid.0);
            if let Some(ps) = page_size {
                if ps != h.page_size {
                    out.fail(format!(
                        "{label}page size {} differs from the chain's {ps}",
                        h.page_size
                    ));
                    return;
                }
            }
            page_size = Some(h.page_size);
            out.fail_all(&label, apply(&mut db, &full));
            if let Some(step) = steps.map(|s| &s[i]) {
                out.fail_all(
                    &format!("{label}database after the step: "),
                    db_diffs(
                        &db,
                        h.page_size,
                        step,
                        "db_pages",
                        "db_sha256",
                        "db_checksum",
                    ),
                );
            }
        }
        match case.get("final_db").and_then(Value::as_str) {
            Some(p) => match self.read(p) {
                Ok(want) => {
                    if want != db {
                        out.fail(format!(
                            "final database: sha256 {} ({} bytes), {p} has sha256 {} ({} bytes)",
                            sha_hex(&db),
                            db.len(),
                            sha_hex(&want),
                            want.len()
                        ));
                    }
                }
                Err(e) => out.fail(format!("final_db: {e}")),
            },
            None => out.fail("manifest: chain has no \"final_db\""),
        }
    }

    fn check_compaction(&self, case: &Value, out: &mut Out, version: FormatVersion) {
        let Some(inputs) = case.get("inputs").and_then(Value::as_array) else {
            out.fail("manifest: compaction has no \"inputs\" array");
            return;
        };
        let mut datas = Vec::new();
        for (i, p) in inputs.iter().enumerate() {
            let Some(p) = p.as_str() else {
                out.fail(format!("manifest: input {i} is not a path"));
                return;
            };
            match self.read(p) {
                Ok(b) => datas.push((p, b)),
                Err(e) => {
                    out.fail(format!("input {i}: {e}"));
                    return;
                }
            }
        }
        let mut files = Vec::new();
        if version == FormatVersion::V3 {
            for (p, b) in &datas {
                match LtxFile::parse(b) {
                    Ok(f) => files.push(f),
                    Err(e) => {
                        out.fail(format!("input {p}: LtxFile::parse: {e}"));
                        return;
                    }
                }
            }
        }
        let flags = match case.get("header_flags").map(json_int) {
            None => 0,
            Some(Some(f)) if (0..=i128::from(u32::MAX)).contains(&f) => f as u32,
            Some(_) => {
                out.fail("manifest: header_flags is not a u32");
                return;
            }
        };
        // v1's LZ4 flag describes the reference's output layout; ours is v3,
        // which only knows NoChecksum.
        let flags = if version == FormatVersion::V1 {
            flags & !V1_FLAG_LZ4
        } else {
            flags
        };
        let opts = MergeOptions {
            flags,
            allow_gaps: false,
        };
        let mut ours = Vec::new();
        let merged = if version == FormatVersion::V3 {
            merge_files(&files, &opts, &mut ours)
        } else {
            let ins: Vec<(&[u8], FormatVersion)> =
                datas.iter().map(|(_, b)| (&b[..], version)).collect();
            merge_any(&ins, &opts, &mut ours)
        };
        let ours_full = match merged {
            Err(e) => {
                out.fail(format!("merge_files failed: {e}"));
                None
            }
            Ok(trailer) => {
                let mut want = Want::from_json(case, out, "manifest: ").compaction_subset();
                if version == FormatVersion::V1 {
                    for (name, v) in &mut want.header {
                        if *name == "flags" {
                            *v &= !i128::from(V1_FLAG_LZ4);
                        }
                    }
                }
                let (diffs, full) = check_decodings(&ours, &want, FormatVersion::V3);
                out.fail_all("our output: ", diffs);
                if let Some(f) = &full {
                    if f.trailer != trailer {
                        out.fail(format!(
                            "our output: merge_files returned trailer {}/{}, the file holds {}/{}",
                            trailer.post_apply_checksum,
                            trailer.file_checksum,
                            f.trailer.post_apply_checksum,
                            f.trailer.file_checksum
                        ));
                    }
                }
                full
            }
        };
        let expected_full = match case.get("output").and_then(Value::as_str) {
            Some(p) => match self.read(p) {
                Ok(b) => {
                    if ours_full.is_some() {
                        out.notes.push(if b == ours {
                            "our output is byte-identical to the reference's".into()
                        } else {
                            format!(
                                "our output ({} bytes) differs in bytes from the reference's ({} bytes)",
                                ours.len(),
                                b.len()
                            )
                        });
                    }
                    check_description(&b, case, "expected output: ", out, version)
                }
                Err(e) => {
                    out.fail(format!("expected output: {e}"));
                    None
                }
            },
            None => {
                out.fail("manifest: compaction has no \"output\"");
                None
            }
        };
        let Some(after) = case.get("db_after") else {
            return;
        };
        let base = if let Some(chain) = case.get("chain") {
            let Some(chain) = chain.as_str() else {
                out.fail("manifest: \"chain\" is not a case name");
                return;
            };
            let Some(txid) = case.get("base_txid").and_then(json_int) else {
                out.fail("manifest: \"chain\" without a numeric \"base_txid\"");
                return;
            };
            self.chain_state(chain, txid)
        } else if let Some(a) = case.get("applies_to").and_then(Value::as_str) {
            self.db_for_valid(a, &mut Vec::new())
        } else if ours_full.as_ref().is_some_and(|f| f.header.is_snapshot()) {
            Ok(Vec::new())
        } else {
            Err("db_after given, but neither chain/base_txid nor applies_to".into())
        };
        let base = match base {
            Ok(b) => b,
            Err(e) => {
                out.fail(format!("db_after: cannot build the base database: {e}"));
                return;
            }
        };
        for (label, full) in [
            ("our output", ours_full.as_ref()),
            ("expected output", expected_full.as_ref()),
        ] {
            if let Some(full) = full {
                let mut db = base.clone();
                let prefix = format!("{label} applied to the base: ");
                out.fail_all(&prefix, apply(&mut db, full));
                out.fail_all(
                    &prefix,
                    db_diffs(
                        &db,
                        full.header.page_size,
                        after,
                        "pages",
                        "sha256",
                        "checksum",
                    ),
                );
            }
        }
    }

    /// `db_after` of an incremental file whose base state is not in the
    /// manifest (e.g. a real file copied from elsewhere): the database must
    /// have `commit` pages and the post-apply checksum; if a `db` case holds
    /// that database (same sha256), every page of the file must equal its page.
    fn check_unanchored(&self, full: &Full, after: &Value, out: &mut Out) {
        let h = &full.header;
        match after.get("pages").and_then(json_int) {
            Some(p) if p == i128::from(h.commit) => {}
            Some(p) => out.fail(format!(
                "db_after: {p} pages, but the file's commit is {}",
                h.commit
            )),
            None => out.fail("manifest: db_after has no numeric \"pages\""),
        }
        if !h.no_checksum() {
            match after.get("checksum").and_then(json_int) {
                Some(c) if c == i128::from(full.trailer.post_apply_checksum.0) => {}
                Some(c) => out.fail(format!(
                    "db_after: checksum {}, but the file's post-apply checksum is {}",
                    show_val(c, true),
                    full.trailer.post_apply_checksum
                )),
                None => out.fail("manifest: db_after has no checksum"),
            }
        }
        let Some(want_sha) = after.get("sha256").and_then(Value::as_str) else {
            out.fail("manifest: db_after has no sha256");
            return;
        };
        let db_case = self.by_name.values().find(|c| {
            c.get("kind").and_then(Value::as_str) == Some("db")
                && c.get("sha256")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.eq_ignore_ascii_case(want_sha))
        });
        let Some(db_case) = db_case else {
            out.notes.push(
                "db_after: base state unknown and no db case holds the result; checked commit and post-apply checksum only".into(),
            );
            return;
        };
        let Some(db) = self.read_field(db_case, "file", "db_after: ", out) else {
            return;
        };
        out.fail_all(
            "db_after: ",
            db_diffs(&db, h.page_size, after, "pages", "sha256", "checksum"),
        );
        let ps = h.page_size.bytes();
        for (p, d) in full.pages.iter().zip(&full.data) {
            let off = (p.pgno as usize - 1) * ps;
            if db.get(off..off + ps) != Some(&d[..]) {
                out.fail(format!(
                    "db_after: page {} of the file differs from the database's",
                    p.pgno
                ));
            }
        }
    }

    // -- helpers -------------------------------------------------------------

    fn read_field(&self, case: &Value, key: &str, prefix: &str, out: &mut Out) -> Option<Vec<u8>> {
        let Some(p) = case.get(key).and_then(Value::as_str) else {
            out.fail(format!("{prefix}manifest: no \"{key}\" path"));
            return None;
        };
        match self.read(p) {
            Ok(b) => Some(b),
            Err(e) => {
                out.fail(format!("{prefix}{e}"));
                None
            }
        }
    }

    /// The database after applying valid case `name` (following `applies_to`).
    fn db_for_valid(&self, name: &str, stack: &mut Vec<String>) -> Result<Vec<u8>, String> {
        let key = format!("valid:{name}");
        if let Some(r) = self.dbs.borrow().get(&key) {
            return r.clone();
        }
        if stack.iter().any(|s| s == name) {
            return Err(format!(
                "applies_to cycle: {} -> {name}",
                stack.join(" -> ")
            ));
        }
        stack.push(name.to_string());
        let r = self.build_valid_db(name, stack);
        stack.pop();
        self.dbs.borrow_mut().insert(key, r.clone());
        r
    }

    fn build_valid_db(&self, name: &str, stack: &mut Vec<String>) -> Result<Vec<u8>, String> {
        let case = self
            .by_name
            .get(name)
            .ok_or_else(|| format!("no case named \"{name}\""))?;
        let file = case
            .get("file")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("case \"{name}\" has no file"))?;
        let bytes = self.read(file)?;
        let version = self.version_of(case)?;
        let full = decode_full(&bytes, version).map_err(|e| format!("{file}: {e}"))?;
        let mut db = match case.get("applies_to") {
            Some(a) => {
                let a = a
                    .as_str()
                    .ok_or_else(|| format!("case \"{name}\": applies_to is not a name"))?;
                self.db_for_valid(a, stack)?
            }
            None if full.header.is_snapshot() => Vec::new(),
            None => {
                return Err(format!(
                    "case \"{name}\" is an incremental file without applies_to"
                ))
            }
        };
        let problems = apply(&mut db, &full);
        if problems.is_empty() {
            Ok(db)
        } else {
            Err(format!("applying {file}: {}", problems.join("; ")))
        }
    }

    /// The database of chain `name` after the file ending at TXID `txid`
    /// (0 = empty).
    fn chain_state(&self, name: &str, txid: i128) -> Result<Vec<u8>, String> {
        if txid == 0 {
            return Ok(Vec::new());
        }
        let key = format!("chain:{name}@{txid}");
        if let Some(r) = self.dbs.borrow().get(&key) {
            return r.clone();
        }
        let r = self.build_chain_state(name, txid);
        self.dbs.borrow_mut().insert(key, r.clone());
        r
    }

    fn build_chain_state(&self, name: &str, txid: i128) -> Result<Vec<u8>, String> {
        let case = self
            .by_name
            .get(name)
            .ok_or_else(|| format!("no case named \"{name}\""))?;
        let files: Vec<&str> = if let Some(s) = case.get("steps").and_then(Value::as_array) {
            s.iter()
                .filter_map(|s| s.get("file").and_then(Value::as_str))
                .collect()
        } else if let Some(f) = case.get("files").and_then(Value::as_array) {
            f.iter().filter_map(Value::as_str).collect()
        } else {
            return Err(format!("chain \"{name}\" lists no files"));
        };
        let version = self.version_of(case)?;
        let mut db = Vec::new();
        for file in files {
            let bytes = self.read(file)?;
            let full = decode_full(&bytes, version).map_err(|e| format!("{file}: {e}"))?;
            let problems = apply(&mut db, &full);
            if !problems.is_empty() {
                return Err(format!("applying {file}: {}", problems.join("; ")));
            }
            let max = i128::from(full.header.max_txid.0);
            if max == txid {
                return Ok(db);
            }
            if max > txid {
                break;
            }
        }
        Err(format!(
            "chain \"{name}\" has no file ending at TXID {txid}"
        ))
    }
}

// ---------------------------------------------------------------------------
// Decoding.

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PageRec {
    pgno: u32,
    flags: u16,
    offset: u64,
    size: u64,
    sha: [u8; 32],
}

/// What one decoding path found.
#[derive(Debug, Clone)]
struct Decoding {
    version: FormatVersion,
    header: Header,
    trailer: Trailer,
    index_size: u64,
    file_size: u64,
    pages: Vec<PageRec>,
}

/// A decoding with the page contents.
struct Full {
    header: Header,
    trailer: Trailer,
    pages: Vec<PageRec>,
    data: Vec<Vec<u8>>,
}

enum StreamError {
    /// ltx-core rejected the input.
    Ltx(Error),
    /// ltx-core returned something inconsistent (a bug, not a rejection).
    Contract(String),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Ltx(e) => {
                write!(f, "{} error: {e}", e.category().unwrap_or("uncategorised"))
            }
            StreamError::Contract(m) => write!(f, "API contract broken: {m}"),
        }
    }
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(sha(data))
}

fn describe_err(e: &Error) -> String {
    format!("{} ({e})", e.category().unwrap_or("uncategorised"))
}

/// Chunk sizes to stream a file of `len` bytes in (`usize::MAX` = whole).
/// The first entry is always `usize::MAX`; smaller sizes that would not
/// split the file are left out.
fn chunk_sizes(len: usize) -> Vec<usize> {
    let mut v = vec![usize::MAX];
    v.extend([4093, 256, 7].into_iter().filter(|&c| c < len));
    if len <= ONE_BYTE_LIMIT && len > 1 {
        v.push(1);
    }
    v
}

fn chunk_label(chunk: usize, len: usize) -> String {
    if chunk >= len {
        "whole input".into()
    } else {
        format!("{chunk}-byte chunks")
    }
}

/// Streams `bytes` through the decoder of `version` in pieces of `chunk` bytes.
fn stream_decode(
    bytes: &[u8],
    chunk: usize,
    keep: bool,
    version: FormatVersion,
) -> Result<(Decoding, Vec<Vec<u8>>), StreamError> {
    let contract = |m: String| Err(StreamError::Contract(m));
    let mut dec = AnyDecoder::new(version);
    let mut header: Option<Header> = None;
    let mut pages = Vec::new();
    let mut data = Vec::new();
    let mut done = None;
    for piece in bytes.chunks(chunk.max(1)) {
        let mut input = piece;
        let mut idle = 0u32;
        loop {
            let (n, ev) = dec.decode(input).map_err(StreamError::Ltx)?;
            if n > input.len() {
                return contract(format!("decode consumed {n} of {} bytes", input.len()));
            }
            input = &input[n..];
            idle = if n == 0 { idle + 1 } else { 0 };
            if idle > 1_000_000 {
                return contract("decode makes no progress".into());
            }
            match ev {
                Decoded::NeedMore => {
                    if !input.is_empty() {
                        return contract(format!(
                            "NeedMore with {} bytes of input left",
                            input.len()
                        ));
                    }
                    break;
                }
                Decoded::Header(h) => {
                    if header.is_some() || !pages.is_empty() {
                        return contract("second Header event".into());
                    }
                    header = Some(h);
                }
                Decoded::Page { info, data: page } => {
                    let Some(h) = &header else {
                        return contract("Page event before the Header event".into());
                    };
                    if page.len() != h.page_size.bytes() {
                        return contract(format!(
                            "page {} has {} bytes, page size is {}",
                            info.pgno,
                            page.len(),
                            h.page_size
                        ));
                    }
                    pages.push(PageRec {
                        pgno: info.pgno,
                        flags: info.flags,
                        offset: info.offset,
                        size: info.frame_len,
                        sha: sha(page),
                    });
                    if keep {
                        data.push(page.to_vec());
                    }
                }
                Decoded::Done(s) => {
                    done = Some(s);
                    if input.is_empty() {
                        break;
                    }
                }
            }
        }
    }
    let summary = dec.finish().map_err(StreamError::Ltx)?;
    let Some(h) = header else {
        return contract("finished without a Header event".into());
    };
    if done != Some(summary) {
        return contract("finish() differs from the Done event (or Done never came)".into());
    }
    if summary.header != h {
        return contract("summary header differs from the Header event".into());
    }
    if summary.format_version != version {
        return contract(format!(
            "summary says format {}, decoded as {version}",
            summary.format_version
        ));
    }
    if summary.page_count != pages.len() as u64 {
        return contract(format!(
            "summary counts {} pages, {} Page events",
            summary.page_count,
            pages.len()
        ));
    }
    let frames: Vec<_> = dec
        .frames()
        .iter()
        .map(|e| (e.pgno, e.offset, e.size))
        .collect();
    let seen: Vec<_> = pages.iter().map(|p| (p.pgno, p.offset, p.size)).collect();
    if frames != seen {
        return contract("Decoder::frames() differs from the Page events".into());
    }
    Ok((
        Decoding {
            version,
            header: h,
            trailer: summary.trailer,
            index_size: summary.index_size,
            file_size: summary.file_size,
            pages,
        },
        data,
    ))
}

/// The name of the second decoding path of `version`.
fn file_path_label(version: FormatVersion) -> &'static str {
    if version == FormatVersion::V3 {
        "LtxFile"
    } else {
        "detect"
    }
}

/// The second decoding path: for v3 [`LtxFile`] (see [`ltx_file_decode`]);
/// for v1 and v2, version detection over the whole file ([`detect_summary`]
/// must name `version`), then the pages.
fn file_decode(
    bytes: &[u8],
    version: FormatVersion,
) -> Result<(Decoding, Vec<Vec<u8>>), StreamError> {
    if version == FormatVersion::V3 {
        return ltx_file_decode(bytes);
    }
    let summary = match detect_summary(bytes) {
        Ok(s) if s.format_version == version => s,
        Ok(s) => {
            return Err(StreamError::Contract(format!(
                "detect() says the file is {}, expected {version}",
                s.format_version
            )))
        }
        Err(DetectError::Ambiguous(vs)) => {
            return Err(StreamError::Contract(format!(
                "detect() finds the file ambiguous ({vs:?})"
            )))
        }
        Err(e @ DetectError::None(_)) => {
            let err = e
                .error_for(version)
                .cloned()
                .unwrap_or_else(|| Error::new(ltx_core::ErrorKind::Poisoned));
            return Err(StreamError::Ltx(err));
        }
    };
    let mut pages = Vec::new();
    let mut data = Vec::new();
    let again = for_each_page(bytes, version, |info, page| {
        pages.push(PageRec {
            pgno: info.pgno,
            flags: info.flags,
            offset: info.offset,
            size: info.frame_len,
            sha: sha(page),
        });
        data.push(page.to_vec());
        Ok(())
    })
    .map_err(StreamError::Ltx)?;
    if again != summary {
        return Err(StreamError::Contract(
            "detect_summary() differs from a second decoding".into(),
        ));
    }
    Ok((
        Decoding {
            version,
            header: summary.header,
            trailer: summary.trailer,
            index_size: summary.index_size,
            file_size: summary.file_size,
            pages,
        },
        data,
    ))
}

/// Decodes `bytes` with [`LtxFile::parse`] + [`LtxFile::verify`], then every
/// frame with `check_frame` and `read_page` (which must agree).
fn ltx_file_decode(bytes: &[u8]) -> Result<(Decoding, Vec<Vec<u8>>), StreamError> {
    let contract = |m: String| Err(StreamError::Contract(m));
    let f = LtxFile::parse(bytes).map_err(StreamError::Ltx)?;
    let summary = f.verify().map_err(StreamError::Ltx)?;
    let h = *f.header();
    if summary.header != h {
        return contract("verify() header differs from parse()".into());
    }
    if summary.page_count != f.index().len() as u64 {
        return contract(format!(
            "verify() counts {} pages, the index has {}",
            summary.page_count,
            f.index().len()
        ));
    }
    let mut page = vec![0u8; h.page_size.bytes()];
    let mut again = vec![0u8; h.page_size.bytes()];
    let mut pages = Vec::new();
    let mut data = Vec::new();
    for (i, e) in f.index().entries().iter().enumerate() {
        let c = f.check_frame(i, &mut page).map_err(StreamError::Ltx)?;
        match f.read_page(e.pgno, &mut again) {
            Ok(true) if again == page => {}
            Ok(true) => return contract(format!("read_page({}) differs from check_frame", e.pgno)),
            Ok(false) => return contract(format!("read_page({}) finds no page", e.pgno)),
            Err(err) => {
                return contract(format!("read_page({}) fails after verify: {err}", e.pgno))
            }
        }
        if c.digest.frame_len != e.size {
            return contract(format!(
                "page {}: frame length {} but index size {}",
                e.pgno, c.digest.frame_len, e.size
            ));
        }
        pages.push(PageRec {
            pgno: e.pgno,
            flags: c.digest.header.flags,
            offset: e.offset,
            size: e.size,
            sha: sha(&page),
        });
        data.push(page.clone());
    }
    Ok((
        Decoding {
            version: FormatVersion::V3,
            header: h,
            trailer: summary.trailer,
            index_size: summary.index_size,
            file_size: summary.file_size,
            pages,
        },
        data,
    ))
}

/// Decodes `bytes` with the whole-input stream and with the second path
/// (`LtxFile`, or detection for v1/v2); both must accept it and agree. For
/// files whose description is checked elsewhere.
fn decode_full(bytes: &[u8], version: FormatVersion) -> Result<Full, String> {
    let (d, data) =
        stream_decode(bytes, usize::MAX, true, version).map_err(|e| format!("stream: {e}"))?;
    let (f, fdata) =
        file_decode(bytes, version).map_err(|e| format!("{}: {e}", file_path_label(version)))?;
    if d.header != f.header || d.trailer != f.trailer || d.pages != f.pages || data != fdata {
        return Err("streaming decoder and LtxFile disagree".into());
    }
    Ok(Full {
        header: d.header,
        trailer: d.trailer,
        pages: d.pages,
        data,
    })
}

// ---------------------------------------------------------------------------
// Expectations and comparison.

/// The header fields a description lists, in [`header_fields`] order.
const HEADER_FIELDS: [&str; 12] = [
    "flags",
    "page_size",
    "commit",
    "min_txid",
    "max_txid",
    "timestamp",
    "pre_apply_checksum",
    "wal_offset",
    "wal_size",
    "wal_salt1",
    "wal_salt2",
    "node_id",
];

/// A header field's value for comparison, and whether it prints as hex.
fn header_fields(h: &Header) -> [(&'static str, i128, bool); 12] {
    [
        ("flags", h.flags.into(), false),
        ("page_size", h.page_size.get().into(), false),
        ("commit", h.commit.into(), false),
        ("min_txid", h.min_txid.0.into(), true),
        ("max_txid", h.max_txid.0.into(), true),
        ("timestamp", h.timestamp.into(), false),
        ("pre_apply_checksum", h.pre_apply_checksum.0.into(), true),
        ("wal_offset", h.wal_offset.into(), false),
        ("wal_size", h.wal_size.into(), false),
        ("wal_salt1", h.wal_salt1.into(), false),
        ("wal_salt2", h.wal_salt2.into(), false),
        ("node_id", h.node_id.into(), false),
    ]
}

fn show_val(v: i128, hex: bool) -> String {
    if hex {
        format!("{v:016x}")
    } else {
        v.to_string()
    }
}

fn show_json(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// A JSON integer, or a hex string (TXIDs and checksums).
fn json_int(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) if !s.is_empty() && s.len() <= 16 => {
            u64::from_str_radix(s, 16).ok().map(i128::from)
        }
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct WantPage {
    pgno: i128,
    sha: String,
    flags: Option<i128>,
    offset: Option<i128>,
    size: Option<i128>,
}

/// What a decoding must give.
#[derive(Debug, Clone, Default)]
struct Want {
    /// Header fields by name; None = not checked.
    header: Vec<(&'static str, i128)>,
    pages: Option<Vec<WantPage>>,
    post_apply: Option<i128>,
    file_checksum: Option<i128>,
    index_size: Option<i128>,
    file_size: Option<i128>,
    encoding: Option<String>,
}

impl Want {
    /// Reads a valid-style description; problems with the manifest itself
    /// go to `out` (prefixed).
    fn from_json(desc: &Value, out: &mut Out, prefix: &str) -> Want {
        let mut w = Want::default();
        let mut bad = |m: String| out.fail(format!("{prefix}{m}"));
        match desc.get("header") {
            Some(h) if h.is_object() => {
                let mut missing = Vec::new();
                for name in HEADER_FIELDS {
                    match h.get(name).map(json_int) {
                        Some(Some(v)) => w.header.push((name, v)),
                        Some(None) => bad(format!("header.{name} is not a number")),
                        None => missing.push(name),
                    }
                }
                if !missing.is_empty() {
                    bad(format!("header lacks {}", missing.join(", ")));
                }
            }
            Some(_) => bad("\"header\" is not an object".into()),
            None => bad("no \"header\"".into()),
        }
        match desc.get("pages").and_then(Value::as_array) {
            Some(ps) => {
                let mut v = Vec::new();
                for (i, p) in ps.iter().enumerate() {
                    let pgno = p.get("pgno").and_then(json_int);
                    let sha = p.get("sha256").and_then(Value::as_str);
                    let (Some(pgno), Some(sha)) = (pgno, sha) else {
                        bad(format!("pages[{i}] lacks pgno or sha256"));
                        continue;
                    };
                    v.push(WantPage {
                        pgno,
                        sha: sha.to_ascii_lowercase(),
                        flags: p.get("flags").and_then(json_int),
                        offset: p
                            .get("frame_offset")
                            .or_else(|| p.get("stream_offset"))
                            .and_then(json_int),
                        size: p.get("frame_size").and_then(json_int),
                    });
                }
                w.pages = Some(v);
            }
            None => bad("no \"pages\" array".into()),
        }
        match desc.get("trailer") {
            Some(t) => {
                for (key, slot) in [
                    ("post_apply_checksum", &mut w.post_apply),
                    ("file_checksum", &mut w.file_checksum),
                ] {
                    match t.get(key).map(json_int) {
                        Some(Some(v)) => *slot = Some(v),
                        Some(None) => bad(format!("trailer.{key} is not a checksum")),
                        None => bad(format!("trailer.{key} is missing")),
                    }
                }
            }
            None => bad("no \"trailer\"".into()),
        }
        w.index_size = desc.get("page_index_size").and_then(json_int);
        w.file_size = desc.get("file_size").and_then(json_int);
        w.encoding = desc
            .get("encoding")
            .and_then(Value::as_str)
            .map(str::to_string);
        w
    }

    /// What our compactor's output must match: header, pages (pgno and
    /// sha256, in order), post-apply checksum; always block-encoded.
    fn compaction_subset(mut self) -> Want {
        if let Some(ps) = &mut self.pages {
            for p in ps {
                p.flags = None;
                p.offset = None;
                p.size = None;
            }
        }
        self.file_checksum = None;
        self.index_size = None;
        self.file_size = None;
        self.encoding = Some("block".into());
        self
    }

    /// What a re-encoding of `full` must decode to.
    fn from_full(full: &Full) -> Want {
        Want {
            header: header_fields(&full.header)
                .iter()
                .map(|&(n, v, _)| (n, v))
                .collect(),
            pages: Some(
                full.pages
                    .iter()
                    .map(|p| WantPage {
                        pgno: p.pgno.into(),
                        sha: hex::encode(p.sha),
                        flags: None,
                        offset: None,
                        size: None,
                    })
                    .collect(),
            ),
            post_apply: Some(full.trailer.post_apply_checksum.0.into()),
            encoding: Some("block".into()),
            ..Want::default()
        }
    }

    fn diffs(&self, d: &Decoding, bytes_len: usize) -> Vec<String> {
        let mut out = Vec::new();
        for (name, got, hex) in header_fields(&d.header) {
            if let Some(&(_, want)) = self.header.iter().find(|(n, _)| *n == name) {
                if want != got {
                    out.push(format!(
                        "header.{name}: expected {}, got {}",
                        show_val(want, hex),
                        show_val(got, hex)
                    ));
                }
            }
        }
        if d.header.reserved != [0; 20] {
            out.push("header: reserved bytes are not zero".into());
        }
        let chk = |out: &mut Vec<String>, what: &str, want: Option<i128>, got: i128, hex: bool| {
            if let Some(w) = want {
                if w != got {
                    out.push(format!(
                        "{what}: expected {}, got {}",
                        show_val(w, hex),
                        show_val(got, hex)
                    ));
                }
            }
        };
        chk(
            &mut out,
            "trailer.post_apply_checksum",
            self.post_apply,
            d.trailer.post_apply_checksum.0.into(),
            true,
        );
        chk(
            &mut out,
            "trailer.file_checksum",
            self.file_checksum,
            d.trailer.file_checksum.0.into(),
            true,
        );
        chk(
            &mut out,
            "page_index_size",
            self.index_size,
            d.index_size.into(),
            false,
        );
        chk(
            &mut out,
            "file_size",
            self.file_size,
            d.file_size.into(),
            false,
        );
        if d.file_size != bytes_len as u64 {
            out.push(format!(
                "decoder reports file size {}, the file has {bytes_len} bytes",
                d.file_size
            ));
        }
        if let Some(want) = &self.pages {
            out.extend(page_diffs(want, &d.pages));
        }
        if let Some(enc) = &self.encoding {
            let blocks = d.pages.iter().filter(|p| p.flags == 1).count();
            let legacy = d.pages.iter().filter(|p| p.flags == 0).count();
            let n = d.pages.len();
            let lz4 = d.header.flags & V1_FLAG_LZ4 != 0;
            let old = |v: FormatVersion, want_lz4: bool| {
                d.version == v && (v != FormatVersion::V1 || lz4 == want_lz4)
            };
            let ok = match enc.as_str() {
                "v1-raw" => old(FormatVersion::V1, false),
                "v1-lz4" => old(FormatVersion::V1, true),
                "v2-lz4-frames" => old(FormatVersion::V2, false),
                _ if d.version != FormatVersion::V3 => {
                    out.push(format!(
                        "encoding \"{enc}\" is not a {} encoding",
                        d.version
                    ));
                    true
                }
                _ if n == 0 => true,
                "block" => blocks == n,
                "legacy-frame" => legacy == n,
                "mixed" => blocks > 0 && legacy > 0 && blocks + legacy == n,
                other => {
                    out.push(format!("unknown encoding \"{other}\""));
                    true
                }
            };
            if !ok && d.version == FormatVersion::V3 {
                out.push(format!(
                    "encoding: expected {enc}, got {blocks} block and {legacy} legacy frames of {n}"
                ));
            } else if !ok {
                out.push(format!(
                    "encoding: expected {enc}, got a {} file with header flags 0x{:08x}",
                    d.version, d.header.flags
                ));
            }
        }
        out
    }
}

fn page_diffs(want: &[WantPage], got: &[PageRec]) -> Vec<String> {
    let mut out = Vec::new();
    if want.len() != got.len() {
        out.push(format!(
            "pages: expected {} frames, got {}",
            want.len(),
            got.len()
        ));
    }
    let mut listed = 0;
    let mut more = 0;
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        let mut d = Vec::new();
        if w.pgno != i128::from(g.pgno) {
            d.push(format!("pgno expected {}, got {}", w.pgno, g.pgno));
        }
        let gsha = hex::encode(g.sha);
        if w.sha != gsha {
            d.push(format!("sha256 expected {}, got {gsha}", w.sha));
        }
        for (what, wv, gv) in [
            ("flags", w.flags, i128::from(g.flags)),
            ("frame_offset", w.offset, i128::from(g.offset)),
            ("frame_size", w.size, i128::from(g.size)),
        ] {
            if let Some(wv) = wv {
                if wv != gv {
                    d.push(format!("{what} expected {wv}, got {gv}"));
                }
            }
        }
        if !d.is_empty() {
            if listed < MAX_LISTED {
                out.push(format!("pages[{i}] (pgno {}): {}", g.pgno, d.join(", ")));
                listed += 1;
            } else {
                more += 1;
            }
        }
    }
    if more > 0 {
        out.push(format!("and {more} more differing pages"));
    }
    out
}

/// What one decoding path gave: its differences, or why it rejected the file.
type PathOutcome = Result<Vec<String>, String>;

/// Decodes `bytes` every way (streams of several chunk sizes, `LtxFile`) and
/// compares each with `want`. Identical differences from several paths are
/// reported once, naming the paths. Returns the differences and, if the
/// whole-input stream accepted the file, its full decoding.
fn check_decodings(
    bytes: &[u8],
    want: &Want,
    version: FormatVersion,
) -> (Vec<String>, Option<Full>) {
    let file_label = file_path_label(version);
    let mut results: Vec<(String, PathOutcome)> = Vec::new();
    let mut full = None;
    let mut whole: Option<(Decoding, Vec<Vec<u8>>)> = None;
    for chunk in chunk_sizes(bytes.len()) {
        let label = format!("stream ({})", chunk_label(chunk, bytes.len()));
        let keep = chunk == usize::MAX;
        match stream_decode(bytes, chunk, keep, version) {
            Ok((d, data)) => {
                results.push((label, Ok(want.diffs(&d, bytes.len()))));
                if keep {
                    whole = Some((d, data));
                }
            }
            Err(e) => results.push((label, Err(e.to_string()))),
        }
    }
    match file_decode(bytes, version) {
        Ok((d, data)) => {
            results.push((file_label.into(), Ok(want.diffs(&d, bytes.len()))));
            if let Some((w, wdata)) = &whole {
                if w.pages != d.pages || *wdata != data {
                    results.push((
                        file_label.into(),
                        Ok(vec!["pages differ from the streaming decoder's".into()]),
                    ));
                }
            }
        }
        Err(e) => results.push((file_label.into(), Err(e.to_string()))),
    }
    if let Some((d, data)) = whole {
        full = Some(Full {
            header: d.header,
            trailer: d.trailer,
            pages: d.pages,
            data,
        });
    }
    // Group identical outcomes.
    let mut groups: Vec<(Vec<String>, PathOutcome)> = Vec::new();
    for (label, r) in results {
        if let Some(g) = groups.iter_mut().find(|(_, gr)| *gr == r) {
            g.0.push(label);
        } else {
            groups.push((vec![label], r));
        }
    }
    let mut out = Vec::new();
    let all = groups.len() == 1;
    for (labels, r) in groups {
        let who = if all {
            format!("every decoder (streamed whole and in chunks, {file_label})")
        } else {
            labels.join(", ")
        };
        match r {
            Ok(diffs) if diffs.is_empty() => {}
            Ok(diffs) => out.push(format!("{who}: {}", diffs.join(", "))),
            Err(e) => out.push(format!("{who}: rejected: {e}")),
        }
    }
    (out, full)
}

/// Checks `bytes` against a valid-style description (`desc`): every decoding
/// path, then the re-encode round trip. Failures go to `out` prefixed with
/// `prefix`. Returns the decoded file if the streaming decoder accepted it.
fn check_description(
    bytes: &[u8],
    desc: &Value,
    prefix: &str,
    out: &mut Out,
    version: FormatVersion,
) -> Option<Full> {
    let want = Want::from_json(desc, out, &format!("{prefix}manifest: "));
    let (diffs, full) = check_decodings(bytes, &want, version);
    out.fail_all(prefix, diffs);
    if let Some(f) = &full {
        out.fail_all(&format!("{prefix}re-encode: "), reencode(f));
    }
    full
}

/// Re-encodes a decoded file with our [`Encoder`] (as v3) and checks that our
/// bytes decode to the same header, pages and post-apply checksum. A v1 LZ4
/// file's flag 0x1 does not carry over (it names the v1 layout).
fn reencode(full: &Full) -> Vec<String> {
    let mut v3 = Full {
        header: full.header,
        trailer: full.trailer,
        pages: full.pages.clone(),
        data: full.data.clone(),
    };
    v3.header.flags &= !V1_FLAG_LZ4;
    let full = &v3;
    let mut bytes = Vec::new();
    let r = (|| -> Result<Trailer, Error> {
        let mut enc = Encoder::new(full.header, &mut bytes)?;
        for (p, d) in full.pages.iter().zip(&full.data) {
            enc.write_page(&mut bytes, p.pgno, d)?;
        }
        enc.finish(&mut bytes, full.trailer.post_apply_checksum)
    })();
    let trailer = match r {
        Ok(t) => t,
        Err(e) => return vec![format!("Encoder fails: {e}")],
    };
    let mut out = Vec::new();
    if trailer.post_apply_checksum != full.trailer.post_apply_checksum {
        out.push(format!(
            "Encoder wrote post-apply {}, expected {}",
            trailer.post_apply_checksum, full.trailer.post_apply_checksum
        ));
    }
    let (diffs, ours) = check_decodings(&bytes, &Want::from_full(full), FormatVersion::V3);
    out.extend(diffs);
    if let Some(o) = ours {
        if o.header != full.header {
            out.push("decoded header differs (reserved bytes)".into());
        }
        if o.trailer != trailer {
            out.push(format!(
                "Encoder returned trailer {}/{}, the file holds {}/{}",
                trailer.post_apply_checksum,
                trailer.file_checksum,
                o.trailer.post_apply_checksum,
                o.trailer.file_checksum
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Databases.

/// Applies a decoded file to `db` (SPEC section 8); returns the problems.
fn apply(db: &mut Vec<u8>, f: &Full) -> Vec<String> {
    let h = &f.header;
    let ps = h.page_size.bytes();
    let mut out = Vec::new();
    if !db.len().is_multiple_of(ps) {
        out.push(format!(
            "database of {} bytes is not a whole number of {ps}-byte pages",
            db.len()
        ));
        return out;
    }
    let size = u64::from(h.commit) * ps as u64;
    if size > MAX_DB_BYTES {
        out.push(format!(
            "database of {size} bytes (commit {}) is too large to build in memory",
            h.commit
        ));
        return out;
    }
    let tracked = !h.no_checksum();
    if tracked && !h.is_snapshot() {
        let cur = database_checksum(h.page_size, db);
        if cur != h.pre_apply_checksum {
            out.push(format!(
                "pre-apply checksum {} does not match the database checksum {cur}",
                h.pre_apply_checksum
            ));
        }
    }
    for (p, d) in f.pages.iter().zip(&f.data) {
        let off = (p.pgno as usize - 1) * ps;
        if db.len() < off + ps {
            db.resize(off + ps, 0);
        }
        db[off..off + ps].copy_from_slice(d);
    }
    db.resize(size as usize, 0);
    if tracked {
        let now = database_checksum(h.page_size, db);
        let post = f.trailer.post_apply_checksum;
        let empty_ok = db.is_empty() && now.0 == 0 && post.0 == CHECKSUM_FLAG;
        if now != post && !empty_ok {
            out.push(format!(
                "post-apply checksum {post} does not match the database checksum {now}"
            ));
        }
    }
    out
}

/// Compares a database image with `pages`/`sha256`/`checksum` keys of `want`.
fn db_diffs(
    db: &[u8],
    ps: PageSize,
    want: &Value,
    pages_key: &str,
    sha_key: &str,
    sum_key: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if !db.len().is_multiple_of(ps.bytes()) {
        out.push(format!(
            "{} bytes is not a whole number of {ps}-byte pages",
            db.len()
        ));
    }
    let pages = (db.len() / ps.bytes()) as i128;
    match want.get(pages_key).map(json_int) {
        Some(Some(w)) if w == pages => {}
        Some(Some(w)) => out.push(format!("{pages_key}: expected {w}, got {pages}")),
        _ => out.push(format!("manifest: no numeric \"{pages_key}\"")),
    }
    match want.get(sha_key).and_then(Value::as_str) {
        Some(w) => {
            let got = sha_hex(db);
            if !w.eq_ignore_ascii_case(&got) {
                out.push(format!("{sha_key}: expected {w}, got {got}"));
            }
        }
        None => out.push(format!("manifest: no \"{sha_key}\"")),
    }
    match want.get(sum_key).map(json_int) {
        Some(Some(w)) => {
            let got = database_checksum(ps, db).0;
            // An empty database: the rolling checksum is 0, a post-apply
            // checksum of one is stored as 8000000000000000.
            let empty_ok = got == 0 && w == i128::from(CHECKSUM_FLAG);
            if w != i128::from(got) && !empty_ok {
                out.push(format!(
                    "{sum_key}: expected {}, got {got:016x}",
                    show_val(w, true)
                ));
            }
        }
        _ => out.push(format!("manifest: no \"{sum_key}\" checksum")),
    }
    out
}

fn page_size_field(case: &Value, out: &mut Out) -> Option<PageSize> {
    match case.get("page_size").and_then(json_int) {
        Some(p) => match u32::try_from(p).ok().and_then(PageSize::new) {
            Some(ps) => Some(ps),
            None => {
                out.fail(format!("manifest: page_size {p} is not a valid page size"));
                None
            }
        },
        None => {
            out.fail("manifest: no numeric \"page_size\"");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_a_failure_naming_the_case() {
        let out = guarded("some-case", |out| {
            out.fail("first");
            let v: Vec<u8> = Vec::new();
            let _ = v[usize::from(v.is_empty())]; // index out of bounds
        });
        assert_eq!(out.fails.len(), 2);
        assert_eq!(out.fails[0], "first");
        assert!(
            out.fails[1].starts_with("PANIC while checking some-case: index out of bounds"),
            "{}",
            out.fails[1]
        );
        let out = guarded("x", |_| std::panic::panic_any(7u8));
        assert_eq!(
            out.fails,
            ["PANIC while checking x: non-string panic payload"]
        );
    }

    #[test]
    fn chunk_sizes_split_the_file() {
        assert_eq!(chunk_sizes(131), [usize::MAX, 7, 1]);
        assert_eq!(chunk_sizes(1), [usize::MAX]);
        assert_eq!(chunk_sizes(70_000), [usize::MAX, 4093, 256, 7]);
    }

    #[test]
    fn json_numbers_and_hex() {
        assert_eq!(json_int(&serde_json::json!(-5)), Some(-5));
        assert_eq!(
            json_int(&serde_json::json!(u64::MAX)),
            Some(i128::from(u64::MAX))
        );
        assert_eq!(
            json_int(&serde_json::json!("8000000000000000")),
            Some(1 << 63)
        );
        assert_eq!(json_int(&serde_json::json!("xyz")), None);
        assert_eq!(json_int(&serde_json::json!(1.5)), None);
    }
}
