//! Compiles every plugin crate in `plugins/` to a wasm32-wasip2 component and
//! writes `components.rs` with their paths, so tests, benches and the serve
//! script always run components built from the current sources.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Plugin crate (a folder of `plugins/`) and the qualified name it is served
/// under. The first part of the name is the folder its component lands in:
/// `examples` (what the README serves), `tests` (misbehaving guests),
/// `invalid` (components a host must refuse).
const PLUGINS: &[(&str, &str)] = &[
    ("hello", "examples.hello"),
    ("sleep", "examples.sleep"),
    ("fail", "examples.fail"),
    ("wordcount", "examples.wordcount"),
    ("spin", "tests.spin"),
    ("memhog", "tests.memhog"),
    ("echo", "tests.echo"),
    ("spawner", "tests.spawner"),
    ("legacy", "tests.legacy"),
    ("command", "invalid.command"),
];

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let plugins_dir = manifest_dir.parent().unwrap().to_path_buf();
    let workspace = plugins_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
    println!("cargo:rerun-if-changed={}", workspace.join("sdk").join("rust").display());
    for (krate, _) in PLUGINS {
        println!("cargo:rerun-if-changed={}", plugins_dir.join(krate).display());
    }

    let target_dir = out_dir.join("target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--release", "--target", TARGET])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-D warnings")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    for (krate, _) in PLUGINS {
        cmd.args(["-p", krate]);
    }
    let status = cmd.status().expect("failed to run cargo for the plugins");
    if !status.success() {
        if !target_installed() {
            panic!("the {TARGET} target is missing: run `rustup target add {TARGET}`");
        }
        panic!("building the plugins for {TARGET} failed (see the errors above)");
    }

    let components = out_dir.join("components");
    let mut code = String::from(
        "/// Every plugin: (qualified name, path of its component).\n\
         pub const ALL: &[(&str, &str)] = &[\n",
    );
    let mut consts = String::new();
    for (krate, name) in PLUGINS {
        let built = target_dir.join(TARGET).join("release").join(format!("{krate}.wasm"));
        let folder = components.join(name.split('.').next().unwrap());
        fs::create_dir_all(&folder).unwrap();
        let served = folder.join(format!("{name}.wasm"));
        copy_if_changed(&built, &served);
        code.push_str(&format!("    ({name:?}, {:?}),\n", served.display().to_string()));
        consts.push_str(&format!(
            "/// Path of the `{name}` component.\npub const {}: &str = {:?};\n",
            krate.to_uppercase(),
            served.display().to_string()
        ));
    }
    code.push_str("];\n");
    code.push_str(&consts);
    code.push_str(&format!(
        "/// The folder of the `examples.*` components, as `<qualified name>.wasm`:\n\
         /// what `jobhost serve` loads in the README's run command.\n\
         pub const EXAMPLES_DIR: &str = {:?};\n\
         /// The folder of the `tests.*` components (misbehaving guests).\n\
         pub const TESTS_DIR: &str = {:?};\n",
        components.join("examples").display().to_string(),
        components.join("tests").display().to_string()
    ));
    fs::write(out_dir.join("components.rs"), code).unwrap();
}

/// Copies only when the bytes differ, so an unchanged plugin keeps its mtime.
fn copy_if_changed(from: &Path, to: &Path) {
    let bytes = fs::read(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    if fs::read(to).ok().as_deref() != Some(&bytes[..]) {
        fs::write(to, bytes).unwrap();
    }
}

fn target_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == TARGET))
        .unwrap_or(true)
}
