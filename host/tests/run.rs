//! The real `jobhost run` binary, run the way an operator debugging a host
//! would: with `RUST_BACKTRACE=1`, a panicking job's error is still the
//! guest's one-line panic message, never frames of the host's own stack.

use std::process::Command;

#[test]
fn a_panic_reports_the_guests_message_even_with_host_backtraces_on() {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_jobhost"))
        .args(["run", "examples.fail", r#"{"panic":true,"message":"disk quota"}"#])
        .args(["--plugins", jobhost_plugin_artifacts::EXAMPLES_DIR, "--data"])
        .arg(data.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("running jobhost run");
    assert_eq!(output.status.code(), Some(1), "a failed job exits 1");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["outcome"]["kind"], "trap", "{report}");
    let message = report["outcome"]["message"].as_str().unwrap();
    assert!(message.starts_with("panicked at") && message.contains("disk quota"), "{message}");
    for internal in ["backtrace", "jobhost::", "wasmtime", "tokio", ".cargo", "\n"] {
        assert!(!message.contains(internal), "{internal:?} in the job's error: {message}");
    }
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("wasm backtrace"), "the guest's stack goes to its log: {log}");
}
