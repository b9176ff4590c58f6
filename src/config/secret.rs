//! Secrets of the configuration: the SMTP password, from the environment or a password file (a
//! systemd credential), never printed.

use std::fmt;
use std::path::{Path, PathBuf};

use super::reader::Reader;

/// A secret (the SMTP password). Never printed: `Debug` and `Display` show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The SMTP password: `mail.smtp.password` (environment `FRISTVAKT__MAIL__SMTP__PASSWORD`) or the
/// file named by `mail.smtp.password_file` (a systemd credential). Never read from a logged value.
///
/// A credential path (`/run/credentials/UNIT/NAME`) exists only while the service runs; outside
/// it (no `CREDENTIALS_DIRECTORY`: `sudo fristvakt check-config` before the first start) the
/// password is read from the unit's `LoadCredential=NAME:SOURCE`, and the note says so.
pub(super) fn read_password(r: &mut Reader, base_dir: Option<&Path>, needed: bool) -> (Option<Secret>, Option<String>) {
    // The environment may hold a password of digits, which the layering parses as a number.
    if r.get("mail.smtp.password").is_some() {
        if let Some(s) = r.string("mail.smtp.password").filter(|s| !s.is_empty()) {
            return (Some(Secret(s)), None);
        }
    }
    let key = "mail.smtp.password_file";
    let Some(file) = r.optional_string(key) else {
        if needed {
            r.problem(
                key,
                "mail.smtp.username is set but no password: set password_file or FRISTVAKT__MAIL__SMTP__PASSWORD",
            );
        }
        return (None, None);
    };
    let path = resolve(base_dir, Path::new(&file));
    let outside_service = std::env::var_os("CREDENTIALS_DIRECTORY").is_none();
    let (read_from, note) = match crate::access::credential_of(&path).filter(|_| outside_service && !path.exists()) {
        Some((unit, name)) => match crate::access::credential_source(&unit, &name) {
            Some(source) => {
                let note = format!(
                    "{key}: {} exists only while {unit} runs; read from its LoadCredential= source {}",
                    path.display(),
                    source.display()
                );
                (source, Some(note))
            }
            None => {
                if needed {
                    r.problem(
                        key,
                        format!(
                            "cannot read {}: no such file; it is a systemd credential, present only while {unit} \
                             runs, and no LoadCredential={name}:… line of {unit} was found to read instead \
                             (install the unit, or set FRISTVAKT__MAIL__SMTP__PASSWORD to check outside the service)",
                            path.display()
                        ),
                    );
                }
                return (None, None);
            }
        },
        None => (path.clone(), None),
    };
    match std::fs::read_to_string(&read_from) {
        Ok(s) if !s.trim().is_empty() => (Some(Secret(s.trim_end_matches(['\r', '\n']).to_string())), note),
        Ok(_) if needed => {
            r.problem(key, format!("{} is empty", read_from.display()));
            (None, None)
        }
        Err(e) if needed => {
            let mut message = crate::access::read_error(&read_from, &e);
            if let Some(note) = note {
                message = format!("{message} ({note}; run check-config as root)");
            }
            r.problem(key, message);
            (None, None)
        }
        _ => (None, None),
    }
}

pub(super) fn resolve(base_dir: Option<&Path>, path: &Path) -> PathBuf {
    match base_dir {
        Some(base) if path.is_relative() && !path.exists() => base.join(path),
        _ => path.to_path_buf(),
    }
}
