//! Where mail goes: `.eml` files in a directory, or an SMTP server.
//!
//! Architecture invariant: one [`Mailer`] is built at start-up and shared; the SMTP variant
//! holds lettre's connection pool, so connections are reused rather than opened per mail.
//! Errors carry a bounded class (a metric label) and a message scrubbed of anything that looks
//! like an address, since SMTP servers like to echo recipients back in their replies.

use std::io::Write;
use std::path::{Path, PathBuf};

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailSettings, Tls, Transport};

/// How mail leaves fristvakt.
#[derive(Clone)]
pub enum Mailer {
    /// One `.eml` file per mail under `dir` (`mail.transport = "file"`).
    File { dir: PathBuf },
    /// An SMTP server through lettre's pooled async client (`mail.transport = "smtp"`).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// The mailer could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("mail.file_dir: cannot create {path}: {source}")]
    FileDir { path: String, source: std::io::Error },
    #[error("mail.smtp.host: cannot set up TLS for {host}: {message}")]
    Tls { host: String, message: String },
}

/// One failed attempt to hand a mail over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct SendError {
    /// Retrying cannot help (a 5xx reply, a message the client refuses to send).
    pub permanent: bool,
    /// A bounded label for metrics: connect, timeout, tls, transient_4xx, permanent_5xx, io, other.
    pub class: &'static str,
    /// What went wrong, without addresses or message content.
    pub message: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::File { dir } => f.debug_struct("Mailer::File").field("dir", dir).finish(),
            // The transport holds credentials; show nothing of it.
            Mailer::Smtp(_) => f.write_str("Mailer::Smtp"),
        }
    }
}

impl Mailer {
    /// Builds the mailer once at start-up. Nothing connects yet: an SMTP server that is down
    /// now is a transient failure of the first send, not a start-up error.
    pub fn from_settings(mail: &MailSettings) -> Result<Mailer, MailerError> {
        match mail.transport {
            Transport::File => {
                std::fs::create_dir_all(&mail.file_dir)
                    .map_err(|source| MailerError::FileDir { path: mail.file_dir.display().to_string(), source })?;
                Ok(Mailer::File { dir: mail.file_dir.clone() })
            }
            Transport::Smtp => {
                let smtp = &mail.smtp;
                let tls_error = |e: lettre::transport::smtp::Error| MailerError::Tls {
                    host: smtp.host.clone(),
                    message: e.to_string(),
                };
                let builder = match smtp.tls {
                    // STARTTLS is required, never opportunistic: no downgrade to plain text.
                    Tls::StartTls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(tls_error)?
                    }
                    Tls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(tls_error)?,
                    // Configuration allows this only for a loopback host.
                    Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
                };
                let mut builder = builder
                    .port(smtp.port)
                    .timeout(Some(smtp.timeout))
                    .pool_config(PoolConfig::new().max_size(smtp.pool_size));
                if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
                    builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_string()));
                }
                Ok(Mailer::Smtp(builder.build()))
            }
        }
    }

    /// Hands one message over: to the SMTP server, or into its file.
    pub async fn send(&self, message: &Message) -> Result<(), SendError> {
        match self {
            Mailer::File { dir } => {
                let dir = dir.clone();
                let name = file_name(message);
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &bytes))
                    .await
                    .map_err(|e| SendError { permanent: false, class: "io", message: format!("writer task: {e}") })?
                    .map_err(|e| SendError { permanent: false, class: "io", message: scrub(&e.to_string()) })
            }
            Mailer::Smtp(transport) => {
                let bytes = message.formatted();
                transport.send_raw(message.envelope(), &bytes).await.map(|_| ()).map_err(|e| classify(&e))
            }
        }
    }
}

/// The file of a message: its Message-ID made safe as a file name, so that sending the same
/// notice again overwrites its file instead of adding a second one.
fn file_name(message: &Message) -> String {
    let id = message.headers().get_raw("Message-ID").unwrap_or_default();
    let safe: String = id
        .trim_matches(|c| c == '<' || c == '>')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') { c } else { '_' })
        .collect();
    // Leading dots would hide the file; file names are limited to 255 bytes (all ASCII here).
    let safe = safe.trim_start_matches('.');
    let safe = &safe[..safe.len().min(200)];
    if safe.is_empty() {
        // lettre always sets an id when asked for none; this is only a guard against an empty one.
        format!("message-{}.eml", std::process::id())
    } else {
        format!("{safe}.eml")
    }
}

/// Writes `bytes` to `dir/name` so that a reader sees either the old file or the whole new one:
/// a temporary file in the same directory, flushed to disk, then renamed over the target.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), rand::random::<u32>()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        // The rename itself is durable only once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Sorts a lettre error into a retry decision and a bounded class.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let message = scrub(&e.to_string());
    let (permanent, class) = if e.is_permanent() {
        (true, "permanent_5xx")
    } else if e.is_transient() {
        (false, "transient_4xx")
    } else if e.is_timeout() {
        (false, "timeout")
    } else if e.is_tls() {
        // Often a certificate or configuration problem, but also a broken handshake; retrying
        // until give-up keeps a notice alive while an operator looks.
        (false, "tls")
    } else if let Some(kind) = io_kind(e) {
        use std::io::ErrorKind as K;
        match kind {
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::AddrNotAvailable
            | K::BrokenPipe
            | K::UnexpectedEof => (false, "connect"),
            K::TimedOut => (false, "timeout"),
            _ => (false, "io"),
        }
    } else if e.is_client() {
        // lettre refused to send (e.g. an invalid envelope): the same message fails again.
        (true, "other")
    } else {
        // Unparsable replies, a shut-down transport, name resolution: worth another try.
        (false, "other")
    };
    SendError { permanent, class, message }
}

/// The kind of the first I/O error in an error's source chain.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}

/// Removes every word containing '@' (addresses, message ids) and bounds the length, so the
/// text is safe for logs, metrics and the outbox's `last_error`.
pub fn scrub(text: &str) -> String {
    let scrubbed: Vec<&str> =
        text.split_whitespace().map(|word| if word.contains('@') { "[address removed]" } else { word }).collect();
    let mut out = scrubbed.join(" ");
    if out.len() > 300 {
        let mut cut = 300;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use lettre::message::Mailbox;

    fn message(id: &str, body: &str) -> Message {
        Message::builder()
            .from("fristvakt@kommun.example".parse::<Mailbox>().unwrap())
            .to("a@kommun.example".parse::<Mailbox>().unwrap())
            .subject("x")
            .message_id(Some(id.to_string()))
            .body(body.to_string())
            .unwrap()
    }

    #[test]
    fn scrub_removes_addresses() {
        let s = scrub("permanent error (550): 5.1.1 <anna.a@kommun.example>: Mailbox unavailable");
        assert_eq!(s, "permanent error (550): 5.1.1 [address removed] Mailbox unavailable");
        assert!(scrub(&"x".repeat(1000)).chars().count() <= 301);
    }

    #[tokio::test]
    async fn file_transport_writes_one_file_per_message_id_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = Mailer::File { dir: dir.path().join("outbox") };
        mailer.send(&message("<abc/../x.fristvakt@kommun.example>", "first")).await.unwrap();
        mailer.send(&message("<abc/../x.fristvakt@kommun.example>", "second")).await.unwrap();
        mailer.send(&message("<other.fristvakt@kommun.example>", "third")).await.unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["abc_.._x.fristvakt@kommun.example.eml", "other.fristvakt@kommun.example.eml"]);
        let first = std::fs::read_to_string(dir.path().join("outbox").join(&names[0])).unwrap();
        assert!(first.contains("second") && !first.contains("first"), "{first}");
    }

    #[tokio::test]
    async fn refused_connections_are_transient_connect_errors() {
        // A port nobody listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .timeout(Some(std::time::Duration::from_secs(5)))
            .build();
        let err = Mailer::Smtp(transport).send(&message("<a@k.example>", "x")).await.unwrap_err();
        assert!(!err.permanent, "{err:?}");
        assert_eq!(err.class, "connect", "{err:?}");
    }
}
