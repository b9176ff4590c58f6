//! `[register]`: the view to read and how often.

use std::time::Duration;

use chrono::NaiveTime;

use super::reader::{waits, Reader};
use super::DatabaseUrl;

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

pub(super) fn read_register(r: &mut Reader) -> Option<RegisterSettings> {
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
