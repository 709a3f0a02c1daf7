//! `tests.memhog`: tries to take the host's memory. By default it grows its
//! own memory 1 MiB at a time, touching every page, until the host's memory
//! limit stops it (or `args.max_mib` is reached). With `args.metadata_keys`
//! it instead sets that many metadata keys of `args.metadata_bytes` each,
//! to fill the host through its job record, and reports how many the host
//! took.
use jobhost_sdk::{Result, export_job, set_metadata};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Args {
    max_mib: Option<usize>,
    metadata_keys: Option<usize>,
    #[serde(default)]
    metadata_bytes: usize,
}

#[derive(Serialize)]
struct Held {
    mib: usize,
    metadata_set: usize,
    metadata_refused: Option<String>,
}

fn memhog(args: Args) -> Result<Held> {
    if let Some(keys) = args.metadata_keys {
        let value = "x".repeat(args.metadata_bytes);
        let mut held = Held { mib: 0, metadata_set: 0, metadata_refused: None };
        for key in 0..keys {
            match set_metadata(&format!("key-{key}"), &value) {
                Ok(()) => held.metadata_set += 1,
                Err(e) => held.metadata_refused = Some(e.to_string()),
            }
        }
        return Ok(held);
    }
    let mut held: Vec<Vec<u8>> = Vec::new();
    while args.max_mib.is_none_or(|max| held.len() < max) {
        held.push(vec![0xA5; 1 << 20]);
    }
    let mib = std::hint::black_box(held).len();
    Ok(Held { mib, metadata_set: 0, metadata_refused: None })
}

export_job!(memhog);
