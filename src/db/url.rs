//! Database URLs: which engine a URL names, and its secrets kept out of logs and error messages
//! (`Debug` and [`DatabaseUrl::redacted`] hide them, [`DatabaseUrl::scrub`] takes them out of a
//! driver's message). Read from `register.url` and `state.url` by `config`, opened by `db`.

use std::fmt;
use std::path::PathBuf;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
