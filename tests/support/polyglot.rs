//! The Python and JavaScript plugins of `plugins/python` and `plugins/js`,
//! built from source by their SDK's build script (which installs its
//! toolchain under `~/.cache/jobhost` and caches unchanged components), once
//! per test process, into folders a host loads like the Rust ones.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Each polyglot plugin: (language, source folder, qualified name).
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
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The folder holding every polyglot component, built on first use.
pub fn plugins_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("jobhost-polyglot");
        for (lang, source, name) in PLUGINS {
            let repo = repo();
            let out = dir.join(format!("{name}.wasm"));
            let mut build = Command::new(repo.join("sdk").join(lang).join("build"));
            build.arg(repo.join("plugins").join(lang).join(source));
            if *lang == "python" {
                build.arg("app");
            }
            super::python::run(build.arg(&out));
        }
        dir
    })
}
