//! The CLI's help, command by command, pinned: a changed flag or text shows
//! up in review as a changed snapshot (`cargo insta review` to accept).
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// `dlq-replayer <args> --help`, with no SLUICE_* variables set (clap shows
/// their values otherwise).
fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_dlq-replayer"))
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn every_command_has_pinned_help() {
    insta::assert_snapshot!("dlq-replayer", help(&[]));
    for command in [
        "list", "show", "replay", "history", "stats", "skip", "audit",
    ] {
        insta::assert_snapshot!(command, help(&[command]));
    }
}
