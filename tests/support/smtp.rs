//! A real SMTP server on loopback for integration tests, running in-process
//! on the test's tokio runtime.
//!
//! It speaks the subset of RFC 5321 that lettre's SMTP client uses (EHLO/HELO,
//! MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT) and
//! advertises 8BITMIME and SMTPUTF8. No AUTH, no TLS: connect with
//! `AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(smtp.port())`.
//!
//! Received messages are kept in memory; [`ReceivedMail`] has helpers to read
//! headers and the decoded text body. [`TestSmtp::set_mode`] makes the server
//! reject recipients with a permanent (550) or transient (451) reply, and
//! [`TestSmtp::stop`] / [`TestSmtp::restart`] simulate an outage on the same port.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

#[derive(Default)]
struct State {
    messages: Mutex<Vec<ReceivedMail>>,
    mode: Mutex<SmtpMode>,
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

    /// Forgets the messages received so far.
    pub fn clear(&self) {
        self.state.messages.lock().unwrap().clear();
    }

    /// Changes how `RCPT TO` is answered, for new and open connections alike.
    pub fn set_mode(&self, mode: SmtpMode) {
        *self.state.mode.lock().unwrap() = mode;
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
    writer.write_all(b"220 localhost ESMTP fristvakt test server ready\r\n").await?;

    let mut mail_from: Option<String> = None;
    let mut rcpt_to: Vec<String> = Vec::new();
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw).await? == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        let reply: &str = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => "250-localhost\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 HELP\r\n",
            "HELO" => "250 localhost\r\n",
            "MAIL" => match path_arg(arg, "FROM:") {
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
                (Some(_), Some(path)) => match *state.mode.lock().unwrap() {
                    SmtpMode::Accept => {
                        rcpt_to.push(path);
                        "250 2.1.5 Recipient OK\r\n"
                    }
                    SmtpMode::RejectPermanent => "550 5.1.1 Mailbox unavailable (test)\r\n",
                    SmtpMode::RejectTransient => "451 4.3.0 Temporary failure, try again later (test)\r\n",
                },
            },
            "DATA" if mail_from.is_none() || rcpt_to.is_empty() => "503 5.5.1 Need MAIL FROM and RCPT TO first\r\n",
            "DATA" => {
                writer.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let data = read_data(&mut reader).await?;
                state.messages.lock().unwrap().push(ReceivedMail {
                    mail_from: mail_from.take().unwrap_or_default(),
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                });
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
    pub fn header(&self, name: &str) -> Option<String> {
        self.raw_header(name).map(|v| decode_encoded_words(&v))
    }

    /// Like [`ReceivedMail::header`] but without decoding encoded-words.
    pub fn raw_header(&self, name: &str) -> Option<String> {
        let (head, _) = split_head_body(&self.data);
        parse_headers(head).into_iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// All header fields `name` (case-insensitive), unfolded and decoded.
    pub fn headers(&self, name: &str) -> Vec<String> {
        let (head, _) = split_head_body(&self.data);
        parse_headers(head)
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| decode_encoded_words(&v))
            .collect()
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
        find_part(&self.data, &mime.to_ascii_lowercase())
    }
}

// ---------------------------------------------------------------------------
// Minimal MIME reading, enough for what lettre produces.

fn split_head_body(entity: &str) -> (&str, &str) {
    if let Some(rest) = entity.strip_prefix("\r\n") {
        return ("", rest);
    }
    if let Some(rest) = entity.strip_prefix('\n') {
        return ("", rest);
    }
    let crlf = entity.find("\r\n\r\n").map(|i| (i, i + 4));
    let lf = entity.find("\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => {
            let (end, start) = if a.0 <= b.0 { a } else { b };
            (&entity[..end], &entity[start..])
        }
        (Some((end, start)), None) | (None, Some((end, start))) => (&entity[..end], &entity[start..]),
        (None, None) => (entity, ""),
    }
}

/// Header fields in order, unfolded (CRLF before whitespace removed).
fn parse_headers(head: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_string(), value.trim_start().to_string()));
        }
    }
    for (_, value) in &mut fields {
        let trimmed = value.trim_end().len();
        value.truncate(trimmed);
    }
    fields
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// `type/subtype; a=b; c="d"` into the lowercased type and lowercased-key params.
fn parse_content_type(value: &str) -> (String, HashMap<String, String>) {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    let mime = parts[0].trim().to_ascii_lowercase();
    let params = parts[1..]
        .iter()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    (mime, params)
}

fn find_part(entity: &str, want: &str) -> Option<String> {
    let (head, body) = split_head_body(entity);
    let fields = parse_headers(head);
    let (mime, params) = parse_content_type(field(&fields, "Content-Type").unwrap_or("text/plain"));
    if mime.starts_with("multipart/") {
        let boundary = params.get("boundary")?;
        return split_multipart(body, boundary).into_iter().find_map(|part| find_part(part, want));
    }
    let attachment =
        field(&fields, "Content-Disposition").is_some_and(|d| d.trim().to_ascii_lowercase().starts_with("attachment"));
    if mime != want || attachment {
        return None;
    }
    let encoding = field(&fields, "Content-Transfer-Encoding").unwrap_or("7bit").trim().to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body.as_bytes(), false),
        "base64" => decode_base64(body.as_bytes()),
        _ => body.as_bytes().to_vec(),
    };
    let charset = params.get("charset").map(String::as_str).unwrap_or("utf-8");
    Some(decode_charset(&bytes, charset).replace("\r\n", "\n"))
}

/// The body parts between `--boundary` delimiter lines.
fn split_multipart<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut part_start: Option<usize> = None;
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        let content = line.trim_end();
        if let Some(rest) = content.strip_prefix(delimiter.as_str()) {
            if rest.is_empty() || rest == "--" {
                if let Some(start) = part_start {
                    // The line break before a delimiter belongs to the delimiter.
                    let part = &body[start..offset];
                    let part = part.strip_suffix("\r\n").or_else(|| part.strip_suffix('\n')).unwrap_or(part);
                    parts.push(part);
                }
                if rest == "--" {
                    break;
                }
                part_start = Some(offset + line.len());
            }
        }
        offset += line.len();
    }
    parts
}

fn decode_charset(bytes: &[u8], charset: &str) -> String {
    match charset.trim().to_ascii_lowercase().as_str() {
        "iso-8859-1" | "latin1" | "latin-1" | "iso8859-1" => bytes.iter().map(|&b| char::from(b)).collect(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Quoted-printable (RFC 2045); `underscore_is_space` for RFC 2047 "Q".
fn decode_quoted_printable(input: &[u8], underscore_is_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'=' => {
                let rest = &input[i + 1..];
                if rest.starts_with(b"\r\n") {
                    i += 3; // soft line break
                } else if rest.starts_with(b"\n") {
                    i += 2;
                } else if let (Some(hi), Some(lo)) =
                    (rest.first().copied().and_then(hex_value), rest.get(1).copied().and_then(hex_value))
                {
                    out.push(hi * 16 + lo);
                    i += 3;
                } else {
                    out.push(b'=');
                    i += 1;
                }
            }
            b'_' if underscore_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Standard base64, ignoring whitespace and anything after padding.
fn decode_base64(input: &[u8]) -> Vec<u8> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in input {
        if c == b'=' {
            break;
        }
        let Some(v) = value(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Decodes RFC 2047 encoded-words; whitespace between two encoded-words is dropped.
fn decode_encoded_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut previous_was_word = false;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        match decode_encoded_word(&rest[start..]) {
            Some((decoded, len)) => {
                if !(previous_was_word && before.chars().all(char::is_whitespace)) {
                    out.push_str(before);
                }
                out.push_str(&decoded);
                rest = &rest[start + len..];
                previous_was_word = true;
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
                previous_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `=?charset?B|Q?text?=` at the start of `s`: the decoded text and its length.
fn decode_encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let text = &inner[..end];
    if text.contains(char::is_whitespace) || charset.is_empty() {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => decode_base64(text.as_bytes()),
        "Q" | "q" => decode_quoted_printable(text.as_bytes(), true),
        _ => return None,
    };
    // `inner` is a suffix of `s`, so this is where the word ends in `s`.
    let len = s.len() - inner.len() + end + 2;
    // RFC 2231 language suffix: charset*lang
    let charset = charset.split('*').next().unwrap_or(charset);
    Some((decode_charset(&bytes, charset), len))
}
