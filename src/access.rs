//! Why a file cannot be read, said so that an operator can fix it: a permission problem names
//! the user fristvakt runs as and the mode and owner of the file, or of the directory that
//! bars the way ("permission denied", never "no such file"); and systemd credentials
//! (`LoadCredential=`) found from their source when fristvakt runs outside the service.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Opens `path` for reading, or says why it cannot be: "no such file", "is a directory" or
/// "permission denied (…)" with [`permission_detail`].
pub fn check_readable(path: &Path) -> Result<(), String> {
    match std::fs::File::open(path) {
        Ok(_) if path.is_dir() => Err(format!("cannot read {}: it is a directory", path.display())),
        Ok(_) => Ok(()),
        Err(e) => Err(read_error(path, &e)),
    }
}

/// The message for an error reading `path`: the cause in words, and for a permission problem
/// who asked and what the file system says.
pub fn read_error(path: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => format!("cannot read {}: no such file", path.display()),
        ErrorKind::PermissionDenied => {
            format!("cannot read {}: permission denied ({})", path.display(), permission_detail(path))
        }
        _ => format!("cannot read {}: {e}", path.display()),
    }
}

/// "running as user fristvakt (uid 998); /etc/fristvakt is drwxr-x--- root:root": the user, and
/// the mode and owner of the file or of the nearest directory on its way that the user cannot
/// search.
pub fn permission_detail(path: &Path) -> String {
    let user = match effective_uid() {
        Some(uid) => format!("running as user {} (uid {uid})", user_name(uid).unwrap_or_else(|| uid.to_string())),
        None => "running as an unknown user".to_string(),
    };
    // The file's own metadata needs search permission on every directory above it; when that
    // fails, the deepest directory whose metadata can be read is the one barring the way.
    let mut shown: Option<(PathBuf, std::fs::Metadata)> = None;
    let mut candidate = Some(path);
    while let Some(p) = candidate {
        if let Ok(meta) = std::fs::metadata(p) {
            shown = Some((p.to_path_buf(), meta));
            break;
        }
        candidate = p.parent().filter(|p| !p.as_os_str().is_empty());
    }
    match shown {
        Some((p, meta)) => format!(
            "{user}; {} is {} {}:{}",
            p.display(),
            mode_text(&meta),
            user_name(meta.uid()).unwrap_or_else(|| meta.uid().to_string()),
            group_name(meta.gid()).unwrap_or_else(|| meta.gid().to_string()),
        ),
        None => user,
    }
}

/// `ls -l`'s form of a mode, with the octal: "-rw-r----- (0640)".
fn mode_text(meta: &std::fs::Metadata) -> String {
    let mode = meta.mode();
    let kind = if meta.is_dir() { 'd' } else { '-' };
    let mut s = String::from(kind);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 0o7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    format!("{s} ({:04o})", mode & 0o7777)
}

/// The effective user id of this process, from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn user_name(uid: u32) -> Option<String> {
    name_in("/etc/passwd", uid)
}

fn group_name(gid: u32) -> Option<String> {
    name_in("/etc/group", gid)
}

/// The name of `id` in a passwd or group file (`name:x:id:…`).
fn name_in(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id_field = fields.nth(1)?;
        (id_field.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}

/// A systemd credential path, `/run/credentials/UNIT/NAME`: the unit and the credential's name.
pub fn credential_of(path: &Path) -> Option<(String, String)> {
    let rest = path.strip_prefix("/run/credentials").ok()?;
    let mut parts = rest.components().map(|c| c.as_os_str().to_string_lossy().into_owned());
    let unit = parts.next()?;
    let name = parts.next()?;
    parts.next().is_none().then_some((unit, name))
}

/// Where the unit's `LoadCredential=NAME:SOURCE` takes the credential from, read from the unit
/// files systemd would read (`/etc`, then `/usr/lib` and `/lib`, and drop-ins under
/// `/etc/systemd/system/UNIT.d/`; the last setting wins). `None` when no unit file names it.
pub fn credential_source(unit: &str, name: &str) -> Option<PathBuf> {
    let dirs = ["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];
    let main = dirs.iter().map(|d| Path::new(d).join(unit)).find(|p| p.is_file());
    let mut files: Vec<PathBuf> = main.into_iter().collect();
    if let Ok(entries) = std::fs::read_dir(Path::new("/etc/systemd/system").join(format!("{unit}.d"))) {
        let mut dropins: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        dropins.sort();
        files.extend(dropins);
    }
    let mut source = None;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        if let Some(found) = load_credential_in(&text, name) {
            source = Some(found);
        }
    }
    source
}

/// The source of credential `name` in a unit file's text (`LoadCredential=NAME:SOURCE`).
pub fn load_credential_in(unit_text: &str, name: &str) -> Option<PathBuf> {
    // The last setting wins.
    unit_text
        .lines()
        .rev()
        .filter_map(|l| l.trim().strip_prefix("LoadCredential="))
        .filter_map(|v| v.split_once(':'))
        .find(|(n, _)| *n == name)
        .map(|(_, source)| PathBuf::from(source.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_found_by_unit_and_name() {
        assert_eq!(
            credential_of(Path::new("/run/credentials/fristvakt.service/smtp-password")),
            Some(("fristvakt.service".into(), "smtp-password".into()))
        );
        assert_eq!(credential_of(Path::new("/etc/fristvakt/smtp-password")), None);
        assert_eq!(credential_of(Path::new("/run/credentials/fristvakt.service")), None);
        let unit = "[Service]\nLoadCredential=other:/x\nLoadCredential=smtp-password:/etc/fristvakt/smtp-password\n";
        assert_eq!(load_credential_in(unit, "smtp-password"), Some(PathBuf::from("/etc/fristvakt/smtp-password")));
        assert_eq!(load_credential_in(unit, "missing"), None);
        // The unit the package installs names the path the example configuration reads.
        let shipped = include_str!("../deploy/fristvakt.service");
        assert_eq!(load_credential_in(shipped, "smtp-password"), Some(PathBuf::from("/etc/fristvakt/smtp-password")));
    }

    #[test]
    fn a_missing_file_is_not_a_permission_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let message = check_readable(&missing).unwrap_err();
        assert!(message.ends_with("no such file"), "{message}");
        assert!(check_readable(dir.path()).unwrap_err().contains("directory"));
    }

    #[test]
    fn modes_read_as_ls_shows_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
        let detail = permission_detail(&file);
        assert!(detail.contains("is -rw-r----- (0640)"), "{detail}");
        assert!(detail.starts_with("running as user "), "{detail}");
    }
}
