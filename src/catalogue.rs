//! The words of each statutory clock, in Swedish and English (`templates/clocks.{sv,en}.toml`).
//!
//! [`crate::rules::CLOCKS`] holds what a clock is; this catalogue holds what it is called and how
//! its law reads, keyed by the clock's machine name, so that no renderer words a kind itself. The
//! files are compiled in and read once; a unit test checks that each has an entry, with a name and
//! a rule, for every clock and every start event, that a clock with an extension column has the
//! extension's words, and that every rule cites its clock's paragraph.
//!
//! [`Words`] holds every other short label and sentence a user reads outside the `.j2`
//! templates — role and status names, the days, a notice's "to do" and ladder lines, the
//! digest's subject, `explain`'s sentences — from `templates/words.{sv,en}.toml`. A same-named
//! file in `mail.templates_dir` replaces those of its keys that it names; a key it lacks keeps the
//! built-in words, and a key the built-in file does not know is refused at start-up, naming the
//! file and the key. `{name}` in a value is replaced by the named argument. A
//! `clocks.LANG.toml` there replaces the built-in clocks file whole ([`Catalogue::load`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::Deserialize;

use crate::config::Language;
use crate::rules::{Kind, StartEvent};

/// The words of one clock in one language.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockWords {
    /// The name, capitalised as a heading ("Förhandsbedömning").
    pub name: String,
    /// The paragraphs of the law, as `explain` cites them ("20 kap. 2 § socialtjänstlagen
    /// (2025:400)").
    pub citation: String,
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

    /// The catalogue of `language`, or the file `clocks.LANG.toml` in `dir` in its place (complete:
    /// it is checked as the built-in one is); loaded once per directory and language.
    pub fn load(language: Language, dir: Option<&Path>) -> Result<&'static Catalogue, WordsError> {
        let Some(dir) = dir else { return Ok(Catalogue::of(language)) };
        static LOADED: Loaded<Catalogue> = OnceLock::new();
        once_per(&LOADED, Some(dir), language, || {
            let path = dir.join(format!("clocks.{}.toml", language.code()));
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let parsed = Catalogue::parse(&text).map_err(|message| WordsError::Parse { path, message })?;
                    Ok(Box::leak(Box::new(parsed)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalogue::of(language)),
                Err(source) => Err(WordsError::Read { path, source }),
            }
        })
    }

    /// The catalogue of the configuration's language and `mail.templates_dir` (checked at
    /// start-up; the built-in one should it fail later).
    pub fn for_settings(settings: &crate::config::Settings, language: Language) -> &'static Catalogue {
        Catalogue::load(language, settings.mail.templates_dir.as_deref()).unwrap_or_else(|_| Catalogue::of(language))
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

/// What [`once_per`] keeps: each directory's (or the built-in, `None`) words by language, for the
/// life of the process.
type Loaded<T> = OnceLock<Mutex<HashMap<(Option<PathBuf>, &'static str), &'static T>>>;

/// The value for `dir` and `language` in `cache`, made by `load` the first time it is asked for.
fn once_per<T: Sync + 'static>(
    cache: &'static Loaded<T>,
    dir: Option<&Path>,
    language: Language,
    load: impl FnOnce() -> Result<&'static T, WordsError>,
) -> Result<&'static T, WordsError> {
    let key = (dir.map(Path::to_path_buf), language.code());
    let mut loaded = cache.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(value) = loaded.get(&key) {
        return Ok(value);
    }
    let value = load()?;
    loaded.insert(key, value);
    Ok(value)
}

const WORDS_SV: &str = include_str!("../templates/words.sv.toml");
const WORDS_EN: &str = include_str!("../templates/words.en.toml");

/// A `words.LANG.toml` override that cannot be used; names the file and, where one is at fault,
/// the key.
#[derive(Debug, thiserror::Error)]
pub enum WordsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: unknown key `{key}` (the built-in words.LANG.toml has no such key)")]
    UnknownKey { path: PathBuf, key: String },
    #[error("{path}: `{key}` must be a string")]
    NotText { path: PathBuf, key: String },
}

/// The short labels and sentences of one language, by dotted key (`role.caseworker`,
/// `notice.todo`), built in or overridden key by key from `mail.templates_dir`.
#[derive(Debug)]
pub struct Words {
    words: HashMap<String, String>,
}

impl Words {
    /// The built-in words of `language`.
    pub fn built_in(language: Language) -> &'static Words {
        Words::load(language, None).unwrap_or_else(|_| unreachable!("the built-in words need no file"))
    }

    /// The words of `language` with the override in `dir`, if it has `words.LANG.toml`; loaded
    /// once per directory and language.
    pub fn load(language: Language, dir: Option<&Path>) -> Result<&'static Words, WordsError> {
        static LOADED: Loaded<Words> = OnceLock::new();
        once_per(&LOADED, dir, language, || Words::read(language, dir))
    }

    /// The built-in words of `language` with the override in `dir` applied.
    fn read(language: Language, dir: Option<&Path>) -> Result<&'static Words, WordsError> {
        let built_in = match language {
            Language::Swedish => WORDS_SV,
            Language::English => WORDS_EN,
        };
        let mut words = flatten(Path::new(&format!("words.{}.toml", language.code())), built_in)
            .unwrap_or_else(|e| panic!("the built-in words are proven well formed by a test: {e}"));
        if let Some(dir) = dir {
            let path = dir.join(format!("words.{}.toml", language.code()));
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    for (key, value) in flatten(&path, &text)? {
                        if !words.contains_key(&key) {
                            return Err(WordsError::UnknownKey { path, key });
                        }
                        words.insert(key, value);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(WordsError::Read { path, source }),
            }
        }
        Ok(Box::leak(Box::new(Words { words })))
    }

    /// The words of the configuration: its language, with the override of `mail.templates_dir`
    /// (checked at start-up by [`Words::load`]; should it fail later, the built-in words).
    pub fn of(settings: &crate::config::Settings) -> &'static Words {
        let language = settings.mail.language;
        Words::load(language, settings.mail.templates_dir.as_deref()).unwrap_or_else(|_| Words::built_in(language))
    }

    /// The words of `key`; the key itself for one the built-in file lacks (a test proves that
    /// every key the code asks for is there).
    pub fn get<'a>(&'a self, key: &'a str) -> &'a str {
        self.words.get(key).map_or(key, String::as_str)
    }

    /// The words of `key` with each `{name}` replaced by its argument.
    pub fn fill(&self, key: &str, args: &[(&str, &dyn std::fmt::Display)]) -> String {
        let mut text = self.get(key).to_string();
        for (name, value) in args {
            text = text.replace(&format!("{{{name}}}"), &value.to_string());
        }
        text
    }

    /// "1 dag", "3 dagar"; "1 day", "3 days".
    pub fn days(&self, n: i64) -> String {
        if n == 1 {
            self.fill("days.one", &[])
        } else {
            self.fill("days.many", &[("n", &n)])
        }
    }

    /// The title of `role` ("handläggare").
    pub fn role(&self, role: crate::rules::Role) -> &str {
        self.get(match role {
            crate::rules::Role::Caseworker => "role.caseworker",
            crate::rules::Role::TeamLead => "role.team_lead",
            crate::rules::Role::Manager => "role.manager",
        })
    }

    /// The name of `status` for mail and reports ("sista dagen närmar sig").
    pub fn status(&self, status: crate::rules::Status) -> &str {
        use crate::rules::Status;
        self.get(match status {
            Status::Met => "status.met",
            Status::Missed => "status.missed",
            Status::Overdue => "status.overdue",
            Status::DueToday => "status.due_today",
            Status::DueSoon => "status.due_soon",
            Status::Pending => "status.pending",
        })
    }

    /// The name of a day that moves a last day, as written in running text ("julafton").
    pub fn day(&self, day: crate::rules::DayKind) -> &str {
        use crate::rules::{DayKind, Holiday};
        self.get(match day {
            DayKind::Holiday(holiday) => match holiday {
                Holiday::NewYearsDay => "day.new_years_day",
                Holiday::Epiphany => "day.epiphany",
                Holiday::GoodFriday => "day.good_friday",
                Holiday::EasterSunday => "day.easter_sunday",
                Holiday::EasterMonday => "day.easter_monday",
                Holiday::MayDay => "day.may_day",
                Holiday::AscensionDay => "day.ascension_day",
                Holiday::Pentecost => "day.pentecost",
                Holiday::WhitMonday => "day.whit_monday",
                Holiday::NationalDay => "day.national_day",
                Holiday::MidsummerDay => "day.midsummer_day",
                Holiday::AllSaintsDay => "day.all_saints_day",
                Holiday::ChristmasDay => "day.christmas_day",
                Holiday::BoxingDay => "day.boxing_day",
            },
            DayKind::Sunday => "day.sunday",
            DayKind::Saturday => "day.saturday",
            DayKind::MidsummerEve => "day.midsummer_eve",
            DayKind::ChristmasEve => "day.christmas_eve",
            DayKind::NewYearsEve => "day.new_years_eve",
        })
    }

    /// Every key, for the test that each one the code asks for exists.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.words.keys().map(String::as_str)
    }
}

/// The strings of a words file by dotted key: `[notice]` `todo = "…"` is `notice.todo`.
fn flatten(path: &Path, text: &str) -> Result<HashMap<String, String>, WordsError> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| WordsError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
    let mut out = HashMap::new();
    let mut stack: Vec<(String, toml::Table)> = vec![(String::new(), table)];
    while let Some((prefix, table)) = stack.pop() {
        for (name, value) in table {
            let key = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
            match value {
                toml::Value::String(s) => {
                    out.insert(key, s);
                }
                toml::Value::Table(t) => stack.push((key, t)),
                _ => return Err(WordsError::NotText { path: path.to_path_buf(), key }),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_and_status_names() {
        use crate::rules::{Role, Status};
        let sv = Words::built_in(Language::Swedish);
        let words: Vec<_> = Role::ALL.iter().map(|r| (r.as_str(), sv.role(*r))).collect();
        assert_eq!(words, [("caseworker", "handläggare"), ("team_lead", "gruppledare"), ("manager", "enhetschef")]);
        let en = Words::built_in(Language::English);
        assert_eq!(en.role(Role::TeamLead), "team lead");
        assert_eq!(sv.status(Status::DueSoon), "sista dagen närmar sig");
        assert_eq!(en.status(Status::DueToday), "due today");
        // The rules' own test names (`rules::calendar`, for their messages) are the catalogue's.
        for holiday in crate::rules::Holiday::ALL {
            let day = crate::rules::DayKind::Holiday(holiday);
            assert_eq!(sv.day(day), day.name_sv());
            assert_eq!(en.day(day), day.name_en());
        }
        for day in [crate::rules::DayKind::Saturday, crate::rules::DayKind::Sunday, crate::rules::DayKind::MidsummerEve]
        {
            assert_eq!((sv.day(day), en.day(day)), (day.name_sv(), day.name_en()));
        }
        for day in [crate::rules::DayKind::ChristmasEve, crate::rules::DayKind::NewYearsEve] {
            assert_eq!((sv.day(day), en.day(day)), (day.name_sv(), day.name_en()));
        }
    }

    #[test]
    fn both_languages_have_the_same_words() {
        let sv = flatten(Path::new("sv"), WORDS_SV).unwrap();
        let en = flatten(Path::new("en"), WORDS_EN).unwrap();
        let mut a: Vec<_> = sv.keys().collect();
        let mut b: Vec<_> = en.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn every_key_the_code_asks_for_is_in_the_words() {
        // Each `"section.key"` literal in the code that names a built-in section.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let words = Words::built_in(Language::Swedish);
        let sections: std::collections::HashSet<&str> =
            words.keys().filter_map(|k| k.split_once('.').map(|(s, _)| s)).collect();
        let mut missing = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    // The configuration's keys (`digest.cron`) share the sections' names.
                    if !p.ends_with("config") {
                        stack.push(p);
                    }
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                for (n, line) in text.lines().enumerate() {
                    for literal in line.split('"').skip(1).step_by(2) {
                        let Some((section, rest)) = literal.split_once('.') else { continue };
                        let is_key = sections.contains(section)
                            && !rest.is_empty()
                            && rest.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.');
                        if is_key && !words.words.contains_key(literal) {
                            missing.push(format!("{}:{} {literal}", p.display(), n + 1));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
    }

    #[test]
    fn an_override_replaces_its_keys_keeps_the_others_and_refuses_a_stranger() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("words.sv.toml"), "[role]\ncaseworker = \"socialsekreterare\"\n").unwrap();
        let words = Words::load(Language::Swedish, Some(dir.path())).unwrap();
        assert_eq!(words.role(crate::rules::Role::Caseworker), "socialsekreterare");
        assert_eq!(words.role(crate::rules::Role::TeamLead), "gruppledare");
        // The English words are not overridden by the Swedish file.
        let en = Words::load(Language::English, Some(dir.path())).unwrap();
        assert_eq!(en.role(crate::rules::Role::Caseworker), "caseworker");

        let typo = tempfile::tempdir().unwrap();
        std::fs::write(typo.path().join("words.sv.toml"), "[role]\ncasewroker = \"x\"\n").unwrap();
        let e = Words::load(Language::Swedish, Some(typo.path())).unwrap_err().to_string();
        assert!(e.contains("words.sv.toml") && e.contains("`role.casewroker`"), "{e}");
        let number = tempfile::tempdir().unwrap();
        std::fs::write(number.path().join("words.sv.toml"), "[days]\none = 1\n").unwrap();
        let e = Words::load(Language::Swedish, Some(number.path())).unwrap_err().to_string();
        assert!(e.contains("words.sv.toml") && e.contains("`days.one`"), "{e}");

        // A clocks file replaces the built-in one whole, and must be complete.
        let clocks = tempfile::tempdir().unwrap();
        std::fs::write(clocks.path().join("clocks.sv.toml"), SWEDISH.replace("\"Uppföljning\"", "\"Uppföljningen\""))
            .unwrap();
        let catalogue = Catalogue::load(Language::Swedish, Some(clocks.path())).unwrap();
        assert_eq!(catalogue.clock(Kind::FollowUp).name, "Uppföljningen");
        std::fs::write(clocks.path().join("clocks.en.toml"), ENGLISH.replace("[follow_up]", "[follow_upp]")).unwrap();
        let e = Catalogue::load(Language::English, Some(clocks.path())).unwrap_err().to_string();
        assert!(e.contains("clocks.en.toml") && e.contains("no [follow_up] entry"), "{e}");
    }

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
                assert_eq!(words.citation, kind.clock().citation, "{} {kind}", language.code());
            }
        }
        assert_eq!(kind_name(Language::Swedish, Kind::FollowUp), "Uppföljning");
        assert_eq!(kind_name(Language::English, Kind::ReporterInformation), "Information to the reporter");
    }

    #[test]
    fn a_catalogue_without_a_clock_or_with_a_stranger_is_refused() {
        let without = SWEDISH.replace("[follow_up]", "[follow_upp]");
        assert!(Catalogue::parse(&without).unwrap_err().contains("no [follow_up] entry"));
        let stranger = format!("{SWEDISH}\n[lvu]\nname = \"x\"\ncitation = \"x\"\nrule = \"y\"\n");
        assert!(Catalogue::parse(&stranger).unwrap_err().contains("[lvu] is no clock"));
    }
}
