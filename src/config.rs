//! Settings: built-in defaults < the `--config` file < environment `FRISTVAKT__SECTION__KEY`.
//!
//! Loading collects every problem it finds, each naming its key, so that an operator fixes a
//! configuration in one round instead of one error per restart.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveTime;
use chrono_tz::Tz;
use serde_json::Value;

use crate::domain::{EmailAddress, UnitCode};
use crate::rules::{Kind, Ladder, Role, Step};
use crate::send_window::SendWindow;

/// The built-in defaults, compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

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

/// A secret (the SMTP password). Never printed: `Debug` and `Display` show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The engine behind a database URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A database URL that names a supported engine. `Debug` hides any password in the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    pub engine: Engine,
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<DatabaseUrl, String> {
        let raw = raw.trim();
        let engine = if raw.starts_with("sqlite:") {
            Engine::Sqlite
        } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Engine::Postgres
        } else {
            return Err("expected a URL starting with sqlite:// or postgres://".into());
        };
        if engine == Engine::Sqlite && DatabaseUrl::sqlite_path_of(raw).is_none() {
            return Err("expected sqlite://PATH, e.g. sqlite://var/state.db".into());
        }
        Ok(DatabaseUrl { url: raw.to_string(), engine })
    }

    /// A private in-memory SQLite database (the empty state of the show commands).
    pub fn sqlite_in_memory() -> DatabaseUrl {
        DatabaseUrl { url: "sqlite::memory:".into(), engine: Engine::Sqlite }
    }

    pub fn expose(&self) -> &str {
        &self.url
    }

    /// The file of a SQLite URL (`sqlite://var/x.db` → `var/x.db`), without query parameters.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        DatabaseUrl::sqlite_path_of(&self.url)
    }

    fn sqlite_path_of(raw: &str) -> Option<PathBuf> {
        let rest = raw.strip_prefix("sqlite://").or_else(|| raw.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    /// The URL without credentials, safe for logs and error messages: the user information
    /// (`user:password@`) and the value of every query parameter that names a password
    /// (`password`, `sslpassword`, …) are replaced by `[redacted]`.
    pub fn redacted(&self) -> String {
        let parts = UrlParts::of(&self.url);
        let mut out = match parts.userinfo {
            Some(_) => format!("{}[redacted]@{}", parts.scheme, parts.rest),
            None => format!("{}{}", parts.scheme, parts.rest),
        };
        if let Some(query) = parts.query {
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if is_secret_key(key) => format!("{key}=[redacted]"),
                    _ => pair.to_string(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
        if let Some(fragment) = parts.fragment {
            out.push('#');
            out.push_str(fragment);
        }
        out
    }

    /// Every secret the URL holds (the password of the user information and the values of
    /// password parameters), as written and percent-decoded.
    fn secrets(&self) -> Vec<String> {
        let parts = UrlParts::of(&self.url);
        let mut raw = Vec::new();
        if let Some((_, password)) = parts.userinfo.and_then(|u| u.split_once(':')) {
            raw.push(password);
        }
        for pair in parts.query.into_iter().flat_map(|q| q.split('&')) {
            if let Some((key, value)) = pair.split_once('=') {
                if is_secret_key(key) {
                    raw.push(value);
                }
            }
        }
        let mut secrets: Vec<String> = Vec::new();
        for value in raw {
            for form in [value.to_string(), percent_decode(value), percent_decode(&value.replace('+', " "))] {
                if !form.is_empty() && !secrets.contains(&form) {
                    secrets.push(form);
                }
            }
        }
        // The longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
    }

    /// `text` (an error message of the database driver, say) with every secret of this URL
    /// replaced by `[redacted]`, and the URL itself by its redacted form.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.url, &self.redacted());
        for secret in self.secrets() {
            out = out.replace(&secret, "[redacted]");
        }
        out
    }

    /// The URL for the database driver: without the query parameters that name a password the
    /// driver does not know (`sslpassword`): the PostgreSQL driver logs an unknown parameter with
    /// its value. Returns the URL and the names of the parameters taken out.
    pub(crate) fn for_driver(&self) -> (String, Vec<String>) {
        let Some(q) = self.url.find('?') else { return (self.url.clone(), Vec::new()) };
        let (head, tail) = (&self.url[..q], &self.url[q + 1..]);
        let (query, fragment) = match tail.find('#') {
            Some(h) => (&tail[..h], Some(&tail[h..])),
            None => (tail, None),
        };
        let mut dropped = Vec::new();
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let key = percent_decode(pair.split_once('=').map_or(*pair, |(k, _)| k)).to_ascii_lowercase();
                let known = matches!(key.as_str(), "password");
                let drop = !known && is_secret_key(&key);
                if drop {
                    dropped.push(key);
                }
                !drop
            })
            .collect();
        let mut url = head.to_string();
        if !kept.is_empty() {
            url.push('?');
            url.push_str(&kept.join("&"));
        }
        url.push_str(fragment.unwrap_or_default());
        (url, dropped)
    }
}

/// A URL cut into the pieces redaction needs. The user information ends at the last `@`
/// before the query, so that a password with an unencoded `/` or `@` is still hidden whole.
struct UrlParts<'a> {
    /// `postgres://`, or `sqlite:` when there is no `//`.
    scheme: &'a str,
    userinfo: Option<&'a str>,
    /// Host, port and path.
    rest: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    fn of(url: &'a str) -> UrlParts<'a> {
        let (url, fragment) = match url.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (url, None),
        };
        let (head, query) = match url.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (url, None),
        };
        let scheme_end = head.find("://").map(|i| i + 3).or_else(|| head.find(':').map(|i| i + 1)).unwrap_or(0);
        let (scheme, after) = head.split_at(scheme_end);
        match after.rfind('@') {
            Some(at) => UrlParts { scheme, userinfo: Some(&after[..at]), rest: &after[at + 1..], query, fragment },
            None => UrlParts { scheme, userinfo: None, rest: after, query, fragment },
        }
    }
}

/// Whether a query parameter of a database URL holds a secret (`password`, `sslpassword`, …).
fn is_secret_key(key: &str) -> bool {
    let key = percent_decode(key).to_ascii_lowercase();
    ["password", "passwd", "secret", "token"].iter().any(|s| key.contains(s))
}

/// Percent-decodes text; a malformed escape is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
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

#[derive(Debug, Clone)]
pub struct RegisterSettings {
    pub url: DatabaseUrl,
    /// The view, a plain SQL identifier (optionally schema-qualified), safe to put into SQL.
    pub view: String,
    /// The optional placements view (contract §1b), a plain SQL identifier like `view`; absent
    /// from the register = the placement clocks are off.
    pub placements_view: String,
    pub poll_interval: Duration,
    /// How far back before the watermark each poll re-reads, for rows committed late.
    pub overlap: Duration,
    /// Local time of the daily full pass.
    pub full_pass_at: NaiveTime,
    /// Demo cases to create in an empty SQLite register on first start (0: never).
    pub demo_cases: u32,
    /// A register value longer than this skips its row (`cell_too_large`).
    pub max_cell_bytes: usize,
    /// The share of the known cases a full pass may withdraw at once; more are held until a
    /// second full pass, a poll interval later, sees the same (a view caught half-loaded).
    pub max_withdraw_share: f64,
    /// How long a statement may run, and wait for a lock, on the register
    /// (`register.statement_timeout`, `register.lock_timeout`).
    pub waits: crate::db::Waits,
}

#[derive(Debug, Clone)]
pub struct StateSettings {
    pub url: DatabaseUrl,
    pub migrate_on_start: bool,
    /// Closed deadlines and finished outbox rows older than this are deleted by a daily job.
    pub retention: Duration,
    /// How long the poll lease lasts unless its holder renews it (every third of it): after a
    /// holder dies, another replica polls within about this long.
    pub lease_ttl: Duration,
    /// How long a statement may run, and wait for a lock, on the state database.
    pub waits: crate::db::Waits,
}

#[derive(Debug, Clone, Copy)]
pub struct CalendarSettings {
    /// Lag (1930:173) 2 §: move a last day off weekends and holidays.
    pub holiday_rule: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    File,
    Smtp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Swedish,
    English,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Language::Swedish => "sv",
            Language::English => "en",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    StartTls,
    Implicit,
    None,
}

impl Tls {
    /// The configuration's word for it (`mail.smtp.tls`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tls::StartTls => "starttls",
            Tls::Implicit => "tls",
            Tls::None => "none",
        }
    }
}

#[derive(Debug, Clone)]
pub struct MailSettings {
    pub from: EmailAddress,
    pub transport: Transport,
    pub file_dir: PathBuf,
    /// A link template containing `{case_ref}`.
    pub case_link: String,
    /// A link template for placement notices containing `{placement_ref}` (`mail.placement_link`);
    /// without it, a placement links through `case_link` with its row's `case_ref`, else not at all.
    pub placement_link: Option<String>,
    pub language: Language,
    pub send_window: SendWindow,
    /// First retry delay after a transient failure; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// A notice still failing this long after it was first due is given up (dead).
    pub give_up_after: Duration,
    /// A directory whose template files replace the built-in ones of the same name.
    pub templates_dir: Option<PathBuf>,
    /// The sender's display name (`From: "fristvakt" <…>`); empty for the bare address.
    pub from_name: String,
    pub smtp: SmtpSettings,
}

impl MailSettings {
    pub fn case_link_for(&self, case_ref: &str) -> String {
        self.case_link.replace("{case_ref}", &encode_path_segment(case_ref))
    }

    /// The link of a placement's notice (contract §3): `mail.placement_link` with its reference,
    /// else `mail.case_link` with the case it belongs to, else none.
    pub fn placement_link_for(&self, placement_ref: &str, case_ref: Option<&str>) -> Option<String> {
        match (&self.placement_link, case_ref) {
            (Some(link), _) => Some(link.replace("{placement_ref}", &encode_path_segment(placement_ref))),
            (None, Some(case_ref)) => Some(self.case_link_for(case_ref)),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Where the password was read from when that is not `password_file` itself: outside
    /// systemd, the unit's `LoadCredential=` source (`check-config` says so).
    pub password_note: Option<String>,
    pub timeout: Duration,
    /// How long the reply to a message's final `.` is awaited (RFC 5321 §4.5.3.2.6: 10 min).
    pub data_timeout: Duration,
    pub pool_size: u32,
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

/// Who is responsible for a unit (enhet): its team leads (gruppledare) and managers (enhetschefer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRoute {
    pub name: Option<String>,
    pub team_leads: Vec<EmailAddress>,
    pub managers: Vec<EmailAddress>,
    /// Stand-ins for team leads and managers listed in `away`.
    pub deputy_team_leads: Vec<EmailAddress>,
    pub deputy_managers: Vec<EmailAddress>,
    /// Addresses that are away (leave, vacation): their mail goes to the deputies instead.
    pub away: Vec<EmailAddress>,
}

/// The configured units and the fallback `units.default`.
#[derive(Debug, Clone)]
pub struct UnitDirectory {
    pub default: UnitRoute,
    pub units: BTreeMap<UnitCode, UnitRoute>,
}

impl UnitDirectory {
    /// Whether `unit` (a stored unit code) has a `[units."CODE"]` table of its own.
    pub fn is_configured(&self, unit: &str) -> bool {
        UnitCode::parse(unit).is_ok_and(|u| self.units.contains_key(&u))
    }

    /// The unit's own entry, else `units.default`.
    pub fn route(&self, unit: &UnitCode) -> &UnitRoute {
        self.units.get(unit).unwrap_or(&self.default)
    }

    /// The addresses for a role of a unit, with away addresses replaced by deputies.
    pub fn addresses(&self, unit: &UnitCode, role: Role) -> Vec<EmailAddress> {
        let route = self.route(unit);
        let (main, deputies) = match role {
            Role::TeamLead => (&route.team_leads, &route.deputy_team_leads),
            Role::Manager => (&route.managers, &route.deputy_managers),
            Role::Caseworker => return Vec::new(),
        };
        let present: Vec<EmailAddress> = main.iter().filter(|a| !route.away.contains(a)).cloned().collect();
        let mut out = present;
        if out.len() < main.len() {
            out.extend(deputies.iter().filter(|a| !route.away.contains(a)).cloned());
        }
        if out.is_empty() {
            // Everyone is away and no deputy is reachable: mail the main addresses rather than
            // nobody, because an unread notice is better than a silently dropped one.
            out = main.clone();
        }
        out.sort();
        out.dedup();
        out
    }

    /// The unit's configured display name, if any.
    pub fn unit_name(&self, unit: &UnitCode) -> Option<&str> {
        self.units.get(unit).and_then(|r| r.name.as_deref())
    }
}

/// The escalation ladder of each kind.
#[derive(Debug, Clone)]
pub struct Ladders {
    /// One ladder per kind, in [`Kind::ALL`] order (`ladder.<kind>`, else the clock's default).
    by_kind: Vec<Ladder>,
    /// `ladder.first_sight_horizon` in whole days: a deadline first seen more than this long
    /// after its legal last day gets no notice.
    pub first_sight_horizon_days: i64,
}

impl Ladders {
    pub fn for_kind(&self, kind: Kind) -> &Ladder {
        &self.by_kind[kind as usize]
    }
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

/// Reads typed values out of the merged tree, recording a problem per bad key.
struct Reader<'a> {
    root: &'a Value,
    problems: Vec<ConfigProblem>,
}

impl<'a> Reader<'a> {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem { key: key.into(), message: message.into() });
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        let mut node = self.root;
        for part in key.split('.') {
            node = node.get(part)?;
        }
        (!node.is_null()).then_some(node)
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(_) => {
                self.problem(key, "expected a text value");
                None
            }
            None => {
                self.problem(key, "missing");
                None
            }
        }
    }

    fn optional_string(&mut self, key: &str) -> Option<String> {
        match self.get(key) {
            None => None,
            Some(_) => self.string(key).filter(|s| !s.trim().is_empty()),
        }
    }

    fn bool(&mut self, key: &str) -> Option<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) if s == "true" || s == "false" => Some(s == "true"),
            _ => {
                self.problem(key, "expected true or false");
                None
            }
        }
    }

    fn integer(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
        let n = match self.get(key) {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.problem(key, format!("expected a whole number from {min} to {max}"));
                None
            }
        }
    }

    fn parsed<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.string(key)?;
        match parse(&raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }

    fn duration(&mut self, key: &str) -> Option<Duration> {
        self.parsed(key, |s| {
            let d = humantime::parse_duration(s.trim())
                .map_err(|e| format!("{s:?} is not a duration like \"5m\", \"30s\" or \"2h\": {e}"))?;
            if d.is_zero() {
                return Err("must be longer than zero".into());
            }
            Ok(d)
        })
    }

    fn addresses(&mut self, key: &str) -> Vec<EmailAddress> {
        let items = match self.get(key) {
            None => return Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(Value::String(s)) => s.split(',').map(|x| Value::String(x.to_string())).collect(),
            Some(_) => {
                self.problem(key, "expected a list of e-mail addresses");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str().map(EmailAddress::parse) {
                Some(Ok(a)) => out.push(a),
                Some(Err(e)) => {
                    self.problem(&format!("{key}[{i}]"), format!("{:?} {e}", item.as_str().unwrap_or_default()))
                }
                None => self.problem(&format!("{key}[{i}]"), "expected an e-mail address"),
            }
        }
        out
    }

    /// Records every key under `section` (a table) that is not in `known`.
    fn unknown_keys(&mut self, section: &str, known: &[&str]) {
        let table = if section.is_empty() { Some(self.root) } else { self.get(section) };
        let Some(Value::Object(map)) = table else { return };
        let unknown: Vec<String> = map.keys().filter(|k| !known.contains(&k.as_str())).cloned().collect();
        for key in unknown {
            let full = if section.is_empty() { key } else { format!("{section}.{key}") };
            self.problem(&full, format!("unknown key (known here: {})", known.join(", ")));
        }
    }
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
    let state_url = r.parsed("state.url", DatabaseUrl::parse);
    let migrate_on_start = r.bool("state.migrate_on_start");
    let retention = r.duration("state.retention").and_then(|d| {
        if d >= Duration::from_secs(30 * 86_400) {
            Some(d)
        } else {
            r.problem(
                "state.retention",
                "keep at least 30 days: the digests' 30-day share and the record of sent notices need them",
            );
            None
        }
    });
    let lease_ttl = r.duration("state.lease_ttl").and_then(|d| {
        if (Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&d) {
            Some(d)
        } else {
            r.problem(
                "state.lease_ttl",
                "must be from 10s to 1h (a standby replica tries to take the lease every 10 s)",
            );
            None
        }
    });
    let state_waits = waits(&mut r, "state");
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
        state_url,
        (migrate_on_start, retention, lease_ttl, state_waits),
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
            Some(state_url),
            (Some(migrate_on_start), Some(retention), Some(lease_ttl), Some(state_waits)),
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
            state: StateSettings { url: state_url, migrate_on_start, retention, lease_ttl, waits: state_waits },
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

/// `{section}.statement_timeout` and `{section}.lock_timeout`: each from 1 s to 1 h, the lock
/// wait no longer than the statement's.
fn waits(r: &mut Reader, section: &str) -> Option<crate::db::Waits> {
    let bounded = |r: &mut Reader, key: String| {
        r.duration(&key).and_then(|d| {
            if (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) {
                Some(d)
            } else {
                r.problem(&key, "must be from 1s to 1h");
                None
            }
        })
    };
    let statement = bounded(r, format!("{section}.statement_timeout"));
    let lock = bounded(r, format!("{section}.lock_timeout"));
    let (statement, lock) = (statement?, lock?);
    if lock > statement {
        r.problem(&format!("{section}.lock_timeout"), format!("must not be longer than {section}.statement_timeout"));
        return None;
    }
    Some(crate::db::Waits { statement, lock })
}

fn read_register(r: &mut Reader) -> Option<RegisterSettings> {
    let url = r.parsed("register.url", DatabaseUrl::parse);
    let identifier = |s: &str| {
        let plain = |part: &str| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && part.len() <= 63
        };
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() <= 2 && parts.iter().all(|p| plain(p)) {
            Ok(s.to_string())
        } else {
            Err(format!("{s:?} is not a plain SQL identifier (letters, digits, _; optionally schema.view)"))
        }
    };
    let view = r.parsed("register.view", identifier);
    let placements_view = r.parsed("register.placements_view", identifier);
    let poll_interval = r.duration("register.poll_interval");
    let overlap = r.duration("register.overlap");
    let full_pass_at = r.parsed("register.full_pass_at", |s| {
        NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| format!("{s:?} is not a local time like 02:30"))
    });
    let demo_cases = r.integer("register.demo_cases", 0, 10_000_000);
    let max_cell_bytes = r.integer("register.max_cell_bytes", 64, 1 << 30);
    let max_withdraw_share = r.parsed("register.max_withdraw_share", |s| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| (0.0..=1.0).contains(x))
            .ok_or_else(|| format!("{s:?} is not a share from 0 to 1 such as 0.10"))
    });
    let waits = waits(r, "register");
    Some(RegisterSettings {
        url: url?,
        view: view?,
        placements_view: placements_view?,
        poll_interval: poll_interval?,
        overlap: overlap?,
        full_pass_at: full_pass_at?,
        demo_cases: u32::try_from(demo_cases?).ok()?,
        max_cell_bytes: usize::try_from(max_cell_bytes?).ok()?,
        max_withdraw_share: max_withdraw_share?,
        waits: waits?,
    })
}

fn read_mail(r: &mut Reader, base_dir: Option<&Path>) -> Option<MailSettings> {
    let from = r.parsed("mail.from", |s| EmailAddress::parse(s).map_err(|e| format!("{s:?}: {e}")));
    let transport = r.parsed("mail.transport", |s| match s {
        "file" => Ok(Transport::File),
        "smtp" => Ok(Transport::Smtp),
        _ => Err(format!("{s:?} is not a transport: use \"file\" or \"smtp\"")),
    });
    let file_dir = r.string("mail.file_dir").map(PathBuf::from);
    let case_link = r.parsed("mail.case_link", |s| {
        if !(s.starts_with("https://") || s.starts_with("http://")) {
            Err(format!("{s:?} must be an http(s) link"))
        } else if !s.contains("{case_ref}") {
            Err(format!("{s:?} must contain {{case_ref}}, where the case reference goes"))
        } else {
            Ok(s.to_string())
        }
    });
    let placement_link = match r.optional_string("mail.placement_link") {
        Some(s) if !(s.starts_with("https://") || s.starts_with("http://")) => {
            r.problem("mail.placement_link", format!("{s:?} must be an http(s) link"));
            None
        }
        Some(s) if !s.contains("{placement_ref}") => {
            r.problem("mail.placement_link", format!("{s:?} must contain {{placement_ref}}, where the reference goes"));
            None
        }
        other => other,
    };
    let language = r.parsed("mail.language", |s| match s {
        "sv" => Ok(Language::Swedish),
        "en" => Ok(Language::English),
        _ => Err(format!("{s:?} is not a supported language: use \"sv\" or \"en\"")),
    });
    let send_window = r.parsed("mail.send_window", SendWindow::parse);
    let retry_initial = r.duration("mail.retry_initial");
    let retry_max = r.duration("mail.retry_max");
    let give_up_after = r.duration("mail.give_up_after");
    let from_name = r.optional_string("mail.from_name").unwrap_or_default();
    if from_name.chars().any(char::is_control) {
        r.problem("mail.from_name", "must be one line without control characters");
    }
    let templates_dir = r.optional_string("mail.templates_dir").map(PathBuf::from);
    if let Some(dir) = &templates_dir {
        if !dir.is_dir() {
            r.problem("mail.templates_dir", format!("{} is not a directory", dir.display()));
        }
    }

    let host = r.string("mail.smtp.host").map(|s| s.trim().to_string());
    let port = r.integer("mail.smtp.port", 1, 65535).map(|p| p as u16);
    let tls = r.parsed("mail.smtp.tls", |s| match s {
        "starttls" => Ok(Tls::StartTls),
        "tls" => Ok(Tls::Implicit),
        "none" => Ok(Tls::None),
        _ => Err(format!("{s:?} is not a TLS mode: use \"starttls\", \"tls\" or \"none\"")),
    });
    let username = r.optional_string("mail.smtp.username");
    let timeout = r.duration("mail.smtp.timeout");
    let pool_size = r.integer("mail.smtp.pool_size", 1, 100).map(|n| n as u32);
    let data_timeout = r.duration("mail.smtp.data_timeout").and_then(|d| {
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) {
            r.problem("mail.smtp.data_timeout", "must be from 1s to 1h");
            None
        } else if timeout.is_some_and(|t| d < t) {
            r.problem("mail.smtp.data_timeout", "must not be shorter than mail.smtp.timeout");
            None
        } else {
            Some(d)
        }
    });
    let (password, password_note) =
        read_password(r, base_dir, transport == Some(Transport::Smtp) && username.is_some());

    if transport == Some(Transport::Smtp) {
        if let (Some(Tls::None), Some(host)) = (tls, &host) {
            if !is_loopback_host(host) {
                r.problem(
                    "mail.smtp.tls",
                    format!("\"none\" sends mail unencrypted and is allowed only for a loopback host, not {host:?}; use \"starttls\" or \"tls\""),
                );
            }
        }
        if host.as_deref() == Some("") {
            r.problem("mail.smtp.host", "empty; name the SMTP server");
        }
    }
    if let (Some(a), Some(b)) = (retry_initial, retry_max) {
        if a > b {
            r.problem("mail.retry_max", "must not be shorter than mail.retry_initial");
        }
    }

    Some(MailSettings {
        from: from?,
        transport: transport?,
        file_dir: file_dir?,
        case_link: case_link?,
        placement_link,
        language: language?,
        send_window: send_window?,
        retry_initial: retry_initial?,
        retry_max: retry_max?,
        give_up_after: give_up_after?,
        templates_dir,
        from_name,
        smtp: SmtpSettings {
            host: host?,
            port: port?,
            tls: tls?,
            username,
            password,
            password_note,
            timeout: timeout?,
            data_timeout: data_timeout?,
            pool_size: pool_size?,
        },
    })
}

/// The SMTP password: `mail.smtp.password` (environment `FRISTVAKT__MAIL__SMTP__PASSWORD`) or the
/// file named by `mail.smtp.password_file` (a systemd credential). Never read from a logged value.
///
/// A credential path (`/run/credentials/UNIT/NAME`) exists only while the service runs; outside
/// it (no `CREDENTIALS_DIRECTORY`: `sudo fristvakt check-config` before the first start) the
/// password is read from the unit's `LoadCredential=NAME:SOURCE`, and the note says so.
fn read_password(r: &mut Reader, base_dir: Option<&Path>, needed: bool) -> (Option<Secret>, Option<String>) {
    // The environment may hold a password of digits, which the layering parses as a number.
    if r.get("mail.smtp.password").is_some() {
        if let Some(s) = r.string("mail.smtp.password").filter(|s| !s.is_empty()) {
            return (Some(Secret(s)), None);
        }
    }
    let key = "mail.smtp.password_file";
    let Some(file) = r.optional_string(key) else {
        if needed {
            r.problem(
                key,
                "mail.smtp.username is set but no password: set password_file or FRISTVAKT__MAIL__SMTP__PASSWORD",
            );
        }
        return (None, None);
    };
    let path = resolve(base_dir, Path::new(&file));
    let outside_service = std::env::var_os("CREDENTIALS_DIRECTORY").is_none();
    let (read_from, note) = match crate::access::credential_of(&path).filter(|_| outside_service && !path.exists()) {
        Some((unit, name)) => match crate::access::credential_source(&unit, &name) {
            Some(source) => {
                let note = format!(
                    "{key}: {} exists only while {unit} runs; read from its LoadCredential= source {}",
                    path.display(),
                    source.display()
                );
                (source, Some(note))
            }
            None => {
                if needed {
                    r.problem(
                        key,
                        format!(
                            "cannot read {}: no such file; it is a systemd credential, present only while {unit} \
                             runs, and no LoadCredential={name}:… line of {unit} was found to read instead \
                             (install the unit, or set FRISTVAKT__MAIL__SMTP__PASSWORD to check outside the service)",
                            path.display()
                        ),
                    );
                }
                return (None, None);
            }
        },
        None => (path.clone(), None),
    };
    match std::fs::read_to_string(&read_from) {
        Ok(s) if !s.trim().is_empty() => (Some(Secret(s.trim_end_matches(['\r', '\n']).to_string())), note),
        Ok(_) if needed => {
            r.problem(key, format!("{} is empty", read_from.display()));
            (None, None)
        }
        Err(e) if needed => {
            let mut message = crate::access::read_error(&read_from, &e);
            if let Some(note) = note {
                message = format!("{message} ({note}; run check-config as root)");
            }
            r.problem(key, message);
            (None, None)
        }
        _ => (None, None),
    }
}

fn resolve(base_dir: Option<&Path>, path: &Path) -> PathBuf {
    match base_dir {
        Some(base) if path.is_relative() && !path.exists() => base.join(path),
        _ => path.to_path_buf(),
    }
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
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

const UNIT_KEYS: &[&str] = &["name", "team_leads", "managers", "deputy_team_leads", "deputy_managers", "away"];

fn read_unit(r: &mut Reader, key: &str, fallback: Option<&UnitRoute>) -> UnitRoute {
    r.unknown_keys(key, UNIT_KEYS);
    let mut route = UnitRoute {
        name: r.optional_string(&format!("{key}.name")),
        team_leads: r.addresses(&format!("{key}.team_leads")),
        managers: r.addresses(&format!("{key}.managers")),
        deputy_team_leads: r.addresses(&format!("{key}.deputy_team_leads")),
        deputy_managers: r.addresses(&format!("{key}.deputy_managers")),
        away: r.addresses(&format!("{key}.away")),
    };
    if let Some(fallback) = fallback {
        // A role left out inherits from `units.default`; a role written as an empty list is a
        // mistake (nobody would get the mail) and is reported by the caller.
        let absent = |r: &Reader, role: &str| r.get(&format!("{key}.{role}")).is_none();
        if route.team_leads.is_empty() && absent(r, "team_leads") {
            route.team_leads = fallback.team_leads.clone();
        }
        if route.managers.is_empty() && absent(r, "managers") {
            route.managers = fallback.managers.clone();
        }
    }
    route
}

fn read_units(r: &mut Reader) -> Option<UnitDirectory> {
    let codes: Vec<String> = match r.get("units") {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        _ => {
            r.problem("units", "missing: configure at least [units.default]");
            return None;
        }
    };
    if !codes.iter().any(|c| c == "default") {
        r.problem("units.default", "missing: the fallback team leads and managers");
        return None;
    }
    let default = read_unit(r, "units.default", None);
    if default.team_leads.is_empty() {
        r.problem("units.default.team_leads", "needs at least one address");
    }
    if default.managers.is_empty() {
        r.problem("units.default.managers", "needs at least one address: every unit needs a manager");
    }
    let mut units = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for code in codes.iter().filter(|c| *c != "default") {
        let key = format!("units.{code}");
        let Some(Value::Object(_)) = r.get_raw_unit(code) else {
            r.problem(&key, "expected a table with team_leads and managers");
            continue;
        };
        let parsed = match UnitCode::parse(code) {
            Ok(c) => c,
            Err(e) => {
                r.problem(&key, e);
                continue;
            }
        };
        if !seen.insert(parsed.clone()) {
            r.problem(&key, "configured twice (unit codes are compared without regard to case)");
            continue;
        }
        if code.contains('.') {
            r.problem(&key, "a unit code in the configuration cannot contain a dot");
            continue;
        }
        let route = read_unit(r, &key, Some(&default));
        if route.managers.is_empty() {
            r.problem(&format!("{key}.managers"), "needs at least one address: every unit needs a manager");
        }
        if route.team_leads.is_empty() {
            r.problem(&format!("{key}.team_leads"), "needs at least one address, or leave it out to use units.default");
        }
        units.insert(parsed, route);
    }
    Some(UnitDirectory { default, units })
}

impl<'a> Reader<'a> {
    /// A unit table by its raw code (codes may contain dots, which `get` would split).
    fn get_raw_unit(&self, code: &str) -> Option<&'a Value> {
        self.root.get("units")?.get(code)
    }
}

fn read_ladders(r: &mut Reader) -> Option<Ladders> {
    let read = |kind: Kind| -> Option<Ladder> {
        let key = format!("ladder.{}", kind.as_str());
        let Some(value) = r.get(&key) else { return Some(Ladder::default_for(kind)) };
        let Value::Array(items) = value else {
            r.problem(&key, "expected a list of steps like [{ offset = -3, roles = [\"caseworker\"] }]");
            return None;
        };
        let mut steps = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let step_key = format!("{key}[{i}]");
            let offset = item.get("offset").and_then(|o| o.as_i64().or_else(|| o.as_str()?.parse().ok()));
            let roles: Option<Vec<Role>> = item
                .get("roles")
                .and_then(Value::as_array)
                .and_then(|roles| roles.iter().map(|x| x.as_str()?.parse::<Role>().ok()).collect());
            match (offset.and_then(|o| i32::try_from(o).ok()), roles) {
                (Some(offset), Some(roles)) if (-366..=366).contains(&offset) => steps.push(Step { offset, roles }),
                (None, _) | (Some(_), Some(_)) => {
                    r.problem(&step_key, "offset must be a whole number of days from -366 to 366");
                    ok = false;
                }
                (_, None) => {
                    r.problem(&step_key, "roles must list caseworker, team_lead and/or manager");
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        match Ladder::new(steps) {
            Ok(l) => Some(l),
            Err(e) => {
                r.problem(&key, e.to_string());
                None
            }
        }
    };
    // Every kind is read (and every problem named) before any is given up on.
    let by_kind: Vec<Option<Ladder>> = Kind::ALL.into_iter().map(read).collect();
    let first_sight_horizon_days = whole_days(r, "ladder.first_sight_horizon");
    Some(Ladders {
        by_kind: by_kind.into_iter().collect::<Option<Vec<Ladder>>>()?,
        first_sight_horizon_days: first_sight_horizon_days?,
    })
}

/// A duration key given in whole days ("30d"), from 1 to 3 660 days.
fn whole_days(r: &mut Reader, key: &str) -> Option<i64> {
    let duration = r.duration(key)?;
    let secs = duration.as_secs();
    if secs % 86_400 != 0 || !(1..=3_660).contains(&(secs / 86_400)) || duration.subsec_nanos() != 0 {
        r.problem(key, "give whole days from 1d to 3660d, like \"30d\"");
        return None;
    }
    Some((secs / 86_400) as i64)
}

/// Percent-encodes a case reference for use as one path segment of the case link.
fn encode_path_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn database_urls_hide_passwords() {
        let url = DatabaseUrl::parse("postgres://fv:secret@db.k.se/state").unwrap();
        assert_eq!(url.redacted(), "postgres://[redacted]@db.k.se/state");
        assert!(!format!("{url:?}").contains("secret"));
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert_eq!(DatabaseUrl::parse("sqlite://var/s.db").unwrap().sqlite_path().unwrap(), PathBuf::from("var/s.db"));
    }

    #[test]
    fn database_urls_hide_passwords_in_the_user_information_and_the_query() {
        let cases = [
            ("postgres://u:pw@h/db", "postgres://[redacted]@h/db", "pw"),
            (
                "postgres://u@h/db?password=pw&sslmode=require",
                "postgres://[redacted]@h/db?password=[redacted]&sslmode=require",
                "pw",
            ),
            (
                "postgres://h/db?sslmode=require&password=pw",
                "postgres://h/db?sslmode=require&password=[redacted]",
                "pw",
            ),
            ("postgres://u@h/db?sslpassword=x", "postgres://[redacted]@h/db?sslpassword=[redacted]", "x"),
            ("postgresql://h:5432/db?PassWord=Hemlis1", "postgresql://h:5432/db?PassWord=[redacted]", "Hemlis1"),
            // An encoded key is still a password to the driver.
            ("postgres://h/db?pass%77ord=Hemlis2", "postgres://h/db?pass%77ord=[redacted]", "Hemlis2"),
            // An unencoded '@' or '/' in the password, and an '@' in a query value.
            ("postgres://u:p@ss/w@h/db", "postgres://[redacted]@h/db", "p@ss/w"),
            ("postgres://h/db?password=p@ss#frag", "postgres://h/db?password=[redacted]#frag", "p@ss"),
            ("sqlite://var/s.db?mode=ro", "sqlite://var/s.db?mode=ro", ""),
        ];
        for (raw, redacted, secret) in cases {
            let url = DatabaseUrl::parse(raw).unwrap();
            assert_eq!(url.redacted(), redacted, "{raw}");
            if !secret.is_empty() {
                assert!(!url.redacted().contains(secret), "{raw}");
                assert!(!format!("{url:?}").contains(secret), "{raw}");
            }
        }
    }

    #[test]
    fn database_url_secrets_are_scrubbed_from_driver_messages() {
        let url = DatabaseUrl::parse("postgres://fv:top%2Fsecret@h/db?sslpassword=keypass&password=qpw").unwrap();
        let message = format!("error with {} (top/secret, top%2Fsecret, keypass, qpw)", url.expose());
        let scrubbed = url.scrub(&message);
        for secret in ["top/secret", "top%2Fsecret", "keypass", "qpw"] {
            assert!(!scrubbed.contains(secret), "{secret} in {scrubbed}");
        }
        assert!(
            scrubbed.contains("postgres://[redacted]@h/db?sslpassword=[redacted]&password=[redacted]"),
            "{scrubbed}"
        );
        // The driver gets every parameter it knows, and none that it would log with its value.
        let (driver, dropped) = url.for_driver();
        assert_eq!(driver, "postgres://fv:top%2Fsecret@h/db?password=qpw");
        assert_eq!(dropped, ["sslpassword"]);
        let plain = DatabaseUrl::parse("postgres://h/db?sslmode=disable#x").unwrap();
        assert_eq!(plain.for_driver(), ("postgres://h/db?sslmode=disable#x".to_string(), Vec::new()));
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
