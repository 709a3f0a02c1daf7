//! The plugins a host can run, by qualified name: each checked against the
//! `job` world, compiled once (through the cache) and pre-instantiated when
//! it is made ready, so a job start only allocates a store and
//! instantiates. Uploaded plugins are known at start and made ready on
//! their first job; a bounded set of them stays ready.

use super::bindings::JobPre;
use super::compile::{self, CompileCache, CompiledFrom};
use super::error::PluginError;
use super::footprint;
use super::hints;
use super::sandbox::JobState;
use crate::jobs::{Limits, PluginRecord};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// Longest qualified name accepted.
const MAX_NAME_LEN: usize = 128;

/// A registered plugin, ready to instantiate: what is known of it
/// ([`PluginInfo`], its fields reached through it) and its linked code.
pub struct Plugin {
    info: PluginInfo,
    /// Whether it was compiled now or loaded from the cache.
    pub compiled_from: CompiledFrom,
    pub(crate) pre: JobPre<JobState>,
}

impl std::ops::Deref for Plugin {
    type Target = PluginInfo;

    fn deref(&self) -> &PluginInfo {
        &self.info
    }
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

/// What the host knows of a plugin without having it ready to run: enough
/// to admit its jobs and to show it. A host holds one for every plugin
/// stored, however many; only the hot ones are also ready ([`Plugin`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginInfo {
    /// The tenant that uploaded it; `None` for a shared plugin (loaded from
    /// the plugins folder at start), which every tenant may run.
    pub tenant: Option<String>,
    /// Qualified name, such as `acme.reports.monthly`.
    pub name: String,
    /// `sha256:<hex>` of the component bytes: the plugin's version.
    pub digest: String,
    /// Size of the component bytes.
    pub size: usize,
    /// What the component imports (WASI interfaces, the job context);
    /// empty for a plugin stored before they were recorded, until it
    /// first runs.
    pub imports: Vec<String>,
    /// What it exports (`run`).
    pub exports: Vec<String>,
}

impl PluginInfo {
    /// What a stored upload record says of its current version.
    pub fn stored(record: &PluginRecord) -> Self {
        Self {
            tenant: Some(record.tenant.clone()),
            name: record.name.clone(),
            digest: record.digest.clone(),
            size: record.size as usize,
            imports: record.imports.clone(),
            exports: record.exports.clone(),
        }
    }
}

impl Plugin {
    /// What is known of it.
    pub fn info(&self) -> PluginInfo {
        self.info.clone()
    }
}

/// Owning tenant (`None`: shared) and qualified name.
type PluginKey = (Option<String>, String);
/// Tenant, name and digest of a version of an uploaded plugin.
type VersionKey = (String, String, String);

/// The plugins a host can run. Every plugin is known by owner and name
/// ([`PluginInfo`]); shared plugins (from the plugins folder, few) are
/// always ready, uploaded ones are made ready on their first job and kept
/// in a bounded set that lets the least recently used go, so a host's
/// start and memory do not grow with the plugins it stores. Registering
/// under an existing name replaces the plugin (a new version); jobs
/// already running keep the old one. A tenant sees its own plugins and the
/// shared ones; its own win.
pub struct Registry {
    engine: Engine,
    linker: Linker<JobState>,
    cache: Option<CompileCache>,
    /// The most a job may have: a component whose start needs more is refused.
    caps: Limits,
    /// Core instances one component may create.
    max_core_instances: u32,
    known: RwLock<BTreeMap<PluginKey, Arc<PluginInfo>>>,
    shared: RwLock<HashMap<String, Arc<Plugin>>>,
    ready: Mutex<Ready>,
}

/// Versions of uploaded plugins ready to run, at most `capacity`, each with
/// the turn it was last used.
struct Ready {
    capacity: usize,
    turn: u64,
    plugins: HashMap<VersionKey, (Arc<Plugin>, u64)>,
}

impl Ready {
    fn get(&mut self, key: &VersionKey) -> Option<Arc<Plugin>> {
        self.turn += 1;
        let (plugin, used) = self.plugins.get_mut(key)?;
        *used = self.turn;
        Some(plugin.clone())
    }

    fn put(&mut self, key: VersionKey, plugin: Arc<Plugin>) {
        if !self.plugins.contains_key(&key) && self.plugins.len() >= self.capacity {
            let coldest = self.plugins.iter().min_by_key(|(_, (_, used))| *used);
            if let Some(coldest) = coldest.map(|(key, _)| key.clone()) {
                self.plugins.remove(&coldest);
            }
        }
        self.turn += 1;
        self.plugins.insert(key, (plugin, self.turn));
    }
}

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
        ready_plugins: usize,
    ) -> Self {
        let ready = Ready { capacity: ready_plugins.max(1), turn: 0, plugins: HashMap::new() };
        Self {
            engine,
            linker,
            cache,
            caps,
            max_core_instances,
            known: RwLock::default(),
            shared: RwLock::default(),
            ready: Mutex::new(ready),
        }
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

    /// Makes a plugin from [`prepare`](Self::prepare) current under its
    /// name (replacing the one there) and ready.
    pub fn insert(&self, plugin: Plugin) -> Arc<Plugin> {
        let plugin = Arc::new(plugin);
        let key = (plugin.tenant.clone(), plugin.name.clone());
        self.known.write().unwrap().insert(key, Arc::new(plugin.info()));
        match &plugin.tenant {
            None => {
                self.shared.write().unwrap().insert(plugin.name.clone(), plugin.clone());
            }
            Some(tenant) => {
                let key = (tenant.clone(), plugin.name.clone(), plugin.digest.clone());
                self.ready.lock().unwrap().put(key, plugin.clone());
            }
        }
        plugin
    }

    /// Knows a stored upload without making it ready: what a host does for
    /// each one at start.
    pub fn know(&self, info: PluginInfo) {
        let key = (info.tenant.clone(), info.name.clone());
        self.known.write().unwrap().insert(key, Arc::new(info));
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
        let info = PluginInfo {
            tenant: tenant.map(String::from),
            name: name.to_string(),
            digest,
            size: bytes.len(),
            imports,
            exports,
        };
        Ok(Plugin { info, compiled_from, pre })
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

    /// The shared plugin `name`, ready.
    pub fn get(&self, name: &str) -> Result<Arc<Plugin>, PluginError> {
        let shared = self.shared.read().unwrap();
        shared.get(name).cloned().ok_or_else(|| PluginError::NotFound(name.to_string()))
    }

    /// The plugin `name` as `tenant` sees it: its own, else the shared one;
    /// a name that is not a qualified name is refused as such.
    pub fn resolve(&self, tenant: &str, name: &str) -> Result<Arc<PluginInfo>, PluginError> {
        check_name(name)?;
        let known = self.known.read().unwrap();
        known
            .get(&(Some(tenant.to_string()), name.to_string()))
            .or_else(|| known.get(&(None, name.to_string())))
            .cloned()
            .ok_or_else(|| PluginError::NotFound(name.to_string()))
    }

    /// Version `digest` of the plugin `name` as `tenant` sees it, if it is
    /// ready (an empty digest is the current version); else the caller
    /// makes it ready from its stored bytes ([`keep_ready`](Self::keep_ready)).
    pub fn version(&self, tenant: &str, name: &str, digest: &str) -> Option<Arc<Plugin>> {
        let info = self.resolve(tenant, name).ok()?;
        let digest = if digest.is_empty() { &info.digest } else { digest };
        match &info.tenant {
            None => self.get(name).ok().filter(|shared| shared.digest == *digest),
            Some(owner) => {
                let key = (owner.clone(), name.to_string(), digest.to_string());
                self.ready.lock().unwrap().get(&key)
            }
        }
    }

    /// Keeps a version of `tenant`'s plugin from [`prepare`](Self::prepare)
    /// ready for its jobs.
    pub fn keep_ready(&self, tenant: &str, plugin: Plugin) -> Arc<Plugin> {
        let plugin = Arc::new(plugin);
        let mut known = self.known.write().unwrap();
        let key = (Some(tenant.to_string()), plugin.name.clone());
        if let Some(info) = known.get_mut(&key)
            && info.digest == plugin.digest
            && info.imports.is_empty()
        {
            *info = Arc::new(plugin.info());
        }
        drop(known);
        let key = (tenant.to_string(), plugin.name.clone(), plugin.digest.clone());
        self.ready.lock().unwrap().put(key, plugin.clone());
        plugin
    }

    /// How many uploaded plugin versions are ready now.
    pub fn ready_count(&self) -> usize {
        self.ready.lock().unwrap().plugins.len()
    }

    /// Every known plugin, shared ones first, each group by name.
    pub fn list(&self) -> Vec<Arc<PluginInfo>> {
        self.known.read().unwrap().values().cloned().collect()
    }

    /// The plugins `tenant` can run, by name: its own, and the shared ones
    /// it does not shadow.
    pub fn list_for(&self, tenant: &str) -> Vec<Arc<PluginInfo>> {
        let mut visible: BTreeMap<String, Arc<PluginInfo>> = BTreeMap::new();
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

    /// Unregisters `tenant`'s plugin `name` and lets its ready versions go;
    /// running jobs of it finish normally. Shared plugins are not removed
    /// this way.
    pub fn remove_for(&self, tenant: &str, name: &str) -> Result<Arc<PluginInfo>, PluginError> {
        let key = (Some(tenant.to_string()), name.to_string());
        let removed = self.known.write().unwrap().remove(&key);
        let removed = removed.ok_or_else(|| PluginError::NotFound(name.to_string()))?;
        let mut ready = self.ready.lock().unwrap();
        ready.plugins.retain(|(owner, plugin, _), _| !(owner == tenant && plugin == name));
        Ok(removed)
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
