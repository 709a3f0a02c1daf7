//! `examples.fail`: fails on purpose. Returns `args.message` as its error, or
//! panics (a trap) when `args.panic` is true.
use jobhost_sdk::{Error, Result, export_job};
use serde::Deserialize;

#[derive(Deserialize)]
struct Args {
    #[serde(default)]
    panic: bool,
    message: Option<String>,
}

fn fail(args: Args) -> Result<()> {
    let message = args.message.unwrap_or_else(|| "failed on purpose".into());
    if args.panic {
        panic!("{message}");
    }
    Err(Error::msg(message))
}

export_job!(fail);
