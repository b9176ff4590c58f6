//! The placements view in a poll (register contract §1b, §2): its rows turned into stored
//! deadlines whose reference is the `placement_ref`.
//!
//! Some of a placement's clocks depend on cases (the jourhem limit on the investigation close of
//! the case it names, the follow-up on the investigations opened in the child's cases: which of
//! the two a row reads is `rules::ContextNeeds`), so a poll reads every placement it touches with
//! the facts it reads, fresh: an incremental poll the rows changed since its watermark and, of
//! the rows of the cases it computed, those that read a case fact (looked up only for the cases
//! and children whose facts a placement may read, when the process knows: [`FactReaders`]); a
//! full pass every row,
//! withdrawing the deadlines of placements gone from the view. Each placement's print (see
//! [`placement_print`]) covers its row, the facts it reads and the settings, and is kept as the
//! cases' prints are (`state::prints`, `Shelf::Placements`): a placement whose print is the
//! stored one is not computed again and costs no statement; one whose row or facts changed is
//! computed from them and its stored cycles.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, TryStreamExt};
use xxhash_rust::xxh3::{xxh3_64_with_seed, Xxh3};

use super::{first_step_on, is_retained, store_whole, PollError, Prints, SyncReport};
use crate::config::Settings;
use crate::domain::{log_safe, CaseRef, StoredDeadline};
use crate::register::placements::FastMap;
use crate::register::{
    placement_cells, validate_placement, validate_placement_cells, CaseFacts, PlacementCells, PlacementRow,
    RawPlacement, Register, RegisterError, RejectReason, Rejection, RowChunk, ScannedFacts,
};
use crate::rules::{self, Kind, PlacementContext, RuleOptions};
use crate::state::{DeadlineFilter, DeadlineRecord, StateStore, Stored};

/// Placements stored per transaction.
const CHUNK_PLACEMENTS: usize = 1000;

/// The cases and children whose facts a placement's clocks may read (`rules::ContextNeeds`), as
/// one process read the placements view: a full pass adds every valid row's, each poll after it
/// the rows it reads (a placement's own change is read by the placements view's poll). Nothing
/// is taken out: a key of a placement that no longer reads it costs only a lookup. Held as
/// hashes (a collision, too, costs only a lookup); about 16 bytes a key.
#[derive(Debug, Default)]
pub struct FactReaders {
    keys: HashSet<u64, foldhash::fast::RandomState>,
}

/// The seeds that keep a case reference's hash apart from a child key's.
const CASE_SEED: u64 = 1;
const CHILD_SEED: u64 = 2;

impl FactReaders {
    /// Adds the case and the child whose facts `row`'s clocks read.
    fn add(&mut self, row: &PlacementRow) {
        let needs = row.dates.context_needs();
        if let Some(case_ref) = row.case_ref.as_ref().filter(|_| needs.case_close) {
            self.keys.insert(xxh3_64_with_seed(case_ref.as_str().as_bytes(), CASE_SEED));
        }
        if let Some(key) = row.child_key.as_ref().filter(|_| needs.child_investigations) {
            self.keys.insert(xxh3_64_with_seed(key.as_str().as_bytes(), CHILD_SEED));
        }
    }

    /// Whether a placement may read the investigation close of the case `case_ref`.
    pub(super) fn may_read_case(&self, case_ref: &str) -> bool {
        self.keys.contains(&xxh3_64_with_seed(case_ref.as_bytes(), CASE_SEED))
    }

    /// Whether a placement may read the investigations of the child `key`.
    pub(super) fn may_read_child(&self, key: &str) -> bool {
        self.keys.contains(&xxh3_64_with_seed(key.as_bytes(), CHILD_SEED))
    }
}

/// Where polling stood when a poll finished: the polls the state had finished
/// (`PollState::polls_finished`) and the watermark.
pub(super) type PollMark = (i64, Option<DateTime<Utc>>);

/// A process's [`FactReaders`] from one poll to its next, with where polling stood when its
/// poll finished: the next poll uses them only when polling still stands there, that is, when no
/// other process finished a poll between the two (its placements would be missing). The count
/// tells a replica of this version; the watermark one of an older version, which does not
/// count, during an upgrade one replica at a time. A placement stored by a poll that did not
/// finish is read again by the next, which reads the view from the same watermark, so an
/// incremental poll that failed or was cut short puts its readers back as of where it began
/// (with what it added: more keys cost only lookups). Empty at start, after a full pass that
/// failed, was cut short or read no placements, and after another process's poll: until this
/// process's next full pass, a case's change looks up every placement naming it or its child.
/// A handle: clones share the one slot.
#[derive(Debug, Default, Clone)]
pub struct FactReadersSlot(std::sync::Arc<std::sync::Mutex<Option<(PollMark, FactReaders)>>>);

impl FactReadersSlot {
    /// The readers to poll with when polling stands at `mark`: a full pass builds new ones, an
    /// incremental poll takes those of this process's last poll if no other poll finished since
    /// (else none). The slot is left empty until the poll finishes ([`TakenReaders::keep`]) or,
    /// for an incremental poll's, until they are dropped unkept (put back as of `mark`).
    pub(super) fn take(&self, mark: PollMark, full: bool) -> Option<TakenReaders> {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if full {
            return Some(TakenReaders { set: FactReaders::default(), back: None });
        }
        held.and_then(|(kept, set)| (kept == mark).then(|| TakenReaders { set, back: Some((self.clone(), mark)) }))
    }

    /// Keeps `readers` for the next poll, current as of `mark`.
    fn put(&self, mark: PollMark, readers: FactReaders) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((mark, readers));
    }
}

/// The [`FactReaders`] one poll holds, taken from its process's [`FactReadersSlot`]. An
/// incremental poll's go back to the slot, as of where the poll began, when they are dropped
/// unkept (the poll failed or was cut short): the poll after it reads the view from the same
/// watermark, and what this one added to them stays true.
#[derive(Debug)]
pub(crate) struct TakenReaders {
    pub(super) set: FactReaders,
    back: Option<(FactReadersSlot, PollMark)>,
}

impl TakenReaders {
    /// The poll finished: the readers are kept as of `finished` when it is the one poll after
    /// where this poll began (`began`), and a full pass's only when it `read_placements`;
    /// otherwise they are dropped (another process's poll may have stored placements they miss).
    pub(super) fn keep(mut self, slot: &FactReadersSlot, began: PollMark, finished: PollMark, read_placements: bool) {
        let full = self.back.take().is_none();
        if finished.0 == began.0 + 1 && (read_placements || !full) {
            slot.put(finished, std::mem::take(&mut self.set));
        }
    }
}

impl Drop for TakenReaders {
    fn drop(&mut self) {
        if let Some((slot, mark)) = self.back.take() {
            slot.put(mark, std::mem::take(&mut self.set));
        }
    }
}

/// The placements' prints a poll holds (of `Shelf::Placements`), and the seed mixed into each.
pub(crate) struct PlacementPrints {
    prints: Prints,
    seed: u64,
    /// A full pass's case facts, gathered from its scan of the cases view.
    scanned: Option<ScannedFacts>,
    /// An incremental poll's: when the poll before it began its read (its watermark). A row
    /// stamped since was most likely not read by it (see `store_chunk`).
    fresh_since: Option<DateTime<Utc>>,
    /// The cases and children whose facts the placements may read, when known (see
    /// [`FactReadersSlot`]); every valid row read is added.
    pub(super) readers: Option<TakenReaders>,
}

impl PlacementPrints {
    pub(super) fn new(
        prints: Prints,
        seed: u64,
        scanned: Option<ScannedFacts>,
        fresh_since: Option<DateTime<Utc>>,
        readers: Option<TakenReaders>,
    ) -> PlacementPrints {
        PlacementPrints { prints, seed, scanned, fresh_since, readers }
    }

    /// Records the case facts of a chunk of the cases view a full pass read.
    pub(super) fn record(&mut self, chunk: &RowChunk) {
        if let Some(scanned) = &mut self.scanned {
            scanned.record(chunk);
        }
    }
}

/// Chunks of the placements view a full pass validates while its cases come, at most: about
/// 0.4 MB each (a validated row holds its references, unit, caseworker and dates), on top of
/// what the read holds ahead ([`Register::every_placement_ahead`]).
const VALIDATED_AHEAD: usize = 24;

/// A read of the placements view, and the chunks of it validated ahead of their computation:
/// a full pass opens it as its scan of the cases view begins ([`Register::every_placement_ahead`])
/// and validates the chunks that have come while the cases come ([`PlacementsAhead::validate_ready`]);
/// only the case facts' part waits for the scan's end.
pub(crate) struct PlacementsAhead<'r> {
    chunks: BoxStream<'r, Result<RowChunk, RegisterError>>,
    validated: VecDeque<Validated>,
    /// The read gave its last chunk (or failed, with `failed`): it is not polled again.
    ended: bool,
    failed: Option<RegisterError>,
}

impl<'r> PlacementsAhead<'r> {
    pub(crate) fn new(chunks: BoxStream<'r, Result<RowChunk, RegisterError>>) -> PlacementsAhead<'r> {
        PlacementsAhead { chunks, validated: VecDeque::new(), ended: false, failed: None }
    }

    /// Validates the chunks the read has ready, up to [`VALIDATED_AHEAD`] held; never waits.
    /// Broken rows are counted in `rejected` now.
    pub(crate) fn validate_ready(
        &mut self,
        settings: &Settings,
        rejected: &mut std::collections::BTreeMap<RejectReason, u64>,
    ) {
        while !self.ended && self.validated.len() < VALIDATED_AHEAD {
            // A stream's next item is cancel-safe: one not ready stays in the stream.
            match self.chunks.try_next().now_or_never() {
                None => break,
                Some(Ok(Some(chunk))) => {
                    self.validated.push_back(validate_rows(settings, &placement_cells(&chunk), rejected));
                }
                Some(Ok(None)) => self.ended = true,
                Some(Err(e)) => {
                    self.failed = Some(e);
                    self.ended = true;
                }
            }
        }
    }

    /// The next chunk validated, in the read's order; a failure of the read once the chunks
    /// before it are taken.
    async fn next(
        &mut self,
        settings: &Settings,
        rejected: &mut std::collections::BTreeMap<RejectReason, u64>,
    ) -> Result<Option<Validated>, RegisterError> {
        if let Some(validated) = self.validated.pop_front() {
            return Ok(Some(validated));
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.ended {
            return Ok(None);
        }
        match self.chunks.try_next().await? {
            Some(chunk) => Ok(Some(validate_rows(settings, &placement_cells(&chunk), rejected))),
            None => {
                self.ended = true;
                Ok(None)
            }
        }
    }
}

/// Reads the placements a poll touches (every row when `since` is `None`; from `early` when
/// the caller opened that read already, see [`PlacementsAhead`]), computes the
/// changed ones and stores them; a full pass then withdraws the deadlines of placements gone
/// from the view and stores its prints.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn sync_placements<'r>(
    register: &'r Register,
    state: &StateStore,
    settings: &Settings,
    (today, now): (NaiveDate, DateTime<Utc>),
    since: Option<DateTime<Utc>>,
    early: Option<PlacementsAhead<'r>>,
    prints: &mut PlacementPrints,
    report: &mut SyncReport,
) -> Result<(), PollError> {
    let full = since.is_none();
    // The view is read in chunks, each computed and stored before the next: only the prints stay,
    // not the rows.
    let mut chunks = early.unwrap_or_else(|| PlacementsAhead::new(register.placement_chunks_since(since)));
    while let Some(validated) = chunks.next(settings, &mut report.placement_rejected).await? {
        store_chunk(register, state, settings, (today, now), validated, prints, report).await?;
    }
    drop(chunks);
    if full && report.placement_rows_read == 0 {
        // As for the cases view: a view that reads empty is far more likely being reloaded than
        // emptied of every placement; withdrawing all would cancel every notice.
        tracing::error!(
            view = register.placements_view().unwrap_or_default(),
            "full pass read no placements; not withdrawing any"
        );
    } else if let (true, Prints::Whole { book, stored_bits, lists_all }) = (full, &mut prints.prints) {
        // Gone from the view: withdrawn, as a case gone from the cases view is, in the
        // transaction that stores the prints without them. A broken row's placement is listed
        // (read), and keeps its last good deadlines. A book built by this pass lists only what
        // it read: the stored placements are walked, this once.
        let gone: Vec<String> = if *lists_all {
            book.unread()
        } else {
            state.placement_refs().await?.into_iter().filter(|r| book.get(r).is_none()).collect()
        };
        for placement_ref in &gone {
            book.remove(placement_ref);
        }
        report.withdrawn += store_whole(state, book, *stored_bits, &gone).await?;
    }
    Ok(())
}

/// Computes again and stores the placements of the cases `case_refs` and children `keys` an
/// incremental poll computed (a chunk of them at a time: bounded however many rows changed);
/// those that read no case fact, and those whose facts did not change (their print), are
/// skipped. A skipped row is not checked for `ref_collision` here: the placements view's poll
/// and the full pass check it.
pub(crate) async fn sync_touched(
    register: &Register,
    state: &StateStore,
    settings: &Settings,
    (today, now): (NaiveDate, DateTime<Utc>),
    (case_refs, keys): (&[String], &[String]),
    prints: &mut PlacementPrints,
    report: &mut SyncReport,
) -> Result<(), PollError> {
    let raws = register.placements_of(case_refs, keys).await?;
    if raws.is_empty() {
        return Ok(());
    }
    let cells: Vec<PlacementCells<'_>> = raws.iter().map(RawPlacement::cells).collect();
    let mut validated = validate_rows(settings, &cells, &mut report.placement_rejected);
    // A placement whose clocks read no fact of the cases view (`rules::ContextNeeds`: most of
    // them) cannot change with a case: it is skipped as unchanged, without its print or a
    // lookup. A change of its own row is the placements view's to read.
    let read = validated.rows.len();
    validated.rows.retain(|(row, _)| {
        let needs = row.dates.context_needs();
        needs.case_close || needs.child_investigations
    });
    report.placements_unchanged += (read - validated.rows.len()) as u64;
    if validated.rows.is_empty() && validated.broken.is_empty() {
        report.placement_rows_read += validated.read as u64;
        return Ok(());
    }
    store_chunk(register, state, settings, (today, now), validated, prints, report).await
}

/// Computes and stores the placements of one validated chunk whose print changed, with their
/// prints; a broken row's placement is listed as read.
async fn store_chunk(
    register: &Register,
    state: &StateStore,
    settings: &Settings,
    (today, now): (NaiveDate, DateTime<Utc>),
    validated: Validated,
    PlacementPrints { prints, seed, scanned, fresh_since, readers }: &mut PlacementPrints,
    report: &mut SyncReport,
) -> Result<(), PollError> {
    report.placement_rows_read += validated.read as u64;
    if let Some(readers) = readers {
        for (row, _) in &validated.rows {
            readers.set.add(row);
        }
    }
    // While the register gives the case facts, the state gives the prints of the rows read and
    // the stored deadlines of the rows new to this poll (stamped since the poll before began
    // its read): those are most likely changed, and their stored rows are then in hand when
    // they are computed. A row the poll before read already (the overlap) is most likely
    // unchanged: its stored rows are read only if its print says otherwise.
    let fresh: Vec<CaseRef> = match fresh_since {
        Some(since) => validated
            .rows
            .iter()
            .filter(|(row, _)| row.updated_at >= *since)
            .map(|(row, _)| row.placement_ref.clone())
            .collect(),
        None => Vec::new(),
    };
    // A fresh row's print is neither loaded nor compared: its stored rows are in hand, and they
    // decide what its computation writes (nothing, for a row stamped anew but unchanged), so
    // its print would save only that computation, for a bucket read on the poll's critical
    // path. Its print is logged with the chunk either way.
    let fresh_refs: HashSet<&str> = fresh.iter().map(CaseRef::as_str).collect();
    let ahead = async {
        if fresh.is_empty() {
            return Ok(Stored::default());
        }
        state.stored_of(&fresh).await
    };
    let (looked_up, loaded, ahead) = tokio::join!(
        look_up(register, &validated.rows, scanned.as_ref()),
        prints.load(state, validated.refs().filter(|r| !fresh_refs.contains(r))),
        ahead
    );
    let (facts, mut stored) = (looked_up?, ahead?);
    loaded?;
    drop(fresh_refs);
    let mut in_hand: HashSet<CaseRef> = fresh.into_iter().collect();
    let (rows, broken) = validated.with_facts(&facts, &mut report.placement_rejected);
    if let Some(book) = prints.book() {
        for placement_ref in &broken {
            book.list(placement_ref);
        }
    }
    let mut changed = Vec::new();
    for (row, values) in rows {
        // The print from the facts as they are held: a context is built only for a placement to
        // compute.
        let print = placement_print(*seed, values, facts.closed_on(&row), facts.opened_for(&row));
        if !in_hand.contains(&row.placement_ref) && prints.unchanged(row.placement_ref.as_str(), print) {
            report.placements_unchanged += 1;
        } else {
            let context = facts.context(&row);
            changed.push((row, context, print));
        }
    }
    if changed.is_empty() && prints.book().is_some_and(|b| b.is_dirty()) {
        // Only broken rows listed: their prints are written alone.
        if let Some(book) = prints.book_to_write(state).await? {
            state.store_prints(book, &[]).await?;
        }
    }
    for chunk in changed.chunks(CHUNK_PLACEMENTS) {
        let refs: Vec<CaseRef> = chunk.iter().map(|(row, _, _)| row.placement_ref.clone()).collect();
        // Every stored deadline of these placements, not only their cycles: with them in hand,
        // each record goes to the one statement it needs (a closed cycle and the next to the
        // upsert, a clock only the row's caseworker changed to the narrow update, one only its
        // `updated_at` changed to none).
        let missing: Vec<CaseRef> = refs.iter().filter(|r| !in_hand.contains(*r)).cloned().collect();
        if !missing.is_empty() {
            stored.absorb(state.stored_of(&missing).await?);
            in_hand.extend(missing);
        }
        let running = running_cycles(stored.cycles());
        let (records, refs) = compute(settings, (today, now), chunk, &running);
        report.deadlines_stored += records.len() as u64;
        // The prints go in the transaction of the deadlines they stand for.
        if let Some(book) = prints.book() {
            for (row, _, print) in chunk {
                book.set(row.placement_ref.as_str(), *print);
            }
        }
        report.notices_cancelled +=
            state.store_deadlines_known(&refs, &records, &stored, prints.book_to_write(state).await?).await?;
    }
    Ok(())
}

/// The print of a placements row: XXH3, seeded with [`super::print_seed`] (the law's code and
/// the settings), of the print of its values (`values`, see `values_print`) and of the facts of
/// the cases view its clocks read (its case's investigation close `closed_on`, its child's
/// investigations `opened`, the [`PlacementContext`] it is computed with: only those its
/// [`rules::ContextNeeds`] name, the others not looked up). Equal prints mean the
/// placement gives its stored deadlines: its stored cycles are those a computation from the same
/// row and facts left.
fn placement_print(seed: u64, values: u64, closed_on: Option<NaiveDate>, opened: &[NaiveDate]) -> u64 {
    let mut hasher = Xxh3::with_seed(seed);
    hasher.update(&values.to_le_bytes());
    let day = |d: &NaiveDate| d.num_days_from_ce().to_le_bytes();
    match closed_on {
        Some(closed) => {
            hasher.update(&[1]);
            hasher.update(&day(&closed));
        }
        None => hasher.update(&[0]),
    }
    // The register gives a child's investigations in no particular order: they are printed
    // sorted (copied only when they are not).
    let sorted;
    let opened = if opened.is_sorted() {
        opened
    } else {
        let mut copy = opened.to_vec();
        copy.sort_unstable();
        sorted = copy;
        &sorted
    };
    for d in opened {
        hasher.update(&day(d));
    }
    hasher.digest()
}

/// The print of a placements row's values as the register gave them, a NULL told apart from an
/// empty text.
fn values_print(cells: &PlacementCells<'_>) -> u64 {
    let mut hasher = Xxh3::new();
    for value in cells {
        match value {
            Some(text) => {
                hasher.update(&[1]);
                hasher.update(&(text.len() as u64).to_le_bytes());
                hasher.update(text.as_bytes());
            }
            None => hasher.update(&[0]),
        }
    }
    hasher.digest()
}

/// A chunk of placements rows validated, before their case facts are known: the valid rows
/// (the newest of a reference read twice) with the print of their values, the references of the
/// rows skipped as broken, and how many rows were read.
pub(crate) struct Validated {
    rows: Vec<(PlacementRow, u64)>,
    broken: HashSet<String>,
    read: usize,
}

/// Validates `cells` (rows skipped as broken are counted in `rejected`, logged by reference and
/// column only). Needs nothing of the cases view: a full pass does it while the cases come.
fn validate_rows(
    settings: &Settings,
    cells: &[PlacementCells<'_>],
    rejected: &mut std::collections::BTreeMap<RejectReason, u64>,
) -> Validated {
    let mut broken = HashSet::new();
    let mut rows: Vec<(PlacementRow, u64)> = Vec::with_capacity(cells.len());
    // Where each reference's row is in `rows`, by the reference as the row gives it (trimmed,
    // as `CaseRef` keeps it).
    let mut at: FastMap<&str, usize> = FastMap::default();
    for raw in cells {
        match validate_placement_cells(raw, settings.register.max_cell_bytes) {
            Ok(row) => {
                if row.caseworker_invalid {
                    tracing::warn!(placement_ref = %log_safe(row.placement_ref.as_str()), "placements row: column caseworker is not an e-mail address; notices go to the team lead");
                }
                let placement_ref = raw[0].as_deref().map(str::trim).unwrap_or_default();
                debug_assert_eq!(placement_ref, row.placement_ref.as_str());
                match at.get(placement_ref) {
                    Some(&i) if rows[i].0.updated_at > row.updated_at => {}
                    Some(&i) => rows[i] = (row, values_print(raw)),
                    None => {
                        at.insert(placement_ref, rows.len());
                        rows.push((row, values_print(raw)));
                    }
                }
            }
            Err(rejection) => reject(rejection, &mut broken, rejected),
        }
    }
    Validated { rows, broken, read: cells.len() }
}

/// Counts and logs a broken row, listing its reference (if it has one) in `broken`.
fn reject(
    rejection: Rejection,
    broken: &mut HashSet<String>,
    rejected: &mut std::collections::BTreeMap<RejectReason, u64>,
) {
    broken.extend(rejection.case_ref.clone());
    *rejected.entry(rejection.reason).or_default() += 1;
    tracing::warn!(reason = rejection.reason.as_str(), "placements row skipped: {rejection}");
}

/// The valid rows of `cells`, sorted by reference, with the print of their values; the facts
/// of their cases; and the references of the rows skipped as broken (see [`validate_rows`],
/// [`look_up`] and [`Validated::with_facts`]).
async fn read_rows<'s>(
    register: &Register,
    settings: &Settings,
    cells: &[PlacementCells<'_>],
    scanned: Option<&'s ScannedFacts>,
    rejected: &mut std::collections::BTreeMap<RejectReason, u64>,
) -> Result<(Vec<(PlacementRow, u64)>, Facts<'s>, HashSet<String>), PollError> {
    let validated = validate_rows(settings, cells, rejected);
    let facts = look_up(register, &validated.rows, scanned).await?;
    let (rows, broken) = validated.with_facts(&facts, rejected);
    Ok((rows, facts, broken))
}

/// The facts of the cases of `rows`: those a full pass gathered in `scanned`, the others looked
/// up in the register.
async fn look_up<'s>(
    register: &Register,
    rows: &[(PlacementRow, u64)],
    scanned: Option<&'s ScannedFacts>,
) -> Result<Facts<'s>, PollError> {
    // Only what the scan was not asked for is looked up (a full pass: normally nothing), and of
    // a row's case and child only what its clocks read (`ContextNeeds`: most placements read
    // neither); every placement reference is looked up, for `ref_collision`.
    let asked = |r: &str| scanned.is_some_and(|s| s.closed_of(r).is_some());
    let mut refs = Vec::new();
    let mut keys = Vec::new();
    for (row, _) in rows {
        let needs = row.dates.context_needs();
        let case_refs = std::iter::once(&row.placement_ref).chain(row.case_ref.as_ref().filter(|_| needs.case_close));
        refs.extend(case_refs.map(CaseRef::as_str).filter(|r| !asked(r)).map(str::to_string));
        if let Some(key) = row.child_key.as_ref().filter(|_| needs.child_investigations) {
            if scanned.is_none_or(|s| s.opened_of(key.as_str()).is_none()) {
                keys.push(key.as_str().to_string());
            }
        }
    }
    let looked_up = if scanned.is_none() || !refs.is_empty() || !keys.is_empty() {
        register.case_facts(&refs, &keys).await?
    } else {
        CaseFacts::default()
    };
    Ok(Facts { scanned, looked_up })
}

impl Validated {
    /// The references of every row read, valid or broken (a row that turns out to collide with
    /// a case is among them either way).
    fn refs(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|(row, _)| row.placement_ref.as_str()).chain(self.broken.iter().map(String::as_str))
    }

    /// The valid rows less those whose reference is a case's in `facts` (`ref_collision`,
    /// counted in `rejected`), sorted by reference; and the references of the broken rows.
    fn with_facts(
        self,
        facts: &Facts<'_>,
        rejected: &mut std::collections::BTreeMap<RejectReason, u64>,
    ) -> (Vec<(PlacementRow, u64)>, HashSet<String>) {
        let Validated { mut rows, mut broken, .. } = self;
        // Contract §1b: a placement reference that is also a case reference is a broken row.
        let mut collided = Vec::new();
        rows.retain(|(row, _)| {
            let collides = facts.case(row.placement_ref.as_str()).is_some();
            if collides {
                collided.push(row.placement_ref.to_string());
            }
            !collides
        });
        for collided in collided {
            let rejection =
                Rejection { reason: RejectReason::RefCollision, column: "placement_ref", case_ref: Some(collided) };
            reject(rejection, &mut broken, rejected);
        }
        rows.sort_by(|a, b| a.0.placement_ref.as_str().cmp(b.0.placement_ref.as_str()));
        (rows, broken)
    }
}

/// The facts of the cases view a chunk of placements reads: those a full pass gathered from its
/// scan, and those looked up.
struct Facts<'s> {
    scanned: Option<&'s ScannedFacts>,
    looked_up: CaseFacts,
}

impl Facts<'_> {
    /// Whether the cases view holds `case_ref`, with its investigation close.
    fn case(&self, case_ref: &str) -> Option<Option<NaiveDate>> {
        match self.scanned.and_then(|s| s.closed_of(case_ref)) {
            Some(scanned) => scanned,
            None => self.looked_up.cases.get(case_ref).copied(),
        }
    }

    /// The investigation close of the case `row` names, when its clocks read it (else `None`: it
    /// was not looked up).
    fn closed_on(&self, row: &PlacementRow) -> Option<NaiveDate> {
        if !row.dates.context_needs().case_close {
            return None;
        }
        row.case_ref.as_ref().and_then(|c| self.case(c.as_str())).flatten()
    }

    /// The investigations opened in the cases of `row`'s child, in no particular order, when its
    /// clocks read them (else none: they were not looked up).
    fn opened_for(&self, row: &PlacementRow) -> &[NaiveDate] {
        let Some(key) = row.child_key.as_ref().filter(|_| row.dates.context_needs().child_investigations) else {
            return &[];
        };
        match self.scanned.and_then(|s| s.opened_of(key.as_str())) {
            Some(opened) => opened,
            None => self.looked_up.opened_by_child.get(key.as_str()).map_or(&[], Vec::as_slice),
        }
    }

    /// What `row`'s clocks need from the cases view.
    fn context(&self, row: &PlacementRow) -> PlacementContext {
        PlacementContext {
            investigation_closed_on: self.closed_on(row),
            investigations_opened: self.opened_for(row).to_vec(),
        }
    }
}

/// One placement as a poll computes it (for `explain`): its valid row and what its clocks need
/// from the cases view, or why a poll skips it; `None` when the view does not hold it.
pub async fn placement_as_computed(
    register: &Register,
    settings: &Settings,
    placement_ref: &str,
) -> Result<Option<Result<(PlacementRow, PlacementContext), Rejection>>, PollError> {
    let Some(raw) = register.placement(placement_ref).await? else { return Ok(None) };
    let mut rejected = std::collections::BTreeMap::new();
    let (rows, facts, _) = read_rows(register, settings, &[raw.cells()], None, &mut rejected).await?;
    Ok(Some(match rows.into_iter().next() {
        Some((row, _)) => {
            let context = facts.context(&row);
            Ok((row, context))
        }
        None => Err(validate_placement(&raw, settings.register.max_cell_bytes).err().unwrap_or(Rejection {
            reason: RejectReason::RefCollision,
            column: "placement_ref",
            case_ref: Some(placement_ref.to_string()),
        })),
    }))
}

/// A valid placements row as a poll read it: the row, what its clocks need from the cases view,
/// and a print (of its values, or, once compared, the placement's whole print).
type ReadRow = (PlacementRow, PlacementContext, u64);

/// The stored cycle each recurring clock of a placement runs in (the latest not withdrawn; for
/// `lvu_care_application`, its second cycle), by reference and kind: its cycle start day and the
/// deadline as stored.
pub(crate) type RunningCycles = HashMap<(CaseRef, Kind), (NaiveDate, rules::Deadline)>;

/// The running cycles among stored cycles not withdrawn (reference, cycle start day, deadline:
/// [`crate::state::Stored::cycles`], [`StoredDeadline::cycle`]).
pub(crate) fn running_cycles(cycles: impl IntoIterator<Item = (CaseRef, NaiveDate, rules::Deadline)>) -> RunningCycles {
    let mut running = RunningCycles::new();
    for (case_ref, cycle, deadline) in cycles {
        match running.entry((case_ref, deadline.kind)) {
            Entry::Occupied(mut latest) if latest.get().0 < cycle => {
                latest.insert((cycle, deadline));
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(none) => {
                none.insert((cycle, deadline));
            }
        }
    }
    running
}

/// A placement's deadlines with their cycles (contract §2 "Recurring clocks"): a one-off clock
/// has none; a recurring clock's running cycle keeps the stored cycle it recomputes in place, or,
/// after a later review, closes it on the review day and starts the next; on first sight only
/// the running cycle exists. The second cycle of `lvu_care_application` is identified by its
/// first request day and recomputed in place after.
fn with_cycles(
    placement_ref: &CaseRef,
    p: &rules::PlacementDates,
    deadlines: Vec<rules::Deadline>,
    running: &RunningCycles,
) -> Vec<(rules::Deadline, Option<NaiveDate>)> {
    let mut out = Vec::with_capacity(deadlines.len() + 1);
    for deadline in deadlines {
        if !deadline.kind.is_recurring() {
            out.push((deadline, None));
            continue;
        }
        match running.get(&(placement_ref.clone(), deadline.kind)) {
            None => {
                let cycle = deadline.start_on;
                out.push((deadline, Some(cycle)));
            }
            Some((cycle, stored)) => match rules::cycle_change(stored, &deadline, p) {
                rules::CycleChange::InPlace => out.push((deadline, Some(*cycle))),
                rules::CycleChange::Next { closed_on } => {
                    let closed = rules::Deadline { closed_on: Some(closed_on), ..stored.clone() };
                    out.push((closed, Some(*cycle)));
                    let next = deadline.start_on;
                    out.push((deadline, Some(next)));
                }
            },
        }
    }
    if let Some(second) = rules::application_second_cycle(p) {
        let cycle = running
            .get(&(placement_ref.clone(), Kind::LvuCareApplication))
            .map_or(second.start_on, |(cycle, _)| *cycle);
        out.push((second, Some(cycle)));
    }
    out
}

/// The deadlines of `rows` to store on `today` (those retained at `now`), given the running
/// cycles stored for them, and the placements they stand for.
fn compute(
    settings: &Settings,
    (today, now): (NaiveDate, DateTime<Utc>),
    rows: &[ReadRow],
    running: &RunningCycles,
) -> (Vec<DeadlineRecord>, Vec<CaseRef>) {
    let options = RuleOptions { holiday_rule: settings.calendar.holiday_rule };
    let kept_from = settings.state.retained_from(now);
    let mut records = Vec::new();
    let mut refs = Vec::with_capacity(rows.len());
    for (row, context, _) in rows {
        let deadlines = rules::placement_deadlines_for(&row.dates, context, options);
        for (deadline, cycle_start) in with_cycles(&row.placement_ref, &row.dates, deadlines, running)
            .into_iter()
            .filter(|(d, _)| is_retained(d, kept_from))
        {
            let ladder = settings.ladders.for_kind(deadline.kind);
            records.push(DeadlineRecord {
                case_ref: row.placement_ref.clone(),
                unit: row.unit.clone(),
                caseworker: row.caseworker.clone(),
                child_sex: row.child_sex,
                next_step_on: first_step_on(ladder, &deadline),
                row_updated_at: row.updated_at,
                seen_on: today,
                child_key: None,
                case_of: row.case_ref.clone(),
                cycle_start,
                deadline,
            });
        }
        refs.push(row.placement_ref.clone());
    }
    (records, refs)
}

/// The placements' deadlines as a poll would store them now, computed as the view is read, a
/// chunk at a time, and written nowhere (the show commands): a broken row's placement gives its
/// stored deadlines; a placement gone from the view gives none (a full pass withdraws it), unless
/// the view gave no row at all (then the stored ones, as a full pass withdraws nothing). Each is
/// handed to `each` as its chunk is computed, in no particular order.
pub async fn each_current_placement_deadline<E: From<PollError>>(
    register: &Register,
    state: &StateStore,
    settings: &Settings,
    (today, now): (NaiveDate, DateTime<Utc>),
    mut each: impl FnMut(StoredDeadline) -> Result<(), E>,
) -> Result<(), E> {
    let mut rows_read = 0;
    let mut rejected = std::collections::BTreeMap::new();
    let mut chunks = register.placement_chunks_since(None);
    while let Some(chunk) = chunks.try_next().await.map_err(PollError::from)? {
        let cells = placement_cells(&chunk);
        rows_read += cells.len();
        let (rows, facts, kept) = read_rows(register, settings, &cells, None, &mut rejected).await?;
        let rows: Vec<ReadRow> = rows
            .into_iter()
            .map(|(row, values)| {
                let context = facts.context(&row);
                (row, context, values)
            })
            .collect();
        let row_refs: Vec<CaseRef> = rows.iter().map(|(row, _, _)| row.placement_ref.clone()).collect();
        let stored_cycles = state.cycles_of(&row_refs).await.map_err(PollError::from)?;
        let (records, refs) = compute(
            settings,
            (today, now),
            &rows,
            &running_cycles(stored_cycles.iter().filter_map(StoredDeadline::cycle)),
        );
        // The day each deadline was first stored; one not stored yet is first seen today.
        let first_seen = state.first_seen_of(&refs).await.map_err(PollError::from)?;
        let cycles_seen: HashMap<(CaseRef, Kind, Option<NaiveDate>), Option<NaiveDate>> = stored_cycles
            .iter()
            .map(|d| ((d.case_ref.clone(), d.deadline.kind, d.cycle_start), d.first_seen_on))
            .collect();
        let recomputed: HashSet<(CaseRef, Kind, Option<NaiveDate>)> =
            records.iter().map(|r| (r.case_ref.clone(), r.deadline.kind, r.cycle_start)).collect();
        for r in records {
            let first_seen_on = match r.cycle_start {
                Some(_) => cycles_seen.get(&(r.case_ref.clone(), r.deadline.kind, r.cycle_start)).copied(),
                None => first_seen.get(&(r.case_ref.clone(), r.deadline.kind)).copied(),
            };
            each(r.into_stored(first_seen_on.unwrap_or(Some(today))))?;
        }
        // The stored cycles the computation does not give again (the closed ones, contract §2).
        for d in stored_cycles {
            if !recomputed.contains(&(d.case_ref.clone(), d.deadline.kind, d.cycle_start)) {
                each(d)?;
            }
        }
        for placement_ref in kept {
            let filter =
                DeadlineFilter { case_ref: Some(placement_ref.trim().to_string()), ..DeadlineFilter::default() };
            for d in state.deadlines(&filter).await.map_err(PollError::from)? {
                each(d)?;
            }
        }
    }
    drop(chunks);
    if rows_read == 0 {
        let stored = DeadlineFilter { placements_only: true, ..DeadlineFilter::default() };
        for d in state.deadlines(&stored).await.map_err(PollError::from)? {
            each(d)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::{placement_chunk, placements::PLACEMENT_COLUMNS};

    fn raw(placement_ref: &str, decided_on: &str, updated_at: &str) -> RawPlacement {
        raw_with(&[
            ("placement_ref", placement_ref),
            ("unit", "BRO-BU"),
            ("basis", "lvu_6"),
            ("decided_on", decided_on),
            ("updated_at", updated_at),
        ])
    }

    fn raw_with(pairs: &[(&str, &str)]) -> RawPlacement {
        let mut values = vec![None; PLACEMENT_COLUMNS.len() - 1];
        for (column, value) in pairs {
            values[PLACEMENT_COLUMNS.iter().position(|c| c == column).unwrap()] = Some(value.to_string());
        }
        RawPlacement(values)
    }

    /// The readers hold the case of a jourhem (its limit reads the case's close) and the child of
    /// a follow-up (it reads the child's investigations), not the case of a custody, whose
    /// clocks read neither; a case reference is not taken for a child key of the same text.
    #[test]
    fn the_readers_hold_the_cases_and_children_whose_facts_a_placement_reads() {
        let settings = crate::digest::tests::settings("");
        let common = [("unit", "BRO-BU"), ("updated_at", "2026-11-21T10:00:00Z")];
        let rows = [
            vec![
                ("placement_ref", "P-1"),
                ("case_ref", "C-1"),
                ("child_key", "K-1"),
                ("basis", "lvu_6"),
                ("decided_on", "2026-11-21"),
            ],
            vec![
                ("placement_ref", "P-2"),
                ("case_ref", "C-2"),
                ("basis", "sol"),
                ("home", "emergency_home"),
                ("decided_on", "2026-11-02"),
                ("executed_on", "2026-11-02"),
            ],
            vec![
                ("placement_ref", "P-3"),
                ("case_ref", "C-3"),
                ("child_key", "K-3"),
                ("basis", "sol"),
                ("home", "hvb"),
                ("decided_on", "2026-06-01"),
                ("executed_on", "2026-06-01"),
                ("ended_on", "2026-08-31"),
                ("follow_up_decided_on", "2026-08-31"),
            ],
        ];
        let raws: Vec<RawPlacement> = rows.iter().map(|r| raw_with(&[r.as_slice(), &common].concat())).collect();
        let cells: Vec<PlacementCells<'_>> = raws.iter().map(RawPlacement::cells).collect();
        let validated = validate_rows(&settings, &cells, &mut std::collections::BTreeMap::new());
        assert_eq!(validated.rows.len(), 3);
        let mut readers = FactReaders::default();
        for (row, _) in &validated.rows {
            readers.add(row);
        }
        assert!(readers.may_read_case("C-2") && readers.may_read_child("K-3"));
        assert!(!readers.may_read_case("C-1") && !readers.may_read_child("K-1"));
        assert!(!readers.may_read_case("C-3") && !readers.may_read_child("C-2") && !readers.may_read_case("K-3"));
    }

    /// A poll takes the readers of the process's last poll only when no other poll finished
    /// since; a full pass starts new ones; taking leaves the slot empty. A finished poll keeps
    /// them as of where it finished when it was the one poll since it began (a full pass only
    /// when it read placements); an incremental poll that did not finish puts them back as of
    /// where it began, with what it added, and a full pass's are lost.
    #[test]
    fn the_readers_are_kept_only_while_no_other_poll_finished() {
        let slot = FactReadersSlot::default();
        let at = |h: u32| Some(chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 27, h, 0, 0).unwrap());
        let holds = |taken: Option<TakenReaders>, key: u64| taken.is_some_and(|r| r.set.keys.contains(&key));
        assert!(slot.take((0, None), false).is_none(), "none before a full pass");
        let first = slot.take((0, None), true).expect("a full pass starts anew");
        assert!(first.set.keys.is_empty());
        first.keep(&slot, (0, None), (1, at(8)), false);
        assert!(slot.take((1, at(8)), false).is_none(), "a full pass that read no placements keeps none");
        let one = || FactReaders { keys: [7].into_iter().collect() };
        slot.put((5, at(9)), one());
        assert!(holds(slot.take((5, at(9)), false), 7), "an unkept poll's readers go back");
        let mut taken = slot.take((5, at(9)), false).expect("put back as of where the poll began");
        taken.set.keys.insert(8);
        taken.keep(&slot, (5, at(9)), (6, at(10)), true);
        assert!(holds(slot.take((6, at(10)), false), 8), "kept as of where the poll finished, with what it added");
        assert!(holds(slot.take((6, at(10)), false), 8), "and back again after a poll cut short");
        let taken = slot.take((6, at(10)), false).expect("still there");
        taken.keep(&slot, (6, at(10)), (8, at(11)), true);
        assert!(slot.take((8, at(11)), false).is_none(), "another poll finished during this one");
        slot.put((5, at(9)), one());
        assert!(slot.take((6, at(10)), false).is_none(), "another poll finished");
        assert!(slot.take((5, at(9)), false).is_none(), "and they are gone");
        slot.put((5, at(9)), one());
        assert!(slot.take((5, at(10)), false).is_none(), "an older version's poll moved the watermark");
        slot.put((5, at(9)), one());
        assert!(slot.take((5, at(9)), true).is_some_and(|r| r.set.keys.is_empty()), "a full pass does not keep them");
        assert!(slot.take((5, at(9)), false).is_none(), "nor put them back, when it does not finish");
    }

    /// A full pass validates the placements chunks that have come while its cases come: they
    /// are given back in the read's order, a broken row counted once, the newest row of a
    /// reference read twice kept, and a failure of the read after the chunks before it; the
    /// values' print is the same whether a row is read from the COPY's chunk or as text.
    #[test]
    fn placements_validated_ahead_come_back_in_order_then_the_failure() {
        let settings = crate::digest::tests::settings("");
        let first = vec![
            raw("P-1", "2026-11-21", "2026-11-21T10:00:00Z"),
            raw("P-2", "not a day", "2026-11-21T10:00:00Z"),
            raw(" P-1 ", "2026-11-22", "2026-11-22T10:00:00Z"),
        ];
        let second = vec![raw("P-3", "2026-11-21", "2026-11-21T10:00:00Z")];
        let failure = RegisterError::Query { view: "placements".into(), source: sqlx::Error::RowNotFound };
        let chunks: Vec<Result<RowChunk, RegisterError>> =
            vec![Ok(placement_chunk(&first)), Ok(placement_chunk(&second)), Err(failure)];
        let mut ahead = PlacementsAhead::new(futures_util::StreamExt::boxed(futures_util::stream::iter(chunks)));
        let mut rejected = std::collections::BTreeMap::new();
        ahead.validate_ready(&settings, &mut rejected);
        assert_eq!(ahead.validated.len(), 2);
        assert!(ahead.ended && ahead.failed.is_some());
        assert_eq!(rejected.get(&RejectReason::BadDate), Some(&1));

        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let one = runtime.block_on(ahead.next(&settings, &mut rejected)).unwrap().unwrap();
        assert_eq!(one.read, 3);
        assert_eq!(one.broken, HashSet::from(["P-2".to_string()]));
        assert_eq!(one.rows.len(), 1);
        let (row, values) = &one.rows[0];
        assert_eq!((row.placement_ref.as_str(), row.dates.decided_on.to_string().as_str()), ("P-1", "2026-11-22"));
        assert_eq!(*values, values_print(&first[2].cells()));
        let two = runtime.block_on(ahead.next(&settings, &mut rejected)).unwrap().unwrap();
        assert_eq!(two.rows[0].0.placement_ref.as_str(), "P-3");
        assert!(runtime.block_on(ahead.next(&settings, &mut rejected)).is_err());
        assert!(runtime.block_on(ahead.next(&settings, &mut rejected)).unwrap().is_none());
        assert_eq!(rejected.get(&RejectReason::BadDate), Some(&1), "counted once");
    }
}
