//! The host's own memory after jobs that hit their memory limit: this test
//! binary holds this one test alone, so the process's resident memory is
//! the host's and nothing else's (cargo runs test binaries one at a time).

use jobhost::jobs::{FailureKind, LimitOverrides};
use jobhost_tests::{TestRuntime, resident_bytes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_hit_their_memory_limit_leave_the_host_bounded() {
    let host = TestRuntime::start();
    let limit = 32 << 20;
    let small = LimitOverrides { memory_bytes: Some(limit), ..LimitOverrides::default() };
    // One run first, so the engine, the plugin and the pool are in memory.
    let first = host.run("tests.memhog", "{}", small).await;
    assert_eq!(first.report.outcome.failure_kind(), Some(FailureKind::MemoryLimit));
    let before = resident_bytes();
    for _ in 0..10 {
        let ran = host.run("tests.memhog", "{}", small).await;
        assert_eq!(ran.report.outcome.failure_kind(), Some(FailureKind::MemoryLimit));
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 2 * limit, "10 hogs of {limit} bytes grew the host by {grown} bytes");
}
