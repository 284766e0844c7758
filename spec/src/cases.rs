//! The checks of each case kind, and the context they share: the manifest's
//! cases by name, the files, and the database states built so far.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ltx_core::merge::{merge_files, plan_merge, prepare_frame, MergeInput, MergeOptions};
use ltx_core::old::merge_any;
use ltx_core::old::v1::V1_FLAG_LZ4;
use ltx_core::{Error, FormatVersion, LtxFile, PageSize, Trailer};

use crate::categories::{verdict, Allowed, PathKind, Verdict};
use crate::db::{
    apply, apply_file, db_diffs, digest_file, image_diffs, DbImage, DB_KEYS, STEP_KEYS,
};
use crate::harness::decode::{
    chunk_label, decode_every_way, file_path_label, ranged_parse, StreamError,
};
use crate::harness::expect::{show_val, Want};
use crate::harness::source::{Ltx, Spool};
use crate::harness::{check_decodings, check_description, decode_full, describe_err, Full};
use crate::manifest::{
    Case, CaseHead, ChainCase, CompactionCase, DbCase, DbDesc, Entry, Num, RejectedCase, ValidCase,
};
use crate::report::{guarded, CaseResult, Out};
use crate::{Options, FORMAT_VERSIONS};

type DbResult = Result<Rc<DbImage>, String>;

/// The manifest, file access, and cached database states.
pub(crate) struct Ctx<'m> {
    dir: PathBuf,
    opts: &'m Options,
    by_name: HashMap<&'m str, &'m Case>,
    top_version: Option<u64>,
    dbs: RefCell<HashMap<String, DbResult>>,
}

impl<'m> Ctx<'m> {
    pub(crate) fn new(
        dir: &Path,
        entries: &'m [Entry],
        top_version: Option<u64>,
        opts: &'m Options,
    ) -> Ctx<'m> {
        let mut by_name = HashMap::new();
        for c in entries.iter().filter_map(Entry::case) {
            if let Some(n) = c.name() {
                by_name.entry(n).or_insert(c);
            }
        }
        Ctx {
            dir: dir.to_path_buf(),
            opts,
            by_name,
            top_version,
            dbs: RefCell::new(HashMap::new()),
        }
    }

    fn open(&self, rel: &str) -> Result<Ltx, String> {
        Ltx::open(&self.dir, rel, self.opts.in_memory_limit)
    }

    fn open_field(
        &self,
        path: Option<&str>,
        key: &str,
        prefix: &str,
        out: &mut Out,
    ) -> Option<Ltx> {
        let Some(p) = path else {
            out.fail(format!("{prefix}manifest: no \"{key}\" path"));
            return None;
        };
        match self.open(p) {
            Ok(b) => Some(b),
            Err(e) => {
                out.fail(format!("{prefix}{e}"));
                None
            }
        }
    }

    pub(crate) fn run_case(&self, i: usize, entry: &Entry) -> CaseResult {
        let case = match entry {
            Entry::Case(c) => &**c,
            Entry::Raw(raw) => {
                let head = CaseHead::from_json(raw.get()).unwrap_or_default();
                let mut failures = Vec::new();
                let err = Case::from_json(raw.get()).err();
                let is_object = raw.get().trim_start().starts_with('{');
                if is_object && head.name.is_none() {
                    failures.push("case has no \"name\" string".into());
                }
                failures.push(match err {
                    Some(e) => e.to_string(),
                    None => "case parses only on its own (duplicate keys?)".into(),
                });
                return CaseResult {
                    name: head.name.unwrap_or_else(|| format!("#{i}")),
                    kind: head.kind.unwrap_or_default(),
                    failures,
                    notes: Vec::new(),
                };
            }
        };
        let mut res = CaseResult {
            name: case.name().map_or_else(|| format!("#{i}"), str::to_string),
            kind: case.kind().to_string(),
            failures: Vec::new(),
            notes: Vec::new(),
        };
        if case.name().is_none() {
            res.failures.push("case has no \"name\" string".into());
        }
        let version = match self.version_of(case) {
            Ok(v) => v,
            Err(e) => {
                res.failures.push(e);
                return res;
            }
        };
        let out = guarded(&res.name, |out| match case {
            Case::Valid(c) => self.check_valid(c, out, version),
            Case::Invalid(c) | Case::ReferenceAccepts(c) => {
                self.check_rejected(c, case.kind(), out, version)
            }
            Case::Db(c) => self.check_db(c, out),
            Case::Chain(c) => self.check_chain(c, out, version),
            Case::Compaction(c) => self.check_compaction(c, out, version),
        });
        res.failures.extend(out.fails);
        res.notes.extend(out.notes);
        res
    }

    /// The case's format version: its own `format_version`, else the
    /// manifest's top-level one, else 3.
    fn version_of(&self, case: &Case) -> Result<FormatVersion, String> {
        match case.format_version().or(self.top_version) {
            None => Ok(FormatVersion::V3),
            Some(n) => Some(n)
                .filter(|n| FORMAT_VERSIONS.contains(n))
                .and_then(FormatVersion::from_number)
                .ok_or_else(|| format!("format version {n} not supported")),
        }
    }

    // -- kinds ---------------------------------------------------------------

    fn check_valid(&self, c: &ValidCase, out: &mut Out, version: FormatVersion) {
        let Some(src) = self.open_field(c.file.as_deref(), "file", "", out) else {
            return;
        };
        let limit = self.opts.in_memory_limit;
        let Some(full) = check_description(&src, &c.desc, "", out, version, limit) else {
            return;
        };
        let Some(after) = &c.db_after else {
            return;
        };
        if !full.header.is_snapshot() && c.applies_to.is_none() {
            self.check_unanchored(&full, after, out);
            return;
        }
        match self.db_for_valid(c.common.name.as_deref().unwrap_or(""), &mut Vec::new()) {
            Ok(db) => out.fail_all(
                "db_after: ",
                image_diffs(&db, full.header.page_size, after, &DB_KEYS),
            ),
            Err(e) => out.fail(format!("db_after: cannot build the database: {e}")),
        }
    }

    /// Every decoding path must reject the file, with the manifest's
    /// category or an allowed difference ([`crate::categories`]).
    fn check_rejected(&self, c: &RejectedCase, kind: &str, out: &mut Out, version: FormatVersion) {
        let Some(src) = self.open_field(c.file.as_deref(), "file", "", out) else {
            return;
        };
        let want = c.category.as_deref();
        let want_s = want.unwrap_or("?");
        let mut accepted = Vec::new();
        // (path, its label, our error)
        let mut errors: Vec<(PathKind, String, Error)> = Vec::new();
        let (streams, file) = decode_every_way(&src, version, false);
        for (chunk, r) in streams {
            let label = chunk_label(chunk, &src);
            match r {
                Ok(_) => accepted.push(label),
                Err(StreamError::Ltx(e)) => errors.push((PathKind::Stream, label, e)),
                Err(e) => out.fail(format!(
                    "streaming decoder ({label}) broke its contract or could not read: {e}"
                )),
            }
        }
        if !accepted.is_empty() {
            out.fail(format!(
                "accepted by the streaming decoder ({}), expected a {want_s} error",
                accepted.join(", ")
            ));
        }
        let file_label = file_path_label(version, &src);
        match file {
            Ok(_) => {
                let by = match file_label {
                    "LtxFile" => "LtxFile::parse+verify",
                    "ranged reads" => "ranged reads (parse_tail, parse_index, decode_frame)",
                    _ => "detect (some format version validates it)",
                };
                out.fail(format!("accepted by {by}, expected a {want_s} error"));
            }
            Err(StreamError::Ltx(e)) => errors.push((PathKind::File, file_label.into(), e)),
            Err(e) => out.fail(format!(
                "{file_label} broke its contract or could not read: {e}"
            )),
        }
        let Some(want) = want else {
            out.fail("manifest: no \"category\"");
            return;
        };
        // One line per distinct (path kind, category, verdict).
        let mut allowed: Vec<(&Allowed, Vec<String>)> = Vec::new();
        let mut differs: Vec<(PathKind, Option<&str>, Vec<String>, String)> = Vec::new();
        for (path, label, e) in &errors {
            match verdict(kind, version, *path, want, e.category()) {
                Verdict::Same => {}
                Verdict::Allowed(a) => match allowed.iter_mut().find(|(b, _)| *b == a) {
                    Some((_, labels)) => labels.push(label.clone()),
                    None => allowed.push((a, vec![label.clone()])),
                },
                Verdict::Differs => {
                    match differs
                        .iter_mut()
                        .find(|d| d.0 == *path && d.1 == e.category())
                    {
                        Some(d) => d.2.push(label.clone()),
                        None => differs.push((
                            *path,
                            e.category(),
                            vec![label.clone()],
                            describe_err(e),
                        )),
                    }
                }
            }
        }
        for (path, _, labels, err) in &differs {
            let who = match path {
                PathKind::Stream => format!("the streaming decoder ({})", labels.join(", ")),
                PathKind::File => labels.join(", "),
            };
            out.fail(format!(
                "{who} rejects it as {err}, but the manifest's category is {want} (not an allowed difference: see ltx_spec::categories)"
            ));
        }
        let show = |p: PathKind| {
            errors
                .iter()
                .find(|(q, _, _)| *q == p)
                .map_or_else(|| "accepted".to_string(), |(_, _, e)| describe_err(e))
        };
        let verdict = if !differs.is_empty() {
            "CATEGORY DIFFERS".to_string()
        } else if allowed.is_empty() {
            "same category".to_string()
        } else {
            let each: Vec<String> = allowed
                .iter()
                .map(|(a, labels)| format!("{} from {}: {}", a.ours, labels.join(", "), a.why))
                .collect();
            format!("allowed difference: {}", each.join("; "))
        };
        out.note(format!(
            "manifest: {kind} {want}; ours: stream {}, file {}; {verdict}",
            show(PathKind::Stream),
            show(PathKind::File),
        ));
    }

    fn check_db(&self, c: &DbCase, out: &mut Out) {
        let Some(file) = &c.file else {
            out.fail("manifest: no \"file\" path");
            return;
        };
        let Some(ps) = page_size_field(c.page_size, out) else {
            return;
        };
        match digest_file(&self.dir.join(file), ps) {
            Ok(d) => out.fail_all("", db_diffs(&d, ps, &c.db, &DB_KEYS)),
            Err(e) => out.fail(format!("cannot read {file}: {e}")),
        }
    }

    fn check_chain(&self, c: &ChainCase, out: &mut Out, version: FormatVersion) {
        let step_files: Vec<Option<&str>> = match (&c.steps, &c.files) {
            (Some(s), _) => s.iter().map(|s| s.file.as_deref()).collect(),
            (None, Some(f)) => f.iter().map(|s| Some(s.as_str())).collect(),
            (None, None) => {
                out.fail("chain has neither \"steps\" nor \"files\"");
                return;
            }
        };
        if let (Some(s), Some(f)) = (&c.steps, &c.files) {
            let listed: Vec<Option<&str>> = f.iter().map(|s| Some(s.as_str())).collect();
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
        let limit = self.opts.in_memory_limit;
        let mut db = DbImage::new();
        let mut clean = true;
        let mut page_size: Option<PageSize> = None;
        let mut prev_max: Option<u64> = None;
        for (i, file) in step_files.iter().enumerate() {
            let Some(file) = file else {
                out.fail(format!("step {}: manifest gives no file", i + 1));
                return;
            };
            let label = format!("step {} ({file}): ", i + 1);
            let src = match self.open(file) {
                Ok(b) => b,
                Err(e) => {
                    out.fail(format!("{label}{e}"));
                    return;
                }
            };
            let step = c.steps.as_ref().map(|s| &s[i]);
            let full = match step {
                Some(step) => check_description(&src, &step.desc, &label, out, version, limit),
                None => match decode_full(&src, version) {
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
            if let Some(f) = c.header_flags {
                if i128::from(h.flags) != f.value() {
                    out.fail(format!(
                        "{label}header flags {}, chain header_flags {}",
                        h.flags,
                        f.value()
                    ));
                }
            }
            if let Some(p) = c.page_size {
                if i128::from(h.page_size.get()) != p.value() {
                    out.fail(format!(
                        "{label}page size {}, chain page_size {}",
                        h.page_size,
                        p.value()
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
            let problems = apply(&mut db, &full);
            clean &= problems.is_empty();
            out.fail_all(&label, problems);
            // Keep the state for compactions based on this chain (what
            // chain_state would build), while every step so far applied.
            let state = Rc::new(std::mem::take(&mut db));
            if let (true, Some(name)) = (clean, &c.common.name) {
                let key = format!("chain:{name}@{}", h.max_txid.0);
                self.dbs
                    .borrow_mut()
                    .entry(key)
                    .or_insert_with(|| Ok(state.clone()));
            }
            db = DbImage::on_top(state);
            if let Some(step) = step {
                out.fail_all(
                    &format!("{label}database after the step: "),
                    image_diffs(&db, h.page_size, &step.db(), &STEP_KEYS),
                );
            }
        }
        match &c.final_db {
            Some(p) => match db.diff_file(&self.dir.join(p)) {
                Ok(None) => {}
                Ok(Some(d)) => out.fail(format!("final database: {d}")),
                Err(e) => out.fail(format!("final_db: cannot read {p}: {e}")),
            },
            None => out.fail("manifest: chain has no \"final_db\""),
        }
    }

    fn check_compaction(&self, c: &CompactionCase, out: &mut Out, version: FormatVersion) {
        let Some(inputs) = &c.inputs else {
            out.fail("manifest: compaction has no \"inputs\" array");
            return;
        };
        let limit = self.opts.in_memory_limit;
        let mut srcs = Vec::new();
        for (i, p) in inputs.iter().enumerate() {
            match self.open(p) {
                Ok(b) => srcs.push(b),
                Err(e) => {
                    out.fail(format!("input {i}: {e}"));
                    return;
                }
            }
        }
        let flags = match c.header_flags.map(Num::value) {
            None => 0,
            Some(f) if (0..=i128::from(u32::MAX)).contains(&f) => f as u32,
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
        let merged = self.merge(inputs, &srcs, &opts, version, out);
        let Some(merged) = merged else {
            return;
        };
        let ours_full = match &merged {
            Err(e) => {
                out.fail(e.clone());
                None
            }
            Ok((ours, trailer)) => {
                let mut want = Want::from_desc(&c.desc, out, "manifest: ").compaction_subset();
                if version == FormatVersion::V1 {
                    for (name, v) in &mut want.header {
                        if *name == "flags" {
                            *v &= !i128::from(V1_FLAG_LZ4);
                        }
                    }
                }
                let (diffs, full) = check_decodings(ours, &want, FormatVersion::V3);
                out.fail_all("our output: ", diffs);
                if let Some(f) = &full {
                    if f.trailer != *trailer {
                        out.fail(format!(
                            "our output: the merge returned trailer {}/{}, the file holds {}/{}",
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
        let expected_src = match &c.output {
            Some(p) => match self.open(p) {
                Ok(b) => Some(b),
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
        let expected_full = expected_src.as_ref().and_then(|b| {
            if let (Some(_), Ok((ours, _))) = (&ours_full, &merged) {
                out.note(match b.same_bytes(ours) {
                    Ok(true) => "our output is byte-identical to the reference's".into(),
                    Ok(false) => format!(
                        "our output ({} bytes) differs in bytes from the reference's ({} bytes)",
                        ours.len(),
                        b.len()
                    ),
                    Err(e) => format!("cannot compare our output with the reference's: {e}"),
                });
            }
            check_description(b, &c.desc, "expected output: ", out, version, limit)
        });
        let Some(after) = &c.db_after else {
            return;
        };
        let base = if let Some(chain) = &c.chain {
            let Some(txid) = c.base_txid else {
                out.fail("manifest: \"chain\" without a numeric \"base_txid\"");
                return;
            };
            self.chain_state(chain, txid.value())
        } else if let Some(a) = &c.applies_to {
            self.db_for_valid(a, &mut Vec::new())
        } else if ours_full.as_ref().is_some_and(|f| f.header.is_snapshot()) {
            Ok(Rc::new(DbImage::new()))
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
                let mut db = DbImage::on_top(base.clone());
                let prefix = format!("{label} applied to the base: ");
                out.fail_all(&prefix, apply(&mut db, full));
                out.fail_all(
                    &prefix,
                    image_diffs(&db, full.header.page_size, after, &DB_KEYS),
                );
            }
        }
    }

    /// Merges the inputs with ltx-core: [`merge_files`] when every input is
    /// in memory (and together at most the in-memory limit), else the same
    /// plan written by ranged reads ([`ranged_merge`]); v1/v2 inputs with
    /// [`merge_any`] (in memory: it takes whole files). `None` when the
    /// inputs cannot be read or parsed (already reported).
    fn merge(
        &self,
        inputs: &[String],
        srcs: &[Ltx],
        opts: &MergeOptions,
        version: FormatVersion,
        out: &mut Out,
    ) -> Option<Result<(Ltx, Trailer), String>> {
        let limit = self.opts.in_memory_limit;
        if version != FormatVersion::V3 {
            let mut bytes = Vec::new();
            for (i, s) in srcs.iter().enumerate() {
                match s.read_range(0..s.len()) {
                    Ok(b) => bytes.push(b),
                    Err(e) => {
                        out.fail(format!("input {i}: cannot read {}: {e}", inputs[i]));
                        return None;
                    }
                }
            }
            let ins: Vec<(&[u8], FormatVersion)> =
                bytes.iter().map(|b| (&b[..], version)).collect();
            let mut ours = Vec::new();
            return Some(
                merge_any(&ins, opts, &mut ours)
                    .map(|t| (Ltx::mem(ours), t))
                    .map_err(|e| format!("merge_any failed: {e}")),
            );
        }
        let total: u64 = srcs.iter().map(Ltx::len).sum();
        let all_mem: Option<Vec<&[u8]>> = srcs.iter().map(Ltx::bytes).collect();
        match all_mem.filter(|_| total <= limit) {
            Some(bytes) => {
                let mut files = Vec::new();
                for (p, b) in inputs.iter().zip(bytes) {
                    match LtxFile::parse(b) {
                        Ok(f) => files.push(f),
                        Err(e) => {
                            out.fail(format!("input {p}: LtxFile::parse: {e}"));
                            return None;
                        }
                    }
                }
                let mut ours = Vec::new();
                Some(
                    merge_files(&files, opts, &mut ours)
                        .map(|t| (Ltx::mem(ours), t))
                        .map_err(|e| format!("merge_files failed: {e}")),
                )
            }
            None => {
                let mut meta = Vec::new();
                for (p, s) in inputs.iter().zip(srcs) {
                    match ranged_parse(s) {
                        Ok(f) => meta.push(MergeInput {
                            header: f.header,
                            trailer: f.tail.trailer,
                            index: f.index,
                        }),
                        Err(e) => {
                            out.fail(format!("input {p}: ranged reads: {e}"));
                            return None;
                        }
                    }
                }
                Some(
                    ranged_merge(&meta, srcs, opts, limit)
                        .map_err(|e| format!("merge (ranged reads) failed: {e}")),
                )
            }
        }
    }

    /// `db_after` of an incremental file whose base state is not in the
    /// manifest (e.g. a real file copied from elsewhere): the database must
    /// have `commit` pages and the post-apply checksum; if a `db` case holds
    /// that database (same sha256), every page of the file must equal its page.
    fn check_unanchored(&self, full: &Full<'_>, after: &DbDesc, out: &mut Out) {
        let h = &full.header;
        match after.pages {
            Some(p) if p.value() == i128::from(h.commit) => {}
            Some(p) => out.fail(format!(
                "db_after: {} pages, but the file's commit is {}",
                p.value(),
                h.commit
            )),
            None => out.fail("manifest: db_after has no numeric \"pages\""),
        }
        if !h.no_checksum() {
            match after.checksum {
                Some(c) if c.value() == i128::from(full.trailer.post_apply_checksum.0) => {}
                Some(c) => out.fail(format!(
                    "db_after: checksum {}, but the file's post-apply checksum is {}",
                    show_val(c.value(), true),
                    full.trailer.post_apply_checksum
                )),
                None => out.fail("manifest: db_after has no checksum"),
            }
        }
        let Some(want_sha) = after.sha256 else {
            out.fail("manifest: db_after has no sha256");
            return;
        };
        let db_case = self.by_name.values().find_map(|c| match c {
            Case::Db(d) if d.db.sha256 == Some(want_sha) => Some(d),
            _ => None,
        });
        let Some(db_case) = db_case else {
            out.note(
                "db_after: base state unknown and no db case holds the result; checked commit and post-apply checksum only",
            );
            return;
        };
        let Some(file) = &db_case.file else {
            out.fail("db_after: the db case holding the result has no \"file\"");
            return;
        };
        let path = self.dir.join(file);
        match digest_file(&path, h.page_size) {
            Ok(d) => out.fail_all("db_after: ", db_diffs(&d, h.page_size, after, &DB_KEYS)),
            Err(e) => {
                out.fail(format!("db_after: cannot read {file}: {e}"));
                return;
            }
        }
        let db = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                out.fail(format!("db_after: cannot read {file}: {e}"));
                return;
            }
        };
        let ps = h.page_size.bytes();
        let mut theirs = vec![0u8; ps];
        let mut differ = Vec::new();
        let r = full.for_each_page(|info, data| {
            let off = u64::from(info.pgno - 1) * ps as u64;
            let same = crate::harness::source::read_exact_at(&db, &mut theirs, off).is_ok()
                && theirs == data;
            if !same {
                differ.push(info.pgno);
            }
            Ok(())
        });
        if let Err(e) = r {
            out.fail(format!("db_after: {e}"));
        }
        for p in differ {
            out.fail(format!(
                "db_after: page {p} of the file differs from the database's"
            ));
        }
    }

    // -- database states -----------------------------------------------------

    /// The database after applying valid case `name` (following `applies_to`).
    fn db_for_valid(&self, name: &str, stack: &mut Vec<String>) -> DbResult {
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
        let r = self.build_valid_db(name, stack).map(Rc::new);
        stack.pop();
        self.dbs.borrow_mut().insert(key, r.clone());
        r
    }

    fn build_valid_db(&self, name: &str, stack: &mut Vec<String>) -> Result<DbImage, String> {
        let case = match self.by_name.get(name) {
            Some(Case::Valid(c)) => c,
            Some(c) => {
                return Err(format!(
                    "case \"{name}\" is of kind {}, not valid",
                    c.kind()
                ))
            }
            None => return Err(format!("no case named \"{name}\"")),
        };
        let file = case
            .file
            .as_deref()
            .ok_or_else(|| format!("case \"{name}\" has no file"))?;
        let src = self.open(file)?;
        let version = self.version_of(self.by_name[name])?;
        let mut db = match &case.applies_to {
            Some(a) => DbImage::on_top(self.db_for_valid(a, stack)?),
            None => DbImage::new(),
        };
        let h = apply_file(&mut db, &src, version)
            .map_err(|p| format!("applying {file}: {}", p.join("; ")))?;
        if case.applies_to.is_none() && !h.is_snapshot() {
            return Err(format!(
                "case \"{name}\" is an incremental file without applies_to"
            ));
        }
        Ok(db)
    }

    /// The database of chain `name` after the file ending at TXID `txid`
    /// (0 = empty).
    fn chain_state(&self, name: &str, txid: i128) -> DbResult {
        if txid == 0 {
            return Ok(Rc::new(DbImage::new()));
        }
        let key = format!("chain:{name}@{txid}");
        if let Some(r) = self.dbs.borrow().get(&key) {
            return r.clone();
        }
        let r = self.build_chain_state(name, txid).map(Rc::new);
        self.dbs.borrow_mut().insert(key, r.clone());
        r
    }

    fn build_chain_state(&self, name: &str, txid: i128) -> Result<DbImage, String> {
        let case = match self.by_name.get(name) {
            Some(Case::Chain(c)) => c,
            Some(c) => {
                return Err(format!(
                    "case \"{name}\" is of kind {}, not chain",
                    c.kind()
                ))
            }
            None => return Err(format!("no case named \"{name}\"")),
        };
        let files: Vec<&str> = if let Some(s) = &case.steps {
            s.iter().filter_map(|s| s.file.as_deref()).collect()
        } else if let Some(f) = &case.files {
            f.iter().map(String::as_str).collect()
        } else {
            return Err(format!("chain \"{name}\" lists no files"));
        };
        let version = self.version_of(self.by_name[name])?;
        let mut db = DbImage::new();
        for file in files {
            let src = self.open(file)?;
            let h = apply_file(&mut db, &src, version)
                .map_err(|p| format!("applying {file}: {}", p.join("; ")))?;
            let max = i128::from(h.max_txid.0);
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

/// Writes a merge plan from inputs read by ranges: for each planned frame,
/// its bytes from its input, [`prepare_frame`], then the plan's encoder, as
/// `MergePlan::write` does for files in memory; the output is spooled past
/// `limit` bytes.
fn ranged_merge(
    meta: &[MergeInput],
    srcs: &[Ltx],
    opts: &MergeOptions,
    limit: u64,
) -> Result<(Ltx, Trailer), String> {
    let plan = plan_merge(meta, opts).map_err(|e| e.to_string())?;
    let mut spool = Spool::new(limit);
    let io = |e: std::io::Error| format!("I/O error: {e}");
    let mut enc = plan.encoder(spool.buf()).map_err(|e| e.to_string())?;
    let mut page = vec![0u8; plan.header.page_size.bytes()];
    let mut frame = Vec::new();
    for f in &plan.frames {
        frame.resize(f.entry.size as usize, 0);
        srcs[f.input]
            .read_at(&mut frame, f.entry.offset)
            .map_err(io)?;
        let p = prepare_frame(&plan, f, &frame, &mut page)
            .map_err(|e| format!("input {}: {e}", f.input))?;
        plan.write_frame(&mut enc, spool.buf(), &frame, &p)
            .map_err(|e| e.to_string())?;
        spool.flush().map_err(io)?;
    }
    let trailer = enc
        .finish(spool.buf(), plan.post_apply)
        .map_err(|e| e.to_string())?;
    spool.flush().map_err(io)?;
    Ok((spool.finish().map_err(io)?, trailer))
}

fn page_size_field(v: Option<Num>, out: &mut Out) -> Option<PageSize> {
    match v.map(Num::value) {
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
