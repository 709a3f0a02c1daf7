//! jobhost: a job server for WebAssembly jobs.
//!
//! # Layout
//!
//! - [`runtime`]: the sandbox. One wasmtime engine; a registry of plugins
//!   (components checked against `wit/job.wit`, compiled once and cached on
//!   disk); [`runtime::Runtime::run`] runs one job in a fresh store with fuel,
//!   wall-time, memory and log limits and reports how it ended.
//! - [`storage`]: durable jobs in redb behind the [`storage::Storage`]
//!   trait: records, queue indexes, events journal, logs, locks; one
//!   group-commit writer thread.
//! - [`dispatch`]: claims ready jobs into worker slots, runs them, records
//!   outcomes and retries, renews leases, recovers dead workers' jobs.
//! - [`events`]: the in-process bus live followers subscribe to.
//! - [`cli`]: the `jobhost` binary's commands (`serve`, `run`).

pub mod api;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod events;
pub mod host;
pub mod jobs;
pub mod runtime;
pub mod services;
pub mod storage;
