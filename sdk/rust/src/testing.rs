//! Unit tests of a job without a host: built natively, every call of the
//! SDK goes to a mock context on the current thread, so `cargo test` runs a
//! job the way the host would (JSON args in, JSON result or error out) and
//! shows what it logged, reported and attached.
//!
//! ```
//! use jobhost_sdk::{Result, info, is_cancelled, progress, testing::MockContext};
//!
//! fn count(args: Vec<u32>) -> Result<u32> {
//!     info("counting");
//!     for (i, _) in args.iter().enumerate() {
//!         if is_cancelled() {
//!             return Err(jobhost_sdk::Error::msg("cancelled"));
//!         }
//!         progress(100.0 * (i + 1) as f32 / args.len() as f32, None);
//!     }
//!     Ok(args.iter().sum())
//! }
//!
//! let ran = jobhost_sdk::testing::run(count, "[1, 2, 3]");
//! assert_eq!(ran.result, Ok(serde_json::json!(6)));
//! assert_eq!(ran.log[0].1, "counting");
//! assert_eq!(ran.progress.last().unwrap().0, 100.0);
//!
//! let ran = MockContext::new().cancel_after(1).run(count, "[1, 2, 3]");
//! assert_eq!(ran.result, Err("cancelled".to_string()));
//! ```
//!
//! Outside [`MockContext::run`], the calls still work: logs go to stderr,
//! `is_cancelled()` is false, `job_id()` is all zeros and `attempt()` is 1.

use crate::Level;
use std::cell::RefCell;

/// The job id a mock context reports unless told otherwise.
pub const MOCK_JOB_ID: &str = "00000000-0000-7000-8000-000000000000";

/// The host's answer to metadata over this size, mirrored here.
const MAX_METADATA_VALUE: usize = 64 << 10;

/// What the job does to its context in one mock run.
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    /// The job's JSON result, or its error message (as the host records it).
    pub result: Result<serde_json::Value, String>,
    /// Each line logged, with `println!`-free calls only (the host's stdout
    /// capture is not mocked).
    pub log: Vec<(Level, String)>,
    /// Each progress report, clamped as the host clamps it.
    pub progress: Vec<(f32, Option<String>)>,
    /// Each metadata value attached, in order.
    pub metadata: Vec<(String, serde_json::Value)>,
    /// Every child it spawned: plugin name, args, options. The mock
    /// accepts them all, with made-up ids.
    pub spawned: Vec<(String, serde_json::Value, serde_json::Value)>,
}

/// The job a mock run pretends to be: its id, attempt and when it is
/// cancelled.
#[derive(Debug, Clone)]
pub struct MockContext {
    job_id: String,
    attempt: u32,
    cancel_after: Option<u32>,
}

impl Default for MockContext {
    fn default() -> Self {
        Self::new()
    }
}

impl MockContext {
    /// Attempt 1 of job [`MOCK_JOB_ID`], never cancelled.
    pub fn new() -> Self {
        Self { job_id: MOCK_JOB_ID.to_string(), attempt: 1, cancel_after: None }
    }

    /// Reports `id` from `job_id()`.
    pub fn job_id(mut self, id: impl Into<String>) -> Self {
        self.job_id = id.into();
        self
    }

    /// Reports `attempt` from `attempt()`, to test a retry.
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Cancelled from the start: `is_cancelled()` is always true.
    pub fn cancelled(self) -> Self {
        self.cancel_after(0)
    }

    /// Cancelled after `checks` calls of `is_cancelled()` that said false.
    pub fn cancel_after(mut self, checks: u32) -> Self {
        self.cancel_after = Some(checks);
        self
    }

    /// Runs `job` with the JSON `args` through the same glue as the host's
    /// call, and returns what it did.
    pub fn run<A, R>(self, job: impl FnOnce(A) -> crate::Result<R>, args: &str) -> Ran
    where
        A: serde::de::DeserializeOwned,
        R: serde::Serialize,
    {
        let state = State { context: self, ran: Ran::default(), checks: 0 };
        let previous = STATE.with(|cell| cell.replace(Some(state)));
        let result = crate::__private::run_json(args, job);
        let state = STATE.with(|cell| cell.replace(previous)).expect("the mock run's state");
        let result = result.map(|json| serde_json::from_str(&json).expect("run_json makes JSON"));
        Ran { result, ..state.ran }
    }
}

/// Runs `job` with `args` in a default [`MockContext`].
pub fn run<A, R>(job: impl FnOnce(A) -> crate::Result<R>, args: &str) -> Ran
where
    A: serde::de::DeserializeOwned,
    R: serde::Serialize,
{
    MockContext::new().run(job, args)
}

impl Default for Ran {
    fn default() -> Self {
        Self {
            result: Ok(serde_json::Value::Null),
            log: vec![],
            progress: vec![],
            metadata: vec![],
            spawned: vec![],
        }
    }
}

struct State {
    context: MockContext,
    ran: Ran,
    checks: u32,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// The mock's side of each host call, as [`crate::context`] calls them.
pub(crate) mod host {
    use super::{MAX_METADATA_VALUE, MOCK_JOB_ID, STATE, State};
    pub(crate) use crate::Level;

    fn with<T>(inside: impl FnOnce(&mut State) -> T, outside: impl FnOnce() -> T) -> T {
        STATE.with(|cell| match cell.borrow_mut().as_mut() {
            Some(state) => inside(state),
            None => outside(),
        })
    }

    pub(crate) fn log(level: Level, message: &str) {
        with(
            |state| state.ran.log.push((level, message.to_string())),
            || eprintln!("[{level:?}] {message}"),
        );
    }

    pub(crate) fn progress(percent: f32, message: Option<&str>) {
        let percent = if percent.is_nan() { 0.0 } else { percent.clamp(0.0, 100.0) };
        with(|state| state.ran.progress.push((percent, message.map(String::from))), || ());
    }

    pub(crate) fn set_metadata(key: &str, json: &str) -> Result<(), String> {
        if json.len() > MAX_METADATA_VALUE {
            return Err(format!("metadata value over {MAX_METADATA_VALUE} bytes"));
        }
        let value = serde_json::from_str(json).map_err(|e| format!("invalid JSON: {e}"))?;
        with(|state| state.ran.metadata.push((key.to_string(), value)), || ());
        Ok(())
    }

    pub(crate) fn spawn(job: &str, args: &str, options: &str) -> Result<String, String> {
        let parse = |what: &str, json: &str| {
            serde_json::from_str::<serde_json::Value>(json).map_err(|e| format!("{what}: {e}"))
        };
        let (args, options) = (parse("args", args)?, parse("options", options)?);
        with(
            |state| {
                state.ran.spawned.push((job.to_string(), args, options));
                Ok(format!("00000000-0000-7000-8000-{:012}", state.ran.spawned.len()))
            },
            || Err("spawn needs a host (or a MockContext run)".into()),
        )
    }

    pub(crate) fn is_cancelled() -> bool {
        with(
            |state| match state.context.cancel_after {
                Some(after) if state.checks >= after => true,
                _ => {
                    state.checks += 1;
                    false
                }
            },
            || false,
        )
    }

    pub(crate) fn job_id() -> String {
        with(|state| state.context.job_id.clone(), || MOCK_JOB_ID.to_string())
    }

    pub(crate) fn attempt() -> u32 {
        with(|state| state.context.attempt, || 1)
    }
}
