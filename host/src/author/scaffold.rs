//! `jobhost plugin new --lang rust|python|js NAME`: a project folder with a
//! small job, its unit test, a build script, and copies of the SDK and of
//! the interface, so it builds outside this repository and without a
//! package registry holding the SDK.

use crate::runtime::check_name;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// The language of a new plugin project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the jobhost SDK (cargo, wasm32-wasip2).
    Rust,
    /// Python with the jobhost package (componentize-py).
    Python,
    /// JavaScript with @jobhost/sdk (jco and StarlingMonkey).
    Js,
}

/// One file of a project: its path in the project, its text, whether it is
/// a script to be made executable.
type File = (&'static str, &'static str, bool);

/// Copies the repository's files at build time: the template of each
/// language, its SDK, and the interface.
macro_rules! files {
    ($( $path:literal => $source:literal $(, $exec:ident)? ;)*) => {
        &[$( ($path, include_str!(concat!("../../../", $source)), files!(@exec $($exec)?)) ),*]
    };
    (@exec executable) => { true };
    (@exec) => { false };
}

/// The interface: 0.1.0 for Python and JavaScript, whose SDKs build
/// against it, 0.2.0 (with `spawn`) for Rust.
const WIT: File = ("wit/job.wit", include_str!("../../../wit/job.wit"), false);
const WIT_V0_2: File = ("wit/v0.2.0/job.wit", include_str!("../../../wit/v0.2.0/job.wit"), false);

const RUST: &[File] = files! {
    "Cargo.toml" => "sdk/rust/template/Cargo.toml";
    "src/lib.rs" => "sdk/rust/template/src/lib.rs";
    "build" => "sdk/rust/template/build", executable;
    "README.md" => "sdk/rust/template/README.md";
    ".gitignore" => "sdk/rust/template/.gitignore";
    "sdk/rust/Cargo.toml" => "sdk/rust/Cargo.toml";
    "sdk/rust/README.md" => "sdk/rust/README.md";
    "sdk/rust/src/lib.rs" => "sdk/rust/src/lib.rs";
    "sdk/rust/src/context.rs" => "sdk/rust/src/context.rs";
    "sdk/rust/src/error.rs" => "sdk/rust/src/error.rs";
    "sdk/rust/src/testing.rs" => "sdk/rust/src/testing.rs";
};

const PYTHON: &[File] = files! {
    "app.py" => "sdk/python/template/app.py";
    "test_app.py" => "sdk/python/template/test_app.py";
    "build" => "sdk/python/template/build", executable;
    "README.md" => "sdk/python/template/README.md";
    ".gitignore" => "sdk/python/template/.gitignore";
    "jobhost/__init__.py" => "sdk/python/jobhost/__init__.py";
    "jobhost/_host.py" => "sdk/python/jobhost/_host.py";
    "jobhost/testing.py" => "sdk/python/jobhost/testing.py";
};

const JS: &[File] = files! {
    "package.json" => "sdk/js/template/package.json";
    "package-lock.json" => "sdk/js/package-lock.json";
    "job.js" => "sdk/js/template/job.js";
    "job.test.js" => "sdk/js/template/job.test.js";
    "README.md" => "sdk/js/template/README.md";
    ".gitignore" => "sdk/js/template/.gitignore";
    "jobhost/index.js" => "sdk/js/src/index.js";
    "jobhost/index.d.ts" => "sdk/js/src/index.d.ts";
    "jobhost/context.d.ts" => "sdk/js/src/context.d.ts";
    "jobhost/testing.js" => "sdk/js/src/testing.js";
    "jobhost/testing.d.ts" => "sdk/js/src/testing.d.ts";
    "jobhost/mock-context.js" => "sdk/js/src/mock-context.js";
    "jobhost/hooks.js" => "sdk/js/src/hooks.js";
    "jobhost/register.js" => "sdk/js/src/register.js";
};

impl Lang {
    fn files(self) -> &'static [File] {
        match self {
            Lang::Rust => RUST,
            Lang::Python => PYTHON,
            Lang::Js => JS,
        }
    }

    /// What to type next, for the message after the project is written.
    fn next_steps(self) -> &'static str {
        match self {
            Lang::Rust => "./build && cargo test",
            Lang::Python => "./build && python3 -m unittest",
            Lang::Js => "npm ci && npm run build && npm test",
        }
    }
}

/// Writes a new project for plugin `name` (a qualified name) into `dir`,
/// which must not exist or be empty; returns the folder and what to run
/// next.
pub fn new_project(
    lang: Lang,
    name: &str,
    dir: Option<&Path>,
) -> anyhow::Result<(PathBuf, String)> {
    check_name(name)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if dir.read_dir().is_ok_and(|mut entries| entries.next().is_some()) {
        bail!("{} exists and is not empty: choose another folder with --dir", dir.display());
    }
    // A crate name may not start with a digit, as a qualified name may.
    let krate = match name.replace('.', "-") {
        krate if krate.starts_with(|c: char| c.is_ascii_digit()) => format!("plugin-{krate}"),
        krate => krate,
    };
    let values = [
        ("{{name}}", name.to_string()),
        ("{{crate_file}}", krate.replace('-', "_")),
        ("{{crate}}", krate),
    ];
    let wit = if lang == Lang::Rust { &WIT_V0_2 } else { &WIT };
    for (path, text, executable) in lang.files().iter().chain([wit]) {
        let text =
            values.iter().fold(text.to_string(), |text, (key, value)| text.replace(key, value));
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
        if *executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    let next = format!("cd {} && {}", dir.display(), lang.next_steps());
    Ok((dir, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_gets_its_names_and_refuses_a_full_folder() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("p");
        let (written, next) = new_project(Lang::Rust, "acme.reports.monthly", Some(&dir)).unwrap();
        assert_eq!(written, dir);
        assert!(next.ends_with("./build && cargo test"), "{next}");
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains(r#"name = "acme-reports-monthly""#), "{manifest}");
        let build = std::fs::read_to_string(dir.join("build")).unwrap();
        assert!(
            build.contains("release/acme_reports_monthly.wasm\" acme.reports.monthly.wasm"),
            "{build}"
        );
        assert!(!build.contains("{{"), "{build}");
        assert!(
            dir.join("wit/v0.2.0/job.wit").exists() && dir.join("sdk/rust/src/testing.rs").exists()
        );
        let again = new_project(Lang::Rust, "acme.reports.monthly", Some(&dir)).unwrap_err();
        assert!(again.to_string().contains("not empty"), "{again}");
    }

    #[test]
    fn a_name_starting_with_a_digit_still_makes_a_crate_name() {
        let temp = tempfile::tempdir().unwrap();
        new_project(Lang::Rust, "1acme.x", Some(temp.path())).unwrap();
        let manifest = std::fs::read_to_string(temp.path().join("Cargo.toml")).unwrap();
        assert!(manifest.contains(r#"name = "plugin-1acme-x""#), "{manifest}");
    }

    #[test]
    fn a_name_that_is_not_qualified_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let error = new_project(Lang::Python, "monthly", Some(temp.path())).unwrap_err();
        assert!(error.to_string().contains("two dot-separated segments"), "{error}");
    }
}
