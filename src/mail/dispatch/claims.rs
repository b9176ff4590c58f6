//! Claims and their renewal: how long a claim lasts, the renewal that extends every claim a
//! run holds while it works, and when a claimed row is held back (paused, stopping, or its
//! claim about to lapse because renewals fail).

use std::time::Duration;

use super::{lock, loggable_key, Context, Outcome};
use crate::state::{OutboxRow, StateError};

/// How long a claim lasts unless renewed: a replica that dies holds its rows no longer.
pub const CLAIM_TTL: Duration = Duration::from_secs(30);
/// How often a working sender renews its claims.
pub(super) const RENEW_EVERY: Duration = Duration::from_secs(10);
/// A sender starts no mail, and abandons the one in hand, when its claim has less than this
/// left (clocks of replicas may differ by a little).
pub(super) const CLAIM_MARGIN: Duration = Duration::from_secs(5);
/// The longest one renewal may take before it counts as failed.
pub(super) const RENEW_TIMEOUT: Duration = Duration::from_secs(5);

/// Renews this sender's claims every [`RENEW_EVERY`] for as long as the run works; never ends
/// on its own. A renewal that fails leaves `valid_until` where it was, so that the sender stops
/// before its claims lapse.
pub(super) async fn renew(ctx: &Context) -> std::convert::Infallible {
    let ttl = chrono::Duration::from_std(CLAIM_TTL).unwrap_or(chrono::Duration::seconds(30));
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let at = ctx.now();
        match tokio::time::timeout(RENEW_TIMEOUT, ctx.state.renew_claims(&ctx.holder, at + ttl)).await {
            Ok(Ok(_)) => *lock(&ctx.valid_until) = at + ttl,
            Ok(Err(e)) => tracing::warn!("could not renew outbox claims: {e}"),
            Err(_) => tracing::warn!("could not renew outbox claims: the state database did not answer"),
        }
    }
}

impl Context {
    /// Whether the claims still hold for longer than [`CLAIM_MARGIN`].
    pub(super) fn claim_holds(&self) -> bool {
        let margin = chrono::Duration::from_std(CLAIM_MARGIN).unwrap_or_default();
        self.now() + margin < *lock(&self.valid_until)
    }

    /// Resolves when the claims come within [`CLAIM_MARGIN`] of lapsing (renewals failing).
    pub(super) async fn claim_lapsing(&self) {
        while self.claim_holds() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Why a claimed row is not to be sent now.
pub(super) enum Hold {
    /// The run is paused or stopping: the claim is released.
    Release,
    /// The claim could not be renewed (the state store does not answer) and is about to lapse:
    /// another sender may take the row any moment. Not sent; nothing can be written.
    ClaimLapsing,
}

impl Hold {
    /// Whether a claimed row is held back now (checked before the rendering, and again once
    /// a lane is free).
    pub(super) fn now(ctx: &Context) -> Option<Hold> {
        if ctx.paused() || ctx.stopping() {
            Some(Hold::Release)
        } else if !ctx.claim_holds() {
            Some(Hold::ClaimLapsing)
        } else {
            None
        }
    }

    /// Does what holding the row back takes; the row's outcome.
    pub(super) async fn apply(self, ctx: &Context, row: &OutboxRow) -> Result<Outcome, StateError> {
        match self {
            Hold::Release => {
                ctx.state.release_claim(row.id, &ctx.holder, None).await?;
                Ok(Outcome::Released)
            }
            Hold::ClaimLapsing => {
                tracing::warn!(
                    outbox_key = %loggable_key(row),
                    "claim about to lapse (renewal failed); mail left for the sender that takes it over"
                );
                Ok(Outcome::ClaimLost)
            }
        }
    }
}
