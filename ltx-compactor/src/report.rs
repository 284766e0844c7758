//! What a pass and a round did: the reports `ltx-compactor run --json`
//! prints (one line each), the metrics count and the callbacks receive.
//! Plain data, below the code that fills them ([`crate::compact`],
//! [`crate::daemon`]) and the code that reads them ([`crate::metrics`]).

use serde::Serialize;

use crate::counting::RequestCounts;
use crate::policy::{CompactionKind, PassPlan};

/// One output of a pass.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    /// Output key.
    pub key: String,
    /// Merge or copy.
    pub kind: CompactionKind,
    /// Number of inputs.
    pub inputs: usize,
    /// Output size in bytes.
    pub size: u64,
    /// The output's header timestamp (as read back), ms.
    pub timestamp_ms: i64,
    /// Bytes read from inputs (frames, tails, indexes).
    pub bytes_read: u64,
    /// The key already held exactly this file (an earlier, interrupted pass).
    pub existed: bool,
    /// Written with a multipart upload.
    pub multipart: bool,
}

/// What a pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    /// Database prefix.
    pub db: String,
    /// Where the database is, for messages
    /// ([`Bucket::location`](crate::store::Bucket::location)).
    pub location: String,
    /// Objects in the catalog at the start.
    pub catalog_files: usize,
    /// The plan (always filled; in a dry run, nothing else is).
    pub plan: PassPlan,
    /// Outputs written (or found already written).
    pub written: Vec<Written>,
    /// Keys deleted.
    pub deleted: Vec<String>,
    /// Contiguity problems found after the pass (empty when healthy).
    pub contiguity: Vec<String>,
    /// Stopped early (shutdown requested): no deletions were made.
    pub abandoned: bool,
    /// Why the pass refused to run (another compactor writes this
    /// database's levels; see [`crate::owner`]): nothing was written.
    pub refused: Option<String>,
    /// Output bytes written.
    pub bytes_written: u64,
    /// Input bytes read.
    pub bytes_read: u64,
    /// Per level: `now` minus the time of its newest file, ms.
    pub level_lag_ms: std::collections::BTreeMap<u8, i64>,
    /// Requests made through the pass's bucket by the time the pass ended,
    /// by kind (with a bucket of its own per pass, as `ltx-compactor run`
    /// gives each database: this database's requests in the round, header
    /// reads, lease and its release included; not its share of the root
    /// listing, which the round report counts).
    pub requests: RequestCounts,
}

/// What one round did
/// ([`Compactor::round`](crate::compact::Compactor::round)): one line of
/// `ltx-compactor run --json` (the line with a `round` field; the others
/// are [`PassReport`]s, one per database that was not idle).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundReport {
    /// Round number in this process, from 1.
    pub round: u64,
    /// The URL (root) the round went over.
    pub url: String,
    /// This worker's shard (`K/N`), if sharded.
    pub shard: Option<String>,
    /// Keys the root listing returned.
    pub keys: u64,
    /// Of those, keys of no database (leases, records, other files).
    pub foreign_keys: u64,
    /// Of those, LTX files of other shards' databases.
    pub other_shard_keys: u64,
    /// LTX files of this shard's databases.
    pub ltx_files: u64,
    /// This shard's databases.
    pub databases: u64,
    /// Listing unchanged since the last round and nothing due: no request.
    pub idle: u64,
    /// Listing changed since the last round (or first seen).
    pub changed: u64,
    /// Something due: leased and passed over (dry run: planned).
    pub due: u64,
    /// Due but another compactor held the lease.
    pub lease_busy: u64,
    /// Failed (error, refusal) or with contiguity problems.
    pub failed: u64,
    /// Requests of the root listing.
    pub listing: RequestCounts,
    /// Every request of the round, the listing included, and the state's
    /// ([`RunOptions::state`](crate::daemon::RunOptions::state): its GET in
    /// the first round, its PUT in every round, on an object store; none
    /// for a local file).
    pub requests: RequestCounts,
    /// Wall time of the round, ms.
    pub elapsed_ms: u64,
    /// Every database passed (no error, refusal or contiguity problem).
    pub ok: bool,
    /// The listing failed: nothing else was done.
    pub error: Option<String>,
    /// What the round started from
    /// ([`RunOptions::state`](crate::daemon::RunOptions::state); `None`
    /// without one). The first round: `"loaded N databases"` (a state of this root
    /// and shard: its idle databases cost no request), `"none"` (no state
    /// at the location yet: a first round, every header read) or
    /// `"ignored: LOCATION: why"` (unreadable, corrupt, of another format
    /// version, root or shard: a first round, and a warning). Later rounds:
    /// `"in memory"` (what the previous round left).
    pub state: Option<String>,
    /// Databases taken from the state loaded by this round (the first
    /// round, when a state was loaded); `None` otherwise.
    pub state_loaded_databases: Option<u64>,
    /// Whether the state was written at the end of the round (`None`
    /// without [`RunOptions::state`](crate::daemon::RunOptions::state);
    /// `false` after a write that failed, which was logged as a warning,
    /// after a failed root listing, and in a dry run, which writes
    /// nothing).
    pub state_written: Option<bool>,
}
