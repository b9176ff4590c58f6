//! No printed figure gives a hidden group away, in any format, for any grouping.
//!
//! Deterministic data sets of deadlines over 3 units × 4 kinds × 3 sexes × 2 months, from
//! nearly empty (groups of 0 to `min_group` + 2 deadlines at every grouping) to full, are
//! reported for every `--by` combination and rendered in every format (the table in Swedish
//! and English, CSV, JSON, the HTML page with its charts, bar lengths and notes in both).
//!
//! A hidden group's count or share can be worked out from the output only if the output
//! changes when that count or share does. So for each hidden group, deadlines are moved
//! between it and another hidden group (the totals row stays the same), or a met deadline of
//! one swapped for a missed one of the other (counts stay, shares change); whenever the
//! suppression decision (which is printed) stays the same, every output must stay byte for
//! byte the same. A sum printed over a hidden group and shown ones (a note, a chart bar, a
//! trend point, a line of the table), or a totals row less the shown groups leaving one hidden
//! group, changes with such a move and fails the test. The test also checks that the hidden
//! groups together never met all or none of their deadlines where the totals row shows its
//! outcomes (which would give each one's share).

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::{build, html, render, Dimension, Report, Request, Tally};
use crate::config::Language;
use crate::rules::Kind;
use crate::state::report::{ChainedCell, DaysUsedCell, OutcomeCell};

const MIN_GROUP: u64 = 5;
const UNITS: [&str; 3] = ["A-BU", "B-BU", "C-BU"];
const SEXES: [&str; 3] = ["F", "M", "unknown"];
const MONTHS: [&str; 2] = ["2026-01", "2026-02"];

/// How a deadline ended: met by the nominal day, met after it, missed, overdue; and whether it
/// is a chained investigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Sort {
    outcome: u8,
    chained: bool,
}

/// One combination of unit, kind, sex and month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Atom {
    unit: usize,
    kind: usize,
    sex: usize,
    month: usize,
}

impl Atom {
    fn value(&self, dim: Dimension) -> String {
        match dim {
            Dimension::Unit => UNITS[self.unit].into(),
            Dimension::Kind => Kind::ALL[self.kind].as_str().into(),
            Dimension::Sex => SEXES[self.sex].into(),
            Dimension::Month => MONTHS[self.month].into(),
        }
    }

    fn key(&self, by: &[Dimension]) -> Vec<String> {
        by.iter().map(|d| self.value(*d)).collect()
    }

    fn investigation(&self) -> bool {
        Kind::ALL[self.kind] == Kind::Investigation
    }
}

/// Deadlines per atom and sort.
type Data = BTreeMap<(Atom, Sort), u64>;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn atoms() -> Vec<Atom> {
    let mut out = Vec::new();
    for unit in 0..UNITS.len() {
        for kind in 0..Kind::ALL.len() {
            for sex in 0..SEXES.len() {
                for month in 0..MONTHS.len() {
                    out.push(Atom { unit, kind, sex, month });
                }
            }
        }
    }
    out
}

/// An atom holds deadlines with a chance of `density` in 100, each of 1 to `min_group` + 2
/// deadlines; outcomes and chains vary by seed.
fn data(seed: u64, density: u64) -> Data {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut data = Data::new();
    for atom in atoms() {
        if rng.below(100) >= density {
            continue;
        }
        for _ in 0..=rng.below(MIN_GROUP + 2) {
            // Mostly met, some of every other outcome.
            let outcome = match rng.below(10) {
                0..=4 => 0,
                5 | 6 => 1,
                7 | 8 => 2,
                _ => 3,
            };
            let chained = atom.investigation() && rng.below(3) == 0;
            *data.entry((atom, Sort { outcome, chained })).or_default() += 1;
        }
    }
    data
}

/// The cells the state database would give for `by`.
fn cells(data: &Data, by: &[Dimension]) -> (Vec<OutcomeCell>, Vec<DaysUsedCell>, Vec<ChainedCell>) {
    let mut outcomes: BTreeMap<(Vec<String>, u8), i64> = BTreeMap::new();
    let mut days: BTreeMap<(Vec<String>, i64), i64> = BTreeMap::new();
    let mut chained: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    for ((atom, sort), n) in data {
        let key = atom.key(by);
        let n = *n as i64;
        *outcomes.entry((key.clone(), sort.outcome)).or_default() += n;
        if sort.outcome < 3 {
            *days.entry((key.clone(), 10 + 5 * i64::from(sort.outcome))).or_default() += n;
        }
        if sort.chained {
            *chained.entry(key).or_default() += n;
        }
    }
    let outcomes = outcomes
        .into_iter()
        .map(|((key, outcome), deadlines)| OutcomeCell {
            key,
            closed: outcome < 3,
            closed_in_time: outcome < 2,
            closed_by_nominal: outcome == 0,
            past_due: true,
            deadlines,
            longest_overrun: match outcome {
                2 => Some(4),
                3 => Some(12),
                _ => None,
            },
        })
        .collect();
    let days = days.into_iter().map(|((key, days), deadlines)| DaysUsedCell { key, days, deadlines }).collect();
    let chained = chained.into_iter().map(|(key, investigations)| ChainedCell { key, investigations }).collect();
    (outcomes, days, chained)
}

fn request(by: &[Dimension]) -> Request {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    Request {
        period: super::Period { from: d("2026-01-01"), to: d("2026-02-28") },
        today: d("2026-03-15"),
        by: by.to_vec(),
        min_group: MIN_GROUP,
        suppress: true,
        chain_window_days: 30,
    }
}

fn report(data: &Data, by: &[Dimension]) -> Report {
    let (outcomes, days, chained) = cells(data, by);
    build(&request(by), &outcomes, &days, Some(&chained))
}

/// Everything a reader gets: every format, both languages.
fn outputs(report: &Report) -> Vec<(&'static str, String)> {
    let sv = render::Words::new(Language::Swedish);
    let en = render::Words::new(Language::English);
    let names = BTreeMap::from([("A-BU".to_string(), "Enhet A".to_string())]);
    vec![
        ("table sv", render::table(report, &sv)),
        ("table en", render::table(report, &en)),
        ("csv", render::csv(report, render::CsvDialect::Rfc4180).unwrap()),
        ("csv excel-sv", render::csv(report, render::CsvDialect::ExcelSv).unwrap()),
        ("json", render::json(report).unwrap()),
        ("html sv", html::page(report, &sv, &names)),
        ("html en", html::page(report, &en, &names)),
    ]
}

/// Every grouping: each subset of the four dimensions.
fn groupings() -> Vec<Vec<Dimension>> {
    let all = [Dimension::Unit, Dimension::Kind, Dimension::Sex, Dimension::Month];
    (0..16u32)
        .map(|bits| all.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, d)| *d).collect())
        .collect()
}

/// Moves one deadline of `sort` from `from` to `to`; false when `from` holds none.
fn moved(data: &mut Data, from: Atom, to: Atom, sort: Sort) -> bool {
    let Some(n) = data.get_mut(&(from, sort)).filter(|n| **n > 0) else { return false };
    *n -= 1;
    if *n == 0 {
        data.remove(&(from, sort));
    }
    *data.entry((to, sort)).or_default() += 1;
    true
}

#[test]
fn no_printed_figure_gives_a_hidden_group_away() {
    let mut compared = 0;
    let mut hidden_seen = 0;
    let mut hidden_compared = 0;
    for (seed, density) in [(1, 6), (2, 12), (3, 20), (4, 35), (5, 60), (6, 100), (7, 9), (8, 15)] {
        let data = data(seed, density);
        for by in groupings() {
            let base = report(&data, &by);
            let printed = outputs(&base);
            let hidden: Vec<usize> = base
                .table
                .groups
                .iter()
                .enumerate()
                .filter(|(_, g)| g.disclosure.is_hidden())
                .map(|(i, _)| i)
                .collect();
            let totals = &base.table.totals;
            // Never one hidden group alone behind a shown totals row; never hidden groups that
            // together met all or none where the totals row shows its outcomes.
            if totals.visible().is_some() {
                assert_ne!(hidden.len(), 1, "{by:?}: one hidden group behind the totals row");
                let mut rest = Tally::default();
                hidden.iter().for_each(|i| rest.add(&base.table.groups[*i].tally));
                if rest.total > 0 && totals.outcomes().is_some() {
                    for (what, n) in [("met", rest.met), ("met by the nominal day", rest.met_nominal)] {
                        assert!(n != 0 && n != rest.total, "{by:?}: the hidden groups' {what} {n} of {}", rest.total);
                    }
                }
                if totals.chained_shown().is_some() {
                    let holders: Vec<u64> = hidden.iter().filter_map(|i| base.table.groups[*i].chained).collect();
                    assert!(holders.is_empty() || (holders.len() > 1 && holders.iter().sum::<u64>() > 0), "{by:?}");
                }
            }
            hidden_seen += hidden.len();
            let atoms_of = |i: usize| -> Vec<Atom> {
                let key = &base.table.groups[i].key;
                atoms().into_iter().filter(|a| &a.key(&by) == key).collect()
            };
            for (n, &h1) in hidden.iter().enumerate() {
                let mut reached = false;
                // The next hidden group, and the one after, as the other end of each move.
                for &h2 in hidden.iter().cycle().skip(n + 1).take(2.min(hidden.len() - 1)) {
                    let (from_atoms, to_atoms) = (atoms_of(h1), atoms_of(h2));
                    let sorts_in = |atoms: &[Atom]| -> Vec<(Atom, Sort)> {
                        data.keys().filter(|(a, _)| atoms.contains(a)).copied().collect()
                    };
                    let mut variants: Vec<(String, Data)> = Vec::new();
                    for (from, sort) in sorts_in(&from_atoms) {
                        // Out of h1 into h2, and back the other way.
                        let to = to_atoms.iter().find(|a| !sort.chained || a.investigation());
                        if let Some(&to) = to {
                            let mut d = data.clone();
                            if moved(&mut d, from, to, sort) {
                                variants.push((format!("{sort:?} from {from:?} to {to:?}"), d));
                            }
                        }
                        for (back, other) in sorts_in(&to_atoms) {
                            if other == sort && (!other.chained || from.investigation()) {
                                let mut d = data.clone();
                                if moved(&mut d, back, from, other) {
                                    variants.push((format!("{other:?} from {back:?} to {from:?}"), d));
                                }
                            }
                            // A swap: the counts stay, the shares change.
                            if other.outcome != sort.outcome && other.chained == sort.chained {
                                let mut d = data.clone();
                                if moved(&mut d, from, back, sort) && moved(&mut d, back, from, other) {
                                    variants.push((format!("swap {sort:?} of {from:?} for {other:?} of {back:?}"), d));
                                }
                            }
                        }
                    }
                    for (what, d) in variants {
                        let changed = report(&d, &by);
                        if changed.suppression != base.suppression {
                            continue;
                        }
                        compared += 1;
                        reached = true;
                        for ((format, before), (_, after)) in printed.iter().zip(outputs(&changed)) {
                            if *before != after {
                                let at = before.chars().zip(after.chars()).take_while(|(a, b)| a == b).count();
                                let around: String = before.chars().skip(at.saturating_sub(120)).take(240).collect();
                                panic!(
                                    "{format} by {by:?} (seed {seed}) changes when {what}: a hidden group ({:?} or {:?}) \
                                     can be worked out; it differs here:\n{around}",
                                    base.table.groups[h1].key, base.table.groups[h2].key
                                );
                            }
                        }
                    }
                }
                hidden_compared += usize::from(reached);
            }
        }
    }
    // Every grouping of every data set was tried; most hidden groups could be moved without
    // changing the decision.
    assert!(compared > 1000, "only {compared} comparisons");
    assert!(hidden_compared * 10 >= hidden_seen * 8, "{hidden_compared} of {hidden_seen} hidden groups compared");
}
