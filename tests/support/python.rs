//! Python tools the tests drive (a client generator, an API fuzzer): each
//! in its own virtual environment under `~/.cache/jobhost`, installed
//! once from PyPI at a pinned version and reused by later runs.

use std::path::PathBuf;
use std::process::Command;

/// The environment `name` with `requirement` installed, once `program`
/// is in its `bin/`.
pub fn venv(name: &str, requirement: &str, program: &str) -> PathBuf {
    let home = std::env::var("HOME").expect("HOME is set");
    let venv = std::path::Path::new(&home).join(".cache/jobhost").join(name);
    if !venv.join("bin").join(program).exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        let pip = venv.join("bin/pip");
        run(Command::new(pip).args(["install", "--quiet", requirement]));
    }
    venv
}

/// Runs `command` to the end; panics with its output if it fails.
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}
