//! The plugins a host can run, by qualified name: each checked against the
//! `job` world, compiled once (through the cache) and pre-instantiated, so a
//! job start only allocates a store and instantiates.

use super::bindings::JobPre;
use super::compile::{self, CompileCache, CompiledFrom};
use super::error::PluginError;
use super::footprint;
use super::hints;
use super::sandbox::JobState;
use crate::jobs::Limits;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// Longest qualified name accepted.
const MAX_NAME_LEN: usize = 128;

/// A registered plugin, ready to instantiate.
pub struct Plugin {
    /// The tenant that uploaded it; `None` for a shared plugin (loaded from
    /// the plugins folder at start), which every tenant may run.
    pub tenant: Option<String>,
    /// Qualified name, such as `acme.reports.monthly`.
    pub name: String,
    /// `sha256:<hex>` of the component bytes: the plugin's version.
    pub digest: String,
    /// Size of the component bytes.
    pub size: usize,
    /// What the component imports (WASI interfaces, the job context).
    pub imports: Vec<String>,
    /// What the component exports (`run`).
    pub exports: Vec<String>,
    /// Whether it was compiled now or loaded from the cache.
    pub compiled_from: CompiledFrom,
    pub(crate) pre: JobPre<JobState>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// One file of a plugin folder and what became of it.
#[derive(Debug)]
pub struct Loaded {
    /// The `.wasm` file.
    pub path: std::path::PathBuf,
    /// The plugin it registered, or why it was refused.
    pub plugin: anyhow::Result<Arc<Plugin>>,
}

/// A component as `jobhost plugin check` sees it.
#[derive(Debug)]
pub struct Inspection {
    /// The interfaces it imports, with their versions.
    pub imports: Vec<String>,
    /// What it exports.
    pub exports: Vec<String>,
    /// Whether it links as a job, or why not.
    pub fits: Result<(), PluginError>,
}

/// Owning tenant (`None`: shared) and qualified name.
type PluginKey = (Option<String>, String);

/// Registered plugins by owner and name. Registering under an existing name
/// replaces the plugin (a new version); jobs already running keep the old
/// one. A tenant sees its own plugins and the shared ones; its own win.
pub struct Registry {
    engine: Engine,
    linker: Linker<JobState>,
    cache: Option<CompileCache>,
    /// The most a job may have: a component whose start needs more is refused.
    caps: Limits,
    /// Core instances one component may create.
    max_core_instances: u32,
    plugins: RwLock<BTreeMap<PluginKey, Arc<Plugin>>>,
    /// Older versions, loaded on demand for jobs enqueued before an upload,
    /// by (tenant, name, digest); at most [`MAX_OLD_VERSIONS`].
    old_versions: RwLock<HashMap<(String, String, String), Arc<Plugin>>>,
}

/// Older versions kept ready at once; past this the oldest loaded goes.
const MAX_OLD_VERSIONS: usize = 64;

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("cache", &self.cache).finish_non_exhaustive()
    }
}

impl Registry {
    pub(crate) fn new(
        engine: Engine,
        linker: Linker<JobState>,
        cache: Option<CompileCache>,
        caps: Limits,
        max_core_instances: u32,
    ) -> Self {
        let (plugins, old_versions) = (RwLock::default(), RwLock::default());
        Self { engine, linker, cache, caps, max_core_instances, plugins, old_versions }
    }

    /// Checks, compiles and registers `bytes` as the shared plugin `name`.
    /// CPU-heavy on a cache miss: call it from a blocking context.
    pub fn register(&self, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        Ok(self.insert(self.prepare(None, name, bytes)?))
    }

    /// Like [`register`](Self::register), for one tenant only.
    pub fn register_for(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<Arc<Plugin>, PluginError> {
        Ok(self.insert(self.prepare(Some(tenant), name, bytes)?))
    }

    /// Refuses an upload whose memories, tables or data start over the caps
    /// (before it costs a compile). Only uploads are checked: a plugin
    /// already stored still loads after the caps are lowered, so the host
    /// starts and the operator can remove it; its jobs fail at instantiation.
    pub fn check_footprint(&self, bytes: &[u8]) -> Result<(), PluginError> {
        compile::check_header(bytes)?;
        footprint::check(bytes, &self.caps, self.max_core_instances)
    }

    /// Makes a plugin from [`prepare`](Self::prepare) visible under its
    /// name, replacing the one there.
    pub fn insert(&self, plugin: Plugin) -> Arc<Plugin> {
        let plugin = Arc::new(plugin);
        let key = (plugin.tenant.clone(), plugin.name.clone());
        self.plugins.write().unwrap().insert(key, plugin.clone());
        plugin
    }

    /// Everything [`register`](Self::register) does except making the plugin
    /// visible: name check, header check, compilation, world check.
    pub fn prepare(
        &self,
        tenant: Option<&str>,
        name: &str,
        bytes: &[u8],
    ) -> Result<Plugin, PluginError> {
        check_name(name)?;
        compile::check_header(bytes)?;
        let digest = compile::digest(bytes);
        let (component, compiled_from) = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, bytes, &digest)?,
            None => (compile::compile(&self.engine, bytes)?, CompiledFrom::Compiler),
        };
        let (imports, exports) = interface_names(&self.engine, &component);
        let pre = self.link(&component, &imports, &exports)?;
        Ok(Plugin {
            tenant: tenant.map(String::from),
            name: name.to_string(),
            digest,
            size: bytes.len(),
            imports,
            exports,
            compiled_from,
            pre,
        })
    }

    /// Registers every `<qualified name>.wasm` file of `dir`, each on its
    /// own: a file that is refused is returned with its reason and the
    /// others still load, so one bad build does not take every plugin down.
    /// Fails only when the folder cannot be read.
    pub fn load_dir(&self, dir: &Path) -> anyhow::Result<Vec<Loaded>> {
        use anyhow::Context as _;
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "wasm") {
                paths.push(path);
            }
        }
        paths.sort();
        Ok(paths
            .into_iter()
            .map(|path| {
                let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                let plugin = std::fs::read(&path)
                    .with_context(|| format!("reading {}", path.display()))
                    .and_then(|bytes| {
                        self.register(name, &bytes)
                            .with_context(|| format!("loading {}", path.display()))
                    });
                Loaded { path, plugin }
            })
            .collect())
    }

    /// What `jobhost plugin check` reports: the component's imports and
    /// exports, and whether it fits this host as an upload would (caps,
    /// compile, world), without keeping it or touching the cache.
    pub fn inspect(&self, bytes: &[u8]) -> Result<Inspection, PluginError> {
        self.check_footprint(bytes)?;
        let component = compile::compile(&self.engine, bytes)?;
        let (imports, exports) = interface_names(&self.engine, &component);
        let fits = self.link(&component, &imports, &exports).map(drop);
        Ok(Inspection { imports, exports, fits })
    }

    /// Links `component` against WASI and the job context; a refusal says
    /// how to fix a known mistake.
    fn link(
        &self,
        component: &Component,
        imports: &[String],
        exports: &[String],
    ) -> Result<JobPre<JobState>, PluginError> {
        self.linker.instantiate_pre(component).and_then(JobPre::new).map_err(|error| {
            let hint = hints::for_interfaces(imports, exports)
                .map(|hint| format!("; {hint}"))
                .unwrap_or_default();
            PluginError::WrongWorld(format!("{error:#}{hint}"))
        })
    }

    /// The shared plugin `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Plugin>, PluginError> {
        self.lookup(&(None, name.to_string()))
    }

    /// The plugin `name` as `tenant` sees it: its own, else the shared one;
    /// a name that is not a qualified name is refused as such.
    pub fn resolve(&self, tenant: &str, name: &str) -> Result<Arc<Plugin>, PluginError> {
        check_name(name)?;
        self.lookup(&(Some(tenant.to_string()), name.to_string())).or_else(|_| self.get(name))
    }

    /// Version `digest` of the plugin `name` as `tenant` sees it, if it is
    /// the current one or an older one loaded already (an empty digest is
    /// the current version).
    pub fn version(&self, tenant: &str, name: &str, digest: &str) -> Option<Arc<Plugin>> {
        let current = self.resolve(tenant, name).ok();
        if let Some(current) = current.filter(|c| digest.is_empty() || c.digest == digest) {
            return Some(current);
        }
        let key = (tenant.to_string(), name.to_string(), digest.to_string());
        self.old_versions.read().unwrap().get(&key).cloned()
    }

    /// Keeps an older version from [`prepare`](Self::prepare) ready for the
    /// jobs of `tenant` that need it.
    pub fn keep_old_version(&self, tenant: &str, plugin: Plugin) -> Arc<Plugin> {
        let plugin = Arc::new(plugin);
        let key = (tenant.to_string(), plugin.name.clone(), plugin.digest.clone());
        let mut old = self.old_versions.write().unwrap();
        if old.len() >= MAX_OLD_VERSIONS {
            old.clear();
        }
        old.insert(key, plugin.clone());
        plugin
    }

    fn lookup(&self, key: &PluginKey) -> Result<Arc<Plugin>, PluginError> {
        let plugins = self.plugins.read().unwrap();
        plugins.get(key).cloned().ok_or_else(|| PluginError::NotFound(key.1.clone()))
    }

    /// Every registered plugin, shared ones first, each group by name.
    pub fn list(&self) -> Vec<Arc<Plugin>> {
        self.plugins.read().unwrap().values().cloned().collect()
    }

    /// The plugins `tenant` can run, by name: its own, and the shared ones
    /// it does not shadow.
    pub fn list_for(&self, tenant: &str) -> Vec<Arc<Plugin>> {
        let mut visible: BTreeMap<String, Arc<Plugin>> = BTreeMap::new();
        for plugin in self.list() {
            match plugin.tenant.as_deref() {
                None => {
                    visible.entry(plugin.name.clone()).or_insert(plugin);
                }
                Some(owner) if owner == tenant => {
                    visible.insert(plugin.name.clone(), plugin);
                }
                Some(_) => {}
            }
        }
        visible.into_values().collect()
    }

    /// Unregisters `tenant`'s plugin `name`; running jobs of it finish
    /// normally. Shared plugins are not removed this way.
    pub fn remove_for(&self, tenant: &str, name: &str) -> Result<Arc<Plugin>, PluginError> {
        let key = (Some(tenant.to_string()), name.to_string());
        self.plugins
            .write()
            .unwrap()
            .remove(&key)
            .ok_or_else(|| PluginError::NotFound(name.to_string()))
    }
}

/// A qualified name: two or more dot-separated segments of lowercase ASCII
/// letters, digits, `-` and `_`, each starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), PluginError> {
    // The refusal quotes the name, so a huge one is cut, not echoed whole.
    let shown = match name.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_string(),
    };
    let invalid = |reason| Err(PluginError::InvalidName { name: shown.clone(), reason });
    if name.len() > MAX_NAME_LEN {
        return invalid("longer than 128 bytes");
    }
    let segments: Vec<&str> = name.split('.').collect();
    if segments.last() == Some(&"wasm") {
        return invalid(
            "ends in `.wasm`, the file extension: the name is the file name without it \
             (`acme.reports.monthly.wasm` is served as `acme.reports.monthly`)",
        );
    }
    if segments.len() < 2 {
        return invalid("needs at least two dot-separated segments, like `acme.reports`");
    }
    for segment in segments {
        let Some(first) = segment.chars().next() else {
            return invalid("has an empty segment");
        };
        if !first.is_ascii_lowercase() && !first.is_ascii_digit() {
            return invalid("each segment must start with a lowercase letter or digit");
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return invalid("only lowercase letters, digits, `-` and `_` are allowed");
        }
    }
    Ok(())
}

fn interface_names(engine: &Engine, component: &Component) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(name, _)| name.to_string()).collect();
    let exports = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
    (imports, exports)
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn qualified_names() {
        for ok in ["examples.hello", "acme.reports.monthly", "a1.b-c.d_e"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in
            ["hello", "acme..x", ".acme.x", "Acme.x", "acme.x!", "acme._x", "", "acme.x.wasm"]
        {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&format!("a.{}", "b".repeat(200))).is_err());
    }
}
