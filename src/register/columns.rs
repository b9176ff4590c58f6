//! The register view's columns, declared once (contract §1): [`COLUMNS`] and the row struct
//! [`RawRow`] are made by one table below, from which the SELECT and COPY column lists, the
//! encoding of a row ([`super::RowChunk`]), the demo register's writer, the bench and the test
//! helpers all take their columns. No column is known by its position.
//!
//! Architecture invariant: a row's print is the XXH3 of its encoded bytes, which hold the values
//! in the order of this table. The order and encoding of the columns listed must therefore never
//! change; a new column (always optional: a view that lacks it must still work) goes at the END.
//!
//! Adding a column: one line in the table (name, storage, nullable, the feature it drives); its
//! meaning in `validate` (a date column is a field of `rules::CaseDates`, which `validate`'s
//! struct literal makes the compiler ask for) and, for a new feature, a [`Feature`] with its
//! [`Features`] flag.

use Feature::{Chains, FollowUp, ReporterInformation};
use Presence::{Optional, Required};

/// How the view stores a column (contract §1). Every value is read as text whatever its storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// SQLite TEXT, PostgreSQL `text`.
    Text,
    /// A day: SQLite TEXT `YYYY-MM-DD`, PostgreSQL `date`.
    Date,
    /// An instant: SQLite TEXT in RFC 3339 UTC, PostgreSQL `timestamptz`. Read in the RFC 3339
    /// UTC form with microseconds on both engines (`pg_instant`).
    Instant,
}

impl Storage {
    /// The type of such a column in a SQLite table (the demo register).
    pub fn sqlite_type(self) -> &'static str {
        "TEXT"
    }

    /// The type of such a column in a PostgreSQL table (the bench's and the tests' registers).
    pub fn postgres_type(self) -> &'static str {
        match self {
            Storage::Text => "text",
            Storage::Date => "date",
            Storage::Instant => "timestamptz",
        }
    }
}

/// Whether every view has a column, or only a view with the feature it drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The view must have it: a view without it is refused, naming the column.
    Required,
    /// Looked for when the register is connected; an absent one is read as NULL and its
    /// feature is off.
    Optional(Feature),
}

/// One column of the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub storage: Storage,
    /// Whether the contract allows NULL (a table fristvakt creates declares the others NOT NULL).
    pub nullable: bool,
    pub presence: Presence,
}

impl Column {
    pub fn is_required(&self) -> bool {
        self.presence == Required
    }
}

/// Declares the columns: makes [`COLUMNS`], [`WIDTH`] and [`RawRow`] (with its values in the
/// table's order) from one list, so that they cannot disagree.
macro_rules! columns {
    ($( $(#[$doc:meta])* $name:ident: $storage:ident, nullable: $nullable:literal, $presence:expr; )*) => {
        /// The number of columns a row has (every optional column included, read as NULL when
        /// the view lacks it).
        pub const WIDTH: usize = [$(stringify!($name)),*].len();

        /// The view's columns in the order they are read, encoded and printed.
        pub const COLUMNS: [Column; WIDTH] = [
            $(Column { name: stringify!($name), storage: Storage::$storage, nullable: $nullable, presence: $presence },)*
        ];

        /// One row exactly as the view holds it, every value as text (`None`: NULL, also for an
        /// optional column the view does not have). Its fields are [`COLUMNS`], in order.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct RawRow {
            $($(#[$doc])* pub $name: Option<String>,)*
        }

        impl RawRow {
            /// The values in the order of [`COLUMNS`].
            pub fn values(&self) -> [&Option<String>; WIDTH] {
                [$(&self.$name),*]
            }

            /// The values in the order of [`COLUMNS`], to be set.
            pub fn values_mut(&mut self) -> [&mut Option<String>; WIDTH] {
                [$(&mut self.$name),*]
            }

            /// A row from its values in the order of [`COLUMNS`]; missing ones are NULL.
            pub fn from_values(values: impl IntoIterator<Item = Option<String>>) -> RawRow {
                let mut values = values.into_iter();
                RawRow { $($name: values.next().flatten(),)* }
            }
        }
    };
}

columns! {
    /// Case reference (diarienummer): unique, the only identifier that may appear in mail.
    case_ref: Text, nullable: false, Required;
    /// Code of the responsible unit.
    unit: Text, nullable: false, Required;
    /// The responsible caseworker's e-mail address.
    caseworker: Text, nullable: true, Required;
    /// `F`, `M` or NULL; for aggregated figures only.
    child_sex: Text, nullable: true, Required;
    /// The report (anmälan) came in.
    received_on: Date, nullable: true, Required;
    /// Protection assessment (skyddsbedömning) made.
    protection_assessed_on: Date, nullable: true, Required;
    /// Preliminary assessment (förhandsbedömning) decided.
    assessment_decided_on: Date, nullable: true, Required;
    /// Longer assessment time decided (synnerliga skäl).
    assessment_extended_to: Date, nullable: true, Required;
    /// Decision to open an investigation.
    investigation_opened_on: Date, nullable: true, Required;
    /// Decided extension of the investigation (särskilda skäl).
    investigation_extended_to: Date, nullable: true, Required;
    /// Investigation closed.
    investigation_closed_on: Date, nullable: true, Required;
    /// Last change of the row; drives incremental polling.
    updated_at: Instant, nullable: false, Required;
    /// The child's pseudonymous key (never logged or shown).
    child_key: Text, nullable: true, Optional(Chains);
    /// Follow-up decided after an investigation closed without measures (SoL 23 kap. 1 §).
    follow_up_decided_on: Date, nullable: true, Optional(FollowUp);
    /// The follow-up ended.
    follow_up_ended_on: Date, nullable: true, Optional(FollowUp);
    /// The reporter asked to be told whether an investigation was opened (SoL 19 kap. 6 §).
    reporter_info_requested_on: Date, nullable: true, Optional(ReporterInformation);
    /// The reporter was informed, or informing was judged unsuitable.
    reporter_informed_on: Date, nullable: true, Optional(ReporterInformation);
}

/// The place of the column `name` in [`COLUMNS`]; a name not in the table fails the build
/// where a constant is made of it.
pub(crate) const fn position(name: &str) -> usize {
    let mut i = 0;
    while i < WIDTH {
        if same_name(COLUMNS[i].name, name) {
            return i;
        }
        i += 1;
    }
    panic!("no such register column")
}

/// Whether two column names are equal, in a `const fn` (where `==` on `str` is not allowed).
pub(crate) const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut j = 0;
    while j < a.len() && a[j] == b[j] {
        j += 1;
    }
    j == a.len()
}

/// What a group of optional columns drives; on when the view has every one of its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Chained investigations and the rules across one child's cases (`child_key`).
    Chains,
    /// The follow-up clock.
    FollowUp,
    /// The reporter-information clock (SoL 19 kap. 6 §).
    ReporterInformation,
}

impl Feature {
    pub const ALL: [Feature; 3] = [Feature::Chains, Feature::FollowUp, Feature::ReporterInformation];

    /// What the feature is called in logs and `check-config`.
    pub fn label(self) -> &'static str {
        match self {
            Feature::Chains => "chained investigations",
            Feature::FollowUp => "follow-up clock",
            Feature::ReporterInformation => "reporter information",
        }
    }

    /// The columns the feature needs, in table order.
    pub fn columns(self) -> impl Iterator<Item = &'static Column> {
        COLUMNS.iter().filter(move |c| c.presence == Optional(self))
    }
}

/// Which optional features the view supports, found when the register is connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `child_key`: chained investigations are flagged, a child's cases are read together.
    pub chains: bool,
    /// `follow_up_decided_on` and `follow_up_ended_on`: the follow-up clock.
    pub follow_up: bool,
    /// `reporter_info_requested_on` and `reporter_informed_on`: the reporter-information clock.
    pub reporter_information: bool,
}

impl Features {
    /// The features whose columns `has` says the view has (every column of a feature needed).
    pub fn of_columns(has: impl Fn(&str) -> bool) -> Features {
        let mut features = Features::default();
        for feature in Feature::ALL {
            *features.flag(feature) = feature.columns().all(|c| has(c.name));
        }
        features
    }

    pub fn has(&self, feature: Feature) -> bool {
        match feature {
            Feature::Chains => self.chains,
            Feature::FollowUp => self.follow_up,
            Feature::ReporterInformation => self.reporter_information,
        }
    }

    fn flag(&mut self, feature: Feature) -> &mut bool {
        match feature {
            Feature::Chains => &mut self.chains,
            Feature::FollowUp => &mut self.follow_up,
            Feature::ReporterInformation => &mut self.reporter_information,
        }
    }

    /// Whether `column` is read from the view (otherwise it is read as NULL).
    pub fn reads(&self, column: &Column) -> bool {
        match column.presence {
            Required => true,
            Optional(feature) => self.has(feature),
        }
    }

    /// The features as one line for logs and `check-config`, naming the columns that drive them.
    pub fn describe(&self) -> String {
        Feature::ALL
            .iter()
            .map(|&feature| {
                let columns: Vec<&str> = feature.columns().map(|c| c.name).collect();
                format!(
                    "{} {} (column{} {})",
                    feature.label(),
                    if self.has(feature) { "on" } else { "off" },
                    if columns.len() == 1 { "" } else { "s" },
                    columns.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The columns of rows printed before this table existed keep their places: a change here
    /// changes every stored print.
    #[test]
    fn the_columns_keep_their_order_and_new_ones_are_optional_at_the_end() {
        let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(
            names[..15],
            [
                "case_ref",
                "unit",
                "caseworker",
                "child_sex",
                "received_on",
                "protection_assessed_on",
                "assessment_decided_on",
                "assessment_extended_to",
                "investigation_opened_on",
                "investigation_extended_to",
                "investigation_closed_on",
                "updated_at",
                "child_key",
                "follow_up_decided_on",
                "follow_up_ended_on",
            ]
        );
        // Every required column comes before every optional one.
        let first_optional = COLUMNS.iter().position(|c| !c.is_required()).unwrap();
        assert!(COLUMNS[first_optional..].iter().all(|c| !c.is_required()));
        let mut names = names.clone();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WIDTH);
    }

    #[test]
    fn a_row_s_values_follow_the_table() {
        let mut row = RawRow::default();
        for (column, value) in COLUMNS.iter().zip(row.values_mut()) {
            *value = Some(column.name.to_string());
        }
        assert_eq!(row.updated_at.as_deref(), Some("updated_at"));
        assert_eq!(row.reporter_informed_on.as_deref(), Some("reporter_informed_on"));
        assert_eq!(RawRow::from_values(row.values().into_iter().cloned()), row);
    }

    #[test]
    fn features_need_all_their_columns() {
        let features = Features::of_columns(|c| c != "follow_up_ended_on");
        assert_eq!(features, Features { chains: true, follow_up: false, reporter_information: true });
        assert!(features.reads(&COLUMNS[position("case_ref")]));
        assert!(!features.reads(&COLUMNS[position("follow_up_ended_on")]));
        assert_eq!(
            features.describe(),
            "chained investigations on (column child_key), follow-up clock off (columns follow_up_decided_on, \
             follow_up_ended_on), reporter information on (columns reporter_info_requested_on, reporter_informed_on)"
        );
    }
}
