//! jobhost: a job server for WebAssembly jobs.
//!
//! # Layout
//!
//! - [`runtime`]: the sandbox. One wasmtime engine; a registry of plugins
//!   (components checked against `wit/job.wit`, compiled once and cached on
//!   disk); [`runtime::Runtime::run`] runs one job in a fresh store with fuel,
//!   wall-time, memory and log limits and reports how it ended.
//! - [`cli`]: the `jobhost` binary's commands (`serve`, `run`).

pub mod cli;
pub mod runtime;
pub mod storage;
