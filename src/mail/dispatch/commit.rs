//! The group commit: the senders' records committed together, one statement (or transaction)
//! for every record queued while the previous commit was under way.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::{lock, Context};
use crate::state::{Attempt, Delivery, Escalation, OutboxRow, OutboxState, Recorded, StateError};

/// The senders' records committed in groups: a sender whose mail the server took queues its
/// record and waits for the commit that holds it; the sender that gets the turn commits every
/// record queued by then at once (`StateStore::record_attempts`: one statement, or one
/// transaction when a record writes a notice one role up), while the records
/// queued meanwhile wait for the next. So no record waits longer than the commit under way and
/// its own, and no sender starts another mail before its record is committed: at most one mail
/// per sender is ever taken by the server and not yet recorded (the kill test's bound).
#[derive(Default)]
pub(super) struct GroupCommit {
    pub(super) queue: Mutex<Vec<Queued>>,
    pub(super) turn: tokio::sync::Mutex<()>,
}

/// A record waiting for its commit, owned (the sender that commits it may be another), and the
/// way its outcome goes back: `None` when the group's transaction failed and nothing of it was
/// written, so that the sender records alone and gets its own answer.
pub(super) struct Queued {
    pub(super) row: OutboxRow,
    pub(super) attempt: OwnedAttempt,
    pub(super) done: tokio::sync::oneshot::Sender<Option<Recorded>>,
}

/// An [`Attempt`] that owns what it says.
pub(super) struct OwnedAttempt {
    pub(super) state: OutboxState,
    pub(super) next: Option<DateTime<Utc>>,
    pub(super) error: Option<String>,
    pub(super) deliveries: Vec<Delivery>,
    pub(super) sent_at: Option<DateTime<Utc>>,
    pub(super) escalation: Option<Escalation>,
}

impl OwnedAttempt {
    pub(super) fn of(attempt: &Attempt<'_>) -> OwnedAttempt {
        OwnedAttempt {
            state: attempt.state,
            next: attempt.next,
            error: attempt.error.map(str::to_string),
            deliveries: attempt.deliveries.to_vec(),
            sent_at: attempt.sent_at,
            escalation: attempt.escalation.clone(),
        }
    }

    pub(super) fn attempt(&self) -> Attempt<'_> {
        Attempt {
            state: self.state,
            next: self.next,
            error: self.error.as_deref(),
            deliveries: &self.deliveries,
            sent_at: self.sent_at,
            escalation: self.escalation.clone(),
        }
    }
}

impl Context {
    /// Records an attempt at a claimed row (fenced, as `StateStore::record_attempt`) in the
    /// next group commit, and returns once it is committed.
    pub(super) async fn record(&self, row: &OutboxRow, attempt: Attempt<'_>) -> Result<Recorded, StateError> {
        let (done, mut outcome) = tokio::sync::oneshot::channel();
        lock(&self.records.queue).push(Queued { row: row.clone(), attempt: OwnedAttempt::of(&attempt), done });
        let recorded = {
            let _turn = self.records.turn.lock().await;
            match outcome.try_recv() {
                // Committed with the group of a sender before this one (`None`: that group's
                // transaction failed, or its sender was dropped before it answered).
                Ok(recorded) => recorded,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => None,
                // This sender commits the group: every record queued by now, its own among them.
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    let group = std::mem::take(&mut *lock(&self.records.queue));
                    let attempts: Vec<_> = group.iter().map(|q| (&q.row, q.attempt.attempt())).collect();
                    let recorded = match self.state.record_attempts(&self.holder, &attempts).await {
                        Ok(recorded) => Some(recorded),
                        Err(e) => {
                            tracing::warn!(
                                records = group.len(),
                                "recording a group of mail attempts failed; each is recorded alone: {e}"
                            );
                            None
                        }
                    };
                    drop(attempts);
                    for (i, queued) in group.into_iter().enumerate() {
                        let _ = queued.done.send(recorded.as_ref().map(|r| r[i]));
                    }
                    outcome.try_recv().ok().flatten()
                }
            }
        };
        match recorded {
            Some(recorded) => Ok(recorded),
            None => self.state.record_attempt(row, &self.holder, attempt).await,
        }
    }
}
