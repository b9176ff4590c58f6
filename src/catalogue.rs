//! The words of each statutory clock, in Swedish and English (`templates/clocks.{sv,en}.toml`).
//!
//! [`crate::rules::CLOCKS`] holds what a clock is; this catalogue holds what it is called and how
//! its law reads, keyed by the clock's machine name, so that no renderer words a kind itself. The
//! files are compiled in and read once; a unit test checks that each has an entry, with a name and
//! a rule, for every clock and every start event, that a clock with an extension column has the
//! extension's words, and that every rule cites its clock's paragraph.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::config::Language;
use crate::rules::{Kind, StartEvent};

/// The words of one clock in one language.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockWords {
    /// The name, capitalised as a heading ("Förhandsbedömning").
    pub name: String,
    /// The law in one sentence, citing its paragraph.
    pub rule: String,
    /// What a decided extension is, for a clock that has one ("Beslut har fattats om …").
    #[serde(default)]
    pub extension: Option<String>,
    /// What the deadline asks of the caseworker, as a verb phrase for a notice's "to do" line
    /// ("besluta om utredning ska inledas"); a general phrase when absent.
    #[serde(default)]
    pub todo: Option<String>,
    /// What happens when the day is missed, for a clock whose miss ends a measure by law
    /// ("omhändertagandet upphör"); notices say it.
    #[serde(default)]
    pub if_missed: Option<String>,
}

/// The words of every clock and start event in one language.
#[derive(Debug)]
pub struct Catalogue {
    clocks: Vec<ClockWords>,
    starts: Vec<String>,
}

#[derive(Deserialize)]
struct File {
    start: HashMap<String, String>,
    #[serde(flatten)]
    clocks: HashMap<String, ClockWords>,
}

const SWEDISH: &str = include_str!("../templates/clocks.sv.toml");
const ENGLISH: &str = include_str!("../templates/clocks.en.toml");

impl Catalogue {
    /// The catalogue of `language`, parsed on first use.
    pub fn of(language: Language) -> &'static Catalogue {
        static SV: OnceLock<Catalogue> = OnceLock::new();
        static EN: OnceLock<Catalogue> = OnceLock::new();
        let (cell, text) = match language {
            Language::Swedish => (&SV, SWEDISH),
            Language::English => (&EN, ENGLISH),
        };
        // Proven complete and well formed by `every_clock_has_its_words` for both files.
        cell.get_or_init(|| Catalogue::parse(text).expect("the compiled-in clock catalogue is complete"))
    }

    /// Parses a catalogue file, naming what is missing.
    pub fn parse(text: &str) -> Result<Catalogue, String> {
        let mut file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut clocks = Vec::with_capacity(Kind::ALL.len());
        for kind in Kind::ALL {
            let words = file.clocks.remove(kind.as_str()).ok_or_else(|| format!("no [{}] entry", kind.as_str()))?;
            if kind.clock().extension.is_some() && words.extension.is_none() {
                return Err(format!("[{}] needs `extension`: the clock has a decided extension", kind.as_str()));
            }
            clocks.push(words);
        }
        if let Some(unknown) = file.clocks.keys().next() {
            return Err(format!("[{unknown}] is no clock"));
        }
        let starts = StartEvent::ALL
            .iter()
            .map(|event| file.start.remove(event.as_str()).ok_or_else(|| format!("no start.{}", event.as_str())))
            .collect::<Result<_, _>>()?;
        Ok(Catalogue { clocks, starts })
    }

    /// The words of `kind`'s clock.
    pub fn clock(&self, kind: Kind) -> &ClockWords {
        &self.clocks[kind as usize]
    }

    /// The words of a start event ("anmälan kom in").
    pub fn start(&self, event: StartEvent) -> &str {
        &self.starts[StartEvent::ALL.iter().position(|e| *e == event).unwrap_or(0)]
    }
}

/// The name of `kind` in `language`, capitalised as a heading.
pub fn kind_name(language: Language, kind: Kind) -> &'static str {
    &Catalogue::of(language).clock(kind).name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clock_has_its_words() {
        for (language, text) in [(Language::Swedish, SWEDISH), (Language::English, ENGLISH)] {
            let catalogue = Catalogue::parse(text).unwrap_or_else(|e| panic!("{}: {e}", language.code()));
            for kind in Kind::ALL {
                let words = catalogue.clock(kind);
                assert!(!words.name.is_empty(), "{kind}");
                // "20 kap. 2 § socialtjänstlagen (2025:400)" is cited as "20 kap. 2 §" in the rule.
                let paragraph = kind.clock().citation.split(" socialtjänstlagen").next().unwrap();
                let first = paragraph.split(',').next().unwrap();
                assert!(words.rule.contains(first), "{} {kind}: the rule cites {first}", language.code());
                assert_eq!(words.extension.is_some(), kind.clock().extension.is_some(), "{kind}");
            }
        }
        assert_eq!(kind_name(Language::Swedish, Kind::FollowUp), "Uppföljning");
        assert_eq!(kind_name(Language::English, Kind::ReporterInformation), "Information to the reporter");
    }

    #[test]
    fn a_catalogue_without_a_clock_or_with_a_stranger_is_refused() {
        let without = SWEDISH.replace("[follow_up]", "[follow_upp]");
        assert!(Catalogue::parse(&without).unwrap_err().contains("no [follow_up] entry"));
        let stranger = format!("{SWEDISH}\n[lvu]\nname = \"x\"\nrule = \"y\"\n");
        assert!(Catalogue::parse(&stranger).unwrap_err().contains("[lvu] is no clock"));
    }
}
