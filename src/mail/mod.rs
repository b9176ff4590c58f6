//! E-mail: rendering notices and digests ([`compose`], with the days wording of [`wording`]),
//! handing them over ([`transport`]) and working through the outbox ([`dispatch`]).
//!
//! Architecture invariant: only this module touches lettre, and it sends only what the outbox
//! holds — the poll decides what is owed, the dispatcher only delivers.

pub mod compose;
pub mod dispatch;
pub mod transport;
pub mod wording;

pub use compose::{compose_digest, compose_notice, compose_notice_instead_of, render_test_mail, ComposeError};
pub use dispatch::{DeadLetterCause, DispatchError, DispatchReport, MailLabel};
pub use transport::{DeliverError, Mailer, MailerError, RecipientResult, SendError, Smtp};
