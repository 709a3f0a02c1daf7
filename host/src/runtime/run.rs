//! Running one job: a fresh store, instantiate from the pre-instantiated
//! plugin, call `run`, and turn however that ended into an [`Outcome`].
//!
//! One mechanism stops a job from outside: the call future races a timer
//! (wall time) and the cancel grace timer. The epoch callback makes a
//! spinning guest yield every tick, so the race is decided within a tick;
//! a guest blocked in a host call (a WASI sleep) is stopped the same way.

use super::cancel::CancelToken;
use super::registry::Plugin;
use super::sandbox::{self, JobContext, JobState};
use crate::jobs::{FailureKind, Limits, LogLevel, Outcome, RunReport};
use std::time::Instant;
use wasmtime::{Engine, Store};

/// Why the runtime stopped a job that had not finished.
enum Stopped {
    Timeout,
    Cancelled,
}

pub(crate) async fn run(
    engine: &Engine,
    plugin: &Plugin,
    job: JobContext,
    args: &str,
    limits: &Limits,
    instances: usize,
) -> RunReport {
    let started = Instant::now();
    if args.len() as u64 > limits.payload_bytes {
        let message = format!(
            "args of {} bytes are over the {}-byte limit",
            args.len(),
            limits.payload_bytes
        );
        return RunReport {
            outcome: Outcome::failed(FailureKind::HostError, message),
            fuel_used: 0,
            duration: started.elapsed(),
            memory_peak: 0,
        };
    }
    let cancel = job.cancel.clone();
    let mut store = sandbox::new_store(engine, job, limits, instances);

    let finished = {
        let call = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance.call_run(&mut store, args).await
        };
        let deadline = tokio::time::Instant::from_std(started + limits.wall_time);
        let hard_cancel = async {
            cancel.cancelled().await;
            tokio::time::sleep(limits.cancel_grace).await;
        };
        tokio::select! {
            result = call => Ok(result),
            () = tokio::time::sleep_until(deadline) => Err(Stopped::Timeout),
            () = hard_cancel => Err(Stopped::Cancelled),
        }
    };

    let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    // The guest's own stack goes to its log, for its author; the job's
    // error stays one line, and never shows the host's stack.
    if let Ok(Err(error)) = &finished
        && let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>()
    {
        store.data().log.line(LogLevel::Error, &format!("wasm backtrace:\n{backtrace}"));
    }
    store.data().log.finish();
    let outcome = classify(finished, &store, &cancel, limits);
    RunReport {
        outcome,
        fuel_used,
        duration: started.elapsed(),
        memory_peak: store.data().memory.peak,
    }
}

fn classify(
    finished: Result<wasmtime::Result<Result<String, String>>, Stopped>,
    store: &Store<JobState>,
    cancel: &CancelToken,
    limits: &Limits,
) -> Outcome {
    use FailureKind::*;
    match finished {
        Err(Stopped::Timeout) => Outcome::failed(
            Timeout,
            format!("wall-time limit of {} ms reached", limits.wall_time.as_millis()),
        ),
        Err(Stopped::Cancelled) => Outcome::failed(
            Cancelled,
            format!(
                "cancelled; the job did not stop by itself within the {} ms grace period",
                limits.cancel_grace.as_millis()
            ),
        ),
        Ok(Ok(Ok(result))) if result.len() as u64 > limits.payload_bytes => Outcome::failed(
            PluginError,
            format!(
                "result of {} bytes is over the {}-byte limit",
                result.len(),
                limits.payload_bytes
            ),
        ),
        Ok(Ok(Ok(result))) => Outcome::Completed { result },
        Ok(Ok(Err(message))) if cancel.is_cancelled() => Outcome::failed(Cancelled, message),
        Ok(Ok(Err(message))) => Outcome::failed(PluginError, message),
        Ok(Err(error)) => {
            if let Some(reason) = &store.data().memory.exceeded {
                return Outcome::failed(MemoryLimit, reason.clone());
            }
            match error.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::OutOfFuel) => Outcome::failed(
                    FuelExhausted,
                    format!("fuel budget of {} units exhausted", limits.fuel),
                ),
                Some(trap) => {
                    let message = match store.data().log.panic_message() {
                        Some(panic) => format!("{panic} ({trap})"),
                        None => trap.to_string(),
                    };
                    Outcome::failed(Trap, message)
                }
                None => Outcome::failed(HostError, format!("{error:#}")),
            }
        }
    }
}
