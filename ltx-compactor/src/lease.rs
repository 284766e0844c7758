//! A per-database lease so that two compactors never both write.
//!
//! On object stores the lease is a small JSON object, `<db>/compactor.lease`
//! (`holder`, `generation`, `expires_ms`), changed only by conditional
//! writes: `PutMode::Create` to take a free lease, `PutMode::Update` with
//! the e-tag read (or last written) to take over an expired one, renew or
//! release. A racing writer gets a precondition failure and backs off, so
//! at most one holder exists at a time (given clocks that agree to well
//! within the TTL). The holder renews when a third of the TTL has passed
//! and checks it before every write and delete; it stops work when a
//! renewal fails or its own deadline (expiry minus a tenth of the TTL)
//! passes. Others take over only after expiry.
//!
//! object_store's local filesystem has no `PutMode::Update`; for `file://`
//! buckets and plain paths the lease is an OS advisory lock (`flock`) on
//! `<dir>/<db>/.compactor.lock`, held while the process works on the
//! database and released by the kernel if it dies. Compactors sharing one
//! directory must run on one host (or a filesystem whose locks are
//! shared, e.g. NFSv4).

use std::sync::Arc;

use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};
use tokio::sync::Mutex;

use crate::error::{Context, Error, Result};
pub use crate::lease_decision::LeaseDoc;
use crate::lease_decision::{acquire_read, hold, release, Acquire, Hold};
use crate::store::{join, now_ms, Bucket};

#[derive(Debug)]
struct Held {
    version: UpdateVersion,
    doc: LeaseDoc,
    renewed_ms: i64,
}

#[derive(Debug)]
enum Kind {
    Object {
        store: Arc<dyn ObjectStore>,
        path: Path,
        held: Mutex<Held>,
    },
    File(#[allow(dead_code)] std::fs::File),
    DryRun,
}

/// A held lease on one database.
#[derive(Debug)]
pub struct Lease {
    kind: Kind,
    holder: String,
    ttl_ms: i64,
    key: String,
}

/// The lease object's key for a database.
pub fn lease_key(db: &str) -> String {
    join(db, "compactor.lease")
}

fn version_of(e_tag: Option<String>, version: Option<String>) -> UpdateVersion {
    UpdateVersion { e_tag, version }
}

fn is_conflict(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

impl Lease {
    /// Tries to take the lease of `db` for `holder`. `Ok(None)`: someone
    /// else holds it (or won a race for it).
    ///
    /// # Errors
    /// Store errors other than lost races.
    pub async fn acquire(
        bucket: &Bucket,
        db: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<Lease>> {
        let key = lease_key(db);
        if let Some(root) = bucket.local_root() {
            let dir = root.join(db);
            std::fs::create_dir_all(&dir).context_with(|| format!("creating {}", dir.display()))?;
            let p = dir.join(".compactor.lock");
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&p)
                .context_with(|| format!("opening lock file {}", p.display()))?;
            return match f.try_lock() {
                Ok(()) => Ok(Some(Lease {
                    kind: Kind::File(f),
                    holder: holder.to_string(),
                    ttl_ms,
                    key: p.display().to_string(),
                })),
                Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                Err(std::fs::TryLockError::Error(e)) => {
                    Err(e).context_with(|| format!("locking {}", p.display()))
                }
            };
        }
        let store = bucket.store().clone();
        let path = Path::from(key.as_str());
        let now = now_ms();
        let read = match store.get_opts(&path, GetOptions::default()).await {
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e).context_with(|| format!("reading lease {key}")),
            Ok(r) => {
                let version = version_of(r.meta.e_tag.clone(), r.meta.version.clone());
                let body = r
                    .bytes()
                    .await
                    .context_with(|| format!("reading lease {key}"))?;
                Some((version, serde_json::from_slice::<LeaseDoc>(&body).ok()))
            }
        };
        let decided = acquire_read(
            now,
            read.as_ref().map(|(_, d)| d.as_ref().ok_or(())),
            holder,
            ttl_ms,
        );
        let (mode, doc) = match (decided, read) {
            (None, _) => return Ok(None),
            (Some(Acquire::Create(doc)), _) => (PutMode::Create, doc),
            (Some(Acquire::TakeOver(doc)), Some((version, _))) => (PutMode::Update(version), doc),
            (Some(Acquire::TakeOver(doc)), None) => (PutMode::Create, doc),
        };
        match put_doc(&store, &path, &doc, mode).await {
            Ok(version) => Ok(Some(Lease {
                kind: Kind::Object {
                    store,
                    path,
                    held: Mutex::new(Held {
                        version,
                        doc,
                        renewed_ms: now,
                    }),
                },
                holder: holder.to_string(),
                ttl_ms,
                key,
            })),
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(e).context_with(|| format!("writing lease {key}")),
        }
    }

    /// A stand-in for dry runs: every [`Lease::check`] fails, so nothing
    /// can be written or deleted under it.
    pub fn dry_run() -> Lease {
        Lease {
            kind: Kind::DryRun,
            holder: String::new(),
            ttl_ms: 0,
            key: String::new(),
        }
    }

    /// Checks the lease is still ours before a write or delete, renewing it
    /// when a third of the TTL has passed since the last renewal.
    ///
    /// # Errors
    /// The lease was lost (taken over, or our deadline passed): stop work.
    pub async fn check(&self) -> Result<()> {
        let (store, path, held) = match &self.kind {
            Kind::Object { store, path, held } => (store, path, held),
            Kind::File(_) => return Ok(()),
            Kind::DryRun => return Err(Error::DryRun),
        };
        let mut h = held.lock().await;
        let now = now_ms();
        match hold(now, &h.doc, h.renewed_ms, self.ttl_ms) {
            Hold::Keep => {}
            Hold::Lost { expires_ms } => {
                return Err(Error::LeaseLost {
                    key: self.key.clone(),
                    why: format!(
                        "expired at {expires_ms} (holder {}, generation {})",
                        self.holder, h.doc.generation
                    ),
                })
            }
            Hold::Renew(doc) => {
                match put_doc(store, path, &doc, PutMode::Update(h.version.clone())).await {
                    Ok(v) => {
                        h.version = v;
                        h.doc = doc;
                        h.renewed_ms = now;
                    }
                    Err(e) if is_conflict(&e) => {
                        return Err(Error::LeaseLost {
                            key: self.key.clone(),
                            why: "changed by another compactor".into(),
                        })
                    }
                    Err(e) => {
                        return Err(e).context_with(|| format!("renewing lease {}", self.key))
                    }
                }
            }
        }
        Ok(())
    }

    /// Releases the lease (expiry set to 0, conditionally) so another
    /// compactor can take it at once.
    ///
    /// # Errors
    /// Store errors (the lease then simply expires).
    pub async fn release(self) -> Result<()> {
        if let Kind::Object { store, path, held } = &self.kind {
            let h = held.lock().await;
            let doc = release(&h.doc);
            match put_doc(store, path, &doc, PutMode::Update(h.version.clone())).await {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(e).context_with(|| format!("releasing lease {}", self.key)),
            }
        }
        Ok(())
    }

    /// The lease's generation (1 for file locks).
    pub async fn generation(&self) -> u64 {
        match &self.kind {
            Kind::Object { held, .. } => held.lock().await.doc.generation,
            Kind::File(_) | Kind::DryRun => 1,
        }
    }

    /// Where the lease lives (object key or lock-file path).
    pub fn key(&self) -> &str {
        &self.key
    }
}

async fn put_doc(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    doc: &LeaseDoc,
    mode: PutMode,
) -> object_store::Result<UpdateVersion> {
    let body = serde_json::to_vec(doc).expect("lease serialises");
    let r = store
        .put_opts(
            path,
            PutPayload::from(body),
            PutOptions {
                mode,
                ..Default::default()
            },
        )
        .await?;
    Ok(version_of(r.e_tag, r.version))
}
