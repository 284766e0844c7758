//! The library's error type.
//!
//! Every fallible function of the I/O layer returns [`Result`]. A caller
//! tells the kinds apart by variant, never by message text: a lost lease
//! (stop working on that database; another compactor has it) is
//! [`Error::LeaseLost`], a failed request [`Error::Store`] (with the
//! [`object_store::Error`], e.g. a timeout), a damaged LTX object
//! [`Error::Format`]. Steps add what they were doing as an
//! [`Error::Context`] layer; [`Error::root`] looks through those:
//!
//! ```
//! use ltx_compactor::Error;
//! fn stop_working(e: &Error) -> bool {
//!     matches!(e.root(), Error::LeaseLost { .. })
//! }
//! let lost = Error::LeaseLost { key: "db/compactor.lease".into(), why: "changed by another compactor".into() };
//! let e = Error::Context { context: "compacting into db/ltx/1/x.ltx".into(), source: Box::new(lost) };
//! assert!(stop_working(&e));
//! assert_eq!(format!("{e:#}"), "compacting into db/ltx/1/x.ltx: lease db/compactor.lease lost: changed by another compactor");
//! ```
//!
//! Display follows `anyhow`: `{}` is the outermost message, `{:#}` the
//! whole chain joined with `": "` (what the binaries print).

use std::fmt;

/// What went wrong (see the module docs).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The lease of a database was lost (taken over by another compactor,
    /// or our own deadline passed): stop writing to it.
    LeaseLost {
        /// The lease object's key.
        key: String,
        /// How it was lost.
        why: String,
    },
    /// A write or delete was attempted under a dry run's lease.
    DryRun,
    /// An object-store request failed (`context` says which).
    Store {
        /// What was being done.
        context: String,
        /// The store's error (`NotFound`, `Precondition`, a timeout, …).
        source: object_store::Error,
    },
    /// An LTX object (or a merge of several) is invalid: `context` names
    /// the bucket and key, `error` the byte offset and page.
    Format {
        /// The object (bucket URL and key) or step.
        context: String,
        /// The format error.
        error: ltx_core::Error,
    },
    /// No restore plan reaches the target.
    Plan {
        /// The database.
        context: String,
        /// Why.
        error: crate::restore::RestoreError,
    },
    /// A local file or directory operation failed.
    Io {
        /// What was being done, with the path.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Bucket contents or an output that is not what it must be: a short
    /// read, a gap in a chain, a checksum that does not match, an output
    /// that differs from its plan, a missing input.
    Invalid(String),
    /// A request the caller can fix: an unknown URL scheme, no database
    /// or several where one is needed, an output that exists, a WAL beside
    /// the output.
    Usage(String),
    /// A background task failed (panicked or was cancelled).
    Join(tokio::task::JoinError),
    /// The caller's pre-commit check refused the restored file
    /// ([`crate::fetch::RestoreOptions::pre_commit`]).
    Check(Box<dyn std::error::Error + Send + Sync>),
    /// A step's error with what that step was doing.
    Context {
        /// What was being done.
        context: String,
        /// The error.
        source: Box<Error>,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error under every [`Error::Context`] layer.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }

    /// Whether the root is [`Error::LeaseLost`].
    pub fn is_lease_lost(&self) -> bool {
        matches!(self.root(), Error::LeaseLost { .. })
    }

    /// Whether the root is a store's `NotFound` (an object listed and
    /// gone since: another compactor's deletion, say).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.root(),
            Error::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        Error::Invalid(msg.into())
    }

    pub(crate) fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }

    pub(crate) fn format(context: impl Into<String>, error: ltx_core::Error) -> Error {
        Error::Format {
            context: context.into(),
            error,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LeaseLost { key, why } => write!(f, "lease {key} lost: {why}")?,
            Error::DryRun => f.write_str("dry run: nothing may be written")?,
            Error::Store { context, .. }
            | Error::Io { context, .. }
            | Error::Context { context, .. } => f.write_str(context)?,
            Error::Format { context, error } => write!(f, "{context}: {error}")?,
            Error::Plan { context, error } => write!(f, "{context}: {error}")?,
            Error::Invalid(m) | Error::Usage(m) => f.write_str(m)?,
            Error::Join(e) => write!(f, "{e}")?,
            Error::Check(e) => write!(f, "{e}")?,
        }
        if f.alternate() {
            let mut next = std::error::Error::source(self);
            while let Some(e) = next {
                write!(f, ": {e}")?;
                next = e.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store { source, .. } => Some(source),
            Error::Io { source, .. } => Some(source),
            Error::Context { source, .. } => Some(source.as_ref()),
            Error::Join(e) => e.source(),
            Error::Check(e) => e.source(),
            _ => None,
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Error {
        Error::Join(e)
    }
}

/// Adds what a step was doing to its error (as `anyhow::Context` does).
pub(crate) trait Context<T> {
    /// The error with `f()` as its context.
    fn context_with<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T>;
    /// The error with `c` as its context.
    fn context(self, c: &str) -> Result<T>
    where
        Self: Sized,
    {
        self.context_with(|| c)
    }
}

impl<T> Context<T> for std::result::Result<T, object_store::Error> {
    fn context_with<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|source| Error::Store {
            context: f().into(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context_with<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: f().into(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T> {
    fn context_with<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|source| Error::Context {
            context: f().into(),
            source: Box::new(source),
        })
    }
}

impl<T> Context<T> for std::result::Result<T, tokio::task::JoinError> {
    fn context_with<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(Error::Join).context_with(f)
    }
}
