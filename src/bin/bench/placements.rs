//! The register's placements view at scale (issue "Reviews that never end", item 5): the demo's
//! placements of the benchmark's cases, with their recorded reviews, and the changes a day of
//! reviews makes.

use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};

use fristvakt::demo::{self, DemoOptions};
use fristvakt::register::placements::PLACEMENT_COLUMNS;
use fristvakt::register::RawPlacement;

use crate::store::Store;

/// The placements of the benchmark's register of `options`: `per_cent` of its cases (10: 100 000
/// at 1 000 000 cases). The demo places about 3–4 % of its cases, each with the reviews recorded
/// up to the demo's day; the rest are the demo's own placements again under references of their
/// own (`2026-PM-00042`, `2026-PN-…`: a child's next placement, as a register holds them), with
/// the same dates, so that the view's size and mix of clocks are the demo's at the asked size.
pub(crate) fn bench_placements(options: &DemoOptions, per_cent: usize) -> Vec<RawPlacement> {
    let wanted = options.cases * per_cent / 100;
    let demo = demo::generate_placements(options);
    let mut rows = Vec::with_capacity(wanted);
    let at = PLACEMENT_COLUMNS.iter().position(|c| *c == "placement_ref").unwrap_or(0);
    for (round, series) in ["PL", "PM", "PN", "PO", "PP", "PQ", "PR", "PS"].iter().enumerate() {
        for row in &demo {
            if rows.len() == wanted {
                return rows;
            }
            let mut row = row.clone();
            if round > 0 {
                row.0[at] = row.0[at].as_ref().map(|r| r.replace("-PL-", &format!("-{series}-")));
            }
            rows.push(row);
        }
    }
    rows
}

/// Writes `rows` as the register's placements view `view`.
pub(crate) async fn write_placements(store: &Store<'_>, view: &str, rows: &[RawPlacement]) -> Result<u64> {
    match store {
        Store::Sqlite(_) => {
            let url = fristvakt::config::DatabaseUrl::parse(&store.register_url()).map_err(|e| anyhow::anyhow!(e))?;
            Ok(demo::write_demo_placements(&url, view, rows).await?)
        }
        Store::Postgres(_) => crate::postgres::write_placements(&store.register_url(), view, rows).await,
    }
}

/// Which placements `record_reviews` records a review in: carried out, not ended, not an
/// emergency custody.
const UNDER_REVIEW: &str = "basis IN ('sol', 'lvu_2', 'lvu_3') AND executed_on IS NOT NULL AND ended_on IS NULL";

/// How many whole thousands of placements `record_reviews` can record a review in: a run past
/// them would change no row and measure an empty poll.
pub(crate) fn review_runs(store: &Store<'_>, view: &str) -> Result<usize> {
    Ok((store.count(&format!("SELECT count(*) FROM {view} WHERE {UNDER_REVIEW}"))? / 1000) as usize)
}

/// A day's reviews in the placements view `view`: 1 000 placements under review (carried out, not
/// ended, not an emergency custody), the `run`-th thousand in reference order, record a review on
/// `day` (later than any recorded: it closes each one's running `placement_review` cycle and
/// starts the next), stamped `stamp`.
pub(crate) fn record_reviews(
    store: &Store<'_>,
    view: &str,
    run: usize,
    day: NaiveDate,
    stamp: DateTime<Utc>,
) -> Result<()> {
    let stamp = stamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    store.execute(&format!(
        "UPDATE {view} SET last_reviewed_on = '{day}', updated_at = '{stamp}' \
         WHERE placement_ref IN (SELECT placement_ref FROM {view} \
         WHERE {UNDER_REVIEW} ORDER BY placement_ref LIMIT 1000 OFFSET {})",
        run * 1000
    ))
}

/// How many whole thousands of placements `reassign` can change.
pub(crate) fn reassign_runs(store: &Store<'_>, view: &str) -> Result<usize> {
    Ok((store.count(&format!("SELECT count(*) FROM {view}"))? / 1000) as usize)
}

/// A new caseworker for 1 000 placements of `view`, the `run`-th thousand in reference order,
/// stamped `stamp`: the change the cases' poll of 1 000 changed rows makes, on the other view. Each
/// placement's deadlines stay, with a new addressee.
pub(crate) fn reassign(store: &Store<'_>, view: &str, run: usize, stamp: DateTime<Utc>) -> Result<()> {
    let stamp = stamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    store.execute(&format!(
        "UPDATE {view} SET caseworker = 'ny.handlaggare.{run}@kommun.example', updated_at = '{stamp}' \
         WHERE placement_ref IN (SELECT placement_ref FROM {view} ORDER BY placement_ref LIMIT 1000 OFFSET {})",
        run * 1000
    ))
}
