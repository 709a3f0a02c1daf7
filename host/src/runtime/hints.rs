//! The fix for a component that does not fit the `job` world, when its
//! imports and exports show a mistake authors are known to make. Uploads
//! and `jobhost plugin check` give the same hint.

/// The versions of the interface this host implements.
const CONTEXTS: [&str; 2] = ["jobhost:plugin/context@0.1.0", "jobhost:plugin/context@0.2.0"];

/// What to change, judged from the component's interface names.
pub(crate) fn for_interfaces(imports: &[String], exports: &[String]) -> Option<&'static str> {
    let exports_run = exports.iter().any(|name| name == "run");
    if !exports_run && exports.iter().any(|name| name.starts_with("wasi:cli/run@")) {
        return Some(
            "this is a WASI command (a program with main, such as a `cargo new` binary): \
             build a library instead, with crate-type = [\"cdylib\"] and export_job!, or use \
             the Python or JavaScript SDK",
        );
    }
    if imports.iter().any(|name| name.starts_with("wasi:http/")) {
        return Some(
            "it imports wasi:http, which a job may not use; a JavaScript build does unless \
             told not to: build with `jco componentize ... -d http -d fetch-event` \
             (sdk/js/build does)",
        );
    }
    if imports
        .iter()
        .any(|name| name.starts_with("jobhost:plugin/") && !CONTEXTS.contains(&name.as_str()))
    {
        return Some(
            "it was built against another version of the jobhost:plugin interface; \
             this host implements jobhost:plugin@0.1.0 (wit/job.wit) and 0.2.0 \
             (wit/v0.2.0/job.wit)",
        );
    }
    if !exports_run {
        return Some(
            "it exports no `run` function: export the job with the SDK (export_job! in Rust, \
             @job in Python, job() in JavaScript)",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::for_interfaces;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_the_known_mistakes() {
        let hint = |imports: &[&str], exports: &[&str]| {
            for_interfaces(&names(imports), &names(exports)).unwrap_or("")
        };
        assert!(hint(&[], &["wasi:cli/run@0.2.6"]).contains("WASI command"));
        assert!(hint(&["wasi:http/types@0.2.3"], &["run"]).contains("-d http -d fetch-event"));
        assert!(hint(&["jobhost:plugin/context@0.3.0"], &["run"]).contains("another version"));
        assert!(hint(&["jobhost:plugin/context@0.1.0"], &["go"]).contains("no `run`"));
        for served in ["0.1.0", "0.2.0"] {
            assert_eq!(hint(&[&format!("jobhost:plugin/context@{served}")], &["run"]), "");
        }
    }
}
