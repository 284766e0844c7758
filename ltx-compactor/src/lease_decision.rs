//! The lease's decisions, pure: whether a compactor may take a database's
//! lease, and whether it still holds it, as functions of `now`, the lease
//! document read from the store and the holder's name. The I/O around them
//! ([`crate::lease`], feature `io`) only reads the document and writes it
//! back conditionally (create if absent, update if unchanged since read).
//!
//! ```
//! use ltx_compactor::lease_decision::{acquire, hold, Acquire, Hold, LeaseDoc};
//! let ttl = 60_000;
//! // Nobody holds it: create it.
//! assert_eq!(acquire(1_000, None, "a", ttl).unwrap(), Acquire::Create(LeaseDoc {
//!     holder: "a".into(), generation: 1, expires_ms: 61_000 }));
//! // Someone else holds it until 61 000: busy until then, ours after.
//! let theirs = LeaseDoc { holder: "b".into(), generation: 4, expires_ms: 61_000 };
//! assert!(acquire(60_999, Some(&theirs), "a", ttl).is_none());
//! let Some(Acquire::TakeOver(doc)) = acquire(61_000, Some(&theirs), "a", ttl) else { panic!() };
//! assert_eq!(doc.generation, 5);
//! // Holding it: renew after a third of the TTL, lost a tenth before expiry.
//! assert_eq!(hold(10_000, &doc, 61_000, ttl), Hold::Keep);
//! assert!(matches!(hold(81_000, &doc, 61_000, ttl), Hold::Renew(_)));
//! assert!(matches!(hold(61_000 + 54_000, &doc, 61_000, ttl), Hold::Lost { .. }));
//! ```

use serde::{Deserialize, Serialize};

/// The lease object's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseDoc {
    /// Who holds it.
    pub holder: String,
    /// Incremented at every change of holder.
    pub generation: u64,
    /// Expiry, ms since the epoch (0 = released).
    pub expires_ms: i64,
}

/// What to write to take a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// No lease object: create this one (conditional create).
    Create(LeaseDoc),
    /// An expired, released, unreadable or own lease: replace it with this
    /// one (conditional update on the version read).
    TakeOver(LeaseDoc),
}

/// Whether `holder` may take the lease at `now_ms`, given the document read
/// (`None`: no lease object; `Some(Err(()))`: an object that does not
/// parse). `None` when another holder's lease has not expired.
pub fn acquire(
    now_ms: i64,
    existing: Option<&LeaseDoc>,
    holder: &str,
    ttl_ms: i64,
) -> Option<Acquire> {
    acquire_read(now_ms, existing.map(Ok), holder, ttl_ms)
}

/// [`acquire`] for a document that may not have parsed.
pub fn acquire_read(
    now_ms: i64,
    existing: Option<Result<&LeaseDoc, ()>>,
    holder: &str,
    ttl_ms: i64,
) -> Option<Acquire> {
    let doc = |generation| LeaseDoc {
        holder: holder.to_string(),
        generation,
        expires_ms: now_ms.saturating_add(ttl_ms),
    };
    match existing {
        None => Some(Acquire::Create(doc(1))),
        Some(Err(())) => Some(Acquire::TakeOver(doc(1))),
        Some(Ok(d)) if d.holder != holder && d.expires_ms > now_ms => None,
        Some(Ok(d)) => Some(Acquire::TakeOver(doc(d
            .generation
            .saturating_add(u64::from(d.holder != holder))))),
    }
}

/// What a holder does before a write or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Still held; nothing to write.
    Keep,
    /// Still held, and due for renewal: write this document (conditional
    /// update on the version last written).
    Renew(LeaseDoc),
    /// Too close to (or past) expiry to trust: stop working.
    Lost {
        /// When it expires (or expired), ms.
        expires_ms: i64,
    },
}

/// The holder's decision at `now_ms` for its lease `doc`, last written at
/// `renewed_ms`: lost within a tenth of the TTL of expiry (clocks may
/// disagree by that much), renewed once a third of the TTL has passed.
pub fn hold(now_ms: i64, doc: &LeaseDoc, renewed_ms: i64, ttl_ms: i64) -> Hold {
    if now_ms >= doc.expires_ms - ttl_ms / 10 {
        return Hold::Lost {
            expires_ms: doc.expires_ms,
        };
    }
    if now_ms - renewed_ms >= ttl_ms / 3 {
        return Hold::Renew(LeaseDoc {
            expires_ms: now_ms.saturating_add(ttl_ms),
            ..doc.clone()
        });
    }
    Hold::Keep
}

/// The document that releases a held lease (expired at once, same holder
/// and generation).
pub fn release(doc: &LeaseDoc) -> LeaseDoc {
    LeaseDoc {
        expires_ms: 0,
        ..doc.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(holder: &str, generation: u64, expires_ms: i64) -> LeaseDoc {
        LeaseDoc {
            holder: holder.into(),
            generation,
            expires_ms,
        }
    }

    #[test]
    fn acquire_rules() {
        let ttl = 30_000;
        // Free, own, released, expired, unreadable, busy.
        assert_eq!(
            acquire(5, None, "a", ttl),
            Some(Acquire::Create(d("a", 1, 30_005)))
        );
        assert_eq!(
            acquire(5, Some(&d("a", 3, 100)), "a", ttl),
            Some(Acquire::TakeOver(d("a", 3, 30_005))),
            "re-taking one's own lease keeps the generation"
        );
        assert_eq!(
            acquire(5, Some(&d("b", 3, 0)), "a", ttl),
            Some(Acquire::TakeOver(d("a", 4, 30_005)))
        );
        assert_eq!(
            acquire(100, Some(&d("b", 3, 100)), "a", ttl),
            Some(Acquire::TakeOver(d("a", 4, 30_100))),
            "expiry is exclusive"
        );
        assert_eq!(acquire(99, Some(&d("b", 3, 100)), "a", ttl), None);
        assert_eq!(
            acquire_read(5, Some(Err(())), "a", ttl),
            Some(Acquire::TakeOver(d("a", 1, 30_005)))
        );
        // Hostile values never overflow.
        assert!(acquire(i64::MAX, None, "a", ttl).is_some());
        assert!(acquire(0, Some(&d("a", u64::MAX, 0)), "b", ttl).is_some());
    }

    #[test]
    fn hold_rules() {
        let ttl = 30_000;
        let doc = d("a", 2, 30_000);
        assert_eq!(hold(0, &doc, 0, ttl), Hold::Keep);
        assert_eq!(hold(9_999, &doc, 0, ttl), Hold::Keep);
        assert_eq!(hold(10_000, &doc, 0, ttl), Hold::Renew(d("a", 2, 40_000)));
        assert_eq!(hold(26_999, &doc, 20_000, ttl), Hold::Keep);
        assert_eq!(
            hold(27_000, &doc, 20_000, ttl),
            Hold::Lost { expires_ms: 30_000 }
        );
        assert_eq!(release(&doc), d("a", 2, 0));
    }
}
