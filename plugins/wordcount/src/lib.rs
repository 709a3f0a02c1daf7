//! `examples.wordcount`: counts the words of `args.text` (case-folded,
//! letters and digits only) and returns the `args.top` most frequent.
//! Prints a summary (stdout lands in the job log) and records metadata.
use jobhost_sdk::{Result, export_job, progress, set_metadata};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Deserialize)]
struct Args {
    text: String,
    #[serde(default = "default_top")]
    top: usize,
}

fn default_top() -> usize {
    10
}

#[derive(Serialize)]
struct Counts {
    total_words: usize,
    distinct_words: usize,
    top: Vec<(String, usize)>,
}

fn wordcount(args: Args) -> Result<Counts> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut total_words = 0;
    for word in args.text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        *counts.entry(word.to_lowercase()).or_default() += 1;
        total_words += 1;
    }
    let distinct_words = counts.len();
    let mut top: Vec<(String, usize)> = counts.into_iter().collect();
    top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(args.top);
    println!("{total_words} words, {distinct_words} distinct");
    set_metadata("distinct_words", &distinct_words)?;
    progress(100.0, None);
    Ok(Counts { total_words, distinct_words, top })
}

export_job!(wordcount);

#[cfg(test)]
mod tests {
    use jobhost_sdk::testing;
    use serde_json::json;

    #[test]
    fn counts_words_and_reports_them() {
        let ran = testing::run(super::wordcount, r#"{"text": "The cat, the hat.", "top": 1}"#);
        let expected = json!({"total_words": 4, "distinct_words": 3, "top": [["the", 2]]});
        assert_eq!(ran.result, Ok(expected));
        assert_eq!(ran.metadata, [("distinct_words".to_string(), json!(3))]);
        assert_eq!(ran.progress, [(100.0, None)]);
    }

    #[test]
    fn args_without_text_are_refused_by_name() {
        let ran = testing::run(super::wordcount, r#"{"top": 1}"#);
        assert!(ran.result.unwrap_err().contains("missing field `text`"));
    }
}
