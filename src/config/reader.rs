//! Reading typed values out of the merged configuration tree, one problem per bad key, and the
//! value shapes several sections share (durations in whole days, database waits).

use std::time::Duration;

use serde_json::Value;

use super::ConfigProblem;
use crate::domain::EmailAddress;

/// Reads typed values out of the merged tree, recording a problem per bad key.
pub(super) struct Reader<'a> {
    pub(super) root: &'a Value,
    pub(super) problems: Vec<ConfigProblem>,
}

impl<'a> Reader<'a> {
    pub(super) fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem { key: key.into(), message: message.into() });
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        let mut node = self.root;
        for part in key.split('.') {
            node = node.get(part)?;
        }
        (!node.is_null()).then_some(node)
    }

    pub(super) fn string(&mut self, key: &str) -> Option<String> {
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

    pub(super) fn optional_string(&mut self, key: &str) -> Option<String> {
        match self.get(key) {
            None => None,
            Some(_) => self.string(key).filter(|s| !s.trim().is_empty()),
        }
    }

    pub(super) fn bool(&mut self, key: &str) -> Option<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) if s == "true" || s == "false" => Some(s == "true"),
            _ => {
                self.problem(key, "expected true or false");
                None
            }
        }
    }

    pub(super) fn integer(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
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

    pub(super) fn parsed<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.string(key)?;
        match parse(&raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }

    pub(super) fn duration(&mut self, key: &str) -> Option<Duration> {
        self.parsed(key, |s| {
            let d = humantime::parse_duration(s.trim())
                .map_err(|e| format!("{s:?} is not a duration like \"5m\", \"30s\" or \"2h\": {e}"))?;
            if d.is_zero() {
                return Err("must be longer than zero".into());
            }
            Ok(d)
        })
    }

    pub(super) fn addresses(&mut self, key: &str) -> Vec<EmailAddress> {
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
    pub(super) fn unknown_keys(&mut self, section: &str, known: &[&str]) {
        let table = if section.is_empty() { Some(self.root) } else { self.get(section) };
        let Some(Value::Object(map)) = table else { return };
        let unknown: Vec<String> = map.keys().filter(|k| !known.contains(&k.as_str())).cloned().collect();
        for key in unknown {
            let full = if section.is_empty() { key } else { format!("{section}.{key}") };
            self.problem(&full, format!("unknown key (known here: {})", known.join(", ")));
        }
    }
}

/// `{section}.statement_timeout` and `{section}.lock_timeout`: each from 1 s to 1 h, the lock
/// wait no longer than the statement's.
pub(super) fn waits(r: &mut Reader, section: &str) -> Option<crate::db::Waits> {
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

/// A duration key given in whole days ("30d"), from 1 to 3 660 days.
pub(super) fn whole_days(r: &mut Reader, key: &str) -> Option<i64> {
    let duration = r.duration(key)?;
    let secs = duration.as_secs();
    if secs % 86_400 != 0 || !(1..=3_660).contains(&(secs / 86_400)) || duration.subsec_nanos() != 0 {
        r.problem(key, "give whole days from 1d to 3660d, like \"30d\"");
        return None;
    }
    Some((secs / 86_400) as i64)
}
