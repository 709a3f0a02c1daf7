//! The Python and JavaScript plugins of `plugins/python` and `plugins/js`.
//! They are built from source by their SDK's build script, which installs
//! its pinned toolchain under `~/.cache/jobhost` and caches unchanged
//! components, so a warm build is a copy. They are built at run time, not
//! by this crate's build script, because the toolchains are minutes and
//! hundreds of MB that only their tests and benchmark need.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Each plugin: (language, folder of `plugins/<language>/`, qualified name).
pub const PLUGINS: &[(&str, &str, &str)] = &[
    ("python", "wordcount", "examples.python-wordcount"),
    ("python", "countdown", "examples.python-countdown"),
    ("python", "probe", "tests.python-probe"),
    ("js", "wordcount", "examples.js-wordcount"),
    ("js", "countdown", "examples.js-countdown"),
    ("js", "probe", "tests.js-probe"),
];

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The folder holding every component of [`PLUGINS`] as `<name>.wasm`,
/// built on the first call of the process. Panics with the build's output
/// if a build fails.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("jobhost-polyglot");
        let repo = repo();
        for (lang, source, name) in PLUGINS {
            let mut build = Command::new(repo.join("sdk").join(lang).join("build"));
            build.arg(repo.join("plugins").join(lang).join(source));
            if *lang == "python" {
                build.arg("app");
            }
            let output = build.arg(dir.join(format!("{name}.wasm"))).output();
            let output = output.unwrap_or_else(|e| panic!("running {build:?}: {e}"));
            assert!(
                output.status.success(),
                "{build:?} failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        dir
    })
}
