//! `tests.memhog`: grows its memory 1 MiB at a time, touching every page,
//! until the host's memory limit stops it (or `args.max_mib` is reached).
use jobhost_sdk::{Result, export_job};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Args {
    max_mib: Option<usize>,
}

#[derive(Serialize)]
struct Held {
    mib: usize,
}

fn memhog(args: Args) -> Result<Held> {
    let mut held: Vec<Vec<u8>> = Vec::new();
    while args.max_mib.is_none_or(|max| held.len() < max) {
        held.push(vec![0xA5; 1 << 20]);
    }
    Ok(Held { mib: std::hint::black_box(held).len() })
}

export_job!(memhog);
