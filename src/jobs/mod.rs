//! The jobs: each is one `run_once(&App, Moment)`, called by the daemon's scheduler
//! (`service`), by the command line (`commands`) and by the tests — there is no other copy of
//! a job's sequence.
//!
//! - [`poll`]: under the poll lease, read the register changes (or the daily full pass when it
//!   is due), store the deadlines, record the ladder steps reached.
//! - [`full_pass`]: the same with every row of the register read.
//! - [`ladder`]: under the poll lease, record the ladder steps reached by today (date driven).
//! - [`dispatch`]: send what the outbox holds that is due.
//! - [`digest`]: record today's digests once their scheduled time has passed.
//! - [`retention`]: delete what is older than `state.retention` (after each full pass).
//! - [`gauges`]: count every stored deadline for the metrics (the daemon, after a poll, when due).
//! - [`show`]: what the show commands print, computed without writing anything.

pub mod digest;
pub mod dispatch;
pub mod full_pass;
pub mod gauges;
pub mod ladder;
pub mod poll;
pub mod retention;
pub mod show;

use crate::digest::DigestError;
pub use crate::jobs::ladder::LadderReport;
use crate::mail::DispatchError;
use crate::register::RegisterError;
use crate::state::StateError;
use crate::sync::{PollError, SyncReport};

pub use crate::state::POLL_LEASE;

/// Why a job failed. The daemon logs it and tries again at the job's next tick.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Poll(#[from] PollError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("cannot render: {0}")]
    Render(String),
}

/// What one poll did.
#[derive(Debug, Default)]
pub struct PollReport {
    pub sync: SyncReport,
    pub ladder: LadderReport,
}
