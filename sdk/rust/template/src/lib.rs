//! `{{name}}`: greets `args.name`, reporting progress on the way.
use jobhost_sdk::{Result, export_job, info, progress};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Args {
    name: String,
}

#[derive(Serialize)]
struct Greeting {
    greeting: String,
}

fn greet(args: Args) -> Result<Greeting> {
    info(format!("greeting {}", args.name));
    progress(100.0, Some("done"));
    Ok(Greeting { greeting: format!("Hello, {}!", args.name) })
}

export_job!(greet);

#[cfg(test)]
mod tests {
    use jobhost_sdk::testing;
    use serde_json::json;

    #[test]
    fn greets_by_name() {
        let ran = testing::run(super::greet, r#"{"name": "Ada"}"#);
        assert_eq!(ran.result, Ok(json!({"greeting": "Hello, Ada!"})));
        assert_eq!(ran.log[0].1, "greeting Ada");
    }
}
