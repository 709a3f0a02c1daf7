//! The one wasmtime [`Engine`] of the host, and the epoch ticker that gives
//! running guests their chance to yield.

use super::RuntimeConfig;
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. Each tick, a running guest yields to tokio,
/// so this bounds how long one guest holds a worker thread and how late a
/// timeout or hard cancel can land.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Memories and tables reserved per pooled job slot; a component built by
/// rustc, componentize-py or jco needs one memory; the headroom is for
/// components of other toolchains.
const POOL_MEMORIES_PER_JOB: u32 = 2;
const POOL_TABLES_PER_JOB: u32 = 4;

/// Builds the engine: component model, async calls, fuel metering and epoch
/// interruption, and starts its epoch ticker thread. With `pool_slots`, the
/// pooling allocator keeps memories, tables and stacks for that many jobs at
/// once, sized by the caps, so a job start reuses them instead of mapping
/// anew; `pool_keep_resident` bytes of each are reset in place rather than
/// decommitted.
pub fn new_engine(runtime: &RuntimeConfig) -> anyhow::Result<Engine> {
    let (caps, keep_resident, instances) =
        (&runtime.caps, runtime.pool_keep_resident, runtime.max_core_instances);
    let mut config = Config::new();
    config.wasm_component_model(true).consume_fuel(true).epoch_interruption(true);
    if let Some(slots) = runtime.pool_slots {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_stacks(slots)
            .total_core_instances(slots.saturating_mul(instances))
            .max_core_instances_per_component(instances)
            .total_memories(slots * POOL_MEMORIES_PER_JOB)
            .max_memories_per_component(POOL_MEMORIES_PER_JOB)
            .total_tables(slots * POOL_TABLES_PER_JOB)
            .max_tables_per_component(POOL_TABLES_PER_JOB)
            .max_memory_size(usize::try_from(caps.memory_bytes)?)
            .table_elements(usize::try_from(caps.table_elements)?)
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(keep_resident)
            .pagemap_scan(Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
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
