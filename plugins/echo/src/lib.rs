//! `tests.echo`: returns its args as its result, so a test sees exactly
//! what a job received (results passed on by dependencies and chains).
use jobhost_sdk::{Result, export_job};
use serde_json::Value;

fn echo(args: Value) -> Result<Value> {
    Ok(args)
}

export_job!(echo);
