//! `tests.legacy`: a plugin built against `jobhost:plugin@0.1.0`
//! (`wit/job.wit`) without the SDK, which now targets 0.2.0: it shows that
//! a plugin of the first released interface still runs. It logs, reports
//! progress and returns its args with its job id.

/// The 0.1.0 bindings and their export glue, which is unsafe code.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit/job.wit", world: "job" });

    use super::Legacy;
    export!(Legacy);
}

use bindings::jobhost::plugin::context;

struct Legacy;

impl bindings::Guest for Legacy {
    fn run(args: String) -> Result<String, String> {
        context::log(context::Level::Info, "built against 0.1.0");
        context::progress(100.0, Some("done"));
        Ok(format!(r#"{{"args":{args},"job_id":"{}","interface":"0.1.0"}}"#, context::job_id()))
    }
}
