//! The placements view in a poll (register contract §1b, §2): its rows turned into stored
//! deadlines whose reference is the `placement_ref`.
//!
//! The view is small beside the cases view, and a placement's clocks depend on cases (the
//! investigation close of the case it names, the investigations opened in the child's cases), so
//! a poll computes every placement it touches from the row and those facts, read fresh: an
//! incremental poll the rows changed since its watermark and the rows of the cases it computed;
//! a full pass every row, withdrawing the deadlines of placements gone from the view. The store's
//! upsert writes only what differs, so a placement computed again unchanged costs a lookup.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::TryStreamExt;

use super::{first_step_on, is_retained, retained_from, PollError, SyncReport, Touched};
use crate::config::Settings;
use crate::domain::{log_safe, CaseRef, StoredDeadline};
use crate::register::placements::collisions;
use crate::register::{validate_placement, CaseFacts, PlacementRow, RawPlacement, Register, RejectReason, Rejection};
use crate::rules::{self, PlacementContext, RuleOptions};
use crate::state::{DeadlineFilter, DeadlineRecord, StateStore};

/// Placements stored per transaction.
const CHUNK_PLACEMENTS: usize = 1000;

/// Reads the placements a poll touches (every row when `since` is `None`), computes their
/// deadlines and stores them; a full pass then withdraws the deadlines of placements gone from the
/// view.
pub(crate) async fn sync_placements(
    register: &Register,
    state: &StateStore,
    settings: &Settings,
    (today, now): (NaiveDate, DateTime<Utc>),
    since: Option<DateTime<Utc>>,
    touched: Touched,
    report: &mut SyncReport,
) -> Result<(), PollError> {
    let full = since.is_none();
    // The view is read in chunks, each computed and stored before the next: only the references
    // read stay (to find the placements gone), not the rows.
    let (mut read, mut kept) = (HashSet::new(), HashSet::new());
    let mut chunks = register.placements_since(since);
    while let Some(raws) = chunks.try_next().await? {
        store_chunk(register, state, settings, (today, now), raws, (&mut read, &mut kept), report).await?;
    }
    drop(chunks);
    let any_touched = !(touched.case_refs.is_empty() && touched.child_keys.is_empty());
    if !full && any_touched {
        let refs: Vec<String> = touched.case_refs.into_iter().collect();
        let keys: Vec<String> = touched.child_keys.into_iter().collect();
        let raws = register.placements_of(&refs, &keys).await?;
        store_chunk(register, state, settings, (today, now), raws, (&mut read, &mut kept), report).await?;
    }
    if full && report.placement_rows_read == 0 {
        // As for the cases view: a view that reads empty is far more likely being reloaded than
        // emptied of every placement; withdrawing all would cancel every notice.
        tracing::error!(
            view = register.placements_view().unwrap_or_default(),
            "full pass read no placements; not withdrawing any"
        );
    } else if full {
        // Gone from the view: withdrawn, as a case gone from the cases view is. A broken row's
        // placement keeps its last good deadlines.
        let stored = state.placement_refs().await?;
        let gone: Vec<String> = stored.into_iter().filter(|r| !read.contains(r) && !kept.contains(r)).collect();
        if !gone.is_empty() {
            report.withdrawn += state.withdraw_cases(&gone).await?;
        }
    }
    Ok(())
}

/// Validates, computes and stores one chunk of placements rows; the references of its valid
/// rows go into `read`, those of its broken rows into `kept`.
async fn store_chunk(
    register: &Register,
    state: &StateStore,
    settings: &Settings,
    (today, now): (NaiveDate, DateTime<Utc>),
    raws: Vec<RawPlacement>,
    (read, kept): (&mut HashSet<String>, &mut HashSet<String>),
    report: &mut SyncReport,
) -> Result<(), PollError> {
    report.placement_rows_read += raws.len() as u64;
    let (rows, broken) = read_rows(register, settings, raws, &mut report.placement_rejected).await?;
    kept.extend(broken);
    read.extend(rows.iter().map(|(row, _)| row.placement_ref.to_string()));
    for chunk in rows.chunks(CHUNK_PLACEMENTS) {
        let (records, refs) = compute(settings, (today, now), chunk);
        report.deadlines_stored += records.len() as u64;
        report.notices_cancelled += state.store_deadlines(&refs, &records, None).await?;
    }
    Ok(())
}

/// The valid rows of `raws` (the newest of a reference read twice) with the facts of their
/// cases, and the references of the rows skipped as broken (counted in `rejected`, logged by
/// reference and column only).
async fn read_rows(
    register: &Register,
    settings: &Settings,
    raws: Vec<RawPlacement>,
    rejected: &mut std::collections::BTreeMap<RejectReason, u64>,
) -> Result<(Vec<(PlacementRow, PlacementContext)>, HashSet<String>), PollError> {
    let mut kept = HashSet::new();
    let mut reject = |rejection: Rejection, kept: &mut HashSet<String>| {
        kept.extend(rejection.case_ref.clone());
        *rejected.entry(rejection.reason).or_default() += 1;
        tracing::warn!(reason = rejection.reason.as_str(), "placements row skipped: {rejection}");
    };
    let mut rows: HashMap<String, PlacementRow> = HashMap::new();
    for raw in &raws {
        match validate_placement(raw, settings.register.max_cell_bytes) {
            Ok(row) => {
                if row.caseworker_invalid {
                    tracing::warn!(placement_ref = %log_safe(row.placement_ref.as_str()), "placements row: column caseworker is not an e-mail address; notices go to the team lead");
                }
                match rows.get(row.placement_ref.as_str()) {
                    Some(existing) if existing.updated_at > row.updated_at => {}
                    _ => {
                        rows.insert(row.placement_ref.to_string(), row);
                    }
                }
            }
            Err(rejection) => reject(rejection, &mut kept),
        }
    }
    let mut refs: Vec<String> = rows.keys().cloned().collect();
    refs.extend(rows.values().filter_map(|r| r.case_ref.as_ref().map(|c| c.to_string())));
    let keys: Vec<String> =
        rows.values().filter_map(|r| r.child_key.as_ref().map(|k| k.as_str().to_string())).collect();
    let facts = register.case_facts(&refs, &keys).await?;
    for collided in collisions(rows.keys().map(String::as_str), &facts) {
        rows.remove(&collided);
        reject(
            Rejection { reason: RejectReason::RefCollision, column: "placement_ref", case_ref: Some(collided) },
            &mut kept,
        );
    }
    let mut out: Vec<(PlacementRow, PlacementContext)> =
        rows.into_values().map(|row| (context(&row, &facts), row)).map(|(c, r)| (r, c)).collect();
    out.sort_by(|a, b| a.0.placement_ref.as_str().cmp(b.0.placement_ref.as_str()));
    Ok((out, kept))
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
    let (rows, _) = read_rows(register, settings, vec![raw.clone()], &mut rejected).await?;
    Ok(Some(match rows.into_iter().next() {
        Some(row) => Ok(row),
        None => Err(validate_placement(&raw, settings.register.max_cell_bytes).err().unwrap_or(Rejection {
            reason: RejectReason::RefCollision,
            column: "placement_ref",
            case_ref: Some(placement_ref.to_string()),
        })),
    }))
}

/// What a placement's clocks need from the cases view.
fn context(row: &PlacementRow, facts: &CaseFacts) -> PlacementContext {
    PlacementContext {
        investigation_closed_on: row.case_ref.as_ref().and_then(|c| facts.cases.get(c.as_str()).copied().flatten()),
        investigations_opened: row
            .child_key
            .as_ref()
            .and_then(|k| facts.opened_by_child.get(k.as_str()).cloned())
            .unwrap_or_default(),
    }
}

/// The deadlines of `rows` to store on `today` (those retained at `now`), and the placements
/// they stand for.
fn compute(
    settings: &Settings,
    (today, now): (NaiveDate, DateTime<Utc>),
    rows: &[(PlacementRow, PlacementContext)],
) -> (Vec<DeadlineRecord>, Vec<CaseRef>) {
    let options = RuleOptions { holiday_rule: settings.calendar.holiday_rule };
    let kept_from = retained_from(settings, now);
    let mut records = Vec::new();
    let mut refs = Vec::with_capacity(rows.len());
    for (row, context) in rows {
        for deadline in rules::placement_deadlines_for(&row.dates, context, options)
            .into_iter()
            .filter(|d| is_retained(d, kept_from))
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
/// the view gave no row at all (then the stored ones, as a full pass withdraws nothing).
pub async fn current_placement_deadlines(
    register: &Register,
    state: &StateStore,
    settings: &Settings,
    (today, now): (NaiveDate, DateTime<Utc>),
) -> Result<Vec<StoredDeadline>, PollError> {
    let mut current: Vec<StoredDeadline> = Vec::new();
    let mut rows_read = 0;
    let mut rejected = std::collections::BTreeMap::new();
    let mut chunks = register.placements_since(None);
    while let Some(raws) = chunks.try_next().await? {
        rows_read += raws.len();
        let (rows, kept) = read_rows(register, settings, raws, &mut rejected).await?;
        let (records, refs) = compute(settings, (today, now), &rows);
        // The day each deadline was first stored; one not stored yet is first seen today.
        let first_seen = state.first_seen_of(&refs).await?;
        for r in records {
            let first_seen_on = first_seen.get(&(r.case_ref.clone(), r.deadline.kind)).copied().unwrap_or(Some(today));
            current.push(r.into_stored(first_seen_on));
        }
        for placement_ref in kept {
            let filter =
                DeadlineFilter { case_ref: Some(placement_ref.trim().to_string()), ..DeadlineFilter::default() };
            current.extend(state.deadlines(&filter).await?);
        }
    }
    drop(chunks);
    if rows_read == 0 {
        let stored = DeadlineFilter { placements_only: true, ..DeadlineFilter::default() };
        current.extend(state.deadlines(&stored).await?);
    }
    Ok(current)
}
