//! `[units]`: who is responsible for each unit, with `units.default` as the fallback.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::reader::Reader;
use crate::domain::{EmailAddress, UnitCode};
use crate::rules::Role;

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

pub(super) fn read_units(r: &mut Reader) -> Option<UnitDirectory> {
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
