//! Integration tests against the real binary, real SQLite files and a real PostgreSQL server.

#[path = "../support/mod.rs"]
mod support;

#[macro_use]
mod engines;

mod check_config;
mod delivery;
mod digests;
mod every_kind;
mod faults;
mod generated_rows;
mod helpers;
mod notices;
mod operator;
mod placements;
mod polling;
mod report;
mod security;
mod service;
mod smtp_faults;
mod state;
