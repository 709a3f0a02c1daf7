//! Why a plugin was refused. Callers branch on the variant (the API maps
//! each to a status); the message tells the plugin author what to fix.

/// A plugin could not be registered or found.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The qualified name is malformed.
    #[error("invalid plugin name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly binary: it does not start with the \\0asm magic bytes")]
    NotWasm,
    /// A core module where a component is needed.
    #[error(
        "this is a core WebAssembly module, not a component: build the plugin as a cdylib \
         for the wasm32-wasip2 target, which produces a component"
    )]
    CoreModule,
    /// WebAssembly that does not validate or compile.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// A component that asks for more than any job may have.
    #[error("the component asks for more than this host allows: {0}")]
    OverLimit(String),
    /// A component whose compile took longer than the host allows.
    #[error(
        "compiling the component took longer than the {0} ms this host allows \
         (--compile-timeout-ms); it was not stored"
    )]
    CompileTimeout(u64),
    /// A valid component that does not fit `jobhost:plugin/job`.
    #[error("the component does not implement the jobhost:plugin/job@0.1.0 world: {0}")]
    WrongWorld(String),
    /// No plugin under that name.
    #[error("no plugin named {0:?}")]
    NotFound(String),
}
