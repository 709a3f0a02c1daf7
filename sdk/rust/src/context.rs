//! Calls from the job to its host: logging, progress, metadata, cancellation.
//! Built for wasm they go to the host; built natively (a job's own `cargo
//! test`) they go to [`crate::testing`]'s mock context instead of aborting.

#[cfg(target_family = "wasm")]
use crate::bindings::jobhost::plugin::context as host;
#[cfg(not(target_family = "wasm"))]
use crate::testing::host;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress information.
    Info,
    /// Something unexpected that the job survived.
    Warn,
    /// Something failed.
    Error,
}

#[cfg(target_family = "wasm")]
impl From<Level> for host::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        }
    }
}

/// Appends a line to the job log; followers see it at once.
pub fn log(level: Level, message: impl AsRef<str>) {
    #[cfg(target_family = "wasm")]
    let level = host::Level::from(level);
    host::log(level, message.as_ref());
}

/// Logs at [`Level::Trace`].
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message);
}

/// Logs at [`Level::Debug`].
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// Logs at [`Level::Info`].
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// Logs at [`Level::Warn`].
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// Logs at [`Level::Error`].
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}

/// Reports progress in percent (clamped to 0..=100), with an optional message.
pub fn progress(percent: f32, message: Option<&str>) {
    host::progress(percent, message);
}

/// Attaches `value`, as JSON, to the job under `key`.
///
/// Fails when the value cannot be serialised or the host refuses it (too large).
pub fn set_metadata<T: serde::Serialize + ?Sized>(key: &str, value: &T) -> crate::Result<()> {
    let json = serde_json::to_string(value)?;
    host::set_metadata(key, &json).map_err(crate::Error::msg)
}

/// True once cancellation was requested. Check it in loops and return early:
/// a job that ignores it is stopped hard after the host's grace period.
pub fn is_cancelled() -> bool {
    host::is_cancelled()
}

/// The id of the job being run.
pub fn job_id() -> String {
    host::job_id()
}

/// The attempt number: 1 for the first run, 2 for the first retry, ...
pub fn attempt() -> u32 {
    host::attempt()
}

/// Enqueues a child job of this one: `job` is a qualified plugin name and
/// `args` its args. Returns the child's id; fails (without ending this job)
/// when the host refuses it, for instance past the tenant's `max_children`.
pub fn spawn<A: serde::Serialize + ?Sized>(job: &str, args: &A) -> crate::Result<String> {
    spawn_with(job, args, &serde_json::Map::new())
}

/// [`spawn`] with the other fields of an enqueue in `options`, as
/// `POST /v1/jobs` takes them (`queue`, `priority`, `delay_ms`,
/// `max_retries`, `name`, `tags`, ...).
pub fn spawn_with<A, O>(job: &str, args: &A, options: &O) -> crate::Result<String>
where
    A: serde::Serialize + ?Sized,
    O: serde::Serialize + ?Sized,
{
    let args = serde_json::to_string(args)?;
    let options = serde_json::to_string(options)?;
    host::spawn(job, &args, &options).map_err(crate::Error::msg)
}
