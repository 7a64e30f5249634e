//! Where people's access state lives: in memory, or in a checkpoint store with a bounded
//! cache in front of it.
//!
//! Without a store (tests, the gateway's own fold) every person the log has named is held in
//! memory. With one ([`Governance::with_store`]) memory holds only what is needed to decide:
//! the people changed since the last save (they cannot be dropped until saved), the people
//! being saved, and a bounded cache of people read back from the store. Everything else is
//! read from the store when a decision needs it.
//!
//! The store is written by whoever owns it (the access index), not by this crate, which
//! does no IO: [`Governance::begin_save`] hands over what changed, together with the log
//! position it brings the store to, and [`Governance::end_save`] is told whether it was
//! stored.

use std::collections::{BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

use carewoven_domain::care_team::MemberRef;
use carewoven_domain::consent::ConsentTerms;
use carewoven_domain::person::ProxyScope;
use carewoven_domain::values::{Code, NhsNumber};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// A referral's part in access: who made it, who received it, whether it still counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferralLink {
    pub from: Option<Code>,
    /// The organisation that owned the receiving service when the referral was made.
    pub to: Option<Code>,
    /// Rejected, cancelled or entered in error: no longer a ground, at once.
    pub closed_early: bool,
    /// Completed or failed: a ground until the set period after this.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A discharge episode's part in access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpisodeLink {
    pub managing: Option<Code>,
    /// Organisations of services requested or agreed, and the one that accepted handover.
    pub receiving: BTreeSet<Code>,
    /// Closed, died or self-discharged: the grounds last the set period after this.
    pub ended_at: Option<DateTime<Utc>>,
}

/// An assessment's part in access: who requested it and who assesses, while it is open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssessmentLink {
    pub requested_by: Option<Code>,
    /// The organisations assessing now (a replaced one is no longer among them).
    pub assessors: Vec<Code>,
    /// Completed or cancelled: no longer a ground, at once.
    pub ended: bool,
}

/// A consent decision's part in access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentLink {
    pub terms: ConsentTerms,
    pub withdrawn: bool,
}

/// What governance knows about one person. Its parts are public so that a checkpoint store
/// can persist it; only [`crate::Governance::apply`] changes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonAccess {
    pub nhs_number: Option<NhsNumber>,
    pub date_of_birth: Option<NaiveDate>,
    pub registered_gp: Option<Code>,
    pub referrals: HashMap<Uuid, ReferralLink>,
    pub care_team: Vec<MemberRef>,
    pub coordinator: Option<Code>,
    pub episodes: HashMap<Uuid, EpisodeLink>,
    pub consents: HashMap<Uuid, ConsentLink>,
    /// Emergency access assertions: the organisation and when it expires.
    pub emergency: Vec<(Code, DateTime<Utc>)>,
    /// Active proxy grants: the carer's NHS number and what they may do.
    pub proxies: Vec<(NhsNumber, Vec<ProxyScope>)>,
    pub assessments: HashMap<Uuid, AssessmentLink>,
}

impl PersonAccess {
    /// Every instant from which one of this person's grounds ends with time: an episode's
    /// end or a referral's completion (the ground ends the set period later), an emergency
    /// access's expiry. What a store indexes so that [`crate::Governance::grounds_ended`]
    /// need not read everyone; independent of the set period, which may change.
    pub fn ground_instants(&self) -> BTreeSet<DateTime<Utc>> {
        let mut ends = BTreeSet::new();
        for e in self.episodes.values() {
            ends.extend(e.ended_at);
        }
        for r in self.referrals.values().filter(|r| !r.closed_early) {
            ends.extend(r.finished_at);
        }
        ends.extend(self.emergency.iter().map(|(_, expires)| *expires));
        ends
    }
}

/// The store behind a [`crate::Governance`] with a checkpoint. Reads must see everything a
/// completed save stored. An error fails closed: the person is treated as unreadable.
pub trait PeopleStore: Send + Sync {
    /// The person as last stored (`None`: never stored).
    fn load(&self, person: Uuid) -> Result<Option<PersonAccess>, String>;
    /// The person last stored with this NHS number.
    fn by_nhs_number(&self, nhs: &NhsNumber) -> Result<Option<Uuid>, String>;
    /// People stored with a [`PersonAccess::ground_instants`] in `(after, until]` (a
    /// superset is fine).
    fn ending_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, String>;
}

/// What changed since the last save, handed to the store by [`crate::Governance::begin_save`].
#[derive(Clone, Default)]
pub struct Unsaved {
    /// People changed, as they are now.
    pub people: Arc<HashMap<Uuid, PersonAccess>>,
    /// NHS numbers now naming a person (`Some`) or no longer naming anyone (`None`).
    pub nhs_numbers: Arc<HashMap<NhsNumber, Option<Uuid>>>,
    /// The log position the store reaches with this save.
    pub position: u64,
}

/// A person read for a decision: in memory, or shared from the cache.
pub enum PersonRef<'a> {
    Held(&'a PersonAccess),
    Shared(Arc<PersonAccess>),
}

impl Deref for PersonRef<'_> {
    type Target = PersonAccess;
    fn deref(&self) -> &PersonAccess {
        match self {
            PersonRef::Held(p) => p,
            PersonRef::Shared(p) => p,
        }
    }
}

/// A bounded cache of people read from the store, in two generations: a hit in the older one
/// moves the person to the newer; when the newer is full the older is dropped. At most
/// `capacity` people are held, and the recently used survive.
type Generation = HashMap<Uuid, Arc<PersonAccess>>;

pub(crate) struct Cache {
    capacity: usize,
    generations: Mutex<(Generation, Generation)>,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Cache {
            capacity: capacity.max(2),
            generations: Mutex::default(),
        }
    }

    pub(crate) fn get(&self, person: Uuid) -> Option<Arc<PersonAccess>> {
        let mut g = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = g.0.get(&person) {
            return Some(p.clone());
        }
        let p = g.1.remove(&person)?;
        Self::insert_into(&mut g, self.capacity, person, p.clone());
        Some(p)
    }

    pub(crate) fn put(&self, person: Uuid, access: Arc<PersonAccess>) {
        let mut g = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        g.1.remove(&person);
        Self::insert_into(&mut g, self.capacity, person, access);
    }

    pub(crate) fn forget(&self, person: Uuid) {
        let mut g = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        g.0.remove(&person);
        g.1.remove(&person);
    }

    pub(crate) fn len(&self) -> usize {
        let g = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        g.0.len() + g.1.len()
    }

    fn insert_into(
        g: &mut (Generation, Generation),
        capacity: usize,
        person: Uuid,
        access: Arc<PersonAccess>,
    ) {
        if g.0.len() >= capacity / 2 && !g.0.contains_key(&person) {
            g.1 = std::mem::take(&mut g.0);
        }
        g.0.insert(person, access);
    }
}

/// Where a [`crate::Governance`] keeps people.
#[derive(Default)]
pub(crate) struct People {
    /// Changed since the last save (without a store: everyone).
    pub(crate) unsaved: HashMap<Uuid, PersonAccess>,
    pub(crate) nhs_unsaved: HashMap<NhsNumber, Option<Uuid>>,
    /// Being saved: still read from here until the store has them.
    pub(crate) saving: Unsaved,
    pub(crate) store: Option<(Arc<dyn PeopleStore>, Cache)>,
}

impl Clone for People {
    /// A copy holds what is in memory and shares the store (with a cache of its own).
    fn clone(&self) -> Self {
        People {
            unsaved: self.unsaved.clone(),
            nhs_unsaved: self.nhs_unsaved.clone(),
            saving: self.saving.clone(),
            store: self
                .store
                .as_ref()
                .map(|(s, c)| (s.clone(), Cache::new(c.capacity))),
        }
    }
}

impl std::fmt::Debug for People {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("People")
            .field("unsaved", &self.unsaved.len())
            .field("saving", &self.saving.people.len())
            .field("stored", &self.store.is_some())
            .finish()
    }
}

/// Why a person could not be read from the store.
pub(crate) struct Unreadable(pub(crate) String);

impl People {
    /// The person, wherever they are held.
    pub(crate) fn get(&self, person: Uuid) -> Result<Option<PersonRef<'_>>, Unreadable> {
        if let Some(p) = self.unsaved.get(&person) {
            return Ok(Some(PersonRef::Held(p)));
        }
        if let Some(p) = self.saving.people.get(&person) {
            return Ok(Some(PersonRef::Held(p)));
        }
        let Some((store, cache)) = &self.store else {
            return Ok(None);
        };
        if let Some(p) = cache.get(person) {
            return Ok(Some(PersonRef::Shared(p)));
        }
        match store.load(person).map_err(Unreadable)? {
            Some(p) => {
                let p = Arc::new(p);
                cache.put(person, p.clone());
                Ok(Some(PersonRef::Shared(p)))
            }
            None => Ok(None),
        }
    }

    /// Take the person out to change them (they are put back with [`People::put`]).
    pub(crate) fn take(&mut self, person: Uuid) -> Result<PersonAccess, Unreadable> {
        if let Some(p) = self.unsaved.remove(&person) {
            return Ok(p);
        }
        Ok(self.get(person)?.map(|p| p.clone()).unwrap_or_default())
    }

    pub(crate) fn put(&mut self, person: Uuid, access: PersonAccess) {
        if let Some((_, cache)) = &self.store {
            cache.forget(person);
        }
        self.unsaved.insert(person, access);
    }

    pub(crate) fn by_nhs_number(&self, nhs: &NhsNumber) -> Result<Option<Uuid>, Unreadable> {
        if let Some(p) = self.nhs_unsaved.get(nhs) {
            return Ok(*p);
        }
        if let Some(p) = self.saving.nhs_numbers.get(nhs) {
            return Ok(*p);
        }
        match &self.store {
            Some((store, _)) => store.by_nhs_number(nhs).map_err(Unreadable),
            None => Ok(None),
        }
    }

    pub(crate) fn set_nhs_number(&mut self, nhs: NhsNumber, person: Option<Uuid>) {
        if person.is_none() && self.store.is_none() {
            self.nhs_unsaved.remove(&nhs);
        } else {
            self.nhs_unsaved.insert(nhs, person);
        }
    }

    /// People who may have a ground ending in `(after, until]`.
    pub(crate) fn ending_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<BTreeSet<Uuid>, Unreadable> {
        let mut people: BTreeSet<Uuid> = self.unsaved.keys().copied().collect();
        people.extend(self.saving.people.keys().copied());
        if let Some((store, _)) = &self.store {
            people.extend(store.ending_between(after, until).map_err(Unreadable)?);
        }
        Ok(people)
    }

    pub(crate) fn cached(&self) -> usize {
        self.store.as_ref().map_or(0, |(_, c)| c.len())
    }
}
