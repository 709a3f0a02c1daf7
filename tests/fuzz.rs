//! The API fuzzed from its own OpenAPI document: schemathesis (PyPI)
//! generates requests for every operation, within and around the schemas
//! (coverage, fuzzing and stateful phases), as a host admin, and checks
//! that no answer is a 5xx and every answer matches its schema.
//!
//! Left out: revoking tokens and commanding workers, which would end the
//! fuzzer's own access or stop the host mid-run (their refusals are tested
//! in `api_admin.rs` and `api_seed.rs`). `JOBHOST_FUZZ_EXAMPLES` (default
//! 20 per operation, the CI run) makes a longer run; see
//! docs/RELIABILITY.md.

use jobhost_tests::python;
use jobhost_tests::server::{ADMIN, TestServer};
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_schema() {
    let server = TestServer::start().await;
    let examples = std::env::var("JOBHOST_FUZZ_EXAMPLES").unwrap_or_else(|_| "20".into());
    let schema = format!("{}/v1/openapi.json", server.base);
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let venv = python::venv("schemathesis-venv", "schemathesis==4.32.5", "st");
        let mut fuzz = Command::new(venv.join("bin/st"));
        fuzz.args(["run", &schema, "--header", &format!("Authorization: Bearer {ADMIN}")])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--max-examples", &examples, "--seed", "1", "--no-color"])
            .args(["--exclude-operation-id", "revoke_token"])
            .args(["--exclude-operation-id", "command_workers"])
            .args(["--exclude-operation-id", "set_worker_mode"])
            .current_dir(dir.path());
        python::run(&mut fuzz)
    })
    .await
    .unwrap();
    let summary = output.lines().find(|l| l.contains(" generated, ")).unwrap_or("no summary");
    eprintln!("schemathesis: {}", summary.trim());
    assert!(summary.contains("passed") && !summary.contains("failed"), "{output}");
    let (status, _) = server.call(reqwest::Method::GET, "/v1/me", ADMIN, None).await;
    assert_eq!(status, reqwest::StatusCode::OK, "the fuzzer kept its access to the end");
}
