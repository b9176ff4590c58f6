//! Synthetic demo cases for `fristvakt demo-data`: rows shaped exactly like the register view of
//! the contract (§1), realistic enough that deadlines, notices, digests and compliance reports look
//! like a real city's. The rows are the register's own [`RawRow`]s, drawn without I/O; `write`
//! writes them to the SQLite demo register ([`write_demo_cases`]).
//!
//! # What the data looks like, and why
//!
//! The figures follow `domain/statutory-deadlines.md` ("Scale") and are asserted, with a tolerance,
//! by the tests at the bottom of this file.
//!
//! - **Units.** The 14 district administrations (stadsdelsförvaltningar) Stockholm had until the
//!   2020 merger of Hägersten-Liljeholmen and Älvsjö, each with a child-and-youth unit. Case volume
//!   differs per unit ([`UNIT_WEIGHTS`]: from 3 % in Älvsjö to 12 % in Enskede-Årsta-Vantör),
//!   roughly population times the local rate of reports.
//! - **Reports (anmälningar).** `received_on` spreads over the 18 months up to and including
//!   `today`: weekdays carry most of them (≈ 7 % fall on a weekend, when only the on-call service
//!   takes reports), Mondays a little more, fixed public holidays and July less, and every day has
//!   some noise. Rows come out in order of receipt.
//! - **Case references (diarienummer).** `2026-BU-01423`: year of receipt, then a running number
//!   per year over the whole set, so references are unique and grow with time. The first, partial
//!   year starts where a full year would have been on that day.
//! - **Protection assessment (skyddsbedömning).** ≈ 88 % the day of receipt, ≈ 9 % the next day,
//!   ≈ 3 % two to six days later, ≈ 0.3 % never documented; missing while the day is still ahead.
//! - **Preliminary assessment (förhandsbedömning).** ≈ 75 % decided within 14 days, ≈ 25 % later
//!   (IVO measured 24 %), mostly on weekdays. ≈ 1 % have a longer time decided for extraordinary
//!   reasons (synnerliga skäl): `assessment_extended_to` 7–21 days after the nominal last day, and
//!   mostly a decision within it.
//! - **Investigation (utredning).** ≈ 38 % of decided assessments open one (the national share),
//!   `investigation_opened_on` being the decision day; ≈ 1 % of rows are investigations opened on
//!   application (ansökan), with no report and so no `received_on`. Most close within four months;
//!   ≈ 1/8 close after `opened + 4 months` (IVO measured 13 %), ≈ 5 % have an extension (särskilda
//!   skäl) to one or two months after the nominal last day, and mostly close within it.
//! - **Today.** No date is ever after `today`: an event that would happen later has not happened
//!   yet (so recent cases are still open, and some investigations are open and overdue), and an
//!   extension whose new last day would be after `today` is left out.
//! - **Caseworkers (handläggare).** Synthetic addresses such as `anna.lindqvist@kommun.example`,
//!   built from common Swedish first and last names; each unit has its own pool, sized from the
//!   unit's case volume so that a caseworker has ≈ 18 open assessments and investigations at once
//!   (a realistic 10–25). ≈ 2 % of rows have no caseworker.
//! - **Child's sex.** `F` and `M` about half each, ≈ 1 % null.
//! - **`updated_at`.** The day of the row's latest event (including the decision to extend), at a
//!   time of day mostly in office hours, in UTC with six fractional digits, so that text order is
//!   time order. Never after `today` 23:59:59.999999.
//!
//! - **Optional columns** (contract §1), drawn from a second generator seeded from the same seed,
//!   so that the rows above are the same with or without them:
//!   - `child_key`: every row has one, a 128-bit pseudonym written as 32 hex digits, like a keyed
//!     hash of a personal identity number (never one);
//!   - **chains** (JO 2565-2016): ≈ 4 % of closed investigations are followed by another case of
//!     the same child (same key and sex) whose investigation opens 0–30 days after the close, in
//!     whatever unit that case has (≈ 1 % of rows);
//!   - **follow-ups** (uppföljning): ≈ 8 % of closed investigations get `follow_up_decided_on`
//!     (the close or up to three days after) and, when it has come, `follow_up_ended_on`: ≈ 85 %
//!     within the six months, the rest up to 20 days after (≈ 3 % of rows);
//!   - **reports into open investigations**: ≈ 40 % of investigations opened on application get
//!     a report 3–60 days after the opening while the investigation is still open: a protection
//!     clock and no assessment (≈ 0.4 % of rows);
//!   - **the reporter's request** (SoL 19 kap. 6 §, in force 2026-01-15), drawn from a third
//!     generator: ≈ 10 % of the reports received on or after 2026-01-15 have
//!     `reporter_info_requested_on` (≈ 70 % the day of the report, the rest up to 20 days after),
//!     and, once it has come, `reporter_informed_on`: ≈ 85 % within a week of the assessment
//!     decision (or of a later request; a report into an open investigation, the request day or
//!     the next), the rest a few days to three weeks late; none while the decision is ahead.
//!
//! After the valid rows come `broken` rows when asked, cycling through [`BrokenKind`]s, each
//! otherwise a normal row, so that the register's validation and its logged reasons can be shown.
//!
//! The same [`DemoOptions`] always give the same rows on every platform: one `StdRng` (ChaCha12)
//! seeded from `seed`, integer draws of fixed width and no transcendental floating-point functions.
//! Memory stays bounded: one entry per day of the window and one address per caseworker, never a
//! row that has been handed out.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, Months, NaiveDate, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use self::placements::generate_placements;
pub use self::write::{sqlite_register_has_view, write_demo_cases, write_demo_placements};
use crate::register::RawRow;

mod placements;
mod write;

/// The 14 demo units, modelled on Stockholm's district administrations: (code, name).
pub const DEMO_UNITS: [(&str, &str); 14] = [
    ("BRO-BU", "Bromma barn och unga"),
    ("RIK-BU", "Rinkeby-Kista barn och unga"),
    ("SPT-BU", "Spånga-Tensta barn och unga"),
    ("HAV-BU", "Hässelby-Vällingby barn och unga"),
    ("KUN-BU", "Kungsholmen barn och unga"),
    ("NOR-BU", "Norrmalm barn och unga"),
    ("OST-BU", "Östermalm barn och unga"),
    ("SOD-BU", "Södermalm barn och unga"),
    ("EAV-BU", "Enskede-Årsta-Vantör barn och unga"),
    ("SKA-BU", "Skarpnäck barn och unga"),
    ("FAR-BU", "Farsta barn och unga"),
    ("HAL-BU", "Hägersten-Liljeholmen barn och unga"),
    ("ALV-BU", "Älvsjö barn och unga"),
    ("SKH-BU", "Skärholmen barn och unga"),
];

/// Relative case volume of each unit of [`DEMO_UNITS`], in per cent (they sum to 100).
pub const UNIT_WEIGHTS: [u32; 14] = [6, 11, 7, 9, 5, 4, 4, 10, 12, 6, 8, 8, 3, 7];

/// What to generate.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of valid rows.
    pub cases: usize,
    /// Seed of the random generator: the same options give the same rows.
    pub seed: u64,
    /// The day the data is "as of": no date lies after it, and reports span the 18 months before.
    pub today: NaiveDate,
    /// Number of deliberately broken rows appended after the valid ones.
    pub broken: usize,
}

/// The ways a broken row breaks the contract, in the order they cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenKind {
    /// A date that does not parse: `YYYY-02-30` in `received_on`, or `31/12/YYYY` in
    /// `assessment_decided_on`, alternately.
    UnparsableDate,
    /// `investigation_closed_on` before `investigation_opened_on`.
    CloseBeforeStart,
    /// `unit` is the empty string.
    EmptyUnit,
    /// `case_ref` is missing (NULL, so several of them lack it).
    EmptyCaseRef,
    /// `child_sex` is `X`.
    UnknownSex,
}

impl BrokenKind {
    /// All kinds in the order broken rows cycle through them.
    pub const ALL: [BrokenKind; 5] = [
        BrokenKind::UnparsableDate,
        BrokenKind::CloseBeforeStart,
        BrokenKind::EmptyUnit,
        BrokenKind::EmptyCaseRef,
        BrokenKind::UnknownSex,
    ];

    /// The kind of the `index`-th broken row (counting from 0).
    pub fn of_broken_row(index: usize) -> BrokenKind {
        Self::ALL[index % Self::ALL.len()]
    }
}

/// Lazily generates `options.cases` rows (bounded memory: a million cases are never held at once),
/// then `options.broken` deliberately broken rows when asked.
pub fn generate(options: &DemoOptions) -> impl Iterator<Item = RawRow> {
    Generator::new(options)
}

/// The unit's demo team-lead and manager addresses: (`gl.<code>@kommun.example`,
/// `ec.<code>@kommun.example`), code in lower case; used to write `config/demo.toml`.
pub fn demo_unit_addresses(code: &str) -> (String, String) {
    let code = code.to_lowercase();
    (format!("gl.{code}@kommun.example"), format!("ec.{code}@kommun.example"))
}

// Shares, in per mille, drawn with `chance`. Integers keep the draws identical on every platform.
const PROTECTION_SAME_DAY: u32 = 880;
const PROTECTION_NEXT_DAY: u32 = 87;
const PROTECTION_LATER: u32 = 30;
// The rest (3 ‰) never get a documented protection assessment.
const ASSESSMENT_EXTENDED: u32 = 10;
/// Late among the assessments without extension; with the extended ones (nearly all decided after
/// the nominal day) this makes ≈ 25 % in all.
const ASSESSMENT_LATE: u32 = 240;
const OPENS_INVESTIGATION: u32 = 380;
const ON_APPLICATION: u32 = 10;
const INVESTIGATION_EXTENDED: u32 = 50;
/// Late among the investigations without extension; with the extended ones (closed after the
/// nominal day) this makes ≈ 1/8 in all.
const INVESTIGATION_LATE: u32 = 80;
const NO_CASEWORKER: u32 = 20;
const NO_SEX: u32 = 10;
/// Chance that a caseworker's decision drawn on a weekend is kept rather than drawn again.
const WEEKEND_DECISION_KEPT: u32 = 100;
/// Closed investigations followed by another of the same child within the chain window.
const CHAIN_STARTS: u32 = 40;
/// Closed investigations with a decided follow-up, and of those, ended within six months (SoL 23 kap. 5 §).
const FOLLOW_UP: u32 = 80;
const FOLLOW_UP_IN_TIME: u32 = 850;
/// Investigations opened on application that receive a report while open.
const REPORT_INTO_OPEN: u32 = 400;
/// Reports received on or after [`reporter_information_from`] whose reporter asks to be told
/// whether an investigation was opened, and of those, told within a week.
const REPORTER_ASKS: u32 = 100;
const REPORTER_INFORMED_IN_TIME: u32 = 850;
/// Days after a close within which the chained investigation opens (`rules.chain_window`).
const CHAIN_DAYS: i64 = 30;

/// Days an average case keeps a caseworker busy: ≈ 12 with an open assessment, plus 38 % of
/// ≈ 90 with an open investigation (`caseloads_are_realistic` measures ≈ 46).
const OPEN_DAYS_PER_CASE: f64 = 46.0;
/// Open assessments and investigations per caseworker the pools are sized for.
const TARGET_CASELOAD: f64 = 18.0;

// Common Swedish names, written without diacritics as they would be in an address. Only used for
// synthetic addresses.
const FIRST_NAMES: [&str; 40] = [
    "anna", "eva", "maria", "karin", "sara", "lena", "kristina", "emma", "elin", "johanna", "linnea", "malin", "ida",
    "hanna", "sofia", "camilla", "jenny", "therese", "frida", "amira", "erik", "lars", "karl", "anders", "johan",
    "per", "mikael", "fredrik", "daniel", "jonas", "andreas", "david", "oskar", "magnus", "mattias", "henrik",
    "marcus", "niklas", "ahmed", "simon",
];
const LAST_NAMES: [&str; 40] = [
    "andersson",
    "johansson",
    "karlsson",
    "nilsson",
    "eriksson",
    "larsson",
    "olsson",
    "persson",
    "svensson",
    "gustafsson",
    "pettersson",
    "jonsson",
    "jansson",
    "hansson",
    "bengtsson",
    "lindberg",
    "lindqvist",
    "lindstrom",
    "lindgren",
    "berg",
    "axelsson",
    "hakansson",
    "lundberg",
    "bergstrom",
    "lundgren",
    "sandberg",
    "mattsson",
    "forsberg",
    "sjoberg",
    "wallin",
    "engstrom",
    "eklund",
    "danielsson",
    "lundin",
    "holm",
    "nyberg",
    "fransson",
    "ali",
    "mohammed",
    "hussein",
];
/// Steps through the first × last combinations so that neighbouring caseworkers get unrelated
/// names; coprime with 40 × 40, so every combination comes once before any repeats.
const NAME_STRIDE: usize = 613;

/// A row as dates, before it becomes text.
struct Draft {
    case_ref: String,
    unit: usize,
    /// Index into the unit's caseworker pool.
    caseworker: Option<usize>,
    child_sex: Option<&'static str>,
    received_on: Option<NaiveDate>,
    protection_assessed_on: Option<NaiveDate>,
    assessment_decided_on: Option<NaiveDate>,
    assessment_extended_to: Option<NaiveDate>,
    investigation_opened_on: Option<NaiveDate>,
    investigation_extended_to: Option<NaiveDate>,
    investigation_closed_on: Option<NaiveDate>,
    child_key: u128,
    follow_up_decided_on: Option<NaiveDate>,
    follow_up_ended_on: Option<NaiveDate>,
    reporter_info_requested_on: Option<NaiveDate>,
    reporter_informed_on: Option<NaiveDate>,
    updated_on: NaiveDate,
    /// Seconds since midnight UTC and microseconds of `updated_at`.
    updated_secs: u32,
    updated_micros: u32,
}

struct Generator {
    rng: StdRng,
    today: NaiveDate,
    window_start: NaiveDate,
    /// Valid rows received by the end of each day of the window, counted from `window_start`;
    /// the last entry is `cases`.
    received_by_day: Vec<usize>,
    day: usize,
    cases: usize,
    emitted: usize,
    broken: usize,
    broken_emitted: usize,
    /// Last running number handed out per year of receipt.
    numbers: Vec<(i32, u64)>,
    /// Each unit's caseworker addresses.
    pools: Vec<Vec<String>>,
    /// Draws of the optional columns, apart from `rng` so that the other columns stay the same.
    extra: StdRng,
    /// Closed investigations whose child's next investigation is to open within
    /// [`CHAIN_DAYS`], by closing day: (child key, sex). Only those whose window has not passed
    /// the day being generated are kept: a few months' worth.
    chains_waiting: BTreeMap<NaiveDate, Vec<(u128, Option<&'static str>)>>,
    /// Draws of the reporter's request and information, apart from `rng` and `extra` so that
    /// the other columns stay what they were before these columns existed.
    reporter: StdRng,
}

impl Generator {
    fn new(options: &DemoOptions) -> Generator {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let today = options.today;
        // Only fails within 18 months of chrono's earliest date; a one-day window is still valid.
        let window_start = today.checked_sub_months(Months::new(18)).unwrap_or(today);
        let days = usize::try_from((today - window_start).num_days()).unwrap_or(0) + 1;

        let mut weights = Vec::with_capacity(days);
        let mut day = window_start;
        for _ in 0..days {
            weights.push(day_weight(day) * (0.85 + 0.3 * rng.gen::<f64>()));
            day = plus_days(day, 1);
        }
        let total: f64 = weights.iter().sum();
        let mut received_by_day = Vec::with_capacity(days);
        let mut cumulative = 0.0;
        for weight in &weights {
            cumulative += weight;
            // Rounding a growing share of `cases` keeps the counts monotone and exact in total.
            let by_day = (options.cases as f64 * cumulative / total).round() as usize;
            received_by_day.push(by_day.min(options.cases));
        }
        if let Some(last) = received_by_day.last_mut() {
            *last = options.cases;
        }

        // The first year of the window starts where a full year of reports would have been.
        let per_day = options.cases as f64 / days as f64;
        let first_number = (per_day * f64::from(window_start.ordinal0())).round() as u64;

        let mut pools = Vec::with_capacity(DEMO_UNITS.len());
        let mut next_person = 0;
        for weight in UNIT_WEIGHTS {
            let unit_per_day = per_day * f64::from(weight) / 100.0;
            let size = ((unit_per_day * OPEN_DAYS_PER_CASE / TARGET_CASELOAD).round() as usize).max(1);
            pools.push((next_person..next_person + size).map(caseworker_address).collect());
            next_person += size;
        }

        Generator {
            rng,
            today,
            window_start,
            received_by_day,
            day: 0,
            cases: options.cases,
            emitted: 0,
            broken: options.broken,
            broken_emitted: 0,
            numbers: vec![(window_start.year(), first_number)],
            pools,
            extra: StdRng::seed_from_u64(options.seed ^ 0x6368_696c_645f_6b65),
            chains_waiting: BTreeMap::new(),
            reporter: StdRng::seed_from_u64(options.seed ^ 0x7265_706f_7274_6572),
        }
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        self.rng.gen_range(0..1000u32) < per_mille
    }

    /// `start` plus a delay from `draw`, drawn again (a few times) when the day falls on a
    /// weekend: caseworkers decide on weekdays; only the on-call service works weekends.
    fn weekday_after(&mut self, start: NaiveDate, draw: impl Fn(&mut StdRng) -> i64) -> NaiveDate {
        let mut day = plus_days(start, draw(&mut self.rng));
        for _ in 0..4 {
            if !is_weekend(day) || self.chance(WEEKEND_DECISION_KEPT) {
                break;
            }
            day = plus_days(start, draw(&mut self.rng));
        }
        day
    }

    /// The next case reference for a row registered in `year`.
    fn next_case_ref(&mut self, year: i32) -> String {
        let number = match self.numbers.iter_mut().find(|(y, _)| *y == year) {
            Some((_, last)) => {
                *last += 1;
                *last
            }
            None => {
                self.numbers.push((year, 1));
                1
            }
        };
        format!("{year}-BU-{number:05}")
    }

    fn pick_unit(&mut self) -> usize {
        let mut draw = self.rng.gen_range(0..100u32);
        for (unit, weight) in UNIT_WEIGHTS.iter().enumerate() {
            if draw < *weight {
                return unit;
            }
            draw -= weight;
        }
        // Unreachable while the weights sum to 100 (asserted by a test); the last unit is safe.
        UNIT_WEIGHTS.len() - 1
    }

    /// A valid case registered on `day`.
    fn case_on(&mut self, day: NaiveDate) -> Draft {
        let today = self.today;
        let case_ref = self.next_case_ref(day.year());
        let unit = self.pick_unit();
        let caseworker = if self.chance(NO_CASEWORKER) {
            None
        } else {
            // Drawn as u64, not usize, so that 32- and 64-bit platforms draw alike.
            let pool = self.pools[unit].len() as u64;
            Some(self.rng.gen_range(0..pool) as usize)
        };
        let child_sex = if self.chance(NO_SEX) {
            None
        } else if self.rng.gen::<bool>() {
            Some("F")
        } else {
            Some("M")
        };
        let mut draft = Draft {
            case_ref,
            unit,
            caseworker,
            child_sex,
            received_on: None,
            protection_assessed_on: None,
            assessment_decided_on: None,
            assessment_extended_to: None,
            investigation_opened_on: None,
            investigation_extended_to: None,
            investigation_closed_on: None,
            child_key: self.extra.gen::<u128>(),
            follow_up_decided_on: None,
            follow_up_ended_on: None,
            reporter_info_requested_on: None,
            reporter_informed_on: None,
            updated_on: day,
            updated_secs: 0,
            updated_micros: 0,
        };

        let opened = if self.chance(ON_APPLICATION) {
            Some(day)
        } else {
            draft.received_on = Some(day);
            self.draw_protection(&mut draft, day);
            let decided = self.draw_assessment(&mut draft, day);
            if self.chance(OPENS_INVESTIGATION) {
                decided
            } else {
                None
            }
        };
        if let Some(opened) = opened {
            draft.investigation_opened_on = Some(opened);
            self.draw_investigation(&mut draft, opened);
            if draft.received_on.is_none() {
                self.draw_report_into_open(&mut draft, opened);
            }
            self.draw_chain_and_follow_up(&mut draft, day, opened);
        }
        self.draw_reporter_information(&mut draft);

        for event in [
            draft.received_on,
            draft.protection_assessed_on,
            draft.assessment_decided_on,
            draft.investigation_opened_on,
            draft.investigation_closed_on,
            draft.follow_up_decided_on,
            draft.follow_up_ended_on,
            draft.reporter_info_requested_on,
            draft.reporter_informed_on,
        ]
        .into_iter()
        .flatten()
        {
            draft.updated_on = draft.updated_on.max(event);
        }
        debug_assert!(draft.updated_on <= today);
        draft.updated_secs = if self.chance(800) {
            // Office hours in Stockholm, 08–18 local, are 06–16 or 07–17 UTC.
            self.rng.gen_range(6 * 3600..16 * 3600)
        } else {
            self.rng.gen_range(0..24 * 3600)
        };
        draft.updated_micros = self.rng.gen_range(0..1_000_000);
        draft
    }

    fn draw_protection(&mut self, draft: &mut Draft, received: NaiveDate) {
        let draw = self.rng.gen_range(0..1000u32);
        let delay = if draw < PROTECTION_SAME_DAY {
            0
        } else if draw < PROTECTION_SAME_DAY + PROTECTION_NEXT_DAY {
            1
        } else if draw < PROTECTION_SAME_DAY + PROTECTION_NEXT_DAY + PROTECTION_LATER {
            self.rng.gen_range(2..=6)
        } else {
            return;
        };
        draft.protection_assessed_on = Some(plus_days(received, delay)).filter(|d| *d <= self.today);
    }

    /// Draws the preliminary assessment; returns the decision day when it has come.
    fn draw_assessment(&mut self, draft: &mut Draft, received: NaiveDate) -> Option<NaiveDate> {
        let nominal = plus_days(received, 14);
        let decided = if self.chance(ASSESSMENT_EXTENDED) {
            let extended_to = plus_days(nominal, self.rng.gen_range(7..=21));
            // The extension is decided before the nominal last day runs out.
            let extension_decided = plus_days(received, self.rng.gen_range(7..=14));
            if extended_to <= self.today {
                draft.assessment_extended_to = Some(extended_to);
                draft.updated_on = draft.updated_on.max(extension_decided);
            }
            // At least a day, even where dates saturate at chrono's last day.
            let span = (extended_to - nominal).num_days().max(1);
            if self.chance(850) {
                self.weekday_after(nominal, |rng| rng.gen_range(1..=span))
            } else {
                self.weekday_after(extended_to, |rng| rng.gen_range(1..=14))
            }
        } else if self.chance(ASSESSMENT_LATE) {
            // Skewed towards just late: the smaller of two draws.
            self.weekday_after(received, |rng| 15 + rng.gen_range(0..45).min(rng.gen_range(0..45)))
        } else {
            self.weekday_after(received, |rng| rng.gen_range(0..=14))
        };
        let decided = Some(decided).filter(|d| *d <= self.today);
        draft.assessment_decided_on = decided;
        decided
    }

    fn draw_investigation(&mut self, draft: &mut Draft, opened: NaiveDate) {
        let nominal = plus_months(opened, 4);
        let closed = if self.chance(INVESTIGATION_EXTENDED) {
            let extended_to = plus_months(nominal, self.rng.gen_range(1..=2));
            // The nämnd decides the extension in the last days before the nominal last day.
            let extension_decided = plus_days(nominal, -self.rng.gen_range(0..=10)).max(opened);
            if extended_to <= self.today {
                draft.investigation_extended_to = Some(extended_to);
                draft.updated_on = draft.updated_on.max(extension_decided);
            }
            if self.chance(850) {
                let span = (extended_to - nominal).num_days().max(1);
                self.weekday_after(nominal, |rng| rng.gen_range(1..=span))
            } else {
                self.weekday_after(extended_to, |rng| rng.gen_range(1..=30))
            }
        } else if self.chance(INVESTIGATION_LATE) {
            self.weekday_after(nominal, |rng| 1 + rng.gen_range(0..75).min(rng.gen_range(0..75)))
        } else {
            // Skewed towards the limit, as investigations tend to use the time they have: the
            // larger of two draws.
            let limit = (nominal - opened).num_days().max(14);
            self.weekday_after(opened, |rng| rng.gen_range(14..=limit).max(rng.gen_range(14..=limit)))
        };
        draft.investigation_closed_on = Some(closed).filter(|d| *d <= self.today);
    }

    /// A report about the child of an investigation opened on application, while it is open:
    /// the protection assessment that day or the next, no preliminary assessment (contract §1).
    fn draw_report_into_open(&mut self, draft: &mut Draft, opened: NaiveDate) {
        if self.extra.gen_range(0..1000u32) >= REPORT_INTO_OPEN {
            return;
        }
        let received = plus_days(opened, self.extra.gen_range(3..=60));
        let protected = plus_days(received, i64::from(self.extra.gen_range(0..1000u32) >= 900));
        let open_then = draft.investigation_closed_on.is_none_or(|closed| closed >= received);
        if received <= self.today && open_then {
            draft.received_on = Some(received);
            draft.protection_assessed_on = Some(protected).filter(|d| *d <= self.today);
        }
    }

    /// The optional columns of an investigation: the child of a recently closed investigation
    /// when this one opens within the chain window after it (the chain); and, once closed, maybe
    /// a follow-up, maybe a chained successor to come. `day` is the day the row is registered.
    fn draw_chain_and_follow_up(&mut self, draft: &mut Draft, day: NaiveDate, opened: NaiveDate) {
        // No later row registers before `day`, so none can open within a window ended before it.
        self.chains_waiting = self.chains_waiting.split_off(&plus_days(day, -CHAIN_DAYS));
        let earliest = plus_days(opened, -CHAIN_DAYS);
        if let Some((&closed, _)) = self.chains_waiting.range(earliest..=opened).next() {
            if let Some(waiting) = self.chains_waiting.get_mut(&closed) {
                let (key, sex) = waiting.remove(0);
                if waiting.is_empty() {
                    self.chains_waiting.remove(&closed);
                }
                draft.child_key = key;
                draft.child_sex = sex;
            }
        }
        let Some(closed) = draft.investigation_closed_on else {
            return;
        };
        if self.extra.gen_range(0..1000u32) < CHAIN_STARTS {
            self.chains_waiting.entry(closed).or_default().push((draft.child_key, draft.child_sex));
        }
        if self.extra.gen_range(0..1000u32) < FOLLOW_UP {
            let decided = plus_days(closed, self.extra.gen_range(0..=3));
            let nominal = plus_months(closed, 6);
            let ended = if self.extra.gen_range(0..1000u32) < FOLLOW_UP_IN_TIME {
                let span = (nominal - closed).num_days().max(21);
                plus_days(closed, self.extra.gen_range(21..=span))
            } else {
                plus_days(nominal, self.extra.gen_range(1..=20))
            };
            if decided <= self.today {
                draft.follow_up_decided_on = Some(decided);
                draft.follow_up_ended_on = Some(ended).filter(|d| *d <= self.today);
            }
        }
    }

    /// The reporter's request to be told whether an investigation was opened, and the day they
    /// were told (SoL 19 kap. 6 §): only for reports received since the law came into force.
    fn draw_reporter_information(&mut self, draft: &mut Draft) {
        let Some(received) = draft.received_on else { return };
        if received < reporter_information_from() || self.reporter.gen_range(0..1000u32) >= REPORTER_ASKS {
            return;
        }
        let requested = if self.reporter.gen_range(0..1000u32) < 700 {
            received
        } else {
            plus_days(received, self.reporter.gen_range(1..=20))
        };
        if requested > self.today {
            return;
        }
        draft.reporter_info_requested_on = Some(requested);
        let in_time = self.reporter.gen_range(0..1000u32) < REPORTER_INFORMED_IN_TIME;
        let into_open = draft.investigation_opened_on.is_some_and(|opened| opened < received);
        let informed = match draft.assessment_decided_on {
            // A report into an open investigation needs no decision: told at once ("genast").
            _ if into_open => plus_days(
                requested,
                if in_time { self.reporter.gen_range(0..=1) } else { 2 + self.reporter.gen_range(0..=8) },
            ),
            // Told with, or within a week of, the decision (or of a request that came later).
            Some(decided) => {
                let from = decided.max(requested);
                plus_days(from, if in_time { self.reporter.gen_range(0..=7) } else { self.reporter.gen_range(8..=21) })
            }
            None => return,
        };
        draft.reporter_informed_on = Some(informed).filter(|d| *d <= self.today);
    }

    /// The `index`-th broken row: a normal case, old enough to be decided, then broken.
    fn broken_case(&mut self, index: usize) -> RawRow {
        let last_start = self.received_by_day.len().saturating_sub(61);
        let offset = self.rng.gen_range(0..=last_start as u64);
        let day = plus_days(self.window_start, offset as i64);
        let mut draft = self.case_on(day);
        let kind = BrokenKind::of_broken_row(index);
        if kind == BrokenKind::CloseBeforeStart {
            let opened = draft.investigation_opened_on.or(draft.assessment_decided_on).unwrap_or(day);
            draft.investigation_opened_on = Some(opened);
            draft.investigation_extended_to = None;
            draft.investigation_closed_on = Some(plus_days(opened, -self.rng.gen_range(1..=20)));
            draft.updated_on = draft.updated_on.max(opened);
        }
        let mut case = self.render(&draft);
        match kind {
            BrokenKind::UnparsableDate => {
                // Alternate an impossible day and a foreign format, in two different columns.
                let year = self.today.year();
                if (index / BrokenKind::ALL.len()).is_multiple_of(2) {
                    case.received_on = Some(format!("{year:04}-02-30"));
                } else {
                    case.assessment_decided_on = Some(format!("31/12/{:04}", year - 1));
                }
            }
            BrokenKind::CloseBeforeStart => {}
            BrokenKind::EmptyUnit => case.unit = Some(String::new()),
            BrokenKind::EmptyCaseRef => case.case_ref = None,
            BrokenKind::UnknownSex => case.child_sex = Some("X".to_owned()),
        }
        case
    }

    fn render(&self, draft: &Draft) -> RawRow {
        let updated_at = format!(
            "{}T{:02}:{:02}:{:02}.{:06}Z",
            date_text(draft.updated_on),
            draft.updated_secs / 3600,
            draft.updated_secs / 60 % 60,
            draft.updated_secs % 60,
            draft.updated_micros,
        );
        RawRow {
            case_ref: Some(draft.case_ref.clone()),
            unit: Some(DEMO_UNITS[draft.unit].0.to_owned()),
            caseworker: draft.caseworker.map(|i| self.pools[draft.unit][i].clone()),
            child_sex: draft.child_sex.map(str::to_owned),
            received_on: draft.received_on.map(date_text),
            protection_assessed_on: draft.protection_assessed_on.map(date_text),
            assessment_decided_on: draft.assessment_decided_on.map(date_text),
            assessment_extended_to: draft.assessment_extended_to.map(date_text),
            investigation_opened_on: draft.investigation_opened_on.map(date_text),
            investigation_extended_to: draft.investigation_extended_to.map(date_text),
            investigation_closed_on: draft.investigation_closed_on.map(date_text),
            updated_at: Some(updated_at),
            child_key: Some(format!("{:032x}", draft.child_key)),
            follow_up_decided_on: draft.follow_up_decided_on.map(date_text),
            follow_up_ended_on: draft.follow_up_ended_on.map(date_text),
            reporter_info_requested_on: draft.reporter_info_requested_on.map(date_text),
            reporter_informed_on: draft.reporter_informed_on.map(date_text),
        }
    }
}

impl Iterator for Generator {
    type Item = RawRow;

    fn next(&mut self) -> Option<RawRow> {
        if self.emitted < self.cases {
            // Terminates: the last entry of `received_by_day` is `cases` > `emitted`.
            while self.received_by_day[self.day] <= self.emitted {
                self.day += 1;
            }
            self.emitted += 1;
            let day = plus_days(self.window_start, self.day as i64);
            let draft = self.case_on(day);
            return Some(self.render(&draft));
        }
        if self.broken_emitted < self.broken {
            let case = self.broken_case(self.broken_emitted);
            self.broken_emitted += 1;
            return Some(case);
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.cases - self.emitted) + (self.broken - self.broken_emitted);
        (left, Some(left))
    }
}

/// How many reports a day draws, relative to an ordinary weekday.
fn day_weight(day: NaiveDate) -> f64 {
    // Schools, preschools and health care, who make most reports, work weekdays; the police and
    // the on-call service do not stop.
    let mut weight: f64 = match day.weekday() {
        Weekday::Sat | Weekday::Sun => 0.2,
        // The weekend's worries reach the office on Monday.
        Weekday::Mon => 1.1,
        _ => 1.0,
    };
    // Fixed public holidays and the "aftnar" (Easter and midsummer move; left out for brevity).
    if matches!((day.month(), day.day()), (1, 1) | (1, 6) | (5, 1) | (6, 6) | (12, 24) | (12, 25) | (12, 26) | (12, 31))
    {
        weight = weight.min(0.25);
    }
    // Summer holidays: schools are closed.
    if day.month() == 7 {
        weight *= 0.7;
    }
    weight
}

fn is_weekend(day: NaiveDate) -> bool {
    matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
}

/// `day` moved by `days`, saturating at chrono's range; dates that far out are dropped anyway as
/// being after `today`.
fn plus_days(day: NaiveDate, days: i64) -> NaiveDate {
    let moved = if days >= 0 {
        day.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        day.checked_sub_days(Days::new(days.unsigned_abs()))
    };
    moved.unwrap_or(if days >= 0 { NaiveDate::MAX } else { NaiveDate::MIN })
}

/// `day` plus whole months: the same day number, else that month's last day (lag 1930:173 1 §),
/// which is what chrono does.
fn plus_months(day: NaiveDate, months: u32) -> NaiveDate {
    day.checked_add_months(Months::new(months)).unwrap_or(NaiveDate::MAX)
}

/// The day SoL 19 kap. 6 § (the reporter's right to be told) came into force.
fn reporter_information_from() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 15).unwrap_or(NaiveDate::MIN)
}

fn date_text(day: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", day.year(), day.month(), day.day())
}

/// The synthetic address of the `index`-th caseworker of the whole set; unique per index.
fn caseworker_address(index: usize) -> String {
    let combinations = FIRST_NAMES.len() * LAST_NAMES.len();
    let combination = index * NAME_STRIDE % combinations;
    let first = FIRST_NAMES[combination % FIRST_NAMES.len()];
    let last = LAST_NAMES[combination / FIRST_NAMES.len()];
    // Past 1 600 people, a number tells namesakes apart, as mail systems do.
    match index / combinations {
        0 => format!("{first}.{last}@kommun.example"),
        round => format!("{first}.{last}{}@kommun.example", round + 1),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use chrono::NaiveDateTime;

    use super::*;

    const SAMPLE: usize = 20_000;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 15).unwrap()
    }

    fn options(cases: usize, seed: u64, broken: usize) -> DemoOptions {
        DemoOptions { cases, seed, today: today(), broken }
    }

    fn sample() -> Vec<RawRow> {
        generate(&options(SAMPLE, 42, 0)).collect()
    }

    /// Parses a date column strictly: `YYYY-MM-DD`, nothing else.
    fn date(text: &str) -> NaiveDate {
        assert_eq!(text.len(), 10, "not YYYY-MM-DD: {text}");
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn opt_date(text: &Option<String>) -> Option<NaiveDate> {
        text.as_deref().map(date)
    }

    fn case_ref(case: &RawRow) -> &str {
        case.case_ref.as_deref().unwrap()
    }

    fn unit(case: &RawRow) -> &str {
        case.unit.as_deref().unwrap()
    }

    fn updated_at(case: &RawRow) -> NaiveDateTime {
        let parsed =
            NaiveDateTime::parse_from_str(case.updated_at.as_deref().unwrap(), "%Y-%m-%dT%H:%M:%S%.6fZ").unwrap();
        // Round trip: exactly six fractional digits.
        assert_eq!(parsed.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), case.updated_at.as_deref().unwrap());
        parsed
    }

    fn share(part: usize, whole: usize) -> f64 {
        assert!(whole > 0, "empty denominator");
        part as f64 / whole as f64
    }

    fn assert_near(name: &str, measured: f64, expected: f64, tolerance: f64) {
        eprintln!("{name}: {:.2} % (expected {:.1} %)", measured * 100.0, expected * 100.0);
        assert!(
            (measured - expected).abs() <= tolerance,
            "{name}: measured {measured:.4}, expected {expected} ± {tolerance}"
        );
    }

    #[test]
    fn units_are_distinct_and_weights_sum_to_100() {
        let codes: HashSet<_> = DEMO_UNITS.iter().map(|(code, _)| *code).collect();
        let names: HashSet<_> = DEMO_UNITS.iter().map(|(_, name)| *name).collect();
        assert_eq!(codes.len(), 14);
        assert_eq!(names.len(), 14);
        assert!(codes.iter().all(|c| c.len() == 6 && c.ends_with("-BU")));
        assert_eq!(UNIT_WEIGHTS.iter().sum::<u32>(), 100);
    }

    #[test]
    fn unit_addresses_use_the_lower_case_code() {
        assert_eq!(
            demo_unit_addresses("BRO-BU"),
            ("gl.bro-bu@kommun.example".to_owned(), "ec.bro-bu@kommun.example".to_owned())
        );
    }

    #[test]
    fn valid_rows_keep_the_contract() {
        let cases = sample();
        assert_eq!(cases.len(), SAMPLE);
        let end_of_today = today().and_hms_micro_opt(23, 59, 59, 999_999).unwrap();
        let window_start = today().checked_sub_months(Months::new(18)).unwrap();
        let units: HashSet<_> = DEMO_UNITS.iter().map(|(code, _)| *code).collect();
        let mut refs = HashSet::new();
        let mut previous_received = window_start;
        for case in &cases {
            assert!(units.contains(unit(case)), "{case:?}");
            assert!(refs.insert(case_ref(case)), "duplicate {}", case_ref(case));
            if let Some(sex) = &case.child_sex {
                assert!(sex == "F" || sex == "M", "{case:?}");
            }
            if let Some(address) = &case.caseworker {
                assert!(address.ends_with("@kommun.example") && address.contains('.'));
            }

            let received = opt_date(&case.received_on);
            let protected = opt_date(&case.protection_assessed_on);
            let decided = opt_date(&case.assessment_decided_on);
            let assessment_extended = opt_date(&case.assessment_extended_to);
            let opened = opt_date(&case.investigation_opened_on);
            let investigation_extended = opt_date(&case.investigation_extended_to);
            let closed = opt_date(&case.investigation_closed_on);
            let all = [received, protected, decided, assessment_extended, opened, investigation_extended, closed];
            for day in all.into_iter().flatten() {
                assert!(day <= today(), "date after today: {case:?}");
            }

            // Registered on the day of receipt (or of opening, on application, also when a report
            // came in during the investigation later), in order.
            let registered = [received, opened].into_iter().flatten().min().unwrap();
            assert!(registered >= window_start && registered >= previous_received);
            previous_received = registered;
            let (year, rest) = case_ref(case).split_once("-BU-").unwrap();
            assert_eq!(year.parse::<i32>().unwrap(), registered.year());
            assert!(rest.len() >= 5 && rest.bytes().all(|b| b.is_ascii_digit()));

            let follow_up_decided = opt_date(&case.follow_up_decided_on);
            let follow_up_ended = opt_date(&case.follow_up_ended_on);
            for day in [follow_up_decided, follow_up_ended].into_iter().flatten() {
                assert!(day <= today(), "date after today: {case:?}");
            }
            match (follow_up_decided, closed) {
                (Some(decided), Some(closed)) => {
                    assert!(decided >= closed && follow_up_ended.is_none_or(|e| e >= decided), "{case:?}")
                }
                (Some(_), None) => panic!("a follow-up of an open investigation: {case:?}"),
                (None, _) => assert!(follow_up_ended.is_none(), "{case:?}"),
            }
            let key = case.child_key.as_deref().unwrap();
            assert!(key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()), "{case:?}");

            match received {
                Some(received) if opened.is_some_and(|o| o < received) => {
                    // A report during the investigation: protection, no assessment.
                    assert!(closed.is_none_or(|c| c >= received), "{case:?}");
                    assert!(protected.is_none_or(|d| d >= received), "{case:?}");
                    assert!(decided.is_none() && assessment_extended.is_none(), "{case:?}");
                }
                Some(received) => {
                    assert!(protected.is_none_or(|d| d >= received), "{case:?}");
                    assert!(decided.is_none_or(|d| d >= received), "{case:?}");
                    assert!(assessment_extended.is_none_or(|d| d > received + Days::new(14)), "{case:?}");
                    // An investigation opens on the assessment decision.
                    assert!(opened.is_none() || opened == decided, "{case:?}");
                }
                None => {
                    assert!(opened.is_some(), "neither report nor investigation: {case:?}");
                    assert!(protected.is_none() && decided.is_none());
                }
            }
            match opened {
                Some(opened) => {
                    assert!(closed.is_none_or(|d| d >= opened), "close before start: {case:?}");
                    assert!(investigation_extended.is_none_or(|d| d > opened + Months::new(4)), "{case:?}");
                }
                None => assert!(closed.is_none() && investigation_extended.is_none()),
            }

            let updated = updated_at(case);
            assert!(updated <= end_of_today, "{case:?}");
            let latest_event = [received, protected, decided, opened, closed, follow_up_decided, follow_up_ended]
                .into_iter()
                .flatten()
                .max()
                .unwrap();
            assert!(updated.date() >= latest_event, "{case:?}");
        }
    }

    #[test]
    fn proportions_are_realistic() {
        let cases = sample();
        let today = today();
        let before = |days: u64| today - Days::new(days);

        let mut per_unit: HashMap<&str, usize> = HashMap::new();
        for case in &cases {
            *per_unit.entry(unit(case)).or_default() += 1;
        }
        eprintln!("cases per unit: {per_unit:?}");
        for ((code, _), weight) in DEMO_UNITS.iter().zip(UNIT_WEIGHTS) {
            let measured = share(per_unit.get(code).copied().unwrap_or(0), cases.len());
            assert!((measured - f64::from(weight) / 100.0).abs() < 0.012, "{code}: {measured}");
        }
        let largest = per_unit.values().max().unwrap();
        let smallest = per_unit.values().min().unwrap();
        assert!(*largest > 3 * smallest, "units should differ in size");

        // Reports that opened the case (not those into an investigation opened on application).
        let into_open = |c: &RawRow| {
            opt_date(&c.investigation_opened_on).is_some_and(|o| opt_date(&c.received_on).is_some_and(|r| o < r))
        };
        let reports: Vec<_> = cases.iter().filter(|c| c.received_on.is_some() && !into_open(c)).collect();
        assert_near("on application", share(cases.len() - reports.len(), cases.len()), 0.01, 0.004);
        let weekend = reports.iter().filter(|c| is_weekend(opt_date(&c.received_on).unwrap())).count();
        assert_near("reports on a weekend", share(weekend, reports.len()), 0.07, 0.02);
        let july = reports.iter().filter(|c| opt_date(&c.received_on).unwrap().month() == 7).count();
        eprintln!("reports in July: {:.2} %", share(july, reports.len()) * 100.0);

        // Protection, on reports old enough for every delay to have come.
        let settled: Vec<_> = reports.iter().filter(|c| opt_date(&c.received_on).unwrap() <= before(10)).collect();
        let delay = |c: &RawRow| {
            opt_date(&c.protection_assessed_on).map(|d| (d - opt_date(&c.received_on).unwrap()).num_days())
        };
        let count = |f: &dyn Fn(Option<i64>) -> bool| settled.iter().filter(|c| f(delay(c))).count();
        let n = settled.len();
        assert_near("protection same day", share(count(&|d| d == Some(0)), n), 0.88, 0.015);
        assert_near("protection next day", share(count(&|d| d == Some(1)), n), 0.087, 0.01);
        assert_near("protection later", share(count(&|d| d.is_some_and(|d| d > 1)), n), 0.03, 0.008);
        assert_near("protection missing", share(count(&|d| d.is_none()), n), 0.003, 0.003);

        // Assessments, on reports old enough for the late ones to be decided.
        let old: Vec<_> = reports.iter().filter(|c| opt_date(&c.received_on).unwrap() <= before(90)).collect();
        assert!(old.iter().all(|c| c.assessment_decided_on.is_some()));
        let late = old
            .iter()
            .filter(|c| opt_date(&c.assessment_decided_on).unwrap() > opt_date(&c.received_on).unwrap() + Days::new(14))
            .count();
        assert_near("assessments decided after 14 days", share(late, old.len()), 0.25, 0.02);
        let extended = old.iter().filter(|c| c.assessment_extended_to.is_some()).count();
        assert_near("assessments extended", share(extended, old.len()), 0.01, 0.004);
        let weekend_decisions = old.iter().filter(|c| is_weekend(opt_date(&c.assessment_decided_on).unwrap())).count();
        eprintln!("assessments decided on a weekend: {:.2} %", share(weekend_decisions, old.len()) * 100.0);
        let investigated = old.iter().filter(|c| c.investigation_opened_on.is_some()).count();
        assert_near("assessments opening an investigation", share(investigated, old.len()), 0.38, 0.015);

        // Investigations, opened long enough ago for all to be closed.
        let finished: Vec<_> =
            cases.iter().filter(|c| opt_date(&c.investigation_opened_on).is_some_and(|d| d <= before(240))).collect();
        assert!(finished.iter().all(|c| c.investigation_closed_on.is_some()));
        let late = finished
            .iter()
            .filter(|c| {
                opt_date(&c.investigation_closed_on).unwrap()
                    > opt_date(&c.investigation_opened_on).unwrap() + Months::new(4)
            })
            .count();
        assert_near("investigations closed after 4 months", share(late, finished.len()), 0.125, 0.025);
        let extended = finished.iter().filter(|c| c.investigation_extended_to.is_some()).count();
        assert_near("investigations extended", share(extended, finished.len()), 0.05, 0.015);

        // The state on `today`: recent cases open, some investigations overdue.
        let open_assessments = reports.iter().filter(|c| c.assessment_decided_on.is_none()).count();
        let open_investigations: Vec<_> = cases
            .iter()
            .filter(|c| c.investigation_opened_on.is_some() && c.investigation_closed_on.is_none())
            .collect();
        let overdue = open_investigations
            .iter()
            .filter(|c| {
                let opened = opt_date(&c.investigation_opened_on).unwrap();
                let due = opt_date(&c.investigation_extended_to).unwrap_or(opened + Months::new(4));
                due < today
            })
            .count();
        eprintln!(
            "on today: {open_assessments} open assessments, {} open investigations, {overdue} overdue",
            open_investigations.len()
        );
        assert!(open_assessments > 0 && overdue > 0);
        assert!(overdue < open_investigations.len() / 4);

        let no_caseworker = cases.iter().filter(|c| c.caseworker.is_none()).count();
        assert_near("no caseworker", share(no_caseworker, cases.len()), 0.02, 0.005);
        let no_sex = cases.iter().filter(|c| c.child_sex.is_none()).count();
        assert_near("child's sex null", share(no_sex, cases.len()), 0.01, 0.004);
        let girls = cases.iter().filter(|c| c.child_sex.as_deref() == Some("F")).count();
        assert_near("girls among known sex", share(girls, cases.len() - no_sex), 0.5, 0.015);
    }

    #[test]
    fn caseloads_are_realistic() {
        let cases = sample();
        // Half a year back, the data is in steady state: nothing is cut off by `today` or by the
        // start of the window.
        let day = today() - Days::new(180);
        let mut pools: HashMap<&str, HashSet<&str>> = HashMap::new();
        let mut open: HashMap<&str, usize> = HashMap::new();
        for case in &cases {
            let Some(caseworker) = case.caseworker.as_deref() else {
                continue;
            };
            pools.entry(unit(case)).or_default().insert(caseworker);
            let is_open = |start: &Option<String>, end: &Option<String>| {
                opt_date(start).is_some_and(|s| s <= day) && opt_date(end).is_none_or(|e| e > day)
            };
            let into_open = opt_date(&case.investigation_opened_on) < opt_date(&case.received_on);
            let load = usize::from(!into_open && is_open(&case.received_on, &case.assessment_decided_on))
                + usize::from(is_open(&case.investigation_opened_on, &case.investigation_closed_on));
            *open.entry(unit(case)).or_default() += load;
        }
        let all: HashSet<_> = pools.values().flatten().collect();
        assert_eq!(all.len(), pools.values().map(HashSet::len).sum::<usize>(), "pools overlap");
        let per_day =
            SAMPLE as f64 / (today() - today().checked_sub_months(Months::new(18)).unwrap()).num_days() as f64;
        eprintln!(
            "open days per case: {:.1}",
            open.values().sum::<usize>() as f64 / per_day / (1.0 - f64::from(NO_CASEWORKER) / 1000.0)
        );
        for (unit, pool) in &pools {
            let caseload = open[unit] as f64 / pool.len() as f64;
            eprintln!("{unit}: {} caseworkers, {caseload:.1} open each", pool.len());
            assert!((10.0..=25.0).contains(&caseload), "{unit}: {caseload}");
        }
    }

    /// The optional columns' patterns come, a few per cent each: chains within the window (and
    /// only those share a key), follow-ups, reports into open investigations.
    #[test]
    fn chains_follow_ups_and_reports_into_open_investigations_are_there() {
        let cases = sample();
        let mut by_key: HashMap<&str, Vec<&RawRow>> = HashMap::new();
        for case in &cases {
            by_key.entry(case.child_key.as_deref().unwrap()).or_default().push(case);
        }
        let mut chained = 0;
        for group in by_key.values().filter(|g| g.len() > 1) {
            // In order of registration; each later one opens 0–30 days after the one before closed.
            for pair in group.windows(2) {
                let closed = opt_date(&pair[0].investigation_closed_on).unwrap();
                let opened = opt_date(&pair[1].investigation_opened_on).unwrap();
                assert!((0..=CHAIN_DAYS).contains(&(opened - closed).num_days()), "{pair:?}");
                assert_eq!(pair[0].child_sex, pair[1].child_sex);
                chained += 1;
            }
        }
        assert_near("chained investigations", share(chained, cases.len()), 0.012, 0.006);
        assert!(chained >= 20, "{chained} chains");
        let follow_ups = cases.iter().filter(|c| c.follow_up_decided_on.is_some()).count();
        assert_near("follow-ups", share(follow_ups, cases.len()), 0.025, 0.012);
        let late = cases
            .iter()
            .filter(|c| {
                let closed = opt_date(&c.investigation_closed_on);
                opt_date(&c.follow_up_ended_on).is_some_and(|e| e > closed.unwrap() + Months::new(6))
            })
            .count();
        assert!(late > 0 && late < follow_ups / 4, "{late} of {follow_ups} follow-ups ended late");
        let into_open = cases
            .iter()
            .filter(|c| opt_date(&c.investigation_opened_on).is_some_and(|o| opt_date(&c.received_on) > Some(o)))
            .count();
        assert_near("reports into open investigations", share(into_open, cases.len()), 0.004, 0.003);
        assert!(into_open >= 20, "{into_open} reports into open investigations");
    }

    /// About a tenth of the reports since SoL 19 kap. 6 § came into force ask to be told, and
    /// most of those are told within a week of the decision; none before.
    #[test]
    fn reporters_ask_and_are_told_on_reports_since_the_law() {
        let cases = sample();
        let since: Vec<_> = cases
            .iter()
            .filter(|c| opt_date(&c.received_on).is_some_and(|r| r >= reporter_information_from()))
            .collect();
        let asked: Vec<_> = since.iter().filter(|c| c.reporter_info_requested_on.is_some()).collect();
        assert_near("reports whose reporter asks", share(asked.len(), since.len()), 0.10, 0.025);
        assert!(asked.len() >= 50, "{} requests", asked.len());
        let (mut settled, mut in_week) = (0, 0);
        for case in &cases {
            let requested = opt_date(&case.reporter_info_requested_on);
            let informed = opt_date(&case.reporter_informed_on);
            let received = opt_date(&case.received_on);
            assert!(requested.is_none() || received.is_some_and(|r| r >= reporter_information_from()), "{case:?}");
            assert!(requested.is_none_or(|q| Some(q) >= received && q <= today()), "{case:?}");
            assert!(informed.is_none_or(|i| requested.is_some_and(|q| i >= q) && i <= today()), "{case:?}");
            if let (Some(decided), Some(requested)) = (opt_date(&case.assessment_decided_on), requested) {
                let from = decided.max(requested);
                if from <= today() - Days::new(30) {
                    settled += 1;
                    in_week += usize::from(informed.is_some_and(|i| i <= from + Days::new(7)));
                }
            }
        }
        assert_near("told within a week", share(in_week, settled), 0.85, 0.08);
    }

    #[test]
    fn same_seed_same_rows_other_seed_other_rows() {
        let first: Vec<_> = generate(&options(2_000, 7, 12)).collect();
        let again: Vec<_> = generate(&options(2_000, 7, 12)).collect();
        let other: Vec<_> = generate(&options(2_000, 8, 12)).collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
        let differing = first.iter().zip(&other).filter(|(a, b)| a != b).count();
        assert!(differing > 1_900, "only {differing} rows differ");
    }

    #[test]
    fn rows_are_generated_lazily() {
        // A million cases: the first rows come without the rest being made.
        let mut rows = generate(&options(1_000_000, 1, 0));
        assert_eq!(rows.size_hint(), (1_000_000, Some(1_000_000)));
        let first: Vec<_> = rows.by_ref().take(3).collect();
        assert_eq!(first.len(), 3);
        assert_eq!(rows.size_hint().0, 999_997);
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(generate(&options(0, 1, 0)).count(), 0);
        assert_eq!(generate(&options(1, 1, 0)).count(), 1);
        assert_eq!(generate(&options(0, 1, 3)).count(), 3);
        // A window reaching before chrono's first day still gives valid rows.
        let early = DemoOptions { today: NaiveDate::MIN + Days::new(3), ..options(5, 1, 0) };
        assert_eq!(generate(&early).count(), 5);
        // And so does one at chrono's last day, where dates saturate.
        let late = DemoOptions { today: NaiveDate::MAX, ..options(200, 1, 5) };
        assert_eq!(generate(&late).count(), 205);
    }

    #[test]
    fn broken_rows_cycle_through_the_kinds() {
        let cases: Vec<_> = generate(&options(100, 3, 10)).collect();
        assert_eq!(cases.len(), 110);
        let valid_refs: HashSet<_> = cases[..100].iter().map(case_ref).collect();
        for (index, case) in cases[100..].iter().enumerate() {
            let parses = |text: &Option<String>| {
                text.as_deref().is_none_or(|t| NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok())
            };
            let dates_parse = [
                &case.received_on,
                &case.protection_assessed_on,
                &case.assessment_decided_on,
                &case.assessment_extended_to,
                &case.investigation_opened_on,
                &case.investigation_extended_to,
                &case.investigation_closed_on,
            ]
            .into_iter()
            .all(parses);
            let close_before_start = dates_parse
                && matches!(
                    (opt_date(&case.investigation_opened_on), opt_date(&case.investigation_closed_on)),
                    (Some(opened), Some(closed)) if closed < opened
                );
            let breaks = [
                !dates_parse,
                close_before_start,
                unit(case).is_empty(),
                case.case_ref.is_none(),
                case.child_sex.as_deref() == Some("X"),
            ];
            let kind = BrokenKind::of_broken_row(index);
            let expected = BrokenKind::ALL.iter().position(|k| *k == kind).unwrap();
            for (i, broken) in breaks.iter().enumerate() {
                assert_eq!(*broken, i == expected, "row {index} ({kind:?}): {case:?}");
            }
            if case.case_ref.is_some() {
                assert!(!valid_refs.contains(case_ref(case)), "{case:?}");
            }
            updated_at(case);
        }
        let unparsable: Vec<_> =
            cases[100..].iter().step_by(5).map(|c| (c.received_on.clone(), c.assessment_decided_on.clone())).collect();
        assert_eq!(unparsable[0].0.as_deref(), Some("2026-02-30"));
        assert_eq!(unparsable[1].1.as_deref(), Some("31/12/2025"));
    }
}
