//! # ltx-compactor
//!
//! Time-tiered compaction and point-in-time restore of LTX files on object
//! storage. This crate's library is pure (no I/O, no clock): the I/O layer
//! lists a database's objects into a [`catalog`], asks [`policy::plan_pass`]
//! what to compact and delete, and [`restore::plan_restore`] which files
//! rebuild a database at a TXID or a time. [`simulate`] runs the policy with
//! a simulated clock over synthetic traffic to measure restore-plan sizes
//! and bytes against Litestream's ladder.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod catalog;
pub mod policy;
pub mod restore;
pub mod simulate;

pub use catalog::{DbLocation, Layout, LtxObject};
pub use policy::{plan_pass, Compaction, CompactionKind, Config, PassPlan};
pub use restore::{plan_restore, RestoreError, RestoreIndex, RestorePlan, Target};
