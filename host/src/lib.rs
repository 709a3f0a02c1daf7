//! jobhost: a job server for WebAssembly jobs.
//!
//! # Layout
//!
//! From the core outwards; each module depends only on those above it.
//!
//! - [`jobs`]: the job model. Records and states, limits and outcomes as
//!   data, the enqueue rules, and the rules of a job's life as pure
//!   functions of (record, event, now) returning the transition to persist.
//!   No wasmtime, redb or HTTP.
//! - [`runtime`]: the sandbox. One wasmtime engine; a registry of plugins
//!   (components checked against `wit/job.wit`, compiled once and cached on
//!   disk); [`runtime::Runtime::run`] runs one job in a fresh store with fuel,
//!   wall-time, memory and log limits and reports how it ended.
//! - [`storage`]: persistence behind [`storage::JobStore`],
//!   [`storage::AdminStore`] and [`storage::OutboxStore`]; the embedded
//!   backend [`storage::RedbStorage`] writes each rule's transition with its
//!   indexes and journal in one group-committed transaction.
//! - [`events`]: the in-process bus live followers subscribe to.
//! - [`egress`]: where the host may connect on a tenant's word (webhooks go
//!   to public addresses and the ranges the operator allows).
//! - [`admission`]: a job request admitted for a tenant (plugin, caps,
//!   callback, chain), the same for the API, schedules and spawned jobs.
//! - [`dispatch`]: claims ready jobs into worker slots, runs them, reports
//!   their outcomes.
//! - [`services`]: background work, each a named service: promotion,
//!   recovery, retention, heartbeat, webhooks, schedules.
//! - [`api`]: the HTTP API (routes, auth, bodies, response views, SSE,
//!   OpenAPI).
//! - [`config`]: one [`config::Config`] from flags, `JOBHOST_*` environment
//!   variables and an optional TOML file.
//! - [`host`]: [`host::Host::start`], the one place a host is assembled,
//!   used by the binary, the tests and the benchmarks.
//! - [`author`]: the plugin author's local tools: `plugin new` (a project
//!   per language) and `plugin check` (does a component fit, and why not).
//! - [`client`]: the client commands of the binary (`enqueue --follow`,
//!   `jobs ls`, `job logs -f`, ...), which speak only the HTTP API.
//! - [`cli`]: the `jobhost` command line (`serve`, `run`, the client
//!   commands, shell completions).

pub mod admission;
pub mod api;
pub mod author;
pub mod cli;
pub mod client;
pub mod config;
pub mod dispatch;
pub mod egress;
pub mod events;
pub mod host;
pub mod jobs;
pub mod runtime;
pub mod services;
pub mod storage;
