//! Settings: built-in defaults < the `--config` file < environment `FRISTVAKT__SECTION__KEY`.
//!
//! Loading collects every problem it finds, each naming its key, so that an operator fixes a
//! configuration in one round instead of one error per restart.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use chrono_tz::Tz;
use serde_json::Value;

use crate::rules::Kind;

mod ladders;
mod mail;
mod reader;
mod register;
mod secret;
mod state;
mod units;

pub use crate::db::url::{DatabaseUrl, Engine};
pub use ladders::Ladders;
pub use mail::{Language, MailSettings, SmtpSettings, Tls, Transport};
pub use register::RegisterSettings;
pub use secret::Secret;
pub use state::StateSettings;
pub use units::{UnitDirectory, UnitRoute};

use ladders::read_ladders;
use mail::read_mail;
use reader::{whole_days, Reader};
use register::read_register;
use state::read_state;
use units::read_units;

/// The built-in defaults, compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "FRISTVAKT";

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key, e.g. `mail.smtp.tls`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The configuration could not be loaded; every problem found is listed.
#[derive(Debug, thiserror::Error)]
#[error("{} configuration problem(s):\n{}", .problems.len(), render(.problems))]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

fn render(problems: &[ConfigProblem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The calendar of "today" and of sending windows and schedules.
    pub timezone: Tz,
    pub register: RegisterSettings,
    pub state: StateSettings,
    pub calendar: CalendarSettings,
    pub mail: MailSettings,
    pub http: HttpSettings,
    pub digest: DigestSettings,
    pub report: ReportSettings,
    pub log: LogSettings,
    pub units: UnitDirectory,
    pub ladders: Ladders,
    pub rules: RuleSettings,
}

/// How the rules beyond the clocks are applied.
#[derive(Debug, Clone, Copy)]
pub struct RuleSettings {
    /// `rules.chain_window` in whole days: an investigation opened within this many days after
    /// another investigation of the same child closed is flagged as a chain (JO 2565-2016).
    pub chain_window_days: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct CalendarSettings {
    /// Lag (1930:173) 2 §: move a last day off weekends and holidays.
    pub holiday_rule: bool,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct DigestSettings {
    /// Cron expression with seconds, evaluated in `timezone`.
    pub cron: String,
    pub send_empty: bool,
    /// Rows listed per unit and section before "and N more".
    pub max_rows: usize,
}

/// `[report]`: compliance reports.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// Groups with fewer deadlines are suppressed (shown as "< N") in every report format.
    pub min_group: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Pretty on a terminal, journald-style plain lines under systemd.
    Auto,
    Pretty,
    Plain,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub filter: String,
    pub format: LogFormat,
}

/// Loads and validates the configuration from the built-in defaults, an optional file and the
/// process environment.
pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
    load_with_env(file, std::env::vars())
}

/// Like [`load`], with the environment given explicitly (for tests).
pub fn load_with_env(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let prefix = format!("{ENV_PREFIX}__");
    let env: config::Map<String, String> = env.into_iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
    let mut builder =
        config::Config::builder().add_source(config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml));
    if let Some(path) = file {
        crate::access::check_readable(path).map_err(|message| single("--config", message))?;
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    let builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(env)),
    );
    let tree: Value = builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| single(file.map(|p| p.display().to_string()).as_deref().unwrap_or("config"), e.to_string()))?;
    let base_dir = file.and_then(|p| p.parent()).map(Path::to_path_buf);
    validate(&tree, base_dir.as_deref())
}

fn single(key: &str, message: String) -> ConfigError {
    ConfigError { problems: vec![ConfigProblem { key: key.into(), message }] }
}

fn validate(tree: &Value, base_dir: Option<&Path>) -> Result<Settings, ConfigError> {
    let mut r = Reader { root: tree, problems: Vec::new() };
    r.unknown_keys(
        "",
        &[
            "timezone", "register", "state", "calendar", "mail", "http", "digest", "report", "log", "units", "ladder",
            "rules",
        ],
    );
    r.unknown_keys(
        "register",
        &[
            "url",
            "view",
            "placements_view",
            "poll_interval",
            "overlap",
            "full_pass_at",
            "demo_cases",
            "max_cell_bytes",
            "max_withdraw_share",
            "statement_timeout",
            "lock_timeout",
        ],
    );
    r.unknown_keys(
        "state",
        &["url", "migrate_on_start", "retention", "lease_ttl", "statement_timeout", "lock_timeout"],
    );
    r.unknown_keys("calendar", &["holiday_rule"]);
    r.unknown_keys(
        "mail",
        &[
            "from",
            "from_name",
            "transport",
            "file_dir",
            "case_link",
            "placement_link",
            "language",
            "send_window",
            "retry_initial",
            "retry_max",
            "give_up_after",
            "templates_dir",
            "smtp",
        ],
    );
    r.unknown_keys(
        "mail.smtp",
        &["host", "port", "tls", "username", "password_file", "password", "timeout", "data_timeout", "pool_size"],
    );
    r.unknown_keys("http", &["listen"]);
    r.unknown_keys("digest", &["cron", "send_empty", "max_rows"]);
    r.unknown_keys("report", &["min_group"]);
    r.unknown_keys("log", &["filter", "format"]);
    // One ladder key per clock of the rules' table, and the horizon.
    let ladder_keys: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).chain(["first_sight_horizon"]).collect();
    r.unknown_keys("ladder", &ladder_keys);
    r.unknown_keys("rules", &["chain_window"]);

    let timezone = r.parsed("timezone", |s| {
        s.parse::<Tz>().map_err(|_| format!("{s:?} is not an IANA time zone such as \"Europe/Stockholm\""))
    });

    let register = read_register(&mut r);
    let state = read_state(&mut r);
    let holiday_rule = r.bool("calendar.holiday_rule");
    let mail = read_mail(&mut r, base_dir);
    let listen = r.parsed("http.listen", |s| {
        s.parse::<SocketAddr>().map_err(|_| format!("{s:?} is not an address like 127.0.0.1:8947"))
    });
    let digest = read_digest(&mut r);
    let min_group = r.integer("report.min_group", 1, 1_000_000);
    let log = read_log(&mut r);
    let units = read_units(&mut r);
    let ladders = read_ladders(&mut r);
    let chain_window_days = whole_days(&mut r, "rules.chain_window");

    let problems = std::mem::take(&mut r.problems);
    match (
        timezone,
        register,
        state,
        holiday_rule,
        mail,
        listen,
        digest,
        min_group,
        log,
        units,
        ladders,
        chain_window_days,
    ) {
        (
            Some(timezone),
            Some(register),
            Some(state),
            Some(holiday_rule),
            Some(mail),
            Some(listen),
            Some(digest),
            Some(min_group),
            Some(log),
            Some(units),
            Some(ladders),
            Some(chain_window_days),
        ) if problems.is_empty() => Ok(Settings {
            timezone,
            register,
            state,
            calendar: CalendarSettings { holiday_rule },
            mail,
            http: HttpSettings { listen },
            digest,
            report: ReportSettings { min_group: min_group as u64 },
            log,
            units,
            ladders,
            rules: RuleSettings { chain_window_days },
        }),
        _ => Err(ConfigError { problems }),
    }
}

fn read_digest(r: &mut Reader) -> Option<DigestSettings> {
    let cron = r.parsed("digest.cron", |s| {
        croner::Cron::new(s)
            .with_seconds_required()
            .with_dom_and_dow()
            .parse()
            .map(|_| s.to_string())
            .map_err(|e| format!("{s:?} is not a cron expression with seconds like \"0 0 7 * * Mon-Fri\": {e}"))
    });
    let send_empty = r.bool("digest.send_empty");
    let max_rows = r.integer("digest.max_rows", 1, 10_000).map(|n| n as usize);
    Some(DigestSettings { cron: cron?, send_empty: send_empty?, max_rows: max_rows? })
}

fn read_log(r: &mut Reader) -> Option<LogSettings> {
    let filter = r.parsed("log.filter", |s| {
        tracing_subscriber::EnvFilter::try_new(s)
            .map(|_| s.to_string())
            .map_err(|e| format!("{s:?} is not a log filter like \"info\" or \"fristvakt=debug,sqlx=warn\": {e}"))
    });
    let format = r.parsed("log.format", |s| match s {
        "auto" => Ok(LogFormat::Auto),
        "pretty" => Ok(LogFormat::Pretty),
        "plain" => Ok(LogFormat::Plain),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?} is not a log format: use auto, pretty, plain or json")),
    });
    Some(LogSettings { filter: filter?, format: format? })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::UnitCode;
    use crate::rules::{Ladder, Role};

    fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        load_with_env(Some(&path), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn keys(err: ConfigError) -> Vec<String> {
        err.problems.into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn built_in_defaults_are_valid() {
        let s = load_with_env(None, Vec::new()).unwrap();
        assert_eq!(s.timezone, chrono_tz::Europe::Stockholm);
        assert_eq!(s.register.view, "fristvakt_cases");
        assert_eq!(s.register.poll_interval, Duration::from_secs(300));
        assert_eq!(s.mail.transport, Transport::File);
        assert_eq!(s.ladders.for_kind(Kind::Assessment), &Ladder::default_for(Kind::Assessment));
    }

    #[test]
    fn shipped_example_and_demo_files_are_valid() {
        for file in ["config/example.toml", "config/demo.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let env = [("FRISTVAKT__MAIL__SMTP__PASSWORD".to_string(), "x".to_string())];
            if let Err(e) = load_with_env(Some(&path), env) {
                panic!("{file}: {e}");
            }
        }
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let err = load_str(
            r#"
timezone = "Europe/Stockholmm"
[register]
view = "cases; drop table x"
poll_interval = "five minutes"
[mail]
from = "not-an-address"
transport = "smtp"
[mail.smtp]
host = "smtp.kommun.example"
tls = "none"
[digest]
cron = "0 7 * * Mon-Fri"
[units."BRO-BU"]
managers = []
team_leads = ["gl@x.se"]
"#,
            &[],
        )
        .unwrap_err();
        let keys = keys(err);
        for key in ["timezone", "register.view", "register.poll_interval", "mail.from", "mail.smtp.tls", "digest.cron"]
        {
            assert!(keys.contains(&key.to_string()), "{key} not in {keys:?}");
        }
    }

    #[test]
    fn units_inherit_from_default_and_need_a_manager() {
        let err = load_str("[units.default]\nmanagers = []\n", &[]).unwrap_err();
        assert!(keys(err).contains(&"units.default.managers".to_string()));
        let s = load_str("[units.\"bro-bu\"]\nteam_leads = [\"gl@bromma.se\"]\n", &[]).unwrap();
        let unit = UnitCode::parse("BRO-BU").unwrap();
        assert_eq!(s.units.addresses(&unit, Role::TeamLead)[0].as_str(), "gl@bromma.se");
        assert_eq!(s.units.addresses(&unit, Role::Manager)[0].as_str(), "enhetschef@kommun.example");
    }

    #[test]
    fn away_addresses_go_to_deputies() {
        let s = load_str(
            "[units.X]\nmanagers = [\"a@k.se\", \"b@k.se\"]\ndeputy_managers = [\"d@k.se\"]\naway = [\"a@k.se\"]\n",
            &[],
        )
        .unwrap();
        let unit = UnitCode::parse("X").unwrap();
        let got: Vec<String> = s.units.addresses(&unit, Role::Manager).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["b@k.se", "d@k.se"]);
    }

    #[test]
    fn environment_overrides_file_and_unknown_keys_are_named() {
        let s = load_str("[http]\nlisten = \"127.0.0.1:1\"\n", &[("FRISTVAKT__HTTP__LISTEN", "127.0.0.1:2")]).unwrap();
        assert_eq!(s.http.listen.port(), 2);
        let err = load_str("[mail]\nfrom_address = \"a@b.se\"\n", &[]).unwrap_err();
        assert_eq!(keys(err), ["mail.from_address"]);
    }

    #[test]
    fn smtp_password_comes_from_file_or_environment_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hemligt\n").unwrap();
        let toml = format!(
            "[mail]\ntransport = \"smtp\"\n[mail.smtp]\nhost = \"smtp.k.se\"\nusername = \"u\"\npassword_file = \"{}\"\n",
            pw.display()
        );
        let s = load_str(&toml, &[]).unwrap();
        assert_eq!(s.mail.smtp.password.as_ref().unwrap().expose(), "hemligt");
        assert!(!format!("{s:?}").contains("hemligt"));
        let missing = "[mail]\ntransport = \"smtp\"\n[mail.smtp]\nhost = \"smtp.k.se\"\nusername = \"u\"\n";
        assert_eq!(keys(load_str(missing, &[]).unwrap_err()), ["mail.smtp.password_file"]);
        let s = load_str(missing, &[("FRISTVAKT__MAIL__SMTP__PASSWORD", "envpw")]).unwrap();
        assert_eq!(s.mail.smtp.password.unwrap().expose(), "envpw");
    }

    #[test]
    fn tls_none_only_on_loopback() {
        let ok = "[mail]\ntransport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n";
        assert!(load_str(ok, &[]).is_ok());
    }

    #[test]
    fn case_links_encode_the_reference() {
        let s = load_with_env(None, Vec::new()).unwrap();
        assert_eq!(s.mail.case_link_for("2026-BU 1/2"), "https://register.kommun.example/case/2026-BU%201%2F2");
    }

    #[test]
    fn placement_links_fall_back_to_the_case_and_bad_keys_are_named() {
        let s = load_with_env(None, Vec::new()).unwrap();
        assert_eq!(s.register.placements_view, "fristvakt_placements");
        assert_eq!(s.mail.placement_link_for("2026-PL 1", None), None);
        assert_eq!(
            s.mail.placement_link_for("2026-PL 1", Some("2026-BU-1")).as_deref(),
            Some("https://register.kommun.example/case/2026-BU-1")
        );
        let s = load_str("[mail]\nplacement_link = \"https://r.example/p/{placement_ref}\"\n", &[]).unwrap();
        assert_eq!(
            s.mail.placement_link_for("2026-PL 1/2", Some("2026-BU-1")).as_deref(),
            Some("https://r.example/p/2026-PL%201%2F2")
        );
        for bad in ["ftp://r.example/{placement_ref}", "https://r.example/p/{case_ref}"] {
            let err = load_str(&format!("[mail]\nplacement_link = \"{bad}\"\n"), &[]).unwrap_err();
            assert_eq!(keys(err), ["mail.placement_link"], "{bad}");
        }
        let err = load_str("[register]\nplacements_view = \"placements; DROP\"\n", &[]).unwrap_err();
        assert_eq!(keys(err), ["register.placements_view"]);
    }
}
