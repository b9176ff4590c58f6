//! fristvakt ("deadline guard") watches the statutory deadlines of Swedish child-welfare cases
//! (barnavårdsärenden) and mails escalation notices before and after they pass.
//!
//! The law lives in [`rules`], a pure module; everything else is I/O around it. See
//! ARCHITECTURE.md for the map.

pub mod access;
pub mod app;
pub mod catalogue;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod demo;
pub mod digest;
pub mod domain;
pub mod explanation;
pub mod http;
pub mod jobs;
#[cfg(test)]
mod layering;
pub mod mail;
pub mod metrics;
pub mod notice;
pub mod register;
pub mod report;
pub mod rules;
pub mod send_window;
pub mod service;
pub mod state;
pub mod sync;
pub mod telemetry;
pub mod terminal;
