//! `[ladder]`: the escalation ladder of each kind and the first-sight horizon.

use serde_json::Value;

use super::reader::{whole_days, Reader};
use crate::rules::{Kind, Ladder, Role, Step};

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

pub(super) fn read_ladders(r: &mut Reader) -> Option<Ladders> {
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
