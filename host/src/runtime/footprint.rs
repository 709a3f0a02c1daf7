//! What a component asks for before it runs, read from its bytes before
//! anything compiles: the initial size of its core memories and tables, its
//! data segments, and how many core instances it creates. A component whose start alone passes the host's caps
//! could never run a job; refusing it at upload says why at once, instead of
//! failing every job it is given, and costs no compile.

use super::error::PluginError;
use crate::jobs::Limits;
use wasmparser::{Instance, Parser, Payload};

const MIB: u64 = 1 << 20;

/// Refuses a component whose memories, tables or data exceed `caps`, or
/// that instantiates more than `max_core_instances` core modules. Bytes
/// that do not parse pass: the compiler names their fault better.
pub(crate) fn check(
    bytes: &[u8],
    caps: &Limits,
    max_core_instances: u32,
) -> Result<(), PluginError> {
    let over = |what: String| Err(PluginError::OverLimit(what));
    let (mut memory, mut data, mut instances) = (0u64, 0u64, 0u32);
    // Nesting depth: the core instances counted are those the outer
    // component creates (all of them, for what rustc, componentize-py and
    // jco make); the pool checks nested ones when it instantiates.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { return Ok(()) };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::InstanceSection(section) if depth == 0 => {
                let created = section
                    .into_iter()
                    .flatten()
                    .filter(|instance| matches!(instance, Instance::Instantiate { .. }))
                    .count();
                instances = instances.saturating_add(u32::try_from(created).unwrap_or(u32::MAX));
                if instances > max_core_instances {
                    return over(format!(
                        "it creates {instances} core instances, over the {max_core_instances} \
                         a component may have (--max-core-instances)"
                    ));
                }
            }
            Payload::MemorySection(memories) => {
                for ty in memories.into_iter().flatten() {
                    let page = 1u64 << ty.page_size_log2.unwrap_or(16);
                    memory = memory.saturating_add(ty.initial.saturating_mul(page));
                }
                if memory > caps.memory_bytes {
                    return over(format!(
                        "its memories start at {} MiB, over the {} MiB a job may have",
                        memory.div_ceil(MIB),
                        caps.memory_bytes / MIB
                    ));
                }
            }
            Payload::TableSection(tables) => {
                for table in tables.into_iter().flatten() {
                    if table.ty.initial > caps.table_elements {
                        return over(format!(
                            "a table starts with {} elements, over the {} a job may have",
                            table.ty.initial, caps.table_elements
                        ));
                    }
                }
            }
            Payload::DataSection(segments) => {
                for segment in segments.into_iter().flatten() {
                    data = data.saturating_add(segment.data.len() as u64);
                }
                if data > caps.memory_bytes {
                    return over(format!(
                        "its data segments hold {} MiB, over the {} MiB of memory a job may have",
                        data.div_ceil(MIB),
                        caps.memory_bytes / MIB
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}
