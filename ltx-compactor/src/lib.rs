//! Compaction on object storage (see issue: ltx-compactor). Not implemented yet.
