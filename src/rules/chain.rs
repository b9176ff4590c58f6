//! Chained investigations (JO 2565-2016): an investigation of a child opened shortly after
//! another investigation of the same child was closed, which makes the four-month limit
//! meaningless when it is done to reset the clock (register contract §2).
//!
//! fristvakt cannot judge whether the new investigation asks the same question; it only shows
//! the pattern. The child is known here only as an opaque, comparable key; this module never
//! sees what it is.

use std::collections::HashMap;
use std::hash::Hash;

use chrono::NaiveDate;

/// One investigation of one child, as far as chains are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvestigationSpan<K> {
    /// The pseudonymous key of the child.
    pub child: K,
    /// The decision to open the investigation.
    pub opened_on: NaiveDate,
    /// The decision that closed it, if any.
    pub closed_on: Option<NaiveDate>,
}

/// Whether an investigation opened on `later_opened_on` follows one closed on
/// `earlier_closed_on` within `window_days` (the day of the close itself included, and the day
/// `window_days` after it).
pub fn is_chained(earlier_closed_on: NaiveDate, later_opened_on: NaiveDate, window_days: i64) -> bool {
    let gap = (later_opened_on - earlier_closed_on).num_days();
    (0..=window_days).contains(&gap)
}

/// Every chained pair among `investigations`, as `(earlier, later)` indices into the slice, in
/// the order of the later investigation's index, then the earlier's. Investigations of different
/// children never pair; an investigation still open ends no chain.
pub fn find_chains<K: Eq + Hash>(investigations: &[InvestigationSpan<K>], window_days: i64) -> Vec<(usize, usize)> {
    let mut by_child: HashMap<&K, Vec<usize>> = HashMap::new();
    for (index, investigation) in investigations.iter().enumerate() {
        by_child.entry(&investigation.child).or_default().push(index);
    }
    let mut pairs = Vec::new();
    for indices in by_child.values().filter(|indices| indices.len() > 1) {
        for &later in indices {
            for &earlier in indices {
                let closed_on = investigations[earlier].closed_on;
                if earlier != later
                    && closed_on.is_some_and(|closed| is_chained(closed, investigations[later].opened_on, window_days))
                {
                    pairs.push((earlier, later));
                }
            }
        }
    }
    pairs.sort_unstable_by_key(|&(earlier, later)| (later, earlier));
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn inv(child: &'static str, opened: &str, closed: Option<&str>) -> InvestigationSpan<&'static str> {
        InvestigationSpan { child, opened_on: d(opened), closed_on: closed.map(d) }
    }

    #[test]
    fn the_window_counts_from_the_close() {
        fn check(closed: &str, opened: &str, window: i64, expected: bool) {
            assert_eq!(is_chained(d(closed), d(opened), window), expected, "closed {closed}, opened {opened}");
        }
        check("2026-03-31", "2026-03-31", 30, true); // the same day
        check("2026-03-31", "2026-04-29", 30, true); // 29 days
        check("2026-03-31", "2026-04-30", 30, true); // 30 days: inside
        check("2026-03-31", "2026-05-01", 30, false); // 31 days: outside
        check("2026-03-31", "2026-03-30", 30, false); // opened before the close: overlapping, no chain
        check("2026-03-31", "2026-04-07", 7, true);
        check("2026-03-31", "2026-04-08", 7, false);
    }

    #[test]
    fn chains_pair_investigations_of_one_child() {
        let investigations = [
            inv("a", "2025-01-10", Some("2025-05-02")), // 0
            inv("a", "2025-05-20", Some("2025-09-15")), // 1: 18 days after 0 closed
            inv("a", "2025-10-14", None),               // 2: 29 days after 1 closed
            inv("b", "2025-05-03", None),               // 3: another child, 1 day after 0 closed
            inv("c", "2025-01-10", Some("2025-03-01")), // 4
            inv("c", "2025-04-01", None),               // 5: 31 days after 4 closed
            inv("d", "2025-02-01", None),               // 6: open, then a second one opened
            inv("d", "2025-02-15", None),               // 7
        ];
        assert_eq!(find_chains(&investigations, 30), [(0, 1), (1, 2)]);
        // A wider window: c's pair too, and a's first and third are still 146 days apart.
        assert_eq!(find_chains(&investigations, 31), [(0, 1), (1, 2), (4, 5)]);
        assert_eq!(find_chains(&investigations, 17), []);
        assert_eq!(find_chains::<&str>(&[], 30), []);
    }
}
