//! `fristvakt check-config`: every problem named by its key, exit 78; shipped files pass.

use crate::helpers::{fristvakt, stderr, stdout};
use crate::support::app::TestApp;

#[test]
fn five_mistakes_give_five_messages_naming_five_keys_and_exit_78() {
    let ws = TestApp::sqlite();
    let path = ws.path("bad.toml");
    std::fs::write(
        &path,
        r#"
timezone = "Europe/Stokholm"
[register]
view = "fristvakt_cases; DROP TABLE x"
[mail]
from = "fristvakt at kommun"
[digest]
cron = "every morning"
[units."BRO-BU"]
managers = []
"#,
    )
    .unwrap();
    let out = fristvakt(Some(&path), &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(lines.len(), 5, "{err}");
    for key in ["timezone:", "register.view:", "mail.from:", "digest.cron:", "units.BRO-BU.managers:"] {
        assert!(lines.iter().any(|l| l.trim_start().starts_with(key)), "{key} missing in {err}");
    }
}

#[test]
fn shipped_example_and_demo_configurations_pass() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["config/example.toml", "config/demo.toml"] {
        // The example names a systemd credential for the SMTP password; the environment stands in.
        let out = fristvakt(Some(&root.join(file)), &["check-config"], &[("FRISTVAKT__MAIL__SMTP__PASSWORD", "x")]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", stderr(&out));
        assert!(stdout(&out).contains("configuration ok"));
    }
    let out = fristvakt(None, &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "built-in defaults: {}", stderr(&out));
}

#[test]
fn environment_overrides_are_validated_too_and_secrets_are_not_echoed() {
    let out = fristvakt(
        None,
        &["check-config"],
        &[("FRISTVAKT__MAIL__SMTP__PORT", "99999"), ("FRISTVAKT__STATE__URL", "postgres://u:topsecret@db/x")],
    );
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("mail.smtp.port"), "{err}");
    assert!(!err.contains("topsecret"), "{err}");
}

#[test]
fn a_bad_configuration_stops_every_command_with_78_and_usage_errors_give_2() {
    let out = fristvakt(None, &["poll", "--once"], &[("FRISTVAKT__TIMEZONE", "Mars/Olympus")]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("timezone"));
    let out = fristvakt(None, &["deadlines", "--today", "2026-13-01"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_sending_window_that_never_opens_is_refused() {
    let out = fristvakt(None, &["check-config"], &[("FRISTVAKT__MAIL__SEND_WINDOW", "Sun 10:00-12:00")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("mail.send_window: \"Sun 10:00-12:00\" never opens"), "{err}");
    let out = fristvakt(None, &["check-config"], &[("FRISTVAKT__MAIL__SEND_WINDOW", "Sat,Sun 10:00-12:00")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_broken_template_override_is_a_configuration_error() {
    let ws = TestApp::sqlite();
    std::fs::create_dir(ws.path("templates")).unwrap();
    std::fs::write(ws.path("templates/notice.sv.txt.j2"), "{{ case_ref }} {{ child_name }}\n").unwrap();
    let dir = ws.path("templates").display().to_string();
    let out = fristvakt(None, &["check-config"], &[("FRISTVAKT__MAIL__TEMPLATES_DIR", dir.as_str())]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("mail.templates_dir: mail template notice.sv.txt.j2"), "{}", stderr(&out));
}

#[test]
fn a_words_override_with_an_unknown_key_names_the_file_and_key() {
    let ws = TestApp::sqlite();
    std::fs::create_dir(ws.path("templates")).unwrap();
    let dir = ws.path("templates").display().to_string();
    let env = [("FRISTVAKT__MAIL__TEMPLATES_DIR", dir.as_str())];
    // A key the built-in file has: accepted; the others stay built in.
    std::fs::write(ws.path("templates/words.sv.toml"), "[role]\ncaseworker = \"socialsekreterare\"\n").unwrap();
    let out = fristvakt(None, &["check-config"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A typo, in the English file (a report may be asked for in English): refused at start-up.
    std::fs::write(ws.path("templates/words.en.toml"), "[role]\ncasewroker = \"x\"\n").unwrap();
    let out = fristvakt(None, &["check-config"], &env);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let says = format!("mail.templates_dir: {dir}/words.en.toml: unknown key `role.casewroker`");
    assert!(stderr(&out).contains(&says), "{}", stderr(&out));
}

#[test]
fn a_retention_shorter_than_thirty_days_is_refused() {
    let out = fristvakt(None, &["check-config"], &[("FRISTVAKT__STATE__RETENTION", "10d")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("state.retention: keep at least 30 days"), "{}", stderr(&out));
    let out = fristvakt(None, &["check-config"], &[("FRISTVAKT__STATE__RETENTION", "365d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn timeouts_and_the_lease_are_bounded_and_named() {
    for (key, value, says) in [
        ("FRISTVAKT__REGISTER__STATEMENT_TIMEOUT", "2h", "register.statement_timeout: must be from 1s to 1h"),
        (
            "FRISTVAKT__REGISTER__LOCK_TIMEOUT",
            "2m",
            "register.lock_timeout: must not be longer than register.statement_timeout",
        ),
        ("FRISTVAKT__STATE__STATEMENT_TIMEOUT", "soon", "state.statement_timeout: \"soon\" is not a duration"),
        ("FRISTVAKT__STATE__LOCK_TIMEOUT", "500ms", "state.lock_timeout: must be from 1s to 1h"),
        ("FRISTVAKT__STATE__LEASE_TTL", "5s", "state.lease_ttl: must be from 10s to 1h"),
        ("FRISTVAKT__MAIL__SMTP__DATA_TIMEOUT", "2h", "mail.smtp.data_timeout: must be from 1s to 1h"),
        ("FRISTVAKT__MAIL__SMTP__DATA_TIMEOUT", "never", "mail.smtp.data_timeout: \"never\" is not a duration"),
        (
            "FRISTVAKT__MAIL__SMTP__DATA_TIMEOUT",
            "10s",
            "mail.smtp.data_timeout: must not be shorter than mail.smtp.timeout",
        ),
    ] {
        let out = fristvakt(None, &["check-config"], &[(key, value)]);
        assert_eq!(out.status.code(), Some(78), "{key}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{key}: {}", stderr(&out));
    }
    let fine = [
        ("FRISTVAKT__REGISTER__STATEMENT_TIMEOUT", "5m"),
        ("FRISTVAKT__REGISTER__LOCK_TIMEOUT", "5m"),
        ("FRISTVAKT__STATE__LEASE_TTL", "10s"),
        ("FRISTVAKT__MAIL__SMTP__DATA_TIMEOUT", "30s"),
    ];
    let out = fristvakt(None, &["check-config"], &fine);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
