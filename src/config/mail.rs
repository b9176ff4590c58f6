//! `[mail]` and `[mail.smtp]`: sender, transport, links, language, sending window, retries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::reader::Reader;
use super::secret::{read_password, Secret};
use crate::domain::EmailAddress;
use crate::send_window::SendWindow;

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

pub(super) fn read_mail(r: &mut Reader, base_dir: Option<&Path>) -> Option<MailSettings> {
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

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
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
