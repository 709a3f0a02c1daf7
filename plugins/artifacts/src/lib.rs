//! Paths of the plugin components built from `plugins/` by this crate's
//! build script: `ALL` lists (qualified name, path); one constant per plugin;
//! `EXAMPLES_DIR` is the folder of the `examples.*` ones, for `jobhost serve`.

include!(concat!(env!("OUT_DIR"), "/components.rs"));
