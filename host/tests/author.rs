//! The plugin author's first hour, with the real binary: `jobhost plugin
//! new` in each language, the project's own build and unit tests, `jobhost
//! plugin check` on good and mistaken components, and `jobhost run` of the
//! new plugin (its result printed as JSON), next to a broken file that is
//! reported and skipped.

use std::path::Path;
use std::process::{Command, Output};

fn jobhost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobhost")).args(args).output().expect("running jobhost")
}

/// Runs a project's command in `dir`; panics with its output if it fails.
fn step(dir: &Path, program: &str, args: &[&str]) {
    let home = std::env::var("HOME").expect("HOME is set");
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        // The project's own target folder, kept between runs, never the one
        // of the cargo running this test.
        .env("CARGO_TARGET_DIR", Path::new(&home).join(".cache/jobhost/scaffold-target"))
        // What pip and npm download is kept for later runs too.
        .env("PIP_CACHE_DIR", Path::new(&home).join(".cache/jobhost/pip"))
        .env("npm_config_cache", Path::new(&home).join(".cache/jobhost/npm"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed in {}:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_new_project_in_each_language_builds_tests_and_runs_a_job() {
    let temp = tempfile::tempdir().unwrap();
    for lang in ["rust", "python", "js"] {
        let name = format!("acme.hello-{lang}");
        let dir = temp.path().join(lang);
        let made =
            jobhost(&["plugin", "new", "--lang", lang, &name, "--dir", dir.to_str().unwrap()]);
        assert!(made.status.success(), "{}", text(&made));
        assert!(text(&made).contains("next: "), "{}", text(&made));
        match lang {
            "rust" => {
                step(&dir, "./build", &[]);
                step(&dir, "cargo", &["test", "--quiet"]);
            }
            "python" => {
                step(&dir, "./build", &[]);
                step(&dir, "python3", &["-m", "unittest", "--quiet"]);
            }
            _ => {
                step(&dir, "npm", &["ci", "--no-audit", "--no-fund", "--quiet"]);
                step(&dir, "npm", &["run", "build", "--quiet"]);
                step(&dir, "npm", &["test", "--quiet"]);
            }
        }
        let component = dir.join(format!("{name}.wasm"));
        let checked = jobhost(&["plugin", "check", component.to_str().unwrap()]);
        assert!(checked.status.success(), "{lang}: {}", text(&checked));
        let version = if lang == "rust" { "0.2.0" } else { "0.1.0" };
        let interface = format!("jobhost:plugin/context@{version}");
        assert!(text(&checked).contains(&interface), "{}", text(&checked));

        let data = temp.path().join(format!("data-{lang}"));
        let ran = jobhost(
            &["run", &name, r#"{"name":"Ada"}"#, "--plugins", dir.to_str().unwrap()]
                .into_iter()
                .chain(["--data", data.to_str().unwrap()])
                .collect::<Vec<_>>(),
        );
        assert!(ran.status.success(), "{lang}: {}", text(&ran));
        let report: serde_json::Value = serde_json::from_slice(&ran.stdout).unwrap();
        let result = &report["outcome"]["result"];
        assert!(result.is_object(), "the result prints as JSON, not a string: {report}");
        assert!(result.to_string().contains("Hello, Ada!"), "{lang}: {report}");
    }
}

#[test]
fn check_says_what_fits_and_how_to_fix_what_does_not() {
    let fits = jobhost(&["plugin", "check", jobhost_plugin_artifacts::HELLO]);
    assert!(fits.status.success(), "{}", text(&fits));
    for line in ["imports:", "jobhost:plugin/context@0.2.0", "exports:", "  run", "fits"] {
        assert!(text(&fits).contains(line), "{line:?} missing:\n{}", text(&fits));
    }

    let command = jobhost(&["plugin", "check", jobhost_plugin_artifacts::COMMAND]);
    assert_eq!(command.status.code(), Some(1), "{}", text(&command));
    assert!(text(&command).contains("wasi:cli/run"), "{}", text(&command));
    assert!(text(&command).contains("this is a WASI command"), "{}", text(&command));

    let temp = tempfile::tempdir().unwrap();
    let core = temp.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let refused = jobhost(&["plugin", "check", core.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("core WebAssembly module"), "{}", text(&refused));
    assert!(text(&refused).contains("wasm32-wasip2"), "{}", text(&refused));
}

#[test]
fn run_reports_a_broken_file_and_goes_on_with_the_others() {
    let temp = tempfile::tempdir().unwrap();
    let plugins = temp.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(jobhost_plugin_artifacts::HELLO, plugins.join("examples.hello.wasm")).unwrap();
    std::fs::write(plugins.join("acme.broken.wasm"), b"not wasm").unwrap();
    let data = temp.path().join("data");
    let ran = jobhost(&[
        "run",
        "examples.hello",
        r#"{"name":"Ada"}"#,
        "--plugins",
        plugins.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(ran.status.success(), "{}", text(&ran));
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(stderr.contains("skipped") && stderr.contains("acme.broken.wasm"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&ran.stdout).unwrap();
    assert_eq!(report["outcome"]["result"], serde_json::json!({"greeting": "Hello, Ada!"}));
}
