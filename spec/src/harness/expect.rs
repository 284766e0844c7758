//! What a decoding must give ([`Want`], from a manifest description or from
//! another decoding) and how it differs.

use ltx_core::old::v1::V1_FLAG_LZ4;
use ltx_core::{FormatVersion, Header};

use super::decode::{Decoding, PageRec};
use crate::manifest::{FileDesc, Num};
use crate::report::Out;

/// How many differences of one kind to list before summarising.
const MAX_LISTED: usize = 5;

/// A header field's value for comparison, and whether it prints as hex.
pub(crate) fn header_fields(h: &Header) -> [(&'static str, i128, bool); 12] {
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

pub(crate) fn show_val(v: i128, hex: bool) -> String {
    if hex {
        format!("{v:016x}")
    } else {
        v.to_string()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct WantPage {
    pub(crate) pgno: i128,
    pub(crate) sha: [u8; 32],
    pub(crate) flags: Option<i128>,
    pub(crate) offset: Option<i128>,
    pub(crate) size: Option<i128>,
}

/// What a decoding must give; `None` = not checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct Want {
    /// Header fields by name.
    pub(crate) header: Vec<(&'static str, i128)>,
    pub(crate) pages: Option<Vec<WantPage>>,
    pub(crate) post_apply: Option<i128>,
    pub(crate) file_checksum: Option<i128>,
    pub(crate) index_size: Option<i128>,
    pub(crate) file_size: Option<i128>,
    pub(crate) encoding: Option<String>,
}

impl Want {
    /// Reads a description; what it lacks goes to `out` (prefixed).
    pub(crate) fn from_desc(desc: &FileDesc, out: &mut Out, prefix: &str) -> Want {
        let mut w = Want::default();
        let mut bad = |m: String| out.fail(format!("{prefix}{m}"));
        match &desc.header {
            Some(h) => {
                let mut missing = Vec::new();
                for (name, v) in h.fields() {
                    match v {
                        Some(v) => w.header.push((name, v.value())),
                        None => missing.push(name),
                    }
                }
                if !missing.is_empty() {
                    bad(format!("header lacks {}", missing.join(", ")));
                }
            }
            None => bad("no \"header\"".into()),
        }
        match &desc.pages {
            Some(ps) => {
                w.pages = Some(
                    ps.iter()
                        .map(|p| WantPage {
                            pgno: p.pgno.value(),
                            sha: p.sha256.0,
                            flags: p.flags.map(Num::value),
                            offset: p.frame_offset.or(p.stream_offset).map(Num::value),
                            size: p.frame_size.map(Num::value),
                        })
                        .collect(),
                )
            }
            None => bad("no \"pages\" array".into()),
        }
        match &desc.trailer {
            Some(t) => {
                for (key, v, slot) in [
                    (
                        "post_apply_checksum",
                        t.post_apply_checksum,
                        &mut w.post_apply,
                    ),
                    ("file_checksum", t.file_checksum, &mut w.file_checksum),
                ] {
                    match v {
                        Some(v) => *slot = Some(v.value()),
                        None => bad(format!("trailer.{key} is missing")),
                    }
                }
            }
            None => bad("no \"trailer\"".into()),
        }
        w.index_size = desc.page_index_size.map(Num::value);
        w.file_size = desc.file_size.map(Num::value);
        w.encoding = desc.encoding.clone();
        w
    }

    /// What our compactor's output must match: header, pages (pgno and
    /// sha256, in order), post-apply checksum; always block-encoded.
    pub(crate) fn compaction_subset(mut self) -> Want {
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

    /// What a re-encoding must decode to: the header, the pages (pgno and
    /// sha256) and the post-apply checksum of `header`/`pages`/`post`.
    pub(crate) fn reencoded(header: &Header, pages: &[PageRec], post: u64) -> Want {
        Want {
            header: header_fields(header)
                .iter()
                .map(|&(n, v, _)| (n, v))
                .collect(),
            pages: Some(
                pages
                    .iter()
                    .map(|p| WantPage {
                        pgno: p.pgno.into(),
                        sha: p.sha,
                        flags: None,
                        offset: None,
                        size: None,
                    })
                    .collect(),
            ),
            post_apply: Some(post.into()),
            encoding: Some("block".into()),
            ..Want::default()
        }
    }

    pub(crate) fn diffs(&self, d: &Decoding, file_len: u64) -> Vec<String> {
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
        let t = &d.trailer;
        let post = t.post_apply_checksum.0.into();
        chk(
            &mut out,
            "trailer.post_apply_checksum",
            self.post_apply,
            post,
            true,
        );
        let sum = t.file_checksum.0.into();
        chk(
            &mut out,
            "trailer.file_checksum",
            self.file_checksum,
            sum,
            true,
        );
        let index_size = d.index_size.into();
        chk(
            &mut out,
            "page_index_size",
            self.index_size,
            index_size,
            false,
        );
        chk(
            &mut out,
            "file_size",
            self.file_size,
            d.file_size.into(),
            false,
        );
        if d.file_size != file_len {
            out.push(format!(
                "decoder reports file size {}, the file has {file_len} bytes",
                d.file_size
            ));
        }
        if let Some(want) = &self.pages {
            out.extend(page_diffs(want, &d.pages));
        }
        if let Some(enc) = &self.encoding {
            out.extend(encoding_diff(enc, d));
        }
        out
    }
}

fn encoding_diff(enc: &str, d: &Decoding) -> Option<String> {
    let blocks = d.pages.iter().filter(|p| p.flags == 1).count();
    let legacy = d.pages.iter().filter(|p| p.flags == 0).count();
    let n = d.pages.len();
    let lz4 = d.header.flags & V1_FLAG_LZ4 != 0;
    let old = |v: FormatVersion, want_lz4: bool| {
        d.version == v && (v != FormatVersion::V1 || lz4 == want_lz4)
    };
    let ok = match enc {
        "v1-raw" => old(FormatVersion::V1, false),
        "v1-lz4" => old(FormatVersion::V1, true),
        "v2-lz4-frames" => old(FormatVersion::V2, false),
        _ if d.version != FormatVersion::V3 => {
            return Some(format!(
                "encoding \"{enc}\" is not a {} encoding",
                d.version
            ))
        }
        _ if n == 0 => true,
        "block" => blocks == n,
        "legacy-frame" => legacy == n,
        "mixed" => blocks > 0 && legacy > 0 && blocks + legacy == n,
        other => return Some(format!("unknown encoding \"{other}\"")),
    };
    if ok {
        None
    } else if d.version == FormatVersion::V3 {
        Some(format!(
            "encoding: expected {enc}, got {blocks} block and {legacy} legacy frames of {n}"
        ))
    } else {
        Some(format!(
            "encoding: expected {enc}, got a {} file with header flags 0x{:08x}",
            d.version, d.header.flags
        ))
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
        if w.sha != g.sha {
            d.push(format!(
                "sha256 expected {}, got {}",
                hex::encode(w.sha),
                hex::encode(g.sha)
            ));
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
