//! Reading the register into the store: [`sync_register`] reads the register incrementally (or
//! whole, in the full pass), computes the deadlines and keeps the stored deadlines equal to the
//! law applied to the register, each with the day its first ladder step fires (`next_step_on`).
//!
//! Notices are driven by the date as much as by the register: a case that does not change still
//! reaches its reminder day. So the ladder is evaluated apart, by `jobs::ladder`, which visits
//! only the deadlines whose next step day (indexed) has come.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use futures_util::stream::BoxStream;
use futures_util::TryStreamExt;

use crate::config::Settings;
use crate::domain::{log_safe, CaseRef, ChildKey};
use crate::register::{self, CaseRow, EncodedRow, Register, RegisterError, RejectReason, RowChunk};
use crate::rules::{self, Deadline, Kind, Ladder, OtherInvestigation, RuleOptions};
use crate::state::{DeadlineRecord, PollState, PrintBook, Shelf, StateError, StateStore};

pub mod placements;

pub use placements::{FactReaders, FactReadersSlot};

/// Rows validated and stored per transaction.
const CHUNK_ROWS: usize = 1000;
/// Deadlines written by one pass after which the state's planner statistics are gathered again
/// (a first full pass, a bulk update; `StateStore::refresh_statistics`).
const REFRESH_STATISTICS_AFTER: u64 = 10_000;
/// Prints an incremental poll appends to the print log before it folds the log into the buckets
/// and writes the buckets directly instead (a bulk update): the log, and the map of it a poll
/// holds, stay bounded, and the next poll does not fold a million entries at once.
const BULK_SETS: usize = 4096;
/// Prints such a poll sets, per bucket of the book, between two writes of its changed buckets
/// (each write is in the transaction of a chunk's deadlines; the chunks between are stored
/// without their prints, which a crash only makes the next poll compute again): about every
/// 65 000 rows at a million cases, so that a bucket is rewritten every 4 of its 64 cases, not
/// every one. It then forgets the buckets it wrote.
const FLUSH_SETS_PER_BUCKET: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("ladder evaluation made no progress on {0} deadline(s); the state store may be inconsistent")]
    NoProgress(usize),
}

/// What one synchronisation read and did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub full: bool,
    pub rows_read: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
    pub deadlines_stored: u64,
    pub withdrawn: u64,
    pub caseworker_invalid: u64,
    pub notices_cancelled: u64,
    /// Cases gone from the register whose withdrawal this full pass held back: more than
    /// `register.max_withdraw_share` of the known cases at once.
    pub withdrawals_held: u64,
    /// Rows an incremental poll read again (the overlap window) whose `updated_at` equals the
    /// one their deadlines were stored from: nothing computed or written for them.
    pub unchanged: u64,
    /// The newest `updated_at` of the rows computed (not unchanged).
    pub newest_computed: Option<DateTime<Utc>>,
    /// Rows of the placements view read (contract §1b), and those skipped as broken.
    pub placement_rows_read: u64,
    pub placement_rejected: BTreeMap<RejectReason, u64>,
    /// Placements rows read whose print (their row, the case facts their clocks read and the
    /// settings) equals the stored one: nothing computed or written for them.
    pub placements_unchanged: u64,
    pub duration: Duration,
}

impl SyncReport {
    pub fn rows_rejected(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Whether today's full pass is due: none yet today, and the local time (when known) is at or
/// past `full_pass_at`. `local_time` is `None` when a caller fixed "today" and any time counts.
pub fn full_pass_due(last: Option<NaiveDate>, today: NaiveDate, local_time: Option<NaiveTime>, at: NaiveTime) -> bool {
    match last {
        None => true,
        // A pass recorded for another day (also a future one, from a preview with `--today`)
        // does not count for today.
        Some(day) if day == today => false,
        Some(_) => local_time.is_none_or(|t| t >= at),
    }
}

/// Reads the register (every row when `full`, else rows changed since the watermark minus the
/// overlap) and stores the deadlines computed for `today`. Re-reading a row is harmless: a row
/// whose print (a hash of its columns and of the settings the computation depends on, see
/// [`crate::state::prints`]) equals the stored one is not computed again and costs no write.
///
/// The watermark is the time the read began (`now`, the caller's clock), not the newest
/// `updated_at` read: after a bulk update that gave every row one instant, later polls re-read
/// only the overlap window, instead of every row until a newer one arrives. A row stamped
/// before the read began but committed after it is inside the overlap (`register.overlap`,
/// which also absorbs a difference between the register's clock and fristvakt's).
pub async fn sync_register(
    register: &Register,
    state: &StateStore,
    settings: &Settings,
    today: NaiveDate,
    now: DateTime<Utc>,
    full: bool,
    readers: &FactReadersSlot,
) -> Result<SyncReport, PollError> {
    let started = Instant::now();
    let poll_state = state.poll_state().await?;
    let full = full || poll_state.watermark.is_none();
    let placements_view = register.placements_view().is_some();
    let mark = (poll_state.polls_finished, poll_state.watermark);
    let fact_readers = placements_view.then(|| readers.take(mark, full)).flatten();
    let since = if full {
        None
    } else {
        let overlap = chrono::Duration::from_std(settings.register.overlap).unwrap_or(chrono::Duration::minutes(10));
        poll_state.watermark.map(|w| w - overlap)
    };
    let read_at = now;
    let mut report = SyncReport { full, ..SyncReport::default() };
    // The register read starts first: a full pass loads its prints while the first rows come.
    let mut chunks = register.chunks_since(since);
    let mut early = VecDeque::new();
    // The cases' prints, the placements' prints (held by the whole poll: an incremental one
    // computes placements with each chunk of cases and after them) and a full pass's placements'
    // keys (it gathers their case facts as the cases come, see `Register::wanted_facts`) are
    // loaded side by side while the first rows come: one after the other, at 1 000 000 cases
    // they took long enough to fill the early chunks and stall the read (BENCHMARKS.md).
    let loads = async {
        let cases = Prints::open(state, Shelf::Cases, full, poll_state.print_bits, |bits| {
            state.load_prints(Shelf::Cases, bits)
        });
        let placements = async {
            if !placements_view {
                return Ok(Prints::None);
            }
            Prints::open(state, Shelf::Placements, full, poll_state.placement_print_bits, |bits| {
                state.load_prints(Shelf::Placements, bits)
            })
            .await
        };
        let wanted = async {
            if !(placements_view && full) {
                return Ok(None);
            }
            register.wanted_facts().await.map(Some)
        };
        let (cases, placements, wanted) = tokio::join!(cases, placements, wanted);
        Ok::<_, PollError>((cases?, placements?, wanted?))
    };
    let (prints, placement_prints, scanned) = read_while(loads, &mut chunks, &mut early).await?;
    // The cases' first full pass on a state that holds no case's deadlines (a first start)
    // appends its prints to the print log as it goes (a log left by a pass cut short dropped
    // first); with deadlines stored (the prints were dropped) it holds the whole book, to find
    // the stored cases it did not read.
    let prints = match prints {
        Prints::Whole { stored_bits: None, .. } if !state.has_case_deadlines().await? => {
            state.forget_prints(Shelf::Cases).await?;
            Prints::Appending { book: PrintBook::appending(Shelf::Cases), listed_elsewhere: BTreeSet::new() }
        }
        prints => prints,
    };
    let seed = print_seed(settings);
    // Its placements are read from now on, while the cases come (`every_placement_ahead`).
    let mut early_placements =
        scanned.is_some().then(|| placements::PlacementsAhead::new(register.every_placement_ahead()));
    let mut pass = Pass {
        settings,
        today,
        now,
        seed,
        prints,
        placements: placements::PlacementPrints::new(
            placement_prints,
            seed,
            scanned,
            poll_state.watermark.filter(|_| !full),
            fact_readers,
        ),
        tracks_placements: !full && placements_view,
        logged: 0,
        unflushed: 0,
    };
    let mut chunk = RowChunk::default();
    loop {
        let next = match early.pop_front() {
            Some(next) => next,
            None => chunks.try_next().await,
        };
        let next = match next {
            Ok(next) => next,
            Err(e) => {
                drop(chunks);
                return Err(register.explain(e).await.into());
            }
        };
        let done = next.is_none();
        match next {
            Some(rows) if chunk.is_empty() => chunk = rows,
            Some(rows) => chunk.append(&rows),
            None => {}
        }
        if chunk.len() >= CHUNK_ROWS || (done && !chunk.is_empty()) {
            pass.placements.record(&chunk);
            pass.store_chunk(register, state, &chunk, &mut report).await?;
            chunk.clear();
            // The placements that have come are validated meanwhile: only their case facts
            // wait for the scan's end.
            if let Some(ahead) = &mut early_placements {
                ahead.validate_ready(settings, &mut report.placement_rejected);
            }
        }
        if done {
            break;
        }
    }
    drop(chunks);
    // A bulk update's poll writes the buckets it changed since its last write.
    if let Prints::Buckets(book) = &mut pass.prints {
        if !book.keeps_log() && book.dirty_buckets() > 0 {
            state.store_prints(book, &[]).await?;
        }
    }
    // The placements view (contract §1b): its changed rows (those of the cases computed above
    // went with each chunk).
    if placements_view {
        let at = (today, now);
        placements::sync_placements(
            register,
            state,
            settings,
            at,
            since,
            early_placements,
            &mut pass.placements,
            &mut report,
        )
        .await?;
    }
    // A full pass that read no row at all is far more likely a view being reloaded than a
    // register emptied of every case: withdrawing everything would cancel every notice.
    let full_pass_on = if full && report.rows_read == 0 {
        tracing::error!(view = register.view(), "full pass read no rows; not withdrawing any deadline");
        None
    } else {
        full.then_some(today)
    };
    if let (Prints::Appending { book, listed_elsewhere }, Some(_)) = (&pass.prints, full_pass_on) {
        report.withdrawn += state.store_appended_prints(Shelf::Cases, book.len(), listed_elsewhere).await?;
    }
    let mut held = false;
    if let (Prints::Whole { book, stored_bits, lists_all }, Some(_)) = (&mut pass.prints, full_pass_on) {
        // The cases the pass did not read left the register. Their deadlines are withdrawn in
        // the transaction that stores the prints without them (a crash between the two would
        // leave withdrawn cases whose unchanged rows the next pass skips).
        let vanished = if *lists_all {
            let vanished = book.unread();
            let vanished = if too_many_at_once(settings, &poll_state, now, vanished.len(), book.len()) {
                // A view caught half-loaded would withdraw most cases and cancel their notices:
                // nothing is withdrawn, and the pass is not recorded as done, so the next one
                // runs a poll interval later and withdraws them if it sees the same.
                tracing::error!(
                    gone = vanished.len(),
                    known = book.len(),
                    max_share = settings.register.max_withdraw_share,
                    "full pass: too many cases gone from the register at once; withdrawals held until the next full pass"
                );
                state.hold_withdrawals(Some(poll_state.withdrawals_held_at.unwrap_or(now))).await?;
                report.withdrawals_held = vanished.len() as u64;
                held = true;
                Vec::new()
            } else {
                if poll_state.withdrawals_held_at.is_some() {
                    state.hold_withdrawals(None).await?;
                }
                vanished
            };
            for case_ref in &vanished {
                book.remove(case_ref);
            }
            // The other cases of a child whose case left are computed again without it first:
            // a crash after this and before the withdrawal leaves the case listed, and the next
            // pass does both again.
            let keys = if register.features().chains { state.child_keys_of(&vanished).await? } else { Vec::new() };
            if !keys.is_empty() {
                let children =
                    Children::read(register, pass.settings.register.max_cell_bytes, &HashMap::new(), keys).await?;
                let (records, case_refs) =
                    compute(pass.settings, (pass.today, pass.now), children.unchanged.iter(), &children);
                report.deadlines_stored += records.len() as u64;
                report.notices_cancelled += state.store_deadlines(&case_refs, &records, None).await?;
            }
            vanished
        } else {
            // No list of the stored cases yet: every one is looked at, this once. The book holds
            // every case read; it is stored whole below, so a crash before that builds it again.
            report.withdrawn = state.withdraw_vanished_cases(|case_ref| book.get(case_ref).is_some()).await?;
            Vec::new()
        };
        report.withdrawn += store_whole(state, book, *stored_bits, &vanished).await?;
    }
    if report.deadlines_stored >= REFRESH_STATISTICS_AFTER {
        state.refresh_statistics().await?;
    }
    // The notices of the deadlines a poll closed or withdrew went in the same transactions
    // (`store_deadlines`). A full pass also cancels any left, of every case (those of the cases
    // that left the register, withdrawn above), before it counts as done: a full pass that
    // stopped short of it is made again.
    if full {
        report.notices_cancelled += state.cancel_notices_of_finished_deadlines().await?;
    }
    // A full pass that read nothing (a view being reloaded) leaves the watermark where it was.
    let watermark = (!(full && report.rows_read == 0)).then_some(read_at);
    // A pass that held its withdrawals is not done: the next runs a poll interval later.
    let finished = state.finish_poll(watermark, full_pass_on.filter(|_| !held)).await?;
    // The placements' readers are kept for the next poll when no other poll finished during
    // this one, and a full pass's only when it read placements (a view that read empty is most
    // likely being reloaded, and its rows would be missing).
    if let Some(fact_readers) = pass.placements.readers.take() {
        fact_readers.keep(readers, mark, finished, report.placement_rows_read > 0);
    }
    report.duration = started.elapsed();
    let rejected: Vec<String> = report.rejected.iter().map(|(r, n)| format!("{}={n}", r.as_str())).collect();
    tracing::info!(
        full = report.full,
        rows_read = report.rows_read,
        unchanged = report.unchanged,
        rows_rejected = report.rows_rejected(),
        rejected = %rejected.join(","),
        deadlines_stored = report.deadlines_stored,
        withdrawn = report.withdrawn,
        notices_cancelled = report.notices_cancelled,
        duration_ms = report.duration.as_millis() as u64,
        "register poll finished: read {} row(s)",
        report.rows_read
    );
    Ok(report)
}

/// Whether a full pass that finds `gone` of `known` cases gone from the register holds their
/// withdrawal: more than `register.max_withdraw_share` of them, unless a pass at least one poll
/// interval ago held them already (a second pass that sees the same withdraws them).
fn too_many_at_once(
    settings: &Settings,
    poll_state: &PollState,
    now: DateTime<Utc>,
    gone: usize,
    known: usize,
) -> bool {
    if gone == 0 || (gone as f64) <= settings.register.max_withdraw_share * known as f64 {
        return false;
    }
    let interval = chrono::Duration::from_std(settings.register.poll_interval).unwrap_or(chrono::Duration::minutes(5));
    poll_state.withdrawals_held_at.is_none_or(|held| now - held < interval)
}

/// Chunks of the register a full pass holds while its prints load (64 000 rows; their memory
/// in BENCHMARKS.md, "Figures behind code comments"), read while the prints of all of them come
/// from the state.
const EARLY_CHUNKS: usize = 64;

/// `load`'s output, the register's next chunks (up to [`EARLY_CHUNKS`], its end or its error)
/// read into `early` while it runs, so that the read is not held up by the load.
async fn read_while<T, E>(
    load: impl std::future::Future<Output = Result<T, E>>,
    chunks: &mut BoxStream<'_, Result<RowChunk, RegisterError>>,
    early: &mut VecDeque<Result<Option<RowChunk>, RegisterError>>,
) -> Result<T, E> {
    tokio::pin!(load);
    loop {
        let reading = early.len() < EARLY_CHUNKS && !early.back().is_some_and(|n| !matches!(n, Ok(Some(_))));
        tokio::select! {
            loaded = &mut load => return loaded,
            // A stream's next item is cancel-safe: one not taken stays in the stream.
            next = chunks.try_next(), if reading => early.push_back(next),
        }
    }
}

/// Stores a full pass's whole book, withdrawing the deadlines of `vanished` (its rows that left
/// the view, removed from it) in the same transaction: built, grown as rows came, or shrunk
/// after many left, it replaces the stored prints with its size; otherwise its changed buckets
/// are written. Returns how many deadlines were withdrawn.
async fn store_whole(
    state: &StateStore,
    book: &mut PrintBook,
    stored_bits: Option<u32>,
    vanished: &[String],
) -> Result<u64, StateError> {
    if book.settle() || stored_bits != Some(book.bits()) {
        state.replace_prints(book, vanished).await
    } else {
        state.store_prints(book, vanished).await
    }
}

/// Where the prints of a poll's rows come from (of either view: the book's [`Shelf`]).
enum Prints {
    /// A full pass: every stored print, or none on the first (which builds the book).
    Whole {
        book: PrintBook,
        /// The bits of the stored prints; `None` when none are stored (or no longer, after the
        /// book grew): then the book is stored whole at the end of the pass.
        stored_bits: Option<u32>,
        /// The book was loaded whole from a complete store: it lists every stored case.
        lists_all: bool,
    },
    /// An incremental poll: the buckets of each chunk's rows are loaded, and the changed ones
    /// written with the chunk's deadlines.
    Buckets(PrintBook),
    /// An incremental poll before the first full pass built the prints: every row is computed.
    None,
    /// The first full pass on a state that holds no case's deadlines: each chunk's prints are
    /// appended to the print log with its deadlines, and made into buckets at the end
    /// ([`StateStore::store_appended_prints`]).
    Appending {
        book: PrintBook,
        /// The cases stored without their rows read (another case of their child changed).
        listed_elsewhere: BTreeSet<String>,
    },
}

impl Prints {
    /// The prints of `shelf` stored with `bits` (`None`: none built yet) for a full pass (`load`
    /// reads them whole) or an incremental poll.
    async fn open<F>(
        state: &StateStore,
        shelf: Shelf,
        full: bool,
        bits: Option<u32>,
        load: impl FnOnce(u32) -> F,
    ) -> Result<Prints, StateError>
    where
        F: std::future::Future<Output = Result<PrintBook, StateError>>,
    {
        Ok(match (full, bits) {
            // A full pass holds every print: a few rows a thousand rows of the view.
            (true, Some(bits)) => Prints::Whole { book: load(bits).await?, stored_bits: Some(bits), lists_all: true },
            // The first full pass builds them.
            (true, None) => Prints::Whole { book: PrintBook::whole(shelf), stored_bits: None, lists_all: false },
            // An incremental poll loads the buckets of the rows it reads.
            (false, Some(bits)) => Prints::Buckets(state.open_print_log(shelf, bits).await?),
            (false, None) => Prints::None,
        })
    }

    /// The book, if any.
    fn book(&mut self) -> Option<&mut PrintBook> {
        match self {
            Prints::Whole { book, .. } | Prints::Buckets(book) | Prints::Appending { book, .. } => Some(book),
            Prints::None => None,
        }
    }

    /// Loads the buckets of `refs` an incremental poll has not loaded yet.
    async fn load<'r>(&mut self, state: &StateStore, refs: impl Iterator<Item = &'r str>) -> Result<(), StateError> {
        if let Prints::Buckets(book) = self {
            let missing = book.missing(refs);
            state.load_buckets(book, &missing).await?;
        }
        Ok(())
    }

    /// Whether the stored print of `key` is `print` (the row is then skipped); it counts as read
    /// either way.
    fn unchanged(&mut self, key: &str, print: u64) -> bool {
        self.book().is_some_and(|book| book.read_unchanged(key, print))
    }

    /// The book to write with the deadlines computed now, if any: not a full pass's that is to
    /// be stored whole at its end, built now or grown out of the stored size (then the stored
    /// prints are dropped at once, so that a pass cut short leaves none that could be taken for a
    /// list of every stored row).
    async fn book_to_write(&mut self, state: &StateStore) -> Result<Option<&mut PrintBook>, StateError> {
        match self {
            Prints::Whole { book, stored_bits, .. } => {
                if stored_bits.is_some_and(|bits| bits != book.bits()) {
                    state.forget_prints(book.shelf()).await?;
                    *stored_bits = None;
                }
                Ok(stored_bits.is_some().then_some(book))
            }
            Prints::Buckets(book) | Prints::Appending { book, .. } => Ok(Some(book)),
            Prints::None => Ok(None),
        }
    }
}

/// What one register read carries from chunk to chunk.
struct Pass<'a> {
    settings: &'a Settings,
    today: NaiveDate,
    now: DateTime<Utc>,
    /// Mixed into every row's print: the settings and code the computation depends on.
    seed: u64,
    prints: Prints,
    /// The placements' prints (`Prints::None` without a placements view).
    placements: placements::PlacementPrints,
    /// An incremental poll with a placements view: the placements of each chunk's computed cases
    /// are computed again with them (a full pass reads every placement anyway).
    tracks_placements: bool,
    /// Prints an incremental poll appended to the print log (see [`BULK_SETS`]).
    logged: usize,
    /// Prints set since the changed buckets were last written, once a bulk update writes them
    /// directly (see [`FLUSH_SETS_PER_BUCKET`]).
    unflushed: usize,
}

impl Pass<'_> {
    async fn store_chunk(
        &mut self,
        register: &Register,
        state: &StateStore,
        chunk: &RowChunk,
        report: &mut SyncReport,
    ) -> Result<(), PollError> {
        let settings = self.settings;
        report.rows_read += chunk.len() as u64;
        let direct = matches!(&self.prints, Prints::Buckets(b) if !b.keeps_log());
        let case_refs: Vec<_> = chunk.rows().filter_map(|r| r.case_ref()).collect();
        self.prints.load(state, case_refs.iter().map(|c| c.trim())).await?;
        // The register promises unique case references; if a view breaks that, the newest row
        // wins rather than the statement failing.
        let mut cases: HashMap<String, (CaseRow, u64)> = HashMap::with_capacity(chunk.len());
        let mut kept_refs = Vec::new();
        for row in chunk.rows() {
            let print = row_print(self.seed, row);
            // Looked up as the case reference is stored (trimmed, as `CaseRef` keeps it).
            if row.case_ref().is_some_and(|case_ref| self.prints.unchanged(case_ref.trim(), print)) {
                // Read before and unchanged: its deadlines are stored as this row gives them.
                report.unchanged += 1;
                continue;
            }
            match register::validate_encoded(row, settings.register.max_cell_bytes) {
                Ok(case) => {
                    if case.caseworker_invalid {
                        report.caseworker_invalid += 1;
                        tracing::warn!(case_ref = %log_safe(case.case_ref.as_str()), "register row: column caseworker is not an e-mail address; notices go to the team lead");
                    }
                    match cases.get(case.case_ref.as_str()) {
                        Some((existing, _)) if existing.updated_at > case.updated_at => {}
                        _ => {
                            cases.insert(case.case_ref.to_string(), (case, print));
                        }
                    }
                }
                Err(rejection) => {
                    if let Some(case_ref) = &rejection.case_ref {
                        kept_refs.push(case_ref.clone());
                    }
                    *report.rejected.entry(rejection.reason).or_default() += 1;
                    tracing::warn!(reason = rejection.reason.as_str(), "register row skipped: {rejection}");
                }
            }
        }
        if let Some(book) = self.prints.book() {
            // A skipped broken row's case counts as read: its stored deadlines stay (contract
            // §1). It is listed (so that its leaving the register is noticed), with a print no
            // row has; one listed already keeps the print of its last good row.
            for case_ref in &kept_refs {
                book.list(case_ref);
            }
        }
        // The rules across one child's cases (register contract §1–§2): a changed case can change
        // the clocks of the child's other cases, so they are computed again, with it. The
        // placements that depend on these cases are computed again meanwhile (they read the
        // register and the state, the children only the register), and stored before the
        // cases are stored with their prints: a crash between the two reads the cases, and so
        // these, again.
        let chains = register.features().chains;
        let stored_keys = if chains && !cases.is_empty() {
            let refs: Vec<&str> = cases.keys().map(String::as_str).collect();
            state.child_keys_of(&refs).await?
        } else {
            Vec::new()
        };
        // An incremental poll's placements to look up: of the changed cases and their children,
        // those whose facts a placement may read (all of them when that is not known,
        // `FactReadersSlot`). The children include those the cases belonged to (their stored
        // keys): a case whose key changed took its investigation from that child.
        let (touched_refs, touched_keys) = if self.tracks_placements {
            let readers = self.placements.readers.as_ref().map(|r| &r.set);
            let refs: Vec<String> =
                cases.keys().filter(|r| readers.is_none_or(|f| f.may_read_case(r))).cloned().collect();
            let mut keys: Vec<String> = cases
                .values()
                .filter_map(|(case, _)| case.child_key.as_ref())
                .chain(stored_keys.iter())
                .map(ChildKey::as_str)
                .filter(|k| readers.is_none_or(|f| f.may_read_child(k)))
                .map(str::to_string)
                .collect();
            keys.sort_unstable();
            keys.dedup();
            (refs, keys)
        } else {
            (Vec::new(), Vec::new())
        };
        let children = async {
            if chains {
                Children::read(register, settings.register.max_cell_bytes, &cases, stored_keys).await
            } else {
                Ok(Children::default())
            }
        };
        let touched = async {
            if touched_refs.is_empty() && touched_keys.is_empty() {
                return Ok(());
            }
            placements::sync_touched(
                register,
                state,
                settings,
                (self.today, self.now),
                (touched_refs.as_slice(), touched_keys.as_slice()),
                &mut self.placements,
                report,
            )
            .await
        };
        let (children, touched) = tokio::join!(children, touched);
        let children = children?;
        touched?;
        let sets = cases.len() + kept_refs.len();
        for (case, print) in cases.values() {
            report.newest_computed = report.newest_computed.max(Some(case.updated_at));
            if let Some(book) = self.prints.book() {
                book.set(case.case_ref.as_str(), *print);
            }
        }
        let (records, case_refs) = compute(
            settings,
            (self.today, self.now),
            cases.values().map(|(case, _)| case).chain(children.unchanged.iter()),
            &children,
        );
        report.deadlines_stored += records.len() as u64;
        // A bulk update's poll (its book keeps no log) writes its changed buckets every
        // [`FLUSH_SETS_PER_BUCKET`] prints a bucket, with the chunk's deadlines; the chunks
        // between go without.
        let flush = direct && {
            self.unflushed += sets;
            self.unflushed >= BULK_SETS.max(FLUSH_SETS_PER_BUCKET << self.prints.book().map_or(0, |b| b.bits()))
        };
        let writes_book = !direct || flush;
        if case_refs.is_empty() && !(writes_book && self.prints.book().is_some_and(|b| b.is_dirty())) {
            return Ok(());
        }
        // The changed prints are written with the deadlines they stand for (see
        // `Prints::book_to_write`).
        let book = if writes_book { self.prints.book_to_write(state).await? } else { None };
        report.notices_cancelled += state.store_deadlines(&case_refs, &records, book).await?;
        if let Prints::Appending { listed_elsewhere, .. } = &mut self.prints {
            listed_elsewhere.extend(children.unchanged.iter().map(|c| c.case_ref.as_str().to_string()));
        }
        if let Prints::Buckets(book) = &mut self.prints {
            if flush {
                book.unload_clean();
                self.unflushed = 0;
            } else if book.keeps_log() {
                self.logged += sets;
                if self.logged > BULK_SETS {
                    // A bulk update: the log (this poll's prints in it) goes into the buckets,
                    // and from here the buckets are written directly.
                    let bits = book.bits();
                    state.fold_print_log(Shelf::Cases, bits).await?;
                    *book = PrintBook::new(bits);
                }
            }
        }
        Ok(())
    }
}

/// The deadlines of `cases` to store on `today` (those retained at `now`), and the cases they
/// stand for.
pub(crate) fn compute<'c>(
    settings: &Settings,
    (today, now): (NaiveDate, DateTime<Utc>),
    cases: impl Iterator<Item = &'c CaseRow>,
    children: &Children,
) -> (Vec<DeadlineRecord>, Vec<CaseRef>) {
    {
        let options = RuleOptions { holiday_rule: settings.calendar.holiday_rule };
        let kept_from = settings.state.retained_from(now);
        let mut records = Vec::new();
        let mut case_refs = Vec::new();
        for case in cases {
            let others = children.others_of(case);
            for deadline in
                rules::deadlines_for(&case.dates, &others, options).into_iter().filter(|d| is_retained(d, kept_from))
            {
                let ladder = settings.ladders.for_kind(deadline.kind);
                records.push(DeadlineRecord {
                    case_ref: case.case_ref.clone(),
                    unit: case.unit.clone(),
                    caseworker: case.caseworker.clone(),
                    child_sex: case.child_sex,
                    next_step_on: first_step_on(ladder, &deadline),
                    row_updated_at: case.updated_at,
                    seen_on: today,
                    child_key: chain_key(case, deadline.kind),
                    case_of: None,
                    cycle_start: None,
                    deadline,
                });
            }
            case_refs.push(case.case_ref.clone());
        }
        (records, case_refs)
    }
}

/// The cases of the children a poll touched, read again from the register: a child is touched
/// when one of its cases changed (by its key now, and by the key stored with it before, which a
/// corrected key leaves behind) or left the register.
#[derive(Default)]
pub(crate) struct Children {
    /// The touched children's cases that did not change themselves, to be computed again.
    unchanged: Vec<CaseRow>,
    /// Every investigation of each touched child, with its case.
    investigations: HashMap<ChildKey, Vec<(CaseRef, OtherInvestigation)>>,
}

impl Children {
    /// Reads the cases of the children of `changed` and of `stored_keys`; `changed` (by case
    /// reference, with its print) wins over the same case read again. A broken row among them
    /// keeps its stored deadlines, as in any poll.
    pub(crate) async fn read(
        register: &Register,
        max_cell_bytes: usize,
        changed: &HashMap<String, (CaseRow, u64)>,
        stored_keys: Vec<ChildKey>,
    ) -> Result<Children, PollError> {
        let mut keys: HashSet<ChildKey> = stored_keys.into_iter().collect();
        keys.extend(changed.values().filter_map(|(case, _)| case.child_key.clone()));
        let mut children = Children::default();
        if keys.is_empty() {
            return Ok(children);
        }
        let mut seen: HashSet<CaseRef> = HashSet::new();
        let keys: Vec<ChildKey> = keys.into_iter().collect();
        let mut chunks = register.chunks_of_children(&keys);
        while let Some(chunk) = chunks.try_next().await? {
            for row in chunk.rows() {
                let Ok(case) = register::validate_encoded(row, max_cell_bytes) else { continue };
                if changed.contains_key(case.case_ref.as_str()) || !seen.insert(case.case_ref.clone()) {
                    continue;
                }
                children.unchanged.push(case);
            }
        }
        let every = changed.values().map(|(case, _)| case).chain(children.unchanged.iter());
        children.investigations = investigations_by_child(every);
        Ok(children)
    }

    /// The investigations of `case`'s child in its other cases.
    fn others_of(&self, case: &CaseRow) -> Vec<OtherInvestigation> {
        others_of(case, &self.investigations)
    }
}

/// Every investigation of each child among `cases`, with its case.
pub fn investigations_by_child<'c>(
    cases: impl Iterator<Item = &'c CaseRow>,
) -> HashMap<ChildKey, Vec<(CaseRef, OtherInvestigation)>> {
    let mut by_child: HashMap<ChildKey, Vec<(CaseRef, OtherInvestigation)>> = HashMap::new();
    for case in cases {
        if let (Some(key), Some(opened_on)) = (&case.child_key, case.dates.investigation_opened_on) {
            let investigation = OtherInvestigation { opened_on, closed_on: case.dates.investigation_closed_on };
            by_child.entry(key.clone()).or_default().push((case.case_ref.clone(), investigation));
        }
    }
    by_child
}

/// The investigations of `case`'s child in the child's other cases.
pub fn others_of(
    case: &CaseRow,
    by_child: &HashMap<ChildKey, Vec<(CaseRef, OtherInvestigation)>>,
) -> Vec<OtherInvestigation> {
    let Some(key) = &case.child_key else { return Vec::new() };
    by_child
        .get(key)
        .map(|all| all.iter().filter(|(c, _)| *c != case.case_ref).map(|(_, i)| *i).collect())
        .unwrap_or_default()
}

/// The print of a register row: XXH3 of every column read as the engine gave it (the bytes of
/// [`register::EncodedRow`], where a NULL is told apart from an empty text), seeded with
/// [`print_seed`]. Equal prints mean the row gives the stored deadlines.
fn row_print(seed: u64, row: EncodedRow<'_>) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(row.bytes(), seed)
}

/// What besides the row shapes the stored deadlines: the law's code ([`rules::REVISION`] and the
/// release), the holiday rule, the ladders (`next_step_on`) and the retention (which deadlines
/// are kept). A change of any of them changes every print, so the next full pass recomputes
/// every case.
fn print_seed(settings: &Settings) -> u64 {
    let shape = format!(
        "{}|{}|{}|{:?}|{}",
        rules::REVISION,
        env!("CARGO_PKG_VERSION"),
        settings.calendar.holiday_rule,
        settings.ladders,
        settings.state.retention.as_secs()
    );
    xxhash_rust::xxh3::xxh3_64(shape.as_bytes())
}

/// The child's key is kept on the investigation deadline only: chains link investigations, and
/// nothing else needs it.
fn chain_key(case: &CaseRow, kind: Kind) -> Option<crate::domain::ChildKey> {
    (kind == Kind::Investigation).then(|| case.child_key.clone()).flatten()
}

pub(crate) fn is_retained(deadline: &Deadline, kept_from: NaiveDate) -> bool {
    deadline.closed_on.is_none_or(|closed| closed >= kept_from)
}

/// The first day any step of an open deadline fires; the evaluator then decides with the steps
/// already recorded. `None` for a closed deadline.
pub(crate) fn first_step_on(ladder: &Ladder, deadline: &Deadline) -> Option<NaiveDate> {
    if deadline.is_closed() {
        return None;
    }
    ladder.steps().iter().map(|s| s.fires_on(deadline)).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_pass_once_a_day_after_its_time() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let t = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        let at = t("02:30");
        assert!(full_pass_due(None, d("2026-11-25"), Some(t("01:00")), at));
        assert!(!full_pass_due(Some(d("2026-11-24")), d("2026-11-25"), Some(t("01:00")), at));
        assert!(full_pass_due(Some(d("2026-11-24")), d("2026-11-25"), Some(t("02:30")), at));
        assert!(!full_pass_due(Some(d("2026-11-25")), d("2026-11-25"), Some(t("09:00")), at));
        assert!(full_pass_due(Some(d("2026-11-24")), d("2026-11-25"), None, at));
        // A pass recorded for a future day by a preview does not suppress today's.
        assert!(full_pass_due(Some(d("2027-01-01")), d("2026-11-25"), Some(t("03:00")), at));
    }
}
