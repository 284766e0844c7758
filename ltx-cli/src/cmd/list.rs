//! `ltx list`: one row per file from its header, tail and page index (the
//! pages themselves are not read).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use ltx_core::LtxFile;
use rayon::prelude::*;
use serde::Serialize;

use crate::input::{self, LtxPath};
use crate::output::{self, error_json, hex16, Align, ErrorJson, RawHeader};
use crate::version::VersionArg;
use ltx_core::FormatVersion;

/// Arguments of `ltx list`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Reads only each file's header, page index and trailer (not the pages; use
`ltx verify` for that). Rows are sorted by level, then TXID. The level comes
from a Litestream replica layout (`ltx/<level>/...` or `<level as %04x>/...`),
else `-`. A file that cannot be parsed gets an error in its row and the exit
code is 1.

The VERSION column is the LTX format version. Files of format versions 1 and 2
(LiteFS, Litestream before v0.5; no page index in v1) are recognised by decoding
them completely under those layouts (their structure and file checksum must
validate); a file that is neither is read as version 3 (header, index and
trailer only). --format-version N reads every file as version N.

A URL (s3://bucket/prefix, gs://, az://, file:///dir, memory://) lists every
database under it, every level, one row per object, from ranged reads of
each object's header, tail and page index (credentials and endpoints from the
environment: AWS_ENDPOINT, AWS_REGION, ...).

Examples:
  ltx list /backups/db                  # a replica: every level
  ltx list s3://backups/tenants         # every database of a bucket
  ltx list --tsv /backups/db/ltx/0 | sort -k3
  ltx list --json *.ltx | jq '.[] | select(.commit > 1000)'")]
pub struct Args {
    /// LTX files and directories (searched recursively for *.ltx), or bucket URLs; `-` reads standard input.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print a JSON array of objects.
    #[arg(long, conflicts_with = "tsv")]
    pub json: bool,
    /// Print tab-separated values with a header row.
    #[arg(long)]
    pub tsv: bool,
    /// `--format-version`: read the inputs as this LTX format version.
    #[command(flatten)]
    pub version: VersionArg,
}

/// What one file says about itself.
struct Row {
    path: LtxPath,
    size: u64,
    header: Option<RawHeader>,
    pages: Option<usize>,
    post_apply: Option<u64>,
    file_checksum: Option<u64>,
    version: Option<FormatVersion>,
    error: Option<RowError>,
}

enum RowError {
    Format(ltx_core::Error),
    Io(String),
}

impl RowError {
    fn message(&self) -> String {
        match self {
            RowError::Format(e) => e.to_string(),
            RowError::Io(m) => m.clone(),
        }
    }
    fn json(&self) -> ErrorJson {
        match self {
            RowError::Format(e) => error_json(e),
            RowError::Io(m) => output::io_error_json(m),
        }
    }
}

fn read_row(p: LtxPath, forced: Option<FormatVersion>) -> Row {
    let mut row = Row {
        path: p,
        size: 0,
        header: None,
        pages: None,
        post_apply: None,
        file_checksum: None,
        version: None,
        error: None,
    };
    let src = if input::is_stdin(&row.path.path) {
        input::read_stdin()
    } else {
        input::open(&row.path.path)
    };
    let bytes = match src {
        Ok(b) => b,
        Err(e) => {
            row.error = Some(RowError::Io(format!("{e:#}")));
            return row;
        }
    };
    row.size = bytes.len() as u64;
    row.header = RawHeader::from_bytes(&bytes).filter(|h| &h.magic == b"LTX1");
    // v1 and v2 have to be decoded completely (v1 has no index); they reject
    // a v3 file within its first frames.
    let old = crate::version::old_version(&bytes, forced);
    if let Some((v, r)) = old {
        row.version = Some(v);
        match r {
            Ok(s) => {
                row.pages = Some(s.page_count as usize);
                row.post_apply = Some(s.trailer.post_apply_checksum.0);
                row.file_checksum = Some(s.trailer.file_checksum.0);
            }
            Err(e) => row.error = Some(RowError::Format(e)),
        }
        return row;
    }
    row.version = Some(FormatVersion::V3);
    match LtxFile::parse(&bytes) {
        Ok(f) => {
            row.pages = Some(f.index().len());
            row.post_apply = Some(f.trailer().post_apply_checksum.0);
            row.file_checksum = Some(f.trailer().file_checksum.0);
        }
        Err(e) => row.error = Some(RowError::Format(e)),
    }
    row
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    if let Some(urls) = crate::remote::urls_of(&args.paths)? {
        if args.version.forced().is_some() {
            anyhow::bail!(
                "--format-version applies to local files; bucket objects are read as version 3"
            );
        }
        return crate::remote::list(&urls, args.json, args.tsv, out);
    }
    let paths = input::expand(&args.paths)?;
    let forced = args.version.forced();
    let mut rows: Vec<Row> = paths.into_par_iter().map(|p| read_row(p, forced)).collect();
    rows.sort_by_cached_key(sort_key);

    if args.json {
        let arr: Vec<RowJson> = rows.iter().map(row_json).collect();
        output::write_json(out, &arr)?;
    } else {
        let any_error = rows.iter().any(|r| r.error.is_some());
        let mut headers = vec![
            "level",
            "min_txid",
            "max_txid",
            "commit",
            "pages",
            "pre_apply_checksum",
            "post_apply_checksum",
            "timestamp",
            "wal_offset",
            "wal_size",
            "wal_salt1",
            "wal_salt2",
            "file_size",
            "version",
            "path",
        ];
        if args.tsv || any_error {
            headers.push("error");
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut c = row_cells(r);
                if args.tsv || any_error {
                    c.push(r.error.as_ref().map(|e| e.message()).unwrap_or_default());
                }
                c
            })
            .collect();
        if args.tsv {
            writeln!(out, "{}", headers.join("\t"))?;
            for c in &cells {
                let c: Vec<String> = c.iter().map(|s| s.replace(['\t', '\n'], " ")).collect();
                writeln!(out, "{}", c.join("\t"))?;
            }
        } else {
            use Align::{Left, Right};
            let mut align = vec![
                Right, Left, Left, Right, Right, Left, Left, Left, Right, Right, Left, Left, Right,
                Right, Left,
            ];
            let upper: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
            let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
            if any_error {
                align.push(Left);
            }
            output::write_table(out, "", &upper, &align, &cells)?;
        }
    }

    let io_errors = rows
        .iter()
        .filter(|r| matches!(r.error, Some(RowError::Io(_))))
        .count();
    let bad = rows.iter().filter(|r| r.error.is_some()).count();
    if bad > 0 {
        out.flush().ok();
        for r in rows.iter() {
            if let Some(e) = &r.error {
                eprintln!("ltx: {}: {}", r.path.name(), e.message());
            }
        }
        if io_errors > 0 {
            anyhow::bail!("{io_errors} of {} files could not be read", rows.len());
        }
        return Err(crate::Failed.into());
    }
    Ok(())
}

fn sort_key(r: &Row) -> (Option<u32>, u64, u64, PathBuf) {
    let (min, max) = match (&r.header, r.path.txids) {
        (Some(h), _) => (h.min_txid, h.max_txid),
        (None, Some((a, b))) => (a.0, b.0),
        (None, None) => (0, 0),
    };
    (r.path.level, min, max, r.path.path.clone())
}

fn row_cells(r: &Row) -> Vec<String> {
    let level = r.path.level.map_or("-".to_string(), |l| l.to_string());
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let h = r.header.as_ref();
    vec![
        level,
        opt(h.map(|h| hex16(h.min_txid))),
        opt(h.map(|h| hex16(h.max_txid))),
        opt(h.map(|h| h.commit.to_string())),
        opt(r.pages.map(|p| p.to_string())),
        opt(h.map(|h| hex16(h.pre_apply_checksum))),
        opt(r.post_apply.map(hex16)),
        opt(h.map(|h| output::rfc3339_ms(h.timestamp))),
        opt(h.map(|h| h.wal_offset.to_string())),
        opt(h.map(|h| h.wal_size.to_string())),
        opt(h.map(|h| format!("{:08x}", h.wal_salt1))),
        opt(h.map(|h| format!("{:08x}", h.wal_salt2))),
        r.size.to_string(),
        opt(r.version.map(|v| v.number().to_string())),
        r.path.name(),
    ]
}

/// One row of `ltx list --json`.
#[derive(Serialize)]
struct RowJson {
    path: String,
    format_version: Option<u8>,
    level: Option<u32>,
    flags: Option<u32>,
    page_size: Option<u32>,
    commit: Option<u32>,
    min_txid: Option<String>,
    max_txid: Option<String>,
    pages: Option<usize>,
    timestamp: Option<i64>,
    timestamp_rfc3339: Option<String>,
    pre_apply_checksum: Option<String>,
    post_apply_checksum: Option<String>,
    file_checksum: Option<String>,
    wal_offset: Option<i64>,
    wal_size: Option<i64>,
    wal_salt1: Option<u32>,
    wal_salt2: Option<u32>,
    node_id: Option<u64>,
    file_size: u64,
    error: Option<ErrorJson>,
}

fn row_json(r: &Row) -> RowJson {
    let h = r.header.as_ref();
    RowJson {
        path: r.path.name(),
        format_version: r.version.map(|v| v.number()),
        level: r.path.level,
        flags: h.map(|h| h.flags),
        page_size: h.map(|h| h.page_size),
        commit: h.map(|h| h.commit),
        min_txid: h.map(|h| hex16(h.min_txid)),
        max_txid: h.map(|h| hex16(h.max_txid)),
        pages: r.pages,
        timestamp: h.map(|h| h.timestamp),
        timestamp_rfc3339: h.map(|h| output::rfc3339_ms(h.timestamp)),
        pre_apply_checksum: h.map(|h| hex16(h.pre_apply_checksum)),
        post_apply_checksum: r.post_apply.map(hex16),
        file_checksum: r.file_checksum.map(hex16),
        wal_offset: h.map(|h| h.wal_offset),
        wal_size: h.map(|h| h.wal_size),
        wal_salt1: h.map(|h| h.wal_salt1),
        wal_salt2: h.map(|h| h.wal_salt2),
        node_id: h.map(|h| h.node_id),
        file_size: r.size,
        error: r.error.as_ref().map(RowError::json),
    }
}
