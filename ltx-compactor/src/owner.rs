//! Who writes the ladder: telling our level files from another
//! compactor's (Litestream's own compaction left on) without reading them.
//!
//! Litestream 0.5.17 set to ship only (its `levels` one level with a huge
//! interval, see the README's "Running beside Litestream") writes L0 files,
//! and at most an occasional level-1 file (when its level 1 is empty at
//! start-up) and snapshot: both harmless beside our files. With its own
//! compaction left on it also writes levels 2 and up, every few minutes,
//! and the two compactors fight: its compaction of level 2 needs contiguous
//! level-1 files (our cumulative windows leave holes a coarser file
//! bridges), ours merges its files, both delete.
//!
//! The compactor keeps, beside the database's levels, a small record
//! ([`RECORD_NAME`]) of the level 2..8 keys it wrote or adopted. It is
//! written (under the lease) before any new level 2..8 output, so a pass
//! killed half-way never takes its own outputs for another writer's. A
//! level 2..8 file that is neither in the record nor planned by this pass
//! was written by someone else: [`foreign_ladder_files`] names them and the
//! pass refuses to run, with a message saying what to change. The first
//! pass over a bucket (no record) adopts what is there (taking over a bucket
//! Litestream compacted before is supported); `--adopt` adopts again after
//! the other writer was stopped.
//!
//! Pure: the record is a value; reading and writing it is the caller's.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::catalog::LtxObject;

/// The record's name inside a database's prefix (`<db>/ltx-compactor.json`).
/// Litestream lists only its level directories, so it never sees it.
pub const RECORD_NAME: &str = "ltx-compactor.json";

/// Levels whose files another writer must not add (level 1 and snapshots
/// may come from Litestream in ship-only mode).
pub const GUARDED_LEVELS: std::ops::RangeInclusive<u8> = 2..=8;

/// What the compactor knows it wrote (or adopted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    /// Format of the record (1).
    pub version: u32,
    /// Keys of level 2..8 files written or adopted by the compactor.
    pub known: BTreeSet<String>,
    /// When the record was last written (ms since the epoch).
    pub updated_ms: i64,
}

impl OwnerRecord {
    /// A record that adopts every guarded file of `catalog`.
    pub fn adopting(catalog: &[LtxObject], now_ms: i64) -> OwnerRecord {
        OwnerRecord {
            version: 1,
            known: guarded(catalog).map(|o| o.key.clone()).collect(),
            updated_ms: now_ms,
        }
    }

    /// The record to write before outputs `planned` (keys) are written:
    /// the known keys still listed, plus the planned guarded outputs.
    /// `None` when nothing new would be added (no write needed).
    pub fn before_writing<'a>(
        &self,
        catalog: &[LtxObject],
        planned: impl IntoIterator<Item = (u8, &'a str)>,
        now_ms: i64,
    ) -> Option<OwnerRecord> {
        // Every planned guarded output, new or not: one planned by a pass
        // killed before writing it is in the record but not listed, and
        // must stay known when this pass writes it.
        let planned: Vec<&str> = planned
            .into_iter()
            .filter(|(l, _)| GUARDED_LEVELS.contains(l))
            .map(|(_, k)| k)
            .collect();
        if planned.iter().all(|k| self.known.contains(*k)) {
            return None;
        }
        let listed: BTreeSet<&str> = guarded(catalog).map(|o| o.key.as_str()).collect();
        let mut known: BTreeSet<String> = self
            .known
            .iter()
            .filter(|k| listed.contains(k.as_str()))
            .cloned()
            .collect();
        known.extend(planned.into_iter().map(str::to_string));
        Some(OwnerRecord {
            version: 1,
            known,
            updated_ms: now_ms,
        })
    }
}

fn guarded(catalog: &[LtxObject]) -> impl Iterator<Item = &LtxObject> {
    catalog.iter().filter(|o| GUARDED_LEVELS.contains(&o.level))
}

/// The level 2..8 files of `catalog` another writer added: neither in
/// `record` nor among `planned` output keys. Sorted by key.
pub fn foreign_ladder_files<'a>(
    catalog: &'a [LtxObject],
    record: &OwnerRecord,
) -> Vec<&'a LtxObject> {
    let mut v: Vec<&LtxObject> = guarded(catalog)
        .filter(|o| !record.known.contains(&o.key))
        .collect();
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

/// The message a refused pass reports.
pub fn refusal(location: &str, foreign: &[&LtxObject]) -> String {
    let shown: Vec<&str> = foreign.iter().take(3).map(|o| o.key.as_str()).collect();
    format!(
        "{location}: another compactor writes level files here ({} file{} this compactor did not write, e.g. {}): \
         probably Litestream with its own compaction on. Running both breaks both. \
         Set Litestream to ship only (levels: [{{interval: 1000h}}], snapshot: {{interval: 1000h}}, \
         l0-retention: 1000h, retention: {{enabled: false}}; see the README, \"Running beside Litestream\"), \
         restart it, then run ltx-compactor once with --adopt; or stop ltx-compactor for this database",
        foreign.len(),
        if foreign.len() == 1 { "" } else { "s" },
        shown.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{format_key, Layout};
    use ltx_core::TxId;

    use crate::catalog::test_object as f;

    #[test]
    fn another_writer_is_seen_only_on_guarded_levels() {
        let cat = vec![f(9, 1, 10), f(2, 11, 20), f(1, 21, 25), f(0, 26, 26)];
        let rec = OwnerRecord::adopting(&cat, 5);
        assert_eq!(rec.known.len(), 1);
        assert!(foreign_ladder_files(&cat, &rec).is_empty());
        // Litestream in ship-only mode: a level-1 file and a snapshot.
        let mut more = cat.clone();
        more.push(f(1, 26, 26));
        more.push(f(9, 1, 26));
        assert!(foreign_ladder_files(&more, &rec).is_empty());
        // Its compaction on: level 2 and 3 files appear.
        more.push(f(2, 21, 26));
        more.push(f(3, 1, 26));
        let fo = foreign_ladder_files(&more, &rec);
        assert_eq!(fo.len(), 2);
        assert!(refusal("s3://b/db", &fo).contains("--adopt"));
    }

    #[test]
    fn the_record_is_written_before_new_outputs_only() {
        let cat = vec![f(9, 1, 10), f(2, 11, 20), f(3, 11, 30)];
        let rec = OwnerRecord::adopting(&cat, 5);
        assert_eq!(rec.before_writing(&cat, [(1, "x"), (9, "y")], 6), None);
        let k = format_key("d", Layout::LtxDir, 2, TxId(31), TxId(40));
        // The deleted L3 file leaves the record; the new L2 output joins.
        let after_delete = vec![f(9, 1, 10), f(2, 11, 20)];
        let next = rec
            .before_writing(&after_delete, [(2, k.as_str())], 7)
            .unwrap();
        assert_eq!(next.known.len(), 2);
        assert!(next.known.contains(&k));
        assert_eq!(next.updated_ms, 7);
        // Our own output of a killed pass is never foreign.
        let mut listed = after_delete.clone();
        listed.push(f(2, 31, 40));
        assert!(foreign_ladder_files(&listed, &next).is_empty());
        // A pass killed after recording K but before writing it; the next
        // pass plans K again beside a new output: K stays known.
        let k2 = format_key("d", Layout::LtxDir, 3, TxId(11), TxId(50));
        let again = next
            .before_writing(&after_delete, [(2, k.as_str()), (3, k2.as_str())], 8)
            .unwrap();
        assert!(again.known.contains(&k) && again.known.contains(&k2));
    }
}
