//! Where mail goes: `.eml` files in a directory, or an SMTP server.
//!
//! Architecture invariant: one [`Mailer`] is built at start-up and shared. Outbox mail goes
//! through [`Mailer::deliver`] over a sender's [`Connection`], kept open from one of its mails to
//! the next (the dispatcher bounds how many are open at once by `mail.smtp.pool_size`), speaking
//! the transaction itself over lettre's connection so that each recipient's reply is its own; the
//! test mail uses lettre's pool. A delivery sends the envelope (`MAIL FROM`, `RCPT TO`, `DATA`)
//! at once and the message itself only once its caller's condition holds (the dispatcher's: the
//! previous mail on the connection is recorded): nothing is accepted before the message's final
//! `.`, and a delivery whose condition fails closes the connection in the middle of `DATA`, which
//! a server takes as the transaction aborted (RFC 5321, 3.8).
//! Errors carry a bounded class (a metric label) and a message scrubbed of anything that looks
//! like an address, since SMTP servers like to echo recipients back in their replies.

use std::io::Write;
use std::path::{Path, PathBuf};

use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::PoolConfig;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailSettings, Tls, Transport};
use crate::domain::{EmailAddress, ErrorClass};

/// How mail leaves fristvakt.
#[derive(Clone)]
pub enum Mailer {
    /// One `.eml` file per mail under `dir` (`mail.transport = "file"`).
    File { dir: PathBuf },
    /// An SMTP server (`mail.transport = "smtp"`).
    Smtp(Smtp),
}

/// The SMTP side of the mailer: lettre's pooled client for single mails (the test mail), and
/// the same server settings for delivery per recipient ([`Mailer::deliver`]), which speaks the
/// transaction itself over lettre's connection so that each recipient's reply is its own.
#[derive(Clone)]
pub struct Smtp {
    pool: AsyncSmtpTransport<Tokio1Executor>,
    host: String,
    port: u16,
    timeout: Duration,
    /// How long the reply to the message's final `.` is awaited (`mail.smtp.data_timeout`).
    data_timeout: Duration,
    /// `Some` for implicit TLS or STARTTLS (both required, never opportunistic).
    tls: Option<(Tls, TlsParameters)>,
    credentials: Option<Credentials>,
}

impl Smtp {
    /// An unencrypted, unauthenticated client of a server on loopback (for tests).
    pub fn plain(host: &str, port: u16, timeout: Duration) -> Smtp {
        Smtp {
            pool: AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(port)
                .timeout(Some(timeout))
                .build(),
            host: host.to_string(),
            port,
            timeout,
            data_timeout: timeout,
            tls: None,
            credentials: None,
        }
    }
}

/// What the server answered for one recipient of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientResult {
    /// Accepted, and the message then accepted: delivered.
    Delivered,
    /// Refused permanently (5xx to `RCPT TO`): sending again cannot help.
    Refused(SendError),
    /// Refused for now (4xx to `RCPT TO`): try this recipient again later.
    Deferred(SendError),
}

/// A delivery that failed as a whole, before or after the recipients were answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliverError {
    /// The server refuses fristvakt itself, whatever the mail (a failed TLS set-up, AUTH
    /// refused, `MAIL FROM` refused with 5xx): dispatch pauses; the mail is not at fault.
    Server(SendError),
    /// The server cannot be reached or will not talk yet (connection refused or cut, no
    /// greeting within the timeout, a 4xx greeting or login reply): an outage of the server,
    /// not of this mail. Dispatch pauses; the mail keeps its place and its retry period.
    Unavailable(SendError),
    /// This attempt at this mail failed (a connection cut in the transaction, a timeout, a
    /// reply to `DATA`, a transient `MAIL FROM` reply): permanent or transient as
    /// [`SendError::permanent`] says.
    Message(SendError),
    /// The message's final `.` went out and no reply came (none within `mail.smtp.data_timeout`,
    /// or the connection was lost): the server may have accepted the mail. Sending it again
    /// soon would likely double it; the caller waits the data timeout first.
    Unconfirmed(SendError),
    /// The caller's condition for sending the message failed (see [`Mailer::deliver`]): the
    /// message was not sent, the server took nothing of it, and the connection is closed.
    Withheld,
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
    /// A bounded label for metrics and the outbox's `last_error`.
    pub class: ErrorClass,
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
                let credentials = match (&smtp.username, &smtp.password) {
                    (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password.expose().to_string())),
                    _ => None,
                };
                if let Some(credentials) = &credentials {
                    builder = builder.credentials(credentials.clone());
                }
                let tls = match smtp.tls {
                    Tls::None => None,
                    tls => Some((tls, TlsParameters::new(smtp.host.clone()).map_err(tls_error)?)),
                };
                Ok(Mailer::Smtp(Smtp {
                    pool: builder.build(),
                    host: smtp.host.clone(),
                    port: smtp.port,
                    timeout: smtp.timeout,
                    data_timeout: smtp.data_timeout,
                    tls,
                    credentials,
                }))
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
                    .map_err(|e| SendError {
                        permanent: false,
                        class: ErrorClass::Io,
                        message: format!("writer task: {e}"),
                    })?
                    .map_err(|e| SendError { permanent: false, class: ErrorClass::Io, message: scrub(&e.to_string()) })
            }
            Mailer::Smtp(smtp) => {
                let bytes = message.formatted();
                smtp.pool.send_raw(message.envelope(), &bytes).await.map(|_| ()).map_err(|e| classify(&e))
            }
        }
    }

    /// Delivers `message` to each address of `to` on its own account: one SMTP transaction
    /// whose recipients are answered one by one, the message sent to those accepted. Returns
    /// each recipient's result, in the order of `to`. A file mailer delivers to all.
    ///
    /// `kept` is the sender's connection: an open one is used (a server that closed it meanwhile
    /// is connected to again, before anything of this mail was accepted), and after a
    /// transaction that ended cleanly the connection is left there for the sender's next mail.
    /// The caller ends the connection with [`Connection::close`]. A delivery that fails, or
    /// whose future is dropped, leaves no connection behind.
    ///
    /// `before_message` is awaited once the envelope is answered (`DATA` answered with `354`),
    /// right before the message, which is sent only if it yields `true` — the server accepts
    /// nothing before the message's final `.`. If it yields `false`, the connection is closed
    /// there, without a word ([`DeliverError::Withheld`]): a server discards a transaction
    /// whose connection ends before the end of its data. A delivery that ends before the message
    /// (every recipient refused, a failure) never awaits it. A file mailer awaits it before
    /// writing the file.
    pub async fn deliver(
        &self,
        kept: &mut Option<Connection>,
        message: &Message,
        to: &[EmailAddress],
        before_message: impl std::future::Future<Output = bool>,
    ) -> Result<Vec<RecipientResult>, DeliverError> {
        match self {
            Mailer::File { .. } => {
                if !before_message.await {
                    return Err(DeliverError::Withheld);
                }
                self.send(message).await.map_err(DeliverError::Message)?;
                Ok(vec![RecipientResult::Delivered; to.len()])
            }
            Mailer::Smtp(smtp) => smtp.deliver(kept, message, to, before_message).await,
        }
    }
}

/// An SMTP connection kept open between the mails of one sender (see [`Mailer::deliver`]): the
/// last transaction on it ended cleanly, so the next begins with `MAIL FROM`.
pub struct Connection {
    conn: AsyncSmtpConnection,
    timeout: Duration,
}

impl Connection {
    /// Ends the connection politely (`QUIT`) in the background, bounded by the timeout.
    pub fn close(self) {
        let Connection { mut conn, timeout } = self;
        // Outside a runtime (a test dropping it late) the socket is simply closed.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(timeout, conn.quit()).await;
            });
        }
    }
}

impl Smtp {
    /// The failure of a server that did not answer within the timeout, at `stage`.
    fn no_answer(&self, stage: &str) -> SendError {
        SendError {
            permanent: false,
            class: ErrorClass::Timeout,
            message: format!("no answer from the mail server within {:?} ({stage})", self.timeout),
        }
    }

    async fn deliver(
        &self,
        kept: &mut Option<Connection>,
        message: &Message,
        to: &[EmailAddress],
        before_message: impl std::future::Future<Output = bool>,
    ) -> Result<Vec<RecipientResult>, DeliverError> {
        let bytes = message.formatted();
        // Taken out for the time of the transaction: if this future is dropped half-way, the
        // connection goes with it, in whatever state it was.
        if let Some(Connection { mut conn, .. }) = kept.take() {
            match self.envelope(&mut conn, message, &bytes, to, true).await {
                // The server had closed the connection, or closes it now (a `421`, a reset): it
                // took nothing of this mail, so a fresh connection starts it from the beginning.
                Err(Stale) => tracing::debug!("the kept SMTP connection was closed by the server; connecting again"),
                Ok(result) => return self.finish(kept, conn, &bytes, result, before_message).await,
            }
        }
        // lettre bounds the TCP connect by `timeout`, not the reads: a server that accepts the
        // connection and then says nothing would hold this attempt (and the dispatch run) for
        // ever. Every phase is bounded here: set-up, then the transaction.
        let mut conn = match tokio::time::timeout(self.timeout, self.connect()).await {
            Ok(conn) => conn?,
            Err(_) => return Err(DeliverError::Unavailable(self.no_answer("greeting"))),
        };
        // Only a kept connection is stale; a fresh one answers for itself.
        let result = self.envelope(&mut conn, message, &bytes, to, false).await.unwrap_or_else(|Stale| {
            Err(DeliverError::Message(SendError {
                permanent: false,
                class: ErrorClass::Connect,
                message: "the mail server closed the connection".into(),
            }))
        });
        self.finish(kept, conn, &bytes, result, before_message).await
    }

    /// The envelope of one transaction on `conn`, each of its round trips bounded: `MAIL FROM`,
    /// one `RCPT TO` per recipient, and `DATA` when one was accepted. `Err(Stale)` only when
    /// `reused` and `MAIL FROM` failed on it or went unanswered for the timeout.
    async fn envelope(
        &self,
        conn: &mut AsyncSmtpConnection,
        message: &Message,
        bytes: &[u8],
        to: &[EmailAddress],
        reused: bool,
    ) -> Result<Result<Vec<RecipientResult>, DeliverError>, Stale> {
        // MAIL FROM, one RCPT TO per recipient and DATA: each a round trip.
        let round_trips = u32::try_from(to.len()).unwrap_or(u32::MAX).saturating_add(2);
        match tokio::time::timeout(
            self.timeout.saturating_mul(round_trips),
            envelope(conn, message, bytes, to, reused.then_some(self.timeout)),
        )
        .await
        {
            Ok(Err(TransactionError::Stale)) => Err(Stale),
            Ok(Err(TransactionError::Failed(e))) => Ok(Err(e)),
            Ok(Ok(results)) => Ok(Ok(results)),
            Err(_) => Ok(Err(DeliverError::Message(self.no_answer("transaction")))),
        }
    }

    /// After the envelope: with a recipient accepted (the server waiting for the message after
    /// `DATA`), the message once `before_message` allows it (else the connection is closed
    /// mid-`DATA`, so that the server takes nothing), then the connection settled.
    async fn finish(
        &self,
        kept: &mut Option<Connection>,
        mut conn: AsyncSmtpConnection,
        bytes: &[u8],
        result: Result<Vec<RecipientResult>, DeliverError>,
        before_message: impl std::future::Future<Output = bool>,
    ) -> Result<Vec<RecipientResult>, DeliverError> {
        let result = match result {
            Ok(results) if results.contains(&RecipientResult::Delivered) => {
                if !before_message.await {
                    // Dropped without a word: a `QUIT` now would be taken as message text.
                    drop(conn);
                    return Err(DeliverError::Withheld);
                }
                self.message(&mut conn, bytes).await.map(|()| results)
            }
            other => other,
        };
        self.settle(kept, conn, result).await
    }

    /// The message and the server's reply to its final `.`: writing the message is bounded by
    /// `timeout`, the reply by `data_timeout` from when the `.` went out (a relay may scan the
    /// content for minutes after it). A failure after the `.` went out, other than a reply,
    /// leaves the mail [`DeliverError::Unconfirmed`].
    async fn message(&self, conn: &mut AsyncSmtpConnection, bytes: &[u8]) -> Result<(), DeliverError> {
        // Set when lettre has taken the whole message and writes the final `.` next.
        let dot: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
        let send = conn.message_iter(DotWatch { part: Some(bytes), dot: &dot });
        tokio::pin!(send);
        let started = tokio::time::Instant::now();
        let outcome = loop {
            let after_dot = dot.get().copied();
            let deadline = after_dot.map_or(started + self.timeout, |at| at + self.data_timeout);
            tokio::select! {
                result = &mut send => break Some(result),
                () = tokio::time::sleep_until(deadline) => {
                    // The `.` went out after this wait began: wait for its reply.
                    if after_dot.is_none() && dot.get().is_some() {
                        continue;
                    }
                    break None;
                }
            }
        };
        let unconfirmed = dot.get().is_some();
        match outcome {
            Some(Ok(_)) => Ok(()),
            // A reply: the server said what became of the mail.
            Some(Err(e)) if e.is_permanent() || e.is_transient() || !unconfirmed => {
                Err(DeliverError::Message(classify(&e)))
            }
            Some(Err(e)) => Err(DeliverError::Unconfirmed(classify(&e))),
            None if unconfirmed => Err(DeliverError::Unconfirmed(SendError {
                permanent: false,
                class: ErrorClass::Timeout,
                message: format!(
                    "no reply to the message's end within {:?} (mail.smtp.data_timeout)",
                    self.data_timeout
                ),
            })),
            None => Err(DeliverError::Message(self.no_answer("message"))),
        }
    }

    /// After a transaction: a connection whose transaction ended with the message taken is kept
    /// for the sender's next mail; any other is ended (one left in the middle of a transaction
    /// is aborted at once, so that the server discards what it had of the message).
    async fn settle(
        &self,
        kept: &mut Option<Connection>,
        mut conn: AsyncSmtpConnection,
        result: Result<Vec<RecipientResult>, DeliverError>,
    ) -> Result<Vec<RecipientResult>, DeliverError> {
        match &result {
            Ok(results) if results.contains(&RecipientResult::Delivered) => {
                *kept = Some(Connection { conn, timeout: self.timeout });
            }
            // Every recipient refused: the transaction is still open on the server; a clean end,
            // said without waiting for it.
            Ok(_) => Connection { conn, timeout: self.timeout }.close(),
            Err(_) => {
                let _ = tokio::time::timeout(self.timeout, conn.abort()).await;
            }
        }
        result
    }

    /// Connects, sets up TLS (required, never opportunistic) and logs in. A TLS failure or a
    /// refused login is the server refusing fristvakt ([`DeliverError::Server`]); a connection
    /// that fails is an outage of this attempt.
    async fn connect(&self) -> Result<AsyncSmtpConnection, DeliverError> {
        let hello = ClientId::default();
        let implicit = match &self.tls {
            Some((Tls::Implicit, parameters)) => Some(parameters.clone()),
            _ => None,
        };
        let mut conn = match implicit {
            Some(tls) => AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &hello,
                Some(tls),
                None,
            )
            .await
            .map_err(|e| setup_error(&e, ErrorClass::Greeting))?,
            None => {
                // Our own socket, for TCP_NODELAY: lettre writes a message's body and its closing
                // `.` in two writes, and with Nagle's algorithm the second waits for the server's
                // delayed acknowledgement of the first (BENCHMARKS.md, "Figures behind code
                // comments"), a mail held half-sent in the kernel the whole time (sent by the
                // kernel even if fristvakt dies then).
                let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| {
                    DeliverError::Unavailable(SendError {
                        permanent: false,
                        class: io_class(e.kind()),
                        message: scrub(&format!("cannot connect: {e}")),
                    })
                })?;
                let _ = tcp.set_nodelay(true);
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
                    .await
                    .map_err(|e| setup_error(&e, ErrorClass::Greeting))?
            }
        };
        if let Some((Tls::StartTls, parameters)) = &self.tls {
            if let Err(e) = conn.starttls(parameters.clone(), &hello).await {
                conn.abort().await;
                return Err(setup_error(&e, ErrorClass::Tls));
            }
        }
        if let Some(credentials) = &self.credentials {
            if let Err(e) = conn.auth(DEFAULT_MECHANISMS, credentials).await {
                conn.abort().await;
                return Err(setup_error(&e, ErrorClass::Auth));
            }
        }
        Ok(conn)
    }
}

/// The message as one part for lettre's `message_iter`, noting when lettre asks for more after
/// it: the message is written, and the final `.` goes out next.
struct DotWatch<'a> {
    part: Option<&'a [u8]>,
    dot: &'a std::sync::OnceLock<tokio::time::Instant>,
}

impl<'a> Iterator for DotWatch<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let part = self.part.take();
        if part.is_none() {
            let _ = self.dot.set(tokio::time::Instant::now());
        }
        part
    }
}

/// A kept connection on which `MAIL FROM` failed (the server closed it while it was idle, or
/// closes it now): nothing of the mail was accepted on it.
struct Stale;

/// How a transaction failed: on a kept connection before the server took anything of the mail
/// (`Stale`), or as the delivery's error.
enum TransactionError {
    Stale,
    Failed(DeliverError),
}

impl From<DeliverError> for TransactionError {
    fn from(e: DeliverError) -> TransactionError {
        TransactionError::Failed(e)
    }
}

/// `MAIL FROM`, one `RCPT TO` per recipient (each reply its recipient's own), then `DATA` for
/// the accepted ones, if any (the message itself is the caller's: [`Smtp::finish`]). `bytes`:
/// the formatted message. `reused`: the connection carried an earlier mail, and any failure
/// of `MAIL FROM` on it is `Stale` (a server that closed an idle connection answers it with an
/// I/O error, an end of stream or a `421`), as is no answer within the given time (a server
/// gone silent: the fresh connection then finds it so, as an outage, before its greeting).
async fn envelope(
    conn: &mut AsyncSmtpConnection,
    message: &Message,
    bytes: &[u8],
    to: &[EmailAddress],
    reused: Option<Duration>,
) -> Result<Vec<RecipientResult>, TransactionError> {
    let mut options = Vec::new();
    let client_error = |text: &str| {
        DeliverError::Message(SendError { permanent: true, class: ErrorClass::Other, message: text.to_string() })
    };
    // A recipient the envelope cannot carry is refused on its own (the others still get the
    // mail): an address lettre does not take, or one that is not ASCII on a server without
    // SMTPUTF8.
    let smtputf8 = conn.server_info().supports_feature(Extension::SmtpUtfEight);
    let mut results: Vec<Option<RecipientResult>> = to
        .iter()
        .map(|address| match address.as_str().parse::<Address>() {
            Err(_) => Some(RecipientResult::Refused(SendError {
                permanent: true,
                class: ErrorClass::Address,
                message: "not an address the mail library can send to".into(),
            })),
            Ok(_) if !smtputf8 && !address.as_str().is_ascii() => Some(RecipientResult::Refused(SendError {
                permanent: true,
                class: ErrorClass::Smtputf8,
                message: "the address is not ASCII and the mail server does not support SMTPUTF8".into(),
            })),
            Ok(_) => None,
        })
        .collect();
    if results.iter().all(Option::is_some) {
        return Ok(results.into_iter().flatten().collect());
    }
    if to.iter().zip(&results).any(|(a, r)| r.is_none() && !a.as_str().is_ascii()) {
        options.push(MailParameter::SmtpUtfEight);
    }
    if !bytes.is_ascii() {
        if !conn.server_info().supports_feature(Extension::EightBitMime) {
            return Err(client_error("the message is not ASCII and the server does not support 8BITMIME").into());
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = conn.command(Mail::new(message.envelope().from().cloned(), options));
    let answer = match reused {
        Some(within) => match tokio::time::timeout(within, mail).await {
            Ok(answer) => answer,
            Err(_) => return Err(TransactionError::Stale),
        },
        None => mail.await,
    };
    if let Err(e) = answer {
        // Nothing of the mail was taken: on a kept connection (closed by the server while idle,
        // or closing now) the mail starts again on a fresh one, which answers for itself.
        if reused.is_some() {
            return Err(TransactionError::Stale);
        }
        let error = classify(&e);
        return Err(TransactionError::Failed(if e.is_permanent() {
            DeliverError::Server(SendError { class: ErrorClass::Sender, ..error })
        } else {
            DeliverError::Message(error)
        }));
    }
    for (address, result) in to.iter().zip(results.iter_mut()) {
        let (None, Ok(rcpt)) = (&result, address.as_str().parse::<Address>()) else { continue };
        *result = Some(match conn.command(Rcpt::new(rcpt, Vec::new())).await {
            Ok(_) => RecipientResult::Delivered,
            Err(e) if e.is_permanent() => RecipientResult::Refused(classify(&e)),
            Err(e) if e.is_transient() => RecipientResult::Deferred(classify(&e)),
            Err(e) => return Err(DeliverError::Message(classify(&e)).into()),
        });
    }
    let results: Vec<RecipientResult> = results.into_iter().flatten().collect();
    if !results.contains(&RecipientResult::Delivered) {
        return Ok(results);
    }
    conn.command(Data).await.map_err(|e| DeliverError::Message(classify(&e)))?;
    Ok(results)
}

/// An error while connecting, securing or logging in. TLS failures and permanent replies are
/// the server refusing fristvakt (class `tls`, `auth` or `greeting`); connection failures,
/// timeouts and transient replies are an outage of this attempt.
fn setup_error(e: &lettre::transport::smtp::Error, stage: ErrorClass) -> DeliverError {
    let error = classify(e);
    if e.is_tls() || (stage == ErrorClass::Tls && !e.is_transient() && io_kind(e).is_none() && !e.is_timeout()) {
        return DeliverError::Server(SendError { permanent: false, class: ErrorClass::Tls, ..error });
    }
    if e.is_permanent() || (stage == ErrorClass::Auth && e.is_client()) {
        return DeliverError::Server(SendError { permanent: false, class: stage, ..error });
    }
    DeliverError::Unavailable(error)
}

/// The file of a message: its Message-ID made safe as a file name, so that sending the same
/// notice again overwrites its file instead of adding a second one; a notice's name starts with
/// `notice-KIND-`, a digest's with `digest-` (from `X-Fristvakt-Kind`).
fn file_name(message: &Message) -> String {
    let prefix = match message.headers().get_raw("X-Fristvakt-Kind") {
        Some("digest") => "digest-".to_string(),
        Some(kind) if kind.chars().all(|c| c.is_ascii_lowercase() || c == '_') => format!("notice-{kind}-"),
        _ => String::new(),
    };
    format!("{prefix}{}", id_file_name(message))
}

fn id_file_name(message: &Message) -> String {
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
        (true, ErrorClass::Permanent5xx)
    } else if e.is_transient() {
        (false, ErrorClass::Transient4xx)
    } else if e.is_timeout() {
        (false, ErrorClass::Timeout)
    } else if e.is_tls() {
        // Often a certificate or configuration problem, but also a broken handshake; retrying
        // until give-up keeps a notice alive while an operator looks.
        (false, ErrorClass::Tls)
    } else if let Some(kind) = io_kind(e) {
        (false, io_class(kind))
    } else if e.is_client() {
        // lettre refused to send (e.g. an invalid envelope): the same message fails again.
        (true, ErrorClass::Other)
    } else {
        // Unparsable replies, a shut-down transport, name resolution: worth another try.
        (false, ErrorClass::Other)
    };
    SendError { permanent, class, message }
}

/// The kind of the first I/O error in an error's source chain.
/// The class of a failed socket operation.
fn io_class(kind: std::io::ErrorKind) -> ErrorClass {
    use std::io::ErrorKind as K;
    match kind {
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::AddrNotAvailable
        | K::BrokenPipe
        | K::UnexpectedEof => ErrorClass::Connect,
        K::TimedOut => ErrorClass::Timeout,
        _ => ErrorClass::Io,
    }
}

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
        let err =
            Mailer::Smtp(Smtp { pool: transport, ..Smtp::plain("127.0.0.1", port, std::time::Duration::from_secs(5)) })
                .send(&message("<a@k.example>", "x"))
                .await
                .unwrap_err();
        assert!(!err.permanent, "{err:?}");
        assert_eq!(err.class, ErrorClass::Connect, "{err:?}");
    }
}
