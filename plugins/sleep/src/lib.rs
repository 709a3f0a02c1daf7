//! `examples.sleep`, the dummy job: runs for `args.seconds`, reporting
//! progress and logging every step, and stops early when cancelled
//! (unless `args.ignore_cancel`, which tests the host's hard stop).
use jobhost_sdk::{Error, Result, attempt, export_job, info, is_cancelled, job_id, progress};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Deserialize)]
struct Args {
    seconds: f64,
    /// Steps to report; defaults to one per 100 ms, at least one.
    steps: Option<u32>,
    /// Never look at the cancel flag, to test the host's hard stop.
    #[serde(default)]
    ignore_cancel: bool,
}

#[derive(Serialize)]
struct Slept {
    slept_ms: u128,
    steps: u32,
    job_id: String,
    attempt: u32,
}

fn sleep(args: Args) -> Result<Slept> {
    if !(0.0..=86_400.0).contains(&args.seconds) {
        return Err(Error::msg("seconds must be between 0 and 86400"));
    }
    let total = Duration::from_secs_f64(args.seconds);
    let steps = args.steps.unwrap_or((args.seconds * 10.0).ceil() as u32).max(1);
    let started = Instant::now();
    for step in 1..=steps {
        if !args.ignore_cancel && is_cancelled() {
            info(format!("cancelled at step {step} of {steps}"));
            return Err(Error::msg("cancelled"));
        }
        std::thread::sleep(total / steps);
        let percent = step as f32 * 100.0 / steps as f32;
        info(format!("step {step} of {steps}"));
        progress(percent, Some(&format!("step {step} of {steps}")));
    }
    Ok(Slept {
        slept_ms: started.elapsed().as_millis(),
        steps,
        job_id: job_id(),
        attempt: attempt(),
    })
}

export_job!(sleep);

#[cfg(test)]
mod tests {
    use jobhost_sdk::{Level, testing::MockContext};

    #[test]
    fn stops_early_when_cancelled() {
        let args = r#"{"seconds": 0.01, "steps": 10}"#;
        let ran = MockContext::new().cancel_after(3).run(super::sleep, args);
        assert_eq!(ran.result, Err("cancelled".to_string()));
        assert_eq!(ran.progress.len(), 3);
        assert_eq!(ran.log.last().unwrap(), &(Level::Info, "cancelled at step 4 of 10".into()));
    }

    #[test]
    fn reports_its_job_id_and_attempt() {
        let ran =
            MockContext::new().job_id("j-1").attempt(2).run(super::sleep, r#"{"seconds": 0}"#);
        let result = ran.result.unwrap();
        assert_eq!((result["job_id"].as_str(), result["attempt"].as_u64()), (Some("j-1"), Some(2)));
    }
}
