//! Enums with a stable machine name per variant (stored, logged, used as metric labels), and
//! the one way they are declared: [`named_enum!`], which writes `as_str`, `ALL`, `Display` and
//! `FromStr` from the same list, so the name a value is written with and the name it is read
//! back from cannot drift apart.

/// A name that is not one of its enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

/// Declares an enum whose variants each have a fixed machine name: `as_str`, `ALL` (in
/// declaration order), `Display` and `FromStr` (error [`UnknownName`]); the order is the
/// declaration's.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $what:literal {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];

            /// The machine name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::UnknownName;

            fn from_str(text: &str) -> Result<$name, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::domain::UnknownName { what: $what, value: text.to_string() }),
                }
            }
        }
    };
}

pub(crate) use named_enum;

named_enum! {
    /// Why an attempt at a mail failed, from the transport through dispatch to the metrics and
    /// the outbox's `last_error` (`CLASS: message`). A bounded set: a class outside it cannot be
    /// written. Declared in the order of the names, so that a map keyed by classes lists them
    /// as a map keyed by their names did.
    pub enum ErrorClass as "error class" {
        /// A recipient address the transport cannot use.
        Address = "address",
        /// The server refused fristvakt's login.
        Auth = "auth",
        /// The stored row's content cannot be read by this version.
        BadPayload = "bad_payload",
        /// The mail could not be written (template, headers).
        Compose = "compose",
        /// The connection was refused, reset or cut.
        Connect = "connect",
        /// The server's greeting refused fristvakt.
        Greeting = "greeting",
        /// Another failed socket or file operation.
        Io = "io",
        /// Anything else (an unparsable reply, a refused envelope).
        Other = "other",
        /// A 5xx reply: the server refuses this mail or recipient.
        Permanent5xx = "permanent_5xx",
        /// The server refused fristvakt's sender (`MAIL FROM`, 5xx).
        Sender = "sender",
        /// A non-ASCII address and a server without SMTPUTF8.
        Smtputf8 = "smtputf8",
        Timeout = "timeout",
        Tls = "tls",
        /// A 4xx reply.
        Transient4xx = "transient_4xx",
        /// The stored row's category is not one this version knows.
        UnknownCategory = "unknown_category",
    }
}

impl ErrorClass {
    /// The classes a failed delivery is counted under (`fristvakt_smtp_errors_total`): a
    /// refusal of fristvakt itself counts as `tls` or `permanent_5xx`.
    pub const DELIVERY: [ErrorClass; 12] = [
        ErrorClass::Permanent5xx,
        ErrorClass::Transient4xx,
        ErrorClass::Timeout,
        ErrorClass::Tls,
        ErrorClass::Connect,
        ErrorClass::Io,
        ErrorClass::Compose,
        ErrorClass::Address,
        ErrorClass::Smtputf8,
        ErrorClass::BadPayload,
        ErrorClass::UnknownCategory,
        ErrorClass::Other,
    ];

    /// The classes of the server refusing fristvakt itself (`fristvakt_smtp_server_refusals_total`).
    pub const SERVER_REFUSALS: [ErrorClass; 4] =
        [ErrorClass::Tls, ErrorClass::Auth, ErrorClass::Sender, ErrorClass::Greeting];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_parses_from_its_name_and_nothing_else_does() {
        for class in ErrorClass::ALL {
            assert_eq!(class.to_string().parse::<ErrorClass>(), Ok(class));
        }
        assert!("gremlins".parse::<ErrorClass>().is_err());
        let mut names: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorClass::ALL.len(), "distinct names");
    }

    #[test]
    fn classes_order_by_name() {
        let names: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        assert!(names.is_sorted(), "{names:?}");
        assert!(ErrorClass::ALL.is_sorted());
    }
}
