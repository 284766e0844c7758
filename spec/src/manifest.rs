//! The manifest model: typed serde structs for `manifest.json` (format:
//! `testdata/conformance/README.md`, older layouts:
//! `testdata/conformance-old/README.md`).
//!
//! [`Manifest`] is the whole file; every case is an [`Entry`]: a [`Case`]
//! when it parses as one of the documented kinds, or the raw JSON when it
//! does not (the runner reports why, for that case alone). Fields the runner
//! checks are typed; a field the format marks optional, or that the runner
//! reports as missing with its own message, is an `Option`. Fields the
//! runner does not read (e.g. `reference_error`, the old sets' `as_v3`
//! verdicts) are ignored on reading and dropped on writing, so a manifest
//! written back by [`Manifest::save`] is checked exactly like the original.
//!
//! Numbers use [`Num`] (a JSON integer, or a hex string as TXIDs and
//! checksums are written); SHA-256 values use [`Sha256Hex`].
//!
//! ```
//! use ltx_spec::manifest::{Case, Manifest};
//! let m: Manifest = serde_json::from_str(r#"{"cases": [
//!     {"name": "d", "kind": "db", "file": "db/x.db", "page_size": 4096, "pages": 2,
//!      "checksum": "8000000000000001", "sha256": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"},
//!     {"name": "w", "kind": "wal-segment"}
//! ]}"#).unwrap();
//! let Some(Case::Db(d)) = m.case("d") else { panic!() };
//! assert_eq!(d.db.checksum.unwrap().value(), 0x8000000000000001);
//! assert!(m.cases[1].case().is_none()); // unknown kind: kept raw
//! ```

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// What generated the vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// The format version of cases that do not name one (3 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<u64>,
    /// The format versions a set covers (informational; the old-format set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_versions: Option<Vec<u64>>,
    /// Every case, in order.
    pub cases: Vec<Entry>,
}

impl Manifest {
    /// Reads and parses `dir/manifest.json`.
    ///
    /// # Errors
    /// The file cannot be read, is not JSON, or has no `cases` array.
    pub fn load(dir: &Path) -> Result<Manifest, String> {
        let path = dir.join("manifest.json");
        let text =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("cannot parse {}: {e}", path.display()))
    }

    /// Writes `dir/manifest.json` (pretty-printed).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("manifest.json"), text)
    }

    /// The first parsed case named `name`.
    pub fn case(&self, name: &str) -> Option<&Case> {
        self.cases
            .iter()
            .filter_map(Entry::case)
            .find(|c| c.name() == Some(name))
    }

    /// The first parsed case named `name`, to change it.
    pub fn case_mut(&mut self, name: &str) -> Option<&mut Case> {
        self.cases
            .iter_mut()
            .filter_map(|e| match e {
                Entry::Case(c) => Some(&mut **c),
                Entry::Raw(_) => None,
            })
            .find(|c| c.name() == Some(name))
    }
}

/// One element of `cases`.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A case of a documented kind.
    Case(Box<Case>),
    /// JSON that is not a case of a documented kind (see [`Case::from_json`]
    /// for why), kept verbatim; also how a test adds a case exactly as
    /// written.
    Raw(Box<RawValue>),
}

impl Entry {
    /// The case, if it parsed.
    pub fn case(&self) -> Option<&Case> {
        match self {
            Entry::Case(c) => Some(c),
            Entry::Raw(_) => None,
        }
    }

    /// An entry holding `v` verbatim (written back as is).
    pub fn raw(v: &Value) -> Entry {
        Entry::Raw(RawValue::from_string(v.to_string()).expect("a Value is valid JSON"))
    }
}

impl From<Case> for Entry {
    fn from(c: Case) -> Entry {
        Entry::Case(Box::new(c))
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(match Case::from_json(raw.get()) {
            Ok(c) => Entry::Case(Box::new(c)),
            Err(_) => Entry::Raw(raw),
        })
    }
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Entry::Case(c) => c.serialize(s),
            Entry::Raw(r) => r.serialize(s),
        }
    }
}

/// Why a JSON value is not a case of a documented kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseError {
    /// Not a JSON object.
    NotObject,
    /// No `kind` (or not a string).
    NoKind,
    /// A `kind` this runner does not know.
    UnknownKind(String),
    /// The fields do not have the documented types.
    Fields(String),
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseError::NotObject => write!(f, "case is not a JSON object"),
            CaseError::NoKind => write!(f, "case has no \"kind\""),
            CaseError::UnknownKind(k) => {
                write!(f, "unknown kind \"{k}\": this runner cannot check it")
            }
            CaseError::Fields(e) => {
                write!(f, "manifest: fields do not have the documented types: {e}")
            }
        }
    }
}

/// What every case has, read before its kind's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseHead {
    /// `name`, if it is a string.
    pub name: Option<String>,
    /// `kind`, if it is a string.
    pub kind: Option<String>,
}

impl CaseHead {
    /// Reads `name` and `kind` of a case (anything else is skipped).
    ///
    /// # Errors
    /// [`CaseError::NotObject`].
    pub fn from_json(text: &str) -> Result<CaseHead, CaseError> {
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            name: Option<Value>,
            #[serde(default)]
            kind: Option<Value>,
        }
        let h: Head = serde_json::from_str(text).map_err(|_| CaseError::NotObject)?;
        let s = |v: Option<Value>| match v {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        Ok(CaseHead {
            name: s(h.name),
            kind: s(h.kind),
        })
    }
}

/// A case, by kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Case {
    /// A valid file and its description.
    Valid(ValidCase),
    /// A file the reference rejects.
    Invalid(RejectedCase),
    /// A file that breaks the spec but that the reference accepts.
    ReferenceAccepts(RejectedCase),
    /// A SQLite database.
    Db(DbCase),
    /// Files of real SQLite transactions applied in order.
    Chain(ChainCase),
    /// A compactor run.
    Compaction(CompactionCase),
}

impl Case {
    /// Parses one case.
    ///
    /// # Errors
    /// [`CaseError`].
    pub fn from_json(text: &str) -> Result<Case, CaseError> {
        let head = CaseHead::from_json(text)?;
        let fields = |e: serde_json::Error| CaseError::Fields(e.to_string());
        Ok(match head.kind.as_deref() {
            None => return Err(CaseError::NoKind),
            Some("valid") => Case::Valid(serde_json::from_str(text).map_err(fields)?),
            Some("invalid") => Case::Invalid(serde_json::from_str(text).map_err(fields)?),
            Some("reference-accepts") => {
                Case::ReferenceAccepts(serde_json::from_str(text).map_err(fields)?)
            }
            Some("db") => Case::Db(serde_json::from_str(text).map_err(fields)?),
            Some("chain") => Case::Chain(serde_json::from_str(text).map_err(fields)?),
            Some("compaction") => Case::Compaction(serde_json::from_str(text).map_err(fields)?),
            Some(other) => return Err(CaseError::UnknownKind(other.to_string())),
        })
    }

    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            Case::Valid(_) => "valid",
            Case::Invalid(_) => "invalid",
            Case::ReferenceAccepts(_) => "reference-accepts",
            Case::Db(_) => "db",
            Case::Chain(_) => "chain",
            Case::Compaction(_) => "compaction",
        }
    }

    /// What every kind has: name, format version, note.
    pub fn common(&self) -> &CaseCommon {
        match self {
            Case::Valid(c) => &c.common,
            Case::Invalid(c) | Case::ReferenceAccepts(c) => &c.common,
            Case::Db(c) => &c.common,
            Case::Chain(c) => &c.common,
            Case::Compaction(c) => &c.common,
        }
    }

    /// The same, to change.
    pub fn common_mut(&mut self) -> &mut CaseCommon {
        match self {
            Case::Valid(c) => &mut c.common,
            Case::Invalid(c) | Case::ReferenceAccepts(c) => &mut c.common,
            Case::Db(c) => &mut c.common,
            Case::Chain(c) => &mut c.common,
            Case::Compaction(c) => &mut c.common,
        }
    }

    /// The `name`.
    pub fn name(&self) -> Option<&str> {
        self.common().name.as_deref()
    }

    /// The case's own `format_version`.
    pub fn format_version(&self) -> Option<u64> {
        self.common().format_version
    }
}

/// The fields every kind of case has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaseCommon {
    /// Case name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Format version of the case's file(s) (unused by kind `db`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<u64>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The description of one LTX file: a valid case, a chain step, a
/// compaction's expected output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileDesc {
    /// `block`, `legacy-frame`, `mixed`, `v1-raw`, `v1-lz4`, `v2-lz4-frames`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Every header field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderDesc>,
    /// The frames in file order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<Vec<PageDesc>>,
    /// The trailer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trailer: Option<TrailerDesc>,
    /// The page index size field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_index_size: Option<Num>,
    /// Total bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<Num>,
}

/// The header fields, by their manifest names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // the names of the header fields
pub struct HeaderDesc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_txid: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_txid: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_apply_checksum: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_offset: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_size: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_salt1: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_salt2: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<Num>,
}

impl HeaderDesc {
    /// `(name, value)` of every field, in header order.
    pub fn fields(&self) -> [(&'static str, Option<Num>); 12] {
        [
            ("flags", self.flags),
            ("page_size", self.page_size),
            ("commit", self.commit),
            ("min_txid", self.min_txid),
            ("max_txid", self.max_txid),
            ("timestamp", self.timestamp),
            ("pre_apply_checksum", self.pre_apply_checksum),
            ("wal_offset", self.wal_offset),
            ("wal_size", self.wal_size),
            ("wal_salt1", self.wal_salt1),
            ("wal_salt2", self.wal_salt2),
            ("node_id", self.node_id),
        ]
    }
}

/// One frame of a description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageDesc {
    /// Page number.
    pub pgno: Num,
    /// SHA-256 of the decompressed page.
    pub sha256: Sha256Hex,
    /// Page header flags as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Num>,
    /// Absolute offset of the page header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_offset: Option<Num>,
    /// v1 LZ4 files: the offset of the page in the decompressed page block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_offset: Option<Num>,
    /// Page header + size prefix + payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_size: Option<Num>,
}

/// The trailer of a description.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // the names of the trailer fields
pub struct TrailerDesc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_apply_checksum: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_checksum: Option<Num>,
}

/// A database: `db_after`, or a `db` case's values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DbDesc {
    /// Page count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<Num>,
    /// SHA-256 of the whole image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Hex>,
    /// Rolling checksum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Num>,
}

/// Kind `valid`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidCase {
    /// Name, format version, note.
    #[serde(flatten)]
    pub common: CaseCommon,
    /// The LTX file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What it decodes to.
    #[serde(flatten)]
    pub desc: FileDesc,
    /// The valid case whose resulting database this file applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applies_to: Option<String>,
    /// The database after applying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_after: Option<DbDesc>,
    /// Page content is not from a real database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<bool>,
    /// Assembled byte by byte, valid per the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crafted: Option<bool>,
}

/// Kinds `invalid` and `reference-accepts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RejectedCase {
    /// Name, format version, note.
    #[serde(flatten)]
    pub common: CaseCommon,
    /// The LTX file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What is wrong (the README's category names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The reference's error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_error: Option<String>,
    /// Legacy-frame files: the legacy reference's error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_reference_error: Option<String>,
    /// The valid file the case was derived from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The file's encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// Kind `db`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DbCase {
    /// Name, format version, note.
    #[serde(flatten)]
    pub common: CaseCommon,
    /// The database file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<Num>,
    /// Page count, SHA-256, rolling checksum.
    #[serde(flatten)]
    pub db: DbDesc,
}

/// Kind `chain`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChainCase {
    /// Name, format version, note.
    #[serde(flatten)]
    pub common: CaseCommon,
    /// The files in apply order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
    /// One per file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<ChainStep>>,
    /// The database after the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_db: Option<String>,
    /// Header flags of every file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_flags: Option<Num>,
    /// Page size of every file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<Num>,
    /// Encoding of the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// One step of a chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChainStep {
    /// The LTX file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What it decodes to.
    #[serde(flatten)]
    pub desc: FileDesc,
    /// Pages of the database after this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_pages: Option<Num>,
    /// Its SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_sha256: Option<Sha256Hex>,
    /// Its rolling checksum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_checksum: Option<Num>,
    /// What the SQLite transaction did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite_txn: Option<String>,
}

impl ChainStep {
    /// The database after the step, as a [`DbDesc`].
    pub fn db(&self) -> DbDesc {
        DbDesc {
            pages: self.db_pages,
            sha256: self.db_sha256,
            checksum: self.db_checksum,
        }
    }
}

/// Kind `compaction`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompactionCase {
    /// Name, format version, note.
    #[serde(flatten)]
    pub common: CaseCommon,
    /// Input files in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    /// The compactor's output header flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_flags: Option<Num>,
    /// `current` or `legacy` reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compactor: Option<String>,
    /// The reference's output file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// What the output decodes to.
    #[serde(flatten)]
    pub desc: FileDesc,
    /// With `base_txid`: the chain whose state the output applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// The chain state's TXID (0 = empty database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_txid: Option<Num>,
    /// The valid case whose database the output applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applies_to: Option<String>,
    /// The database after applying the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_after: Option<DbDesc>,
}

/// A manifest number: a JSON integer, or a string of 1 to 16 hex digits (how
/// TXIDs and checksums are written). Written back in the form it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Num {
    /// A JSON integer (i64 or u64 range).
    Int(i128),
    /// A hex string, written as 16 lower-case digits.
    Hex(u64),
}

impl Num {
    /// The value.
    pub fn value(self) -> i128 {
        match self {
            Num::Int(v) => v,
            Num::Hex(v) => v.into(),
        }
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string of 1 to 16 hex digits")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num::Int(v.into()))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Num, E> {
                if s.is_empty() || s.len() > 16 {
                    return Err(E::invalid_value(de::Unexpected::Str(s), &self));
                }
                u64::from_str_radix(s, 16)
                    .map(Num::Hex)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(s), &self))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Num::Int(v) => match (i64::try_from(v), u64::try_from(v)) {
                (Ok(i), _) => s.serialize_i64(i),
                (_, Ok(u)) => s.serialize_u64(u),
                _ => s.serialize_i128(v),
            },
            Num::Hex(v) => s.serialize_str(&format!("{v:016x}")),
        }
    }
}

/// A SHA-256 value, read from 64 hex digits (either case), written in
/// lower case.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Hex(pub [u8; 32]);

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Hex({self})")
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sha256Hex, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.as_bytes(), &mut b)
            .map_err(|_| de::Error::invalid_value(de::Unexpected::Str(&s), &"64 hex digits"))?;
        Ok(Sha256Hex(b))
    }
}

impl Serialize for Sha256Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_integers_and_hex() {
        let n: Num = serde_json::from_str("-5").unwrap();
        assert_eq!(n.value(), -5);
        let n: Num = serde_json::from_str(&u64::MAX.to_string()).unwrap();
        assert_eq!(n.value(), i128::from(u64::MAX));
        assert_eq!(serde_json::to_string(&n).unwrap(), u64::MAX.to_string());
        let n: Num = serde_json::from_str("\"8000000000000000\"").unwrap();
        assert_eq!(n.value(), 1 << 63);
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"8000000000000000\"");
        let n: Num = serde_json::from_str("\"1f\"").unwrap();
        assert_eq!(n, Num::Hex(0x1f));
        for bad in ["\"xyz\"", "1.5", "\"\"", "\"00000000000000001\"", "null"] {
            assert!(serde_json::from_str::<Num>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sha256_hex() {
        let s = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";
        let h: Sha256Hex = serde_json::from_str(&format!("\"{s}\"")).unwrap();
        assert_eq!(h.to_string(), s.to_ascii_lowercase());
        assert!(serde_json::from_str::<Sha256Hex>("\"0011\"").is_err());
    }

    #[test]
    fn cases_parse_by_kind_and_round_trip() {
        let text = r#"{"generator": "g", "format_version": 3, "cases": [
            {"name": "v", "kind": "valid", "file": "a.ltx", "encoding": "block",
             "header": {"flags": 0, "commit": 2, "min_txid": "0000000000000001"},
             "pages": [{"pgno": 1, "sha256": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "frame_offset": 100}],
             "trailer": {"post_apply_checksum": "8000000000000001"},
             "applies_to": "s", "db_after": {"pages": 2}, "some_future_field": [1]},
            {"name": "c", "kind": "chain", "steps": [{"file": "x", "db_pages": 3, "sqlite_txn": "init"}]},
            {"name": "x", "kind": "compaction", "inputs": ["a", "b"], "chain": "c", "base_txid": 0},
            42,
            {"name": "n"},
            {"name": "f", "kind": "future"},
            {"name": "bad", "kind": "valid", "header": 5}
        ]}"#;
        let m: Manifest = serde_json::from_str(text).unwrap();
        assert_eq!(m.cases.len(), 7);
        let Some(Case::Valid(v)) = m.case("v") else {
            panic!("v")
        };
        assert_eq!(v.desc.encoding.as_deref(), Some("block"));
        assert_eq!(v.desc.header.as_ref().unwrap().commit, Some(Num::Int(2)));
        assert_eq!(
            v.desc.pages.as_ref().unwrap()[0].frame_offset,
            Some(Num::Int(100))
        );
        assert_eq!(v.applies_to.as_deref(), Some("s"));
        let Some(Case::Chain(c)) = m.case("c") else {
            panic!("c")
        };
        assert_eq!(c.steps.as_ref().unwrap()[0].db_pages, Some(Num::Int(3)));
        assert!(matches!(m.case("x"), Some(Case::Compaction(_))));
        let err = |i: usize| match &m.cases[i] {
            Entry::Raw(r) => Case::from_json(r.get()).unwrap_err(),
            Entry::Case(c) => panic!("{c:?} parsed"),
        };
        assert_eq!(err(3), CaseError::NotObject);
        assert_eq!(err(4), CaseError::NoKind);
        assert_eq!(err(5), CaseError::UnknownKind("future".into()));
        assert!(matches!(err(6), CaseError::Fields(_)));
        // Written back and read again: the same cases (unknown fields dropped).
        let again: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(again.case("v"), m.case("v"));
        assert_eq!(again.case("c"), m.case("c"));
        assert_eq!(again.format_version, Some(3));
        assert!(!serde_json::to_string(&again)
            .unwrap()
            .contains("some_future_field"));
        assert_eq!(
            serde_json::to_value(&again.cases[6]).unwrap(),
            serde_json::json!({"name": "bad", "kind": "valid", "header": 5})
        );
    }
}
