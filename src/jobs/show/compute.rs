//! The show commands' computation of the register (`deadlines --fresh`, `digest --fresh`,
//! `poll --dry-run`): what a full pass would store now, computed as the register is read and
//! handed on in the stored listing's order, written nowhere.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::TryStreamExt;

use crate::config::Settings;
use crate::register::{self, CaseRow, Register};
use crate::state::{StateError, StateStore, StoredDeadline};
use crate::sync::{compute, placements, Children, PollError};

/// The order the show commands' computation hands the deadlines on in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The stored listing's (case or placement reference, kind, cycle): the placements'
    /// deadlines are held to be put in their places.
    Listing,
    /// Any: for a reader that orders what it keeps itself (the digest).
    Any,
}

/// The deadlines a full pass would store now, computed as the register is read and written
/// nowhere (the show commands), handed to `each` in the order of the stored listing (case
/// reference, then kind). The register is read in case-reference order, a chunk at a time with
/// the other cases of its children, so memory holds one chunk whatever the register's size. A
/// row skipped as broken gives its stored deadlines as they are; a case no longer in the register
/// gives nothing, as a full pass withdraws it, unless the view gave no row at all (a full pass
/// that reads nothing withdraws nothing: then the stored deadlines are given). `first_seen_on`
/// is not looked up (`None`): nothing shown reads it. With [`Order::Any`] the placements'
/// deadlines come first, as they are computed, and none is held. Returns the rows read.
pub async fn each_current_deadline<E: From<PollError> + From<StateError>>(
    register: &Register,
    state: &StateStore,
    settings: &Settings,
    (today, now): (NaiveDate, DateTime<Utc>),
    order: Order,
    mut each: impl FnMut(StoredDeadline) -> Result<(), E>,
) -> Result<u64, E> {
    let mut rows_read = 0u64;
    // The placements' deadlines (few: a few per cent of children are placed). In the listing's
    // order they are computed first and handed on in their places among the cases' (one
    // namespace, contract §1b); in any order each goes as it is computed, none held.
    let mut placement_deadlines = Vec::new();
    let mut gather = |d: StoredDeadline| -> Result<(), E> {
        match order {
            Order::Listing => placement_deadlines.push(d),
            Order::Any => each(d)?,
        }
        Ok(())
    };
    match register.placements_view() {
        Some(_) => {
            placements::each_current_placement_deadline(register, state, settings, (today, now), &mut gather).await?
        }
        None => {
            let stored = crate::state::DeadlineFilter { placements_only: true, ..Default::default() };
            for d in state.deadlines(&stored).await.map_err(PollError::from)? {
                gather(d)?;
            }
        }
    }
    placement_deadlines.sort_by(listing_order);
    let mut placement_deadlines = placement_deadlines.into_iter().peekable();
    let mut emit = |d: StoredDeadline| -> Result<(), E> {
        while let Some(p) = placement_deadlines.next_if(|p| listing_order(p, &d).is_lt()) {
            each(p)?;
        }
        each(d)
    };
    // The chunk's valid cases in the order read; the last is held over to the next chunk, which
    // may hold the same reference again (the newest row wins, as in a poll).
    let mut cases: Vec<CaseRow> = Vec::new();
    let mut broken: Vec<String> = Vec::new();
    let mut chunks = register.chunks_by_case_ref();
    loop {
        let next = match chunks.try_next().await {
            Ok(next) => next,
            Err(e) => {
                drop(chunks);
                return Err(PollError::from(register.explain(e).await).into());
            }
        };
        let done = next.is_none();
        if let Some(chunk) = next {
            rows_read += chunk.len() as u64;
            for row in chunk.rows() {
                match register::validate_encoded(row, settings.register.max_cell_bytes) {
                    Ok(case) => match cases.last_mut() {
                        Some(last) if last.case_ref == case.case_ref => {
                            if case.updated_at >= last.updated_at {
                                *last = case;
                            }
                        }
                        _ => cases.push(case),
                    },
                    Err(rejection) => broken.extend(rejection.case_ref),
                }
            }
        }
        let held = if done { None } else { cases.pop() };
        if !cases.is_empty() || !broken.is_empty() {
            for deadline in current_of_chunk(register, state, settings, (today, now), &cases, &broken).await? {
                emit(deadline)?;
            }
        }
        cases.clear();
        broken.clear();
        cases.extend(held);
        if done {
            break;
        }
    }
    drop(chunks);
    if rows_read == 0 {
        let all = crate::state::ShowQuery { unit: None, status: None, today };
        state.each_deadline(&all, |d| if d.deadline.kind.is_placement() { Ok(()) } else { emit(d) }).await?;
    }
    for p in placement_deadlines {
        each(p)?;
    }
    Ok(rows_read)
}

/// The current deadlines of one chunk's `cases` (valid rows, in case-reference order) and of its
/// `broken` rows' stored deadlines, sorted as the stored listing is.
async fn current_of_chunk(
    register: &Register,
    state: &StateStore,
    settings: &Settings,
    (today, now): (NaiveDate, DateTime<Utc>),
    cases: &[CaseRow],
    broken: &[String],
) -> Result<Vec<StoredDeadline>, PollError> {
    let children = if register.features().chains {
        let by_ref: HashMap<String, (CaseRow, u64)> =
            cases.iter().map(|case| (case.case_ref.to_string(), (case.clone(), 0))).collect();
        Children::read(register, settings.register.max_cell_bytes, &by_ref, Vec::new()).await?
    } else {
        Children::default()
    };
    let (records, case_refs) = compute(settings, (today, now), cases.iter(), &children);
    // The day each deadline was first stored; one not stored yet is first seen today.
    let first_seen = state.first_seen_of(&case_refs).await?;
    let mut current: Vec<StoredDeadline> = records
        .into_iter()
        .map(|r| {
            let first_seen_on = first_seen.get(&(r.case_ref.clone(), r.deadline.kind)).copied().unwrap_or(Some(today));
            r.into_stored(first_seen_on)
        })
        .collect();
    for case_ref in broken {
        let filter = crate::state::DeadlineFilter { case_ref: Some(case_ref.trim().to_string()), ..Default::default() };
        current.extend(state.deadlines(&filter).await?);
    }
    current.sort_by(listing_order);
    Ok(current)
}

/// The order of the stored listing: case (or placement) reference, kind, then a recurring
/// kind's cycles by their start (the stored listing orders them by the cycle's key, its first
/// start day, which differs only for a running cycle whose start was corrected).
fn listing_order(a: &StoredDeadline, b: &StoredDeadline) -> std::cmp::Ordering {
    (&a.case_ref, a.deadline.kind.as_str(), a.deadline.start_on).cmp(&(
        &b.case_ref,
        b.deadline.kind.as_str(),
        b.deadline.start_on,
    ))
}
