//! Shared helpers for integration tests: `mod support;` in a test file.
//! Every test binary compiles all of it but uses only some, hence the allow.
#![allow(dead_code)]

pub mod app;
pub mod pg_server;
pub mod postgres;
pub mod process;
pub mod promtool;
pub mod smtp;
