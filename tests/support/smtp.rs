//! A real SMTP server on loopback for integration tests, running in-process
//! on the test's tokio runtime.
//!
//! It speaks the subset of RFC 5321 that lettre's SMTP client uses (EHLO/HELO,
//! MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT) and
//! advertises 8BITMIME, SMTPUTF8 and AUTH PLAIN (any credentials are taken, unless
//! the mode refuses them). No TLS: connect with
//! `AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(smtp.port())`.
//!
//! Received messages are kept in memory; [`ReceivedMail`] has helpers to read
//! headers and the decoded text body (the MIME decoding is the `mail-parser`
//! crate's). [`TestSmtp::set_mode`] makes the server reject recipients with a
//! permanent (550) or transient (451) reply, or the sender (`MAIL FROM`) with 550;
//! [`TestSmtp::refuse_recipients`] / [`TestSmtp::defer_recipients`] make it answer
//! chosen addresses 550 5.1.1 / 451 4.2.1 while it answers the others as the mode says;
//! [`TestSmtp::fault`] scripts a failure at any phase (greeting, EHLO, MAIL, each RCPT, DATA,
//! the final `.`, QUIT): a transient or permanent reply, silence or a dropped connection, per
//! recipient and for a number of times; and [`TestSmtp::stop`] / [`TestSmtp::restart`]
//! simulate an outage on the same port.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_parser::{HeaderForm, HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// How the server answers `RCPT TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpMode {
    /// `250` for every recipient.
    #[default]
    Accept,
    /// `550 5.1.1` for every recipient (lettre: `is_permanent()`).
    RejectPermanent,
    /// `451 4.3.0` for every recipient (lettre: `is_transient()`).
    RejectTransient,
    /// `550 5.7.1` to `MAIL FROM`: the server refuses the sender, whatever the recipients.
    RejectSender,
    /// `535 5.7.8` to `AUTH`: the server refuses the login; otherwise as `Accept`.
    RejectAuth,
    /// Accepts the connection and never says anything (a blackholed or hung server).
    Silent,
}

/// A phase of an SMTP session at which the server can be scripted to fail ([`TestSmtp::fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before the `220` greeting.
    Greeting,
    /// The reply to `EHLO` (or `HELO`).
    Ehlo,
    /// The reply to `MAIL FROM`.
    Mail,
    /// The reply to `RCPT TO` (of one recipient, with [`FaultRule::recipient`]).
    Rcpt,
    /// The reply to `DATA` (before `354`).
    Data,
    /// The reply to the message's final `.`.
    Dot,
    /// The reply to `QUIT`.
    Quit,
}

impl Phase {
    pub const ALL: [Phase; 7] =
        [Phase::Greeting, Phase::Ehlo, Phase::Mail, Phase::Rcpt, Phase::Data, Phase::Dot, Phase::Quit];
}

/// How the server fails at a [`Phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// A transient reply (`421` to the greeting, `451` otherwise).
    Transient,
    /// A permanent reply (`554`, `550` to a recipient).
    Permanent,
    /// No reply at all: the session reads on and says nothing (after the final `.` the message
    /// counts as received: the server has it).
    Silence,
    /// The connection closed at once, without a reply (after the final `.`: the message is lost).
    Disconnect,
}

impl Fault {
    pub const ALL: [Fault; 4] = [Fault::Transient, Fault::Permanent, Fault::Silence, Fault::Disconnect];
}

/// One scripted failure: at `phase`, `fault`, for the transactions of `recipient` only (at
/// `Rcpt`: that recipient's `RCPT TO`; at `Data`/`Dot`: a transaction that has it; ignored
/// before), at most `times` times (`None`: every time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub phase: Phase,
    pub fault: Fault,
    pub recipient: Option<String>,
    pub times: Option<usize>,
}

impl FaultRule {
    /// `fault` at `phase`, once, for any recipient.
    pub fn once(phase: Phase, fault: Fault) -> FaultRule {
        FaultRule { phase, fault, recipient: None, times: Some(1) }
    }
}

/// One message accepted by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// Envelope sender, without angle brackets (empty for the null sender `<>`).
    pub mail_from: String,
    /// Envelope recipients, without angle brackets.
    pub rcpt_to: Vec<String>,
    /// The raw RFC 5322 message (CRLF line ends, dot-unstuffed, without the
    /// CRLF that belongs to the terminating `.` line).
    pub data: String,
    /// When the terminating `.` arrived: the message is the server's from then on, whether
    /// or not the client reads the `250` that follows.
    pub received_at: Instant,
}

#[derive(Default)]
struct State {
    messages: Mutex<Vec<ReceivedMail>>,
    mode: Mutex<SmtpMode>,
    /// Addresses answered `550 5.1.1` (compared without regard to case), whatever the mode.
    refused: Mutex<Vec<String>>,
    /// Addresses answered `451 4.2.1` (compared without regard to case), unless refused.
    deferred: Mutex<Vec<String>>,
    /// How long the server waits before its greeting (a busy server).
    greeting_delay: Mutex<Duration>,
    /// How long the server takes to queue a message before its `250` (a busy server).
    data_delay: Mutex<Duration>,
    /// Closes each connection after the `250` to a message (as a server closes idle
    /// connections), without waiting for `QUIT`.
    close_after_message: Mutex<bool>,
    /// Connections accepted so far.
    connections: Mutex<usize>,
    /// `DATA` commands answered `354` so far (a message begun, whether or not it was finished).
    data_begun: Mutex<usize>,
    /// Once this many messages were received, the server falls silent on every session, open
    /// ones included (a hung server), and greets no new one.
    silent_after: Mutex<Option<usize>>,
    /// Scripted failures, each with the times it has left.
    faults: Mutex<Vec<FaultRule>>,
    /// Leaves SMTPUTF8 out of the `EHLO` reply (a server that cannot take non-ASCII addresses).
    no_smtputf8: Mutex<bool>,
}

impl State {
    /// The scripted fault at `phase` for a transaction of `recipients` (at `Rcpt`: the one),
    /// if any; a rule with a count is used up by it.
    fn fault(&self, phase: Phase, recipients: &[String]) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap();
        let rule = faults.iter_mut().find(|rule| {
            rule.phase == phase
                && rule.times != Some(0)
                && rule.recipient.as_ref().is_none_or(|r| recipients.iter().any(|x| x.eq_ignore_ascii_case(r)))
        })?;
        if let Some(times) = &mut rule.times {
            *times -= 1;
        }
        Some(rule.fault)
    }
}

/// A running (or stopped) test SMTP server; see the module docs.
pub struct TestSmtp {
    port: u16,
    state: Arc<State>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl TestSmtp {
    /// Starts a server on a free port of 127.0.0.1. Must be called inside a tokio runtime.
    pub async fn start() -> TestSmtp {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("test SMTP server cannot bind 127.0.0.1:0: {e}"));
        let port = listener.local_addr().expect("local addr").port();
        let mut smtp = TestSmtp { port, state: Arc::default(), server: None };
        smtp.serve(listener);
        smtp
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// All messages accepted so far, in order of arrival.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.state.messages.lock().unwrap().clone()
    }

    /// How many messages were accepted so far (without copying them, which would hold up the
    /// server while a test polls).
    pub fn count(&self) -> usize {
        self.state.messages.lock().unwrap().len()
    }

    /// Forgets the messages received so far.
    pub fn clear(&self) {
        self.state.messages.lock().unwrap().clear();
    }

    /// Changes how `RCPT TO` is answered, for new and open connections alike.
    pub fn set_mode(&self, mode: SmtpMode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Refuses these recipient addresses with `550 5.1.1` from now on (a departed user's
    /// mailbox), while the others are answered as the mode says; an empty list refuses none.
    pub fn refuse_recipients(&self, addresses: &[&str]) {
        *self.state.refused.lock().unwrap() = addresses.iter().map(|a| a.to_ascii_lowercase()).collect();
    }

    /// Answers these recipient addresses `451 4.2.1` from now on (a full mailbox), while the
    /// others are answered as the mode says; an empty list defers none.
    pub fn defer_recipients(&self, addresses: &[&str]) {
        *self.state.deferred.lock().unwrap() = addresses.iter().map(|a| a.to_ascii_lowercase()).collect();
    }

    /// Waits this long before greeting each new connection (a busy server), so that sending
    /// takes a while; zero by default.
    pub fn set_greeting_delay(&self, delay: Duration) {
        *self.state.greeting_delay.lock().unwrap() = delay;
    }

    /// Takes this long to queue each message before it answers the closing dot (a busy
    /// server), so that sending takes a while also over a connection kept open; zero by
    /// default. The message counts as received when the dot arrives.
    pub fn set_data_delay(&self, delay: Duration) {
        *self.state.data_delay.lock().unwrap() = delay;
    }

    /// Closes every connection right after it answered a message `250` (as a server that
    /// closes idle connections at once), or, `false`, keeps it for more (the default).
    pub fn close_after_each_message(&self, close: bool) {
        *self.state.close_after_message.lock().unwrap() = close;
    }

    /// Falls silent once `n` messages in all were received: every open session stops
    /// answering (it reads on, and says nothing), and new ones are never greeted.
    pub fn fall_silent_after(&self, n: usize) {
        *self.state.silent_after.lock().unwrap() = Some(n);
    }

    /// Adds a scripted failure (see [`FaultRule`]); rules are tried in the order added.
    pub fn fault(&self, rule: FaultRule) {
        self.state.faults.lock().unwrap().push(rule);
    }

    /// Whether the server offers SMTPUTF8 (it does by default).
    pub fn offer_smtputf8(&self, offer: bool) {
        *self.state.no_smtputf8.lock().unwrap() = !offer;
    }

    /// Forgets every scripted failure.
    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// How many `DATA` commands the server answered `354` so far: messages begun, of which
    /// those whose connection ended before the closing dot were never received.
    pub fn data_begun(&self) -> usize {
        *self.state.data_begun.lock().unwrap()
    }

    /// How many connections the server accepted so far.
    pub fn connections(&self) -> usize {
        *self.state.connections.lock().unwrap()
    }

    /// Whether the server is listening.
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// Stops listening and closes every open connection; new connections
    /// are refused until [`TestSmtp::restart`]. Received messages are kept.
    pub async fn stop(&mut self) {
        if let Some((shutdown, task)) = self.server.take() {
            let _ = shutdown.send(());
            let _ = task.await;
        }
    }

    /// Listens again on the same port (no-op when already running).
    pub async fn restart(&mut self) {
        if self.server.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() > deadline => {
                    panic!("test SMTP server cannot listen again on port {}: {e}", self.port)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }

    /// Waits until at least `n` messages arrived and returns all of them.
    /// Panics (listing what did arrive) if that takes longer than `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() > deadline {
                panic!("expected {n} mail(s) within {timeout:?}, got {}: {messages:#?}", messages.len());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn serve(&mut self, listener: TcpListener) {
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, self.state.clone(), shutdown_rx));
        self.server = Some((shutdown_tx, task));
    }
}

/// Stops the server also when a test panics or returns without [`TestSmtp::stop`]:
/// aborting the accept loop drops its listener and its `JoinSet`, and dropping
/// a `JoinSet` aborts every connection task in it, so nothing keeps running.
impl Drop for TestSmtp {
    fn drop(&mut self) {
        if let Some((_, task)) = self.server.take() {
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut shutdown: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    *state.connections.lock().unwrap() += 1;
                    connections.spawn(session(stream, state.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// One SMTP session; I/O errors simply end it.
async fn session(stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let hung = |state: &State| {
        let after = *state.silent_after.lock().unwrap();
        after.is_some_and(|n| state.messages.lock().unwrap().len() >= n)
    };
    if *state.mode.lock().unwrap() == SmtpMode::Silent || hung(&state) {
        // Hold the connection open without a word until the client gives up and closes it.
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut sink).await;
        return Ok(());
    }
    let delay = *state.greeting_delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // What a scripted fault does at a phase: `Some(reply)` to send instead of the usual one,
    // or the session ends here (silence: once the client gives up).
    macro_rules! scripted {
        ($phase:expr, $recipients:expr, $transient:expr, $permanent:expr) => {
            match state.fault($phase, $recipients) {
                None => None,
                Some(Fault::Transient) => Some($transient),
                Some(Fault::Permanent) => Some($permanent),
                Some(Fault::Silence) => {
                    let mut sink = Vec::new();
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut sink).await;
                    return Ok(());
                }
                Some(Fault::Disconnect) => return Ok(()),
            }
        };
    }
    if let Some(reply) = scripted!(
        Phase::Greeting,
        &[],
        "421 4.3.2 Service not available (test)\r\n",
        "554 5.3.2 No service here (test)\r\n"
    ) {
        writer.write_all(reply.as_bytes()).await?;
        return Ok(());
    }
    writer.write_all(b"220 localhost ESMTP fristvakt test server ready\r\n").await?;

    let mut mail_from: Option<String> = None;
    let mut rcpt_to: Vec<String> = Vec::new();
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw).await? == 0 {
            return Ok(());
        }
        if hung(&state) {
            // Reads on and says nothing, until the client gives up and closes.
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut sink).await;
            return Ok(());
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        let verb = verb.to_ascii_uppercase();
        let phase = match verb.as_str() {
            "EHLO" | "HELO" => Some(Phase::Ehlo),
            "MAIL" => Some(Phase::Mail),
            "DATA" if mail_from.is_some() && !rcpt_to.is_empty() => Some(Phase::Data),
            "QUIT" => Some(Phase::Quit),
            _ => None,
        };
        if let Some(phase) = phase {
            if let Some(reply) = scripted!(
                phase,
                &rcpt_to,
                "451 4.3.0 Temporary failure (test)\r\n",
                "554 5.3.0 Transaction failed (test)\r\n"
            ) {
                writer.write_all(reply.as_bytes()).await?;
                if phase == Phase::Quit {
                    return Ok(());
                }
                continue;
            }
        }
        if verb == "RCPT" {
            if let (Some(_), Some(path)) = (&mail_from, path_arg(arg, "TO:")) {
                if let Some(reply) = scripted!(
                    Phase::Rcpt,
                    &[path],
                    "451 4.2.1 Mailbox busy, try again later (test)\r\n",
                    "550 5.1.1 Mailbox unavailable (test)\r\n"
                ) {
                    writer.write_all(reply.as_bytes()).await?;
                    continue;
                }
            }
        }
        let smtputf8 = if *state.no_smtputf8.lock().unwrap() { "" } else { "250-SMTPUTF8\r\n" };
        let ehlo = format!("250-localhost\r\n250-8BITMIME\r\n{smtputf8}250-AUTH PLAIN\r\n250 HELP\r\n");
        let reply: &str = match verb.as_str() {
            "EHLO" => ehlo.as_str(),
            "AUTH" if *state.mode.lock().unwrap() == SmtpMode::RejectAuth => {
                "535 5.7.8 Authentication credentials invalid (test)\r\n"
            }
            "AUTH" => "235 2.7.0 Authentication successful\r\n",
            "HELO" => "250 localhost\r\n",
            "MAIL" => match path_arg(arg, "FROM:") {
                Some(_) if *state.mode.lock().unwrap() == SmtpMode::RejectSender => {
                    mail_from = None;
                    rcpt_to.clear();
                    "550 5.7.1 Sender not allowed (test)\r\n"
                }
                Some(path) => {
                    mail_from = Some(path);
                    rcpt_to.clear();
                    "250 2.1.0 Sender OK\r\n"
                }
                None => "501 5.5.4 Syntax: MAIL FROM:<address>\r\n",
            },
            "RCPT" => match (&mail_from, path_arg(arg, "TO:")) {
                (None, _) => "503 5.5.1 MAIL FROM first\r\n",
                (_, None) => "501 5.5.4 Syntax: RCPT TO:<address>\r\n",
                (Some(_), Some(path)) if state.refused.lock().unwrap().contains(&path.to_ascii_lowercase()) => {
                    "550 5.1.1 Mailbox unavailable (test)\r\n"
                }
                (Some(_), Some(path)) if state.deferred.lock().unwrap().contains(&path.to_ascii_lowercase()) => {
                    "451 4.2.1 Mailbox busy, try again later (test)\r\n"
                }
                (Some(_), Some(path)) => match *state.mode.lock().unwrap() {
                    // A session begun before the server fell silent goes on as it began.
                    SmtpMode::Accept | SmtpMode::RejectSender | SmtpMode::RejectAuth | SmtpMode::Silent => {
                        rcpt_to.push(path);
                        "250 2.1.5 Recipient OK\r\n"
                    }
                    SmtpMode::RejectPermanent => "550 5.1.1 Mailbox unavailable (test)\r\n",
                    SmtpMode::RejectTransient => "451 4.3.0 Temporary failure, try again later (test)\r\n",
                },
            },
            "DATA" if mail_from.is_none() || rcpt_to.is_empty() => "503 5.5.1 Need MAIL FROM and RCPT TO first\r\n",
            "DATA" => {
                *state.data_begun.lock().unwrap() += 1;
                writer.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let data = read_data(&mut reader).await?;
                let mail = ReceivedMail {
                    mail_from: mail_from.take().unwrap_or_default(),
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                    received_at: Instant::now(),
                };
                match state.fault(Phase::Dot, &mail.rcpt_to) {
                    None => {}
                    Some(Fault::Transient) => {
                        writer.write_all(b"451 4.3.0 Message not queued, try again later (test)\r\n").await?;
                        continue;
                    }
                    Some(Fault::Permanent) => {
                        writer.write_all(b"554 5.6.0 Message refused (test)\r\n").await?;
                        continue;
                    }
                    // The server has the message and never says so.
                    Some(Fault::Silence) => {
                        state.messages.lock().unwrap().push(mail);
                        let mut sink = Vec::new();
                        let _ = tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut sink).await;
                        return Ok(());
                    }
                    Some(Fault::Disconnect) => return Ok(()),
                }
                state.messages.lock().unwrap().push(mail);
                let delay = *state.data_delay.lock().unwrap();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if *state.close_after_message.lock().unwrap() {
                    writer.write_all(b"250 2.0.0 OK: queued\r\n").await?;
                    return Ok(());
                }
                "250 2.0.0 OK: queued\r\n"
            }
            "RSET" => {
                mail_from = None;
                rcpt_to.clear();
                "250 2.0.0 OK\r\n"
            }
            "NOOP" => "250 2.0.0 OK\r\n",
            "VRFY" => "252 2.0.0 Cannot VRFY user\r\n",
            "QUIT" => {
                writer.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Command not implemented\r\n",
        };
        writer.write_all(reply.as_bytes()).await?;
    }
}

/// Reads DATA lines up to the lone `.`, undoing dot-stuffing.
async fn read_data<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> std::io::Result<String> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" || line == b".\n" {
            break;
        }
        let unstuffed = if line.starts_with(b".") { &line[1..] } else { &line[..] };
        data.extend_from_slice(unstuffed);
    }
    // The CRLF before the terminating "." belongs to the terminator.
    if data.ends_with(b"\r\n") {
        data.truncate(data.len() - 2);
    } else if data.ends_with(b"\n") {
        data.truncate(data.len() - 1);
    }
    Ok(String::from_utf8_lossy(&data).into_owned())
}

/// Parses `FROM:<addr> PARAMS` / `TO:<addr>` into `addr`.
fn path_arg(arg: &str, keyword: &str) -> Option<String> {
    let arg = arg.trim_start();
    if arg.len() < keyword.len() || !arg[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        inner.split_once('>').map(|(path, _)| path.to_string())
    } else {
        rest.split_whitespace().next().map(str::to_string)
    }
}

impl ReceivedMail {
    /// First header field `name` (case-insensitive), unfolded and with RFC 2047
    /// encoded-words decoded, e.g. `Subject: =?utf-8?b?...?=` gives readable text.
    /// (Each fold, with the whitespace around it, becomes a single space.)
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// Like [`ReceivedMail::header`] but without decoding encoded-words
    /// (unfolded, surrounding whitespace trimmed).
    pub fn raw_header(&self, name: &str) -> Option<String> {
        let message = self.parse_head()?;
        let value = message.header_as(name, HeaderForm::Raw).into_iter().next()?;
        Some(header_text(value).replace(['\r', '\n'], ""))
    }

    /// All header fields `name` (case-insensitive), unfolded and decoded.
    pub fn headers(&self, name: &str) -> Vec<String> {
        // Every field is read as unstructured text, so addresses and message IDs
        // come back as written (`<id@host>`), only with encoded-words decoded.
        let Some(message) = self.parse_head() else { return Vec::new() };
        message.header_as(name, HeaderForm::Text).into_iter().map(header_text).collect()
    }

    /// The decoded `text/plain` body (first non-attachment text/plain part of
    /// a multipart message, or the whole body of a single-part one), with
    /// quoted-printable/base64 undone and CRLF turned into `\n`.
    /// Panics if the message has no text/plain part.
    pub fn text_body(&self) -> String {
        self.body_of_type("text/plain").unwrap_or_else(|| panic!("message has no text/plain part:\n{}", self.data))
    }

    /// The decoded `text/html` body, if there is one.
    pub fn html_body(&self) -> Option<String> {
        self.body_of_type("text/html")
    }

    /// The first non-attachment part of MIME type `mime` (e.g. `text/plain`), decoded.
    pub fn body_of_type(&self, mime: &str) -> Option<String> {
        let (want_type, want_subtype) = mime.split_once('/')?;
        let message = MessageParser::new().parse(self.data.as_bytes())?;
        let part = message.parts.iter().find(|part| {
            let leaf = !matches!(part.body, PartType::Multipart(_) | PartType::Message(_));
            // RFC 2045: a part without Content-Type is text/plain.
            let (c_type, c_subtype) =
                part.content_type().map_or(("text", Some("plain")), |ct| (ct.ctype(), ct.subtype()));
            let attachment = part.content_disposition().is_some_and(|cd| cd.is_attachment());
            leaf && !attachment
                && c_type.eq_ignore_ascii_case(want_type)
                && c_subtype.is_some_and(|s| s.eq_ignore_ascii_case(want_subtype))
        })?;
        let text = match &part.body {
            PartType::Text(text) | PartType::Html(text) => text.to_string(),
            _ => String::from_utf8_lossy(part.contents()).into_owned(),
        };
        Some(text.replace("\r\n", "\n"))
    }

    /// The message with only its header fields parsed (`None` if it has none).
    fn parse_head(&self) -> Option<Message<'_>> {
        MessageParser::new().parse_headers(self.data.as_bytes())
    }
}

fn header_text(value: HeaderValue<'_>) -> String {
    match value {
        HeaderValue::Text(text) => text.into_owned(),
        // A field with nothing but whitespace after the colon.
        _ => String::new(),
    }
}
