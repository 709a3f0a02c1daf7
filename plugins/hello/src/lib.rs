//! `examples.hello`: greets `args.name`. The smallest useful job.
use jobhost_sdk::{Result, export_job, info};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Args {
    name: String,
}

#[derive(Serialize)]
struct Greeting {
    greeting: String,
}

fn hello(args: Args) -> Result<Greeting> {
    info(format!("greeting {}", args.name));
    Ok(Greeting { greeting: format!("Hello, {}!", args.name) })
}

export_job!(hello);
