//! The one wasmtime [`Engine`] of the host, and the epoch ticker that gives
//! running guests their chance to yield.

use std::time::Duration;
use wasmtime::{Config, Engine};

/// How often the epoch advances. Each tick, a running guest yields to tokio,
/// so this bounds how long one guest holds a worker thread and how late a
/// timeout or hard cancel can land.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine: component model, async calls, fuel metering and epoch
/// interruption, and starts its epoch ticker thread.
pub fn new_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true).consume_fuel(true).epoch_interruption(true);
    let engine = Engine::new(&config)?;
    start_epoch_ticker(&engine);
    Ok(engine)
}

/// Ticks the engine's epoch until the engine is dropped. The thread holds a
/// weak reference, so it never keeps the engine alive.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("jobhost-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}
