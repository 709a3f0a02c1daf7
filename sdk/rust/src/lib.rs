//! Write a [jobhost](https://github.com/) job in Rust.
//!
//! A job is one function from typed, deserialisable args to a serialisable
//! result, exported with [`export_job!`]:
//!
//! ```no_run
//! use jobhost_sdk::{export_job, info, Result};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Args { name: String }
//!
//! #[derive(Serialize)]
//! struct Greeting { message: String }
//!
//! fn greet(args: Args) -> Result<Greeting> {
//!     info(format!("greeting {}", args.name));
//!     Ok(Greeting { message: format!("Hello, {}!", args.name) })
//! }
//!
//! export_job!(greet);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! in `target/wasm32-wasip2/release/` is the component to push to the host.
//! The host calls the function once per attempt, in a fresh sandbox.
//! `println!` and `eprintln!` land in the job log; [`log`], [`progress`],
//! [`set_metadata`] and [`is_cancelled`] talk to the host directly.
//!
//! Built natively, as by a job's own `cargo test`, those calls go to a mock
//! context instead: see [`testing`].
#![deny(missing_docs)]

mod context;
mod error;
#[cfg(not(target_family = "wasm"))]
pub mod testing;

pub use context::{
    Level, attempt, debug, error, info, is_cancelled, job_id, log, progress, set_metadata, spawn,
    spawn_with, trace, warn,
};
pub use error::{Error, Result};

/// Generated bindings for the `jobhost:plugin` world; used by [`export_job!`].
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.2.0",
        world: "job",
        pub_export_macro: true,
        default_bindings_module: "jobhost_sdk::bindings",
    });
}

/// Glue used by [`export_job!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;

    /// Decodes `args`, calls the job, encodes its result. A decode failure is
    /// reported as the job's error, naming what did not fit.
    pub fn run_json<A, R>(
        args: &str,
        job: impl FnOnce(A) -> crate::Result<R>,
    ) -> Result<String, String>
    where
        A: serde::de::DeserializeOwned,
        R: serde::Serialize,
    {
        let args: A = serde_json::from_str(args).map_err(|e| format!("invalid args: {e}"))?;
        let result = job(args).map_err(|e| e.to_string())?;
        serde_json::to_string(&result).map_err(|e| format!("result is not serialisable: {e}"))
    }
}

/// Exports a function as this component's job.
///
/// The function takes one argument that implements `serde::Deserialize` (the
/// job's JSON args) and returns [`Result<T>`](Result) where `T` implements
/// `serde::Serialize` (the job's JSON result). Use it once per plugin crate.
#[macro_export]
macro_rules! export_job {
    ($job:path) => {
        struct __JobhostExport;

        impl $crate::bindings::Guest for __JobhostExport {
            fn run(args: ::std::string::String) -> ::std::result::Result<::std::string::String, ::std::string::String> {
                $crate::__private::run_json(&args, $job)
            }
        }

        $crate::bindings::export!(__JobhostExport with_types_in $crate::bindings);
    };
}
