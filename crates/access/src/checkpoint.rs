//! The access index's checkpoint: its governance fold persisted in a redb file, with the log
//! position it reflects written in the same transaction.
//!
//! People's access state lives here, not in memory: the [`Governance`] in front of it holds
//! the people changed since the last save and a bounded cache
//! ([`carewoven_governance::PeopleStore`]). The registry (organisations, services,
//! agreements: small) is kept as its events, and folded again at start; the emergency
//! accesses and the people with an undecodable event are kept as they are.
//!
//! A checkpoint names the stream it was folded from (name and creation time): a checkpoint
//! of another log, or one ahead of the log's end, is set aside and the fold rebuilt from the
//! log. Deleting the file does the same. Either way the decisions are those of a fold of the
//! whole log ([`Checkpoint::digest`] compares two).
//!
//! Tables (all keys in a fixed order, so equal folds give equal files' digests):
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | name | position, format, stream identity |
//! | `people` | person id | [`StoredPerson`] (protobuf) |
//! | `nhs_numbers` | NHS number | person id |
//! | `ground_instants` | (instant in ns, person id) | () |
//! | `registry` | log position | the registry event as stored in the log |
//! | `emergency` | log position | [`StoredEmergencyAccess`] (protobuf) |
//! | `undecodable` | person id | first undecodable log position |

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use carewoven_domain::care_team::MemberRef;
use carewoven_domain::consent::ConsentTerms;
use carewoven_domain::person::ProxyScope;
use carewoven_domain::values::{Code, NhsNumber};
use carewoven_governance::{
    AssessmentLink, ConsentLink, EmergencyAccess, EpisodeLink, Governance, PeopleStore,
    PersonAccess, ReferralLink, Unsaved,
};
use carewoven_proto::convert::FromWire;
use carewoven_proto::v1;
use chrono::{DateTime, NaiveDate, Utc};
use prost::Message as _;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// Bump when the stored encoding changes: an older file is rebuilt from the log.
/// 2: people carry their open assessments (the assessing ground).
pub const FORMAT_VERSION: u64 = 2;

/// redb's page cache for the checkpoint (its default, 1 GiB, would be most of a service's
/// memory budget at scale; the index keeps its own cache of decoded people).
const CACHE_BYTES: usize = 32 * 1024 * 1024;

const META_U64: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_STR: TableDefinition<&str, &str> = TableDefinition::new("meta_text");
const PEOPLE: TableDefinition<u128, &[u8]> = TableDefinition::new("people");
const NHS_NUMBERS: TableDefinition<&str, u128> = TableDefinition::new("nhs_numbers");
const GROUND_INSTANTS: TableDefinition<(i64, u128), ()> = TableDefinition::new("ground_instants");
const REGISTRY: TableDefinition<u64, &[u8]> = TableDefinition::new("registry");
const EMERGENCY: TableDefinition<u64, &[u8]> = TableDefinition::new("emergency");
const UNDECODABLE: TableDefinition<u128, u64> = TableDefinition::new("undecodable");
/// Per partner feed (gateway): the last item's number and the log position it carries.
const FEED_HEADS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("feed_heads");

const POSITION: &str = "position";
const FORMAT: &str = "format";
const STREAM: &str = "stream";

/// One person's access state as stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredPerson {
    #[prost(string, tag = "1")]
    pub nhs_number: String,
    /// ISO date; empty: unknown.
    #[prost(string, tag = "2")]
    pub date_of_birth: String,
    #[prost(string, tag = "3")]
    pub registered_gp: String,
    #[prost(message, repeated, tag = "4")]
    pub referrals: Vec<StoredReferral>,
    #[prost(message, repeated, tag = "5")]
    pub care_team: Vec<v1::MemberRef>,
    #[prost(string, tag = "6")]
    pub coordinator: String,
    #[prost(message, repeated, tag = "7")]
    pub episodes: Vec<StoredEpisode>,
    #[prost(message, repeated, tag = "8")]
    pub consents: Vec<StoredConsent>,
    #[prost(message, repeated, tag = "9")]
    pub emergency: Vec<StoredEmergency>,
    #[prost(message, repeated, tag = "10")]
    pub proxies: Vec<StoredProxy>,
    #[prost(message, repeated, tag = "11")]
    pub assessments: Vec<StoredAssessment>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredAssessment {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(string, tag = "2")]
    pub requested_by: String,
    #[prost(string, repeated, tag = "3")]
    pub assessors: Vec<String>,
    #[prost(bool, tag = "4")]
    pub ended: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredReferral {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(string, tag = "2")]
    pub from: String,
    #[prost(string, tag = "3")]
    pub to: String,
    #[prost(bool, tag = "4")]
    pub closed_early: bool,
    /// Nanoseconds since the Unix epoch.
    #[prost(int64, optional, tag = "5")]
    pub finished_at: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredEpisode {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(string, tag = "2")]
    pub managing: String,
    #[prost(string, repeated, tag = "3")]
    pub receiving: Vec<String>,
    #[prost(int64, optional, tag = "4")]
    pub ended_at: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredConsent {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub terms: Option<v1::ConsentTerms>,
    #[prost(bool, tag = "3")]
    pub withdrawn: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredEmergency {
    #[prost(string, tag = "1")]
    pub organisation: String,
    #[prost(int64, tag = "2")]
    pub expires_at: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredProxy {
    #[prost(string, tag = "1")]
    pub carer_nhs_number: String,
    #[prost(uint32, repeated, tag = "2")]
    pub scope: Vec<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredEmergencyAccess {
    #[prost(bytes = "vec", tag = "1")]
    pub person: Vec<u8>,
    #[prost(string, tag = "2")]
    pub organisation: String,
    #[prost(int64, tag = "3")]
    pub asserted_at: i64,
    #[prost(int64, tag = "4")]
    pub expires_at: i64,
}

fn nanos(at: DateTime<Utc>) -> i64 {
    // Representable until the year 2262; later instants are clamped (never reached by
    // events, which are checked against the clock).
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn instant(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

fn opt_code(raw: &str) -> Result<Option<Code>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    Code::parse("code", raw)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn code(raw: &str) -> Result<Code, String> {
    Code::parse("code", raw).map_err(|e| e.to_string())
}

fn nhs(raw: &str) -> Result<NhsNumber, String> {
    NhsNumber::parse("nhs_number", raw).map_err(|e| e.to_string())
}

fn id(raw: &[u8]) -> Result<Uuid, String> {
    Uuid::from_slice(raw).map_err(|e| e.to_string())
}

fn scope_number(scope: &ProxyScope) -> u32 {
    match scope {
        ProxyScope::ReadRecord => 1,
        ProxyScope::AccessList => 2,
        ProxyScope::Feedback => 3,
        ProxyScope::Consents => 4,
        ProxyScope::WhatMatters => 5,
    }
}

fn scope_from(n: u32) -> Result<ProxyScope, String> {
    Ok(match n {
        1 => ProxyScope::ReadRecord,
        2 => ProxyScope::AccessList,
        3 => ProxyScope::Feedback,
        4 => ProxyScope::Consents,
        5 => ProxyScope::WhatMatters,
        other => return Err(format!("unknown proxy scope {other}")),
    })
}

fn text<T: AsRef<str>>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(String::new, |v| v.as_ref().to_owned())
}

impl From<&PersonAccess> for StoredPerson {
    fn from(p: &PersonAccess) -> Self {
        let mut referrals: Vec<_> = p
            .referrals
            .iter()
            .map(|(id, r)| StoredReferral {
                id: id.as_bytes().to_vec(),
                from: text(&r.from.as_ref().map(Code::as_str)),
                to: text(&r.to.as_ref().map(Code::as_str)),
                closed_early: r.closed_early,
                finished_at: r.finished_at.map(nanos),
            })
            .collect();
        referrals.sort_by(|a, b| a.id.cmp(&b.id));
        let mut episodes: Vec<_> = p
            .episodes
            .iter()
            .map(|(id, e)| StoredEpisode {
                id: id.as_bytes().to_vec(),
                managing: text(&e.managing.as_ref().map(Code::as_str)),
                receiving: e.receiving.iter().map(|c| c.as_str().to_owned()).collect(),
                ended_at: e.ended_at.map(nanos),
            })
            .collect();
        episodes.sort_by(|a, b| a.id.cmp(&b.id));
        let mut consents: Vec<_> = p
            .consents
            .iter()
            .map(|(id, c)| StoredConsent {
                id: id.as_bytes().to_vec(),
                terms: Some(v1::ConsentTerms::from(&c.terms)),
                withdrawn: c.withdrawn,
            })
            .collect();
        consents.sort_by(|a, b| a.id.cmp(&b.id));
        let mut assessments: Vec<_> = p
            .assessments
            .iter()
            .map(|(id, a)| StoredAssessment {
                id: id.as_bytes().to_vec(),
                requested_by: text(&a.requested_by.as_ref().map(Code::as_str)),
                assessors: a.assessors.iter().map(|c| c.as_str().to_owned()).collect(),
                ended: a.ended,
            })
            .collect();
        assessments.sort_by(|a, b| a.id.cmp(&b.id));
        StoredPerson {
            nhs_number: text(&p.nhs_number.as_ref().map(NhsNumber::as_str)),
            date_of_birth: p.date_of_birth.map_or_else(String::new, |d| d.to_string()),
            registered_gp: text(&p.registered_gp.as_ref().map(Code::as_str)),
            referrals,
            care_team: p.care_team.iter().map(v1::MemberRef::from).collect(),
            coordinator: text(&p.coordinator.as_ref().map(Code::as_str)),
            episodes,
            consents,
            emergency: p
                .emergency
                .iter()
                .map(|(org, expires)| StoredEmergency {
                    organisation: org.as_str().to_owned(),
                    expires_at: nanos(*expires),
                })
                .collect(),
            proxies: p
                .proxies
                .iter()
                .map(|(carer, scope)| StoredProxy {
                    carer_nhs_number: carer.as_str().to_owned(),
                    scope: scope.iter().map(scope_number).collect(),
                })
                .collect(),
            assessments,
        }
    }
}

impl TryFrom<&StoredPerson> for PersonAccess {
    type Error = String;

    fn try_from(s: &StoredPerson) -> Result<Self, String> {
        let mut p = PersonAccess {
            nhs_number: (!s.nhs_number.is_empty())
                .then(|| nhs(&s.nhs_number))
                .transpose()?,
            date_of_birth: (!s.date_of_birth.is_empty())
                .then(|| {
                    s.date_of_birth
                        .parse::<NaiveDate>()
                        .map_err(|e| e.to_string())
                })
                .transpose()?,
            registered_gp: opt_code(&s.registered_gp)?,
            coordinator: opt_code(&s.coordinator)?,
            ..PersonAccess::default()
        };
        for r in &s.referrals {
            p.referrals.insert(
                id(&r.id)?,
                ReferralLink {
                    from: opt_code(&r.from)?,
                    to: opt_code(&r.to)?,
                    closed_early: r.closed_early,
                    finished_at: r.finished_at.map(instant),
                },
            );
        }
        for m in &s.care_team {
            p.care_team
                .push(MemberRef::from_wire("care_team", m).map_err(|e| e.to_string())?);
        }
        for e in &s.episodes {
            p.episodes.insert(
                id(&e.id)?,
                EpisodeLink {
                    managing: opt_code(&e.managing)?,
                    receiving: e
                        .receiving
                        .iter()
                        .map(|c| code(c))
                        .collect::<Result<_, _>>()?,
                    ended_at: e.ended_at.map(instant),
                },
            );
        }
        for c in &s.consents {
            let terms = c
                .terms
                .as_ref()
                .ok_or_else(|| "a stored consent without terms".to_owned())?;
            p.consents.insert(
                id(&c.id)?,
                ConsentLink {
                    terms: ConsentTerms::from_wire("terms", terms).map_err(|e| e.to_string())?,
                    withdrawn: c.withdrawn,
                },
            );
        }
        for e in &s.emergency {
            p.emergency
                .push((code(&e.organisation)?, instant(e.expires_at)));
        }
        for x in &s.proxies {
            p.proxies.push((
                nhs(&x.carer_nhs_number)?,
                x.scope
                    .iter()
                    .map(|n| scope_from(*n))
                    .collect::<Result<_, _>>()?,
            ));
        }
        for a in &s.assessments {
            p.assessments.insert(
                id(&a.id)?,
                AssessmentLink {
                    requested_by: opt_code(&a.requested_by)?,
                    assessors: a
                        .assessors
                        .iter()
                        .map(|c| code(c))
                        .collect::<Result<_, _>>()?,
                    ended: a.ended,
                },
            );
        }
        Ok(p)
    }
}

/// What a checkpoint holds besides people, read at start.
#[derive(Debug, Default)]
pub struct Restored {
    /// The log position the checkpoint reflects (0: empty).
    pub position: u64,
    /// The registry's events, in log order: sequence and the message as stored in the log.
    pub registry: Vec<(u64, Vec<u8>)>,
    pub emergency: Vec<EmergencyAccess>,
    pub undecodable: HashMap<Uuid, u64>,
    /// Per partner feed: the last item's number and its log position (gateway).
    pub feed_heads: HashMap<String, (u64, u64)>,
}

/// What one save writes besides people.
pub struct SaveExtras<'a> {
    /// Registry events applied since the last save: sequence and payload.
    pub registry: &'a [(u64, bytes::Bytes)],
    /// Emergency accesses asserted since the last save.
    pub emergency: &'a [EmergencyAccess],
    pub undecodable: &'a HashMap<Uuid, u64>,
    /// Per partner feed: the last item's number and its log position (gateway).
    pub feed_heads: &'a [(String, u64, u64)],
}

impl<'a> SaveExtras<'a> {
    /// What `governance` holds outside its people store, for a save that follows one at
    /// position `saved`: the emergency accesses asserted since, and the undecodable people.
    pub fn of(governance: &Governance, saved: u64, upto: u64) -> SavedFold {
        SavedFold {
            emergency: governance
                .emergency_accesses()
                .iter()
                .filter(|e| e.position > saved && e.position <= upto)
                .cloned()
                .collect(),
            undecodable: governance.undecodable_people().clone(),
        }
    }
}

/// See [`SaveExtras::of`].
pub struct SavedFold {
    pub emergency: Vec<EmergencyAccess>,
    pub undecodable: HashMap<Uuid, u64>,
}

/// A checkpoint file; see the module documentation.
pub struct Checkpoint {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .finish()
    }
}

fn store_err(e: impl std::fmt::Display) -> String {
    format!("access checkpoint: {e}")
}

impl Checkpoint {
    /// Open (or create) the checkpoint at `path` for the stream identified by `stream`
    /// whose last position is `log_end`. A checkpoint of another stream, of another format,
    /// or ahead of the log's end is moved aside (`<path>.set-aside`) and a fresh one made.
    pub fn open(path: &Path, stream: &str, log_end: u64) -> anyhow::Result<Self> {
        if path.exists() {
            match Self::open_existing(path, stream, log_end) {
                Ok(Some(c)) => return Ok(c),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "the access checkpoint cannot be read; rebuilding it from the log");
                }
            }
            let aside = path.with_extension("set-aside");
            std::fs::rename(path, &aside).with_context(|| {
                format!("setting the access checkpoint aside to {}", aside.display())
            })?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .with_context(|| format!("creating the access checkpoint {}", path.display()))?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META_U64)?;
            meta.insert(FORMAT, FORMAT_VERSION)?;
            meta.insert(POSITION, 0)?;
            txn.open_table(META_STR)?.insert(STREAM, stream)?;
            txn.open_table(PEOPLE)?;
            txn.open_table(NHS_NUMBERS)?;
            txn.open_table(GROUND_INSTANTS)?;
            txn.open_table(REGISTRY)?;
            txn.open_table(EMERGENCY)?;
            txn.open_table(UNDECODABLE)?;
            txn.open_table(FEED_HEADS)?;
        }
        txn.commit()?;
        Ok(Checkpoint {
            db,
            path: path.to_owned(),
        })
    }

    fn open_existing(path: &Path, stream: &str, log_end: u64) -> anyhow::Result<Option<Self>> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .open(path)
            .with_context(|| format!("opening the access checkpoint {}", path.display()))?;
        let c = Checkpoint {
            db,
            path: path.to_owned(),
        };
        let txn = c.db.begin_read()?;
        let meta = txn.open_table(META_U64)?;
        let format = meta.get(FORMAT)?.map(|v| v.value());
        let position = meta.get(POSITION)?.map_or(0, |v| v.value());
        let named = txn
            .open_table(META_STR)?
            .get(STREAM)?
            .map(|v| v.value().to_owned());
        drop(meta);
        drop(txn);
        if format != Some(FORMAT_VERSION) {
            tracing::warn!(
                ?format,
                "the access checkpoint has another format; rebuilding it from the log"
            );
            return Ok(None);
        }
        if named.as_deref() != Some(stream) {
            tracing::warn!("the access checkpoint was folded from another log; rebuilding it");
            return Ok(None);
        }
        if position > log_end {
            tracing::warn!(
                position,
                log_end,
                "the access checkpoint is ahead of the log's end; rebuilding it"
            );
            return Ok(None);
        }
        Ok(Some(c))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything but the people, to restore a fold.
    pub fn restore(&self) -> anyhow::Result<Restored> {
        let txn = self.db.begin_read()?;
        let position = txn
            .open_table(META_U64)?
            .get(POSITION)?
            .map_or(0, |v| v.value());
        let mut restored = Restored {
            position,
            ..Restored::default()
        };
        for row in txn.open_table(REGISTRY)?.iter()? {
            let (k, v) = row?;
            restored.registry.push((k.value(), v.value().to_vec()));
        }
        for row in txn.open_table(EMERGENCY)?.iter()? {
            let (k, v) = row?;
            let e = StoredEmergencyAccess::decode(v.value())?;
            restored.emergency.push(EmergencyAccess {
                person: id(&e.person).map_err(|e| anyhow!(e))?,
                organisation: code(&e.organisation).map_err(|e| anyhow!(e))?,
                asserted_at: instant(e.asserted_at),
                expires_at: instant(e.expires_at),
                position: k.value(),
            });
        }
        for row in txn.open_table(UNDECODABLE)?.iter()? {
            let (k, v) = row?;
            restored
                .undecodable
                .insert(Uuid::from_u128(k.value()), v.value());
        }
        for row in txn.open_table(FEED_HEADS)?.iter()? {
            let (k, v) = row?;
            restored.feed_heads.insert(k.value().to_owned(), v.value());
        }
        Ok(restored)
    }

    /// Store one save: people and NHS numbers changed, the registry events and emergency
    /// accesses since the last save, the undecodable people, and the position they reach,
    /// in one transaction (durable when this returns).
    pub fn save(&self, unsaved: &Unsaved, extras: &SaveExtras<'_>) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut people = txn.open_table(PEOPLE)?;
            let mut instants = txn.open_table(GROUND_INSTANTS)?;
            let mut buf = Vec::new();
            for (person, access) in unsaved.people.iter() {
                buf.clear();
                StoredPerson::from(access).encode(&mut buf)?;
                people.insert(person.as_u128(), buf.as_slice())?;
                for at in access.ground_instants() {
                    instants.insert((nanos(at), person.as_u128()), ())?;
                }
            }
            let mut numbers = txn.open_table(NHS_NUMBERS)?;
            for (nhs, person) in unsaved.nhs_numbers.iter() {
                match person {
                    Some(p) => numbers.insert(nhs.as_str(), p.as_u128())?,
                    None => numbers.remove(nhs.as_str())?,
                };
            }
            let mut registry = txn.open_table(REGISTRY)?;
            for (sequence, payload) in extras.registry {
                registry.insert(*sequence, payload.as_ref())?;
            }
            let mut emergency = txn.open_table(EMERGENCY)?;
            for e in extras.emergency {
                let stored = StoredEmergencyAccess {
                    person: e.person.as_bytes().to_vec(),
                    organisation: e.organisation.as_str().to_owned(),
                    asserted_at: nanos(e.asserted_at),
                    expires_at: nanos(e.expires_at),
                };
                emergency.insert(e.position, stored.encode_to_vec().as_slice())?;
            }
            let mut undecodable = txn.open_table(UNDECODABLE)?;
            for (person, position) in extras.undecodable {
                undecodable.insert(person.as_u128(), *position)?;
            }
            let mut heads = txn.open_table(FEED_HEADS)?;
            for (org, number, source) in extras.feed_heads {
                heads.insert(org.as_str(), (*number, *source))?;
            }
            txn.open_table(META_U64)?
                .insert(POSITION, unsaved.position)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The log position the checkpoint reflects.
    pub fn position(&self) -> anyhow::Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(META_U64)?
            .get(POSITION)?
            .map_or(0, |v| v.value()))
    }

    /// A digest of everything the checkpoint holds (position included): two folds of the
    /// same log prefix have the same digest.
    pub fn digest(&self) -> anyhow::Result<String> {
        let txn = self.db.begin_read()?;
        let mut h = Sha256::new();
        h.update(self.position()?.to_be_bytes());
        for row in txn.open_table(PEOPLE)?.iter()? {
            let (k, v) = row?;
            h.update(k.value().to_be_bytes());
            // Decoded and encoded again: field order and map order are then canonical.
            let p = StoredPerson::decode(v.value())?;
            h.update(p.encode_to_vec());
        }
        for row in txn.open_table(NHS_NUMBERS)?.iter()? {
            let (k, v) = row?;
            h.update(k.value().as_bytes());
            h.update(v.value().to_be_bytes());
        }
        for row in txn.open_table(REGISTRY)?.iter()? {
            let (k, v) = row?;
            h.update(k.value().to_be_bytes());
            h.update(v.value());
        }
        for row in txn.open_table(EMERGENCY)?.iter()? {
            let (k, v) = row?;
            h.update(k.value().to_be_bytes());
            h.update(v.value());
        }
        for row in txn.open_table(UNDECODABLE)?.iter()? {
            let (k, v) = row?;
            h.update(k.value().to_be_bytes());
            h.update(v.value().to_be_bytes());
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A fold resumed from this checkpoint: `governance` (empty) backed by it, with at most
    /// `cache` people read back held in memory, the registry folded again, and what else it
    /// holds restored. Also what the checkpoint holds besides the fold.
    pub fn resume(
        self: &std::sync::Arc<Self>,
        governance: Governance,
        cache: usize,
    ) -> anyhow::Result<(Governance, Restored)> {
        let mut restored = self.restore()?;
        let mut governance = governance.with_store(self.clone(), cache);
        for (sequence, payload) in &restored.registry {
            let event = carewoven_eventlog::decode(*sequence, payload)
                .map_err(|e| anyhow!("a registry event in the access checkpoint: {e}"))?;
            governance.restore_registry(&event);
        }
        governance.restore(
            restored.position,
            std::mem::take(&mut restored.emergency),
            std::mem::take(&mut restored.undecodable),
        );
        Ok((governance, restored))
    }

    /// People stored.
    pub fn people(&self) -> anyhow::Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(PEOPLE)?.len()?)
    }
}

impl PeopleStore for Checkpoint {
    fn load(&self, person: Uuid) -> Result<Option<PersonAccess>, String> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(PEOPLE).map_err(store_err)?;
        let Some(raw) = table.get(person.as_u128()).map_err(store_err)? else {
            return Ok(None);
        };
        let stored = StoredPerson::decode(raw.value()).map_err(store_err)?;
        PersonAccess::try_from(&stored).map(Some).map_err(store_err)
    }

    fn by_nhs_number(&self, nhs: &NhsNumber) -> Result<Option<Uuid>, String> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(NHS_NUMBERS).map_err(store_err)?;
        Ok(table
            .get(nhs.as_str())
            .map_err(store_err)?
            .map(|v| Uuid::from_u128(v.value())))
    }

    fn ending_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, String> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(GROUND_INSTANTS).map_err(store_err)?;
        let from = (nanos(after).saturating_add(1), 0u128);
        let to = (nanos(until), u128::MAX);
        let mut people = Vec::new();
        for row in table.range(from..=to).map_err(store_err)? {
            let (k, _) = row.map_err(store_err)?;
            people.push(Uuid::from_u128(k.value().1));
        }
        people.sort_unstable();
        people.dedup();
        Ok(people)
    }
}
