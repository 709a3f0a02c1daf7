//! `tests.spin`: an endless CPU loop that never calls the host. Only fuel,
//! the wall-time deadline or a hard cancel can stop it.
use jobhost_sdk::{Result, export_job};
use serde::de::IgnoredAny;

fn spin(_: IgnoredAny) -> Result<()> {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

export_job!(spin);
