//! Paths of the plugin components built from `plugins/` by this crate's
//! build script: `ALL` lists (qualified name, path); one constant per plugin;
//! `EXAMPLES_DIR` is the folder of the `examples.*` ones, for `jobhost serve`.
//! The Python and JavaScript plugins are built on demand: [`polyglot`].

pub mod polyglot;

include!(concat!(env!("OUT_DIR"), "/components.rs"));
