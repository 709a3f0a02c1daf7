//! Turning component bytes into a compiled [`Component`]: a quick look at the
//! header for a clear error, then compilation through an on-disk cache keyed
//! by content digest and engine, so each component is compiled once.

use super::error::PluginError;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Bytes 4..8 of a core module: version 1, layer 0.
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

/// The content digest of component bytes, as `sha256:<hex>`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Refuses bytes that are not a component, before the compiler sees them.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), PluginError> {
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(PluginError::NotWasm);
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        return Err(PluginError::CoreModule);
    }
    Ok(())
}

/// Compiled components on disk, one file per (digest, engine) pair.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompiledFrom {
    /// Compiled now by Cranelift.
    Compiler,
    /// Loaded from the on-disk cache.
    Cache,
}

impl CompileCache {
    /// A cache in `dir` (created if missing) for components of `engine`.
    pub(crate) fn new(dir: impl Into<PathBuf>, engine: &Engine) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self { dir, engine_key: format!("{:016x}", hasher.finish()) })
    }

    fn path(&self, digest: &str) -> PathBuf {
        let name = digest.trim_start_matches("sha256:");
        self.dir.join(format!("{name}-{}.cwasm", self.engine_key))
    }

    /// Loads the compiled form of `bytes` from the cache, or compiles and
    /// stores it. A cache file that fails to load is replaced, never trusted.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(Component, CompiledFrom), PluginError> {
        let path = self.path(digest);
        if path.exists() {
            match load(engine, &path) {
                Ok(component) => return Ok((component, CompiledFrom::Cache)),
                Err(e) => tracing::warn!(path = %path.display(), "ignoring bad cache entry: {e:#}"),
            }
        }
        let component = compile(engine, bytes)?;
        if let Err(e) = self.store(&component, &path) {
            tracing::warn!(path = %path.display(), "could not cache compiled component: {e:#}");
        }
        Ok((component, CompiledFrom::Compiler))
    }

    /// Writes atomically (temp file, then rename) so a crash never leaves a
    /// half-written entry under the real name.
    fn store(&self, component: &Component, path: &Path) -> anyhow::Result<()> {
        let serialized = component.serialize()?;
        let unique = uuid::Uuid::new_v4().simple();
        let tmp = path.with_extension(format!("tmp{}-{unique}", std::process::id()));
        std::fs::write(&tmp, serialized)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// Compiles with Cranelift.
pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, PluginError> {
    Component::new(engine, bytes).map_err(|e| PluginError::Invalid(format!("{e:#}")))
}

/// Loads a compiled component written by [`CompileCache::store`].
#[allow(unsafe_code)]
fn load(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output.
    // Only this host writes into its cache directory (inside its data dir),
    // always through `store`; the name carries the engine's compatibility
    // hash, and wasmtime still checks the header and engine settings. The
    // file is memory-mapped, which is why entries are only ever replaced by
    // rename, never rewritten in place.
    unsafe { Component::deserialize_file(engine, path) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_names_the_problem() {
        assert!(matches!(check_header(b"hello world"), Err(PluginError::NotWasm)));
        assert!(matches!(check_header(b"\0asm"), Err(PluginError::NotWasm)));
        assert!(matches!(check_header(b"\0asm\x01\0\0\0"), Err(PluginError::CoreModule)));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn digest_is_sha256_of_the_bytes() {
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
