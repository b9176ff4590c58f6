//! The one suppression decision of a report ([`Suppression::apply`]), made once on the report's
//! table; every format, chart and note reads it and decides nothing on its own.
//!
//! What a reader of any output can know is then exactly: the shown groups' figures, the totals
//! row, and sums of shown groups only ([`Table::sum_shown`]: the notes, the charts and the key
//! figures are such sums; a sum that would take in a hidden group is not printed). A hidden
//! group can therefore be reached only through the totals row, as the totals less the shown
//! groups: the sum of all hidden groups together. So the decision makes sure that sum gives
//! none of them away:
//!
//! - a group under `report.min_group` is hidden (`small_group`, "< N");
//! - when exactly one group is hidden, the smallest shown group is hidden with it
//!   (`complement`, "*"), so that the totals row less the shown groups is a sum of two;
//! - when the hidden groups together met all or none of their deadlines (or of their nominal
//!   days), that sum would give each one's share (100 % or 0 %): the smallest shown group whose
//!   share differs is hidden too (`complement`), again until nothing changes; when no such group
//!   is left, the totals row's outcome figures are hidden instead (its count stays);
//! - the totals row's chained investigations are hidden when the hidden groups holding
//!   investigations are one, or hold none together;
//! - a totals row under `report.min_group` is hidden itself (then every group is too).
//!
//! The totals row's median, 90th percentile and longest overrun are shown as they are: they
//! are not sums, and no group's count or share follows from them.

use super::{Disclosure, Group, Table, Tally};

/// Per figure of the totals row, whether it is withheld although the row is shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Withheld {
    /// met, missed, overdue, the two shares.
    pub outcomes: bool,
    /// The chained investigations.
    pub chained: bool,
}

/// The decision for one table: which groups are hidden and why, and what of the totals row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub on: bool,
    pub min_group: u64,
    /// Per group of the table, in its order.
    pub groups: Vec<Disclosure>,
    pub totals: Disclosure,
    pub totals_withheld: Withheld,
}

impl Suppression {
    /// Decides for `table` (its chains already counted) and writes the decision into its groups.
    pub fn apply(table: &mut Table, min_group: u64, on: bool) -> Suppression {
        let decision = Suppression::decide(&table.groups, &table.totals, min_group, on);
        for (g, d) in table.groups.iter_mut().zip(&decision.groups) {
            g.disclosure = *d;
        }
        table.totals.disclosure = decision.totals;
        table.totals.withheld = decision.totals_withheld;
        decision
    }

    /// The decision, from the true figures of `groups` and `totals`.
    pub fn decide(groups: &[Group], totals: &Group, min_group: u64, on: bool) -> Suppression {
        if !on {
            return Suppression {
                on,
                min_group,
                groups: vec![Disclosure::Unsuppressed; groups.len()],
                totals: Disclosure::Unsuppressed,
                totals_withheld: Withheld::default(),
            };
        }
        let mut state: Vec<Disclosure> = groups
            .iter()
            .map(|g| if g.tally.total < min_group { Disclosure::SmallGroup } else { Disclosure::Shown })
            .collect();
        let mut withheld = Withheld::default();
        loop {
            let hidden: Vec<&Group> =
                groups.iter().zip(&state).filter(|(_, d)| d.is_hidden()).map(|(g, _)| g).collect();
            if hidden.is_empty() {
                break;
            }
            let mut rest = Tally::default();
            hidden.iter().for_each(|g| rest.add(&g.tally));
            // Which shown group would end the giveaway, if any is needed.
            let wanted: Option<fn(&Tally) -> bool> = if hidden.len() == 1 {
                Some(|_| true)
            } else if rest.met == 0 {
                Some(|t| t.met > 0)
            } else if rest.met == rest.total {
                Some(|t| t.met < t.total)
            } else if rest.met_nominal == 0 {
                Some(|t| t.met_nominal > 0)
            } else if rest.met_nominal == rest.total {
                Some(|t| t.met_nominal < t.total)
            } else {
                None
            };
            let Some(wanted) = wanted else { break };
            let next = groups
                .iter()
                .zip(&state)
                .enumerate()
                .filter(|(_, (g, d))| **d == Disclosure::Shown && wanted(&g.tally))
                .min_by_key(|(i, (g, _))| (g.tally.total, *i))
                .map(|(i, _)| i);
            match next {
                Some(i) => state[i] = Disclosure::Complement,
                None => {
                    // Only a lone hidden group of a one-group table, or shares that no shown
                    // group can break: the totals row keeps its count only.
                    withheld.outcomes = true;
                    break;
                }
            }
        }
        let hidden_holders: Vec<u64> =
            groups.iter().zip(&state).filter(|(_, d)| d.is_hidden()).filter_map(|(g, _)| g.chained).collect();
        withheld.chained =
            !hidden_holders.is_empty() && (hidden_holders.len() == 1 || hidden_holders.iter().sum::<u64>() == 0);
        let totals = if totals.tally.total < min_group { Disclosure::SmallGroup } else { Disclosure::Shown };
        Suppression { on, min_group, groups: state, totals, totals_withheld: withheld }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::DaysUsed;

    fn group(key: &str, total: u64, met: u64) -> Group {
        Group {
            key: vec![key.to_string()],
            tally: Tally { total, met, missed: total - met, met_nominal: met, ..Tally::default() },
            days_used: DaysUsed::default(),
            longest_overrun: None,
            chained: None,
            disclosure: Disclosure::Shown,
            withheld: Withheld::default(),
        }
    }

    fn totals(groups: &[Group]) -> Group {
        let mut t = group("", 0, 0);
        t.key.clear();
        groups.iter().for_each(|g| t.tally.add(&g.tally));
        t
    }

    fn decide(groups: &[Group]) -> Suppression {
        Suppression::decide(groups, &totals(groups), 5, true)
    }

    #[test]
    fn one_small_group_takes_the_smallest_shown_one_with_it() {
        let groups = [group("A", 3, 2), group("B", 12, 6), group("C", 7, 3)];
        let s = decide(&groups);
        assert_eq!(s.groups, [Disclosure::SmallGroup, Disclosure::Shown, Disclosure::Complement]);
        assert_eq!((s.totals, s.totals_withheld), (Disclosure::Shown, Withheld::default()));

        // Two small groups already hide each other; nothing more is hidden.
        let s = decide(&[group("A", 3, 2), group("B", 12, 6), group("C", 4, 1)]);
        assert_eq!(s.groups[1], Disclosure::Shown);

        // Switched off: everything shown, and marked as such.
        let s = Suppression::decide(&groups, &totals(&groups), 5, false);
        assert!(s.groups.iter().all(|d| *d == Disclosure::Unsuppressed));

        // A total under the minimum hides the totals row too.
        let groups = [group("A", 2, 1), group("B", 1, 1)];
        assert_eq!(decide(&groups).totals, Disclosure::SmallGroup);
    }

    #[test]
    fn hidden_groups_that_met_everything_together_take_a_group_that_did_not() {
        // 3 + 7, all met: the totals row less B would say both met all (100 %). D (9, not all
        // met) is the smallest shown group that breaks it; C (8, all met) would not.
        let groups = [group("A", 3, 3), group("B", 20, 10), group("C", 8, 8), group("D", 9, 4), group("E", 7, 7)];
        let s = decide(&groups);
        assert_eq!(
            s.groups,
            [
                Disclosure::SmallGroup,
                Disclosure::Shown,
                Disclosure::Shown,
                Disclosure::Complement,
                Disclosure::Complement
            ]
        );
        assert!(!s.totals_withheld.outcomes);
        // None met: the same with a group that met some.
        let s = decide(&[group("A", 2, 0), group("B", 3, 0), group("C", 9, 9)]);
        assert_eq!(s.groups[2], Disclosure::Complement);
        // Nothing left to break it: the totals row keeps its count, not its outcomes.
        let s = decide(&[group("A", 2, 2), group("B", 3, 3), group("C", 9, 9)]);
        assert!(s.totals_withheld.outcomes && s.totals == Disclosure::Shown);
    }

    #[test]
    fn the_totals_rows_chains_hide_when_one_hidden_group_holds_investigations_or_none_hold_a_chain() {
        let mut groups = [group("A", 3, 2), group("B", 12, 6), group("C", 7, 3)];
        groups[0].chained = Some(1);
        groups[1].chained = Some(2);
        assert!(decide(&groups).totals_withheld.chained);
        groups[2].chained = Some(0);
        assert!(!decide(&groups).totals_withheld.chained);
        groups[0].chained = Some(0);
        assert!(decide(&groups).totals_withheld.chained);
    }
}
