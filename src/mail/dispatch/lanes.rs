//! Lanes and connections: a run's SMTP connections, each kept from one mail to the next, and
//! the rule that a lane's next message waits for the previous mail's record.

use std::collections::VecDeque;
use std::sync::Mutex;

use lettre::Message;

use super::claims::Hold;
use super::{lock, Context, SHUTDOWN_GRACE};
use crate::domain::{EmailAddress, ErrorClass};
use crate::mail::transport::{Connection, DeliverError, RecipientResult, SendError};

/// The lanes of a run, `concurrency` of them: each an SMTP connection (open, or to be opened)
/// and the commit of the last mail the server took on it. A sender holds a lane for the SMTP
/// transaction of its mail only: it sends the envelope (`MAIL FROM`, `RCPT TO`, `DATA`) at once,
/// but the message — whose final `.` is where the server accepts the mail — only once the
/// lane's previous mail is recorded; then it hands the lane on and waits for its own record.
/// So the next mail's rendering and envelope overlap the previous mail's commit, while the
/// server never accepts a mail on a lane before the previous one there is committed: a sender
/// that dies leaves at most one mail per lane accepted and unrecorded. A commit that fails
/// leaves its lane failed for the rest of the run: the mail waiting on it is not sent (its
/// connection closed mid-`DATA`, so that the server takes nothing) and its claim released.
pub(super) struct Lanes {
    /// One permit a lane: a sender waits here for a free one.
    pub(super) permits: tokio::sync::Semaphore,
    /// The free lanes, the longest free first (its previous commit the likeliest done).
    pub(super) free: Mutex<VecDeque<Lane>>,
}

impl Lanes {
    pub(super) fn new(lanes: usize) -> Lanes {
        Lanes {
            permits: tokio::sync::Semaphore::new(lanes),
            free: Mutex::new((0..lanes).map(|_| Lane::default()).collect()),
        }
    }
}

#[derive(Default)]
pub(super) struct Lane {
    pub(super) connection: Option<Connection>,
    pub(super) previous: Previous,
}

/// The commit of the last mail sent on a lane.
#[derive(Default)]
pub(super) enum Previous {
    /// Committed (or no mail yet).
    #[default]
    Committed,
    /// Being recorded: its sender sends on the channel once the outcome is committed, and drops
    /// it (the lane failed) if it is not.
    Pending(tokio::sync::oneshot::Receiver<()>),
    /// Its record failed, or its sender was dropped before it committed.
    Failed,
}

impl Previous {
    /// Waits for the previous mail's commit; whether it committed.
    pub(super) async fn committed(&mut self) -> bool {
        if let Previous::Pending(receiver) = self {
            *self = match receiver.await {
                Ok(()) => Previous::Committed,
                Err(_) => Previous::Failed,
            };
        }
        matches!(self, Previous::Committed)
    }
}

/// What sending a mail on a lane came to.
pub(super) enum Sent {
    /// Held back once a lane was free (paused, stopping, or the claim about to lapse): nothing
    /// was sent.
    Held(Hold),
    /// Abandoned before its message began: the claim was about to lapse.
    Abandoned,
    /// The mailer's answer: each recipient's result, or the delivery's failure.
    Answered(Result<Vec<RecipientResult>, DeliverError>),
}

/// Sends `message` to `addresses` on a free lane (see [`Lanes`]): the envelope at once, the
/// message once the lane's previous mail is recorded. A claim about to lapse abandons the mail
/// before its message begins; at shutdown a message under way has [`SHUTDOWN_GRACE`] to be
/// answered, then it is unconfirmed. `committed` is set when the message went out on the lane,
/// for the caller to say on it that this mail's outcome is committed.
pub(super) async fn send(
    ctx: &Context,
    message: &Message,
    addresses: &[EmailAddress],
    committed: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Sent {
    let Ok(permit) = ctx.lanes.permits.acquire().await else { unreachable!("the lanes' semaphore is never closed") };
    let mut lane = lock(&ctx.lanes.free).pop_front().unwrap_or_default();
    // Waiting for a lane may have taken a while: the same checks as before the rendering.
    if let Some(hold) = Hold::now(ctx) {
        lock(&ctx.lanes.free).push_back(lane);
        drop(permit);
        return Sent::Held(hold);
    }
    let Lane { connection, previous } = &mut lane;
    // Whether the message was sent on the lane (its previous mail committed, the daemon not
    // stopping): from then on the server may take the mail at any moment.
    let begun = std::sync::atomic::AtomicBool::new(false);
    let before_message = async {
        let go = previous.committed().await && !ctx.stopping();
        begun.store(go, std::sync::atomic::Ordering::SeqCst);
        go
    };
    let is_begun = || begun.load(std::sync::atomic::Ordering::SeqCst);
    let mut delivery = Box::pin(ctx.mailer.deliver(connection, message, addresses, before_message));
    let delivered = loop {
        tokio::select! {
            delivered = &mut delivery => break Some(delivered),
            // Before the message, a claim about to lapse is given up; once the message went
            // out its reply is awaited (the mail is the server's from its final `.`).
            () = ctx.claim_lapsing(), if !is_begun() => {
                if is_begun() {
                    continue;
                }
                break None;
            }
            // At shutdown a message under way has the grace to be answered; then it is left
            // unconfirmed, recorded to be tried again only after the data timeout.
            () = ctx.grace_over(), if is_begun() => {
                break Some(Err(DeliverError::Unconfirmed(SendError {
                    permanent: false,
                    class: ErrorClass::Timeout,
                    message: format!(
                        "no reply to the message within the shutdown grace ({}s)",
                        SHUTDOWN_GRACE.as_secs()
                    ),
                })));
            }
        }
    };
    drop(delivery);
    let sent = is_begun();
    if sent {
        // The server may have this mail: the lane's next message waits for its record.
        let (sender, receiver) = tokio::sync::oneshot::channel();
        lane.previous = Previous::Pending(receiver);
        *committed = Some(sender);
    }
    lock(&ctx.lanes.free).push_back(lane);
    drop(permit);
    match delivered {
        Some(delivered) => Sent::Answered(delivered),
        None => Sent::Abandoned,
    }
}
