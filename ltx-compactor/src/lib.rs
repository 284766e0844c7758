//! # ltx-compactor
//!
//! Time-tiered compaction and point-in-time restore of LTX files on object
//! storage. The policy modules are pure (no I/O, no clock): [`catalog`]
//! (the listing model), [`policy::plan_pass`] (what to compact and delete)
//! and [`restore::plan_restore`] (which files rebuild a database at a TXID
//! or a time). The I/O modules wrap them: [`store`] (object_store access),
//! [`lease`] (one writer per database), [`compact`] (a pass) and
//! [`fetch`] (restoring a database file). [`simulate`] runs the policy with
//! a simulated clock over synthetic traffic to measure restore-plan sizes
//! and bytes against Litestream's ladder.
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
#[cfg(feature = "io")]
pub mod faults;
#[cfg(feature = "io")]
pub mod fetch;
#[cfg(feature = "io")]
pub mod lease;
pub mod lease_decision;
#[cfg(feature = "io")]
pub mod metrics;
pub mod owner;
pub mod policy;
#[cfg(feature = "io")]
pub mod reader;
pub mod restore;
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
pub use restore::{plan_restore, RestoreError, RestoreIndex, RestorePlan, Target};
