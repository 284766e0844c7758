//! # ltx-compactor
//!
//! Time-tiered compaction and point-in-time restore of LTX files on object
//! storage. The policy modules are pure (no I/O, no clock): [`catalog`]
//! (the listing model), [`policy::plan_pass`] (what to compact and delete)
//! and [`restore::plan_restore`] (which files rebuild a database at a TXID
//! or a time), [`fleet`] (many databases under one root: shards, the
//! root's catalogue from one listing, what changed between rounds). The
//! I/O modules wrap them: [`store`] (object_store access),
//! [`lease`] (one writer per database), [`compact`] (a pass) and
//! [`fetch`] (restoring a database file), [`pages`] (pages of a database at a
//! TXID without restoring it). `simulate` (feature) runs the policy with
//! a simulated clock over synthetic traffic to measure restore-plan sizes
//! and bytes against Litestream's ladder.
//!
//! [`Compactor`] is the one entry point for compaction: [`Compactor::pass`]
//! runs one pass over one database under a lease the caller holds,
//! [`Compactor::run`] is the whole job ([`daemon`]): rounds over a root
//! that cost the root listing and what changed. Errors are an
//! [`Error`] whose variant tells a lost lease from a store failure or a
//! damaged file ([`error`]).
//!
//! Features: `io` (default) is the object-store layer above;
//! `simulate` the simulation; `faults` a fault-injecting store for tests
//! (`faults::FaultStore`); `cli` (default) builds the `ltx-compactor`
//! binary (with `simulate`) and brings what only it needs (`clap`,
//! `anyhow`, `tracing-subscriber`, `plotters`). A library depending on
//! this crate takes `default-features = false, features = ["io"]`.
//!
//! # Example
//!
//! Compact a bucket's database once, then restore its latest state into a
//! file (any URL [`store::Bucket::open`] takes: `s3://bucket/prefix`, a
//! directory, `memory://name`):
//!
//! ```no_run
//! # #[cfg(feature = "io")]
//! # async fn example() -> Result<(), ltx_compactor::Error> {
//! use ltx_compactor::fetch::{plan, restore_to_file, RestoreOptions};
//! use ltx_compactor::lease::Lease;
//! use ltx_compactor::store::{now_ms, Bucket};
//! use ltx_compactor::{Compactor, Config, PassOptions, Target};
//!
//! let bucket = Bucket::open("file:///var/lib/replicas")?;
//! let db = bucket.single_db().await?;
//! // One writer per database: `None` when another compactor holds it.
//! if let Some(lease) = Lease::acquire(&bucket, &db, "example", 60_000).await? {
//!     let c = Compactor::new(bucket.clone(), Config::default(), PassOptions::default());
//!     let pass = c.pass(&db, now_ms(), &lease).await;
//!     lease.release().await?;
//!     let pass = pass?;
//!     println!("{} written, {} deleted", pass.written.len(), pass.deleted.len());
//!     assert!(pass.contiguity.is_empty(), "{:?}", pass.contiguity);
//! }
//! // The fewest files that rebuild the latest state; pages written in
//! // place into a temporary file, checked, renamed over the output.
//! let (plan, _catalog) = plan(&bucket, &db, Target::Latest).await?;
//! let out = std::path::Path::new("/tmp/app.db");
//! let r = restore_to_file(&bucket, &db, &plan, out, &RestoreOptions::default()).await?;
//! println!("restored TXID {} from {} files", r.txid, r.files.len());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "io")]
pub mod atomic;
pub mod catalog;
#[cfg(feature = "io")]
pub mod compact;
#[cfg(feature = "io")]
pub mod counting;
#[cfg(feature = "io")]
pub mod daemon;
#[cfg(feature = "io")]
pub mod error;
#[cfg(feature = "faults")]
pub mod faults;
#[cfg(feature = "io")]
pub mod fetch;
pub mod fleet;
#[cfg(feature = "io")]
pub mod lease;
pub mod lease_decision;
#[cfg(feature = "io")]
pub mod metrics;
pub mod owner;
#[cfg(feature = "io")]
pub mod pages;
pub mod policy;
#[cfg(feature = "io")]
pub mod reader;
#[cfg(feature = "io")]
pub mod report;
pub mod restore;
#[cfg(feature = "simulate")]
pub mod simulate;
#[cfg(feature = "io")]
pub mod store;

pub use catalog::{DbLocation, Layout, LtxObject};
#[cfg(feature = "io")]
pub use compact::{Compactor, PassOptions, PassReport};
#[cfg(feature = "io")]
pub use daemon::RunOptions;
#[cfg(feature = "io")]
pub use error::{Error, Result};
pub use policy::{plan_pass, Compaction, CompactionKind, Config, PassPlan};
pub use restore::{
    plan_follow, plan_restore, FollowGap, FollowPlan, RestoreError, RestoreIndex, RestorePlan,
    Target,
};
