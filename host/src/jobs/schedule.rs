//! Recurring schedules: a cron expression in a time zone that enqueues a
//! job with given args and options at each of its times. Which times fire
//! and what a run missed while no host was up becomes is decided here
//! ([`plan_firing`]); storage writes each firing with a compare-and-set on
//! the schedule's next time, so two hosts never fire the same run, and the
//! job carries the run's idempotency key as a second guard.

use super::Millis;
use super::enqueue::{JobRequest, Refusal, check_labels};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::ToSchema;
use uuid::Uuid;

/// Most schedules of one tenant.
pub const MAX_SCHEDULES: usize = 1_000;
/// Runs one schedule fires in one round at most, so a host that was stalled
/// catches up a few at a time instead of flooding its queue.
pub const MAX_RUNS_PER_ROUND: usize = 10;
/// Upcoming times shown with a schedule.
const SHOWN: usize = 5;

/// What a run whose time passed while no host was running becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Every run missed while down becomes one job, fired at start (the
    /// default: a nightly report still runs once after an outage).
    #[default]
    RunOnce,
    /// Runs missed while down are skipped (and counted).
    Skip,
}

/// The body of `POST /v1/schedules`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// A label for people.
    pub name: Option<String>,
    /// Cron: `minute hour day-of-month month day-of-week`, with an optional
    /// seconds field first (`*/5 * * * * *`: every five seconds).
    pub cron: String,
    /// IANA time zone the cron is read in (default `UTC`).
    #[serde(default = "utc")]
    pub timezone: String,
    /// The job each run enqueues, as `POST /v1/jobs` takes it (without an
    /// idempotency key: each run gets its own).
    #[schema(value_type = Object)]
    pub job: JobRequest,
    /// `run_once` (default) or `skip`.
    #[serde(default)]
    pub missed: Missed,
    /// Created paused.
    #[serde(default)]
    pub paused: bool,
}

fn utc() -> String {
    "UTC".into()
}

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleRecord {
    /// UUID v7.
    pub id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Who created it; its jobs are enqueued as this owner.
    pub owner: String,
    /// Label.
    pub name: Option<String>,
    /// The cron expression.
    pub cron: String,
    /// Its time zone.
    pub timezone: String,
    /// The job each run enqueues.
    #[schema(value_type = Object)]
    pub job: JobRequest,
    /// What a run missed while down becomes.
    pub missed: Missed,
    /// A paused schedule fires nothing; resuming starts from the next time.
    pub paused: bool,
    /// Creation time.
    pub created_at: Millis,
    /// The next run's time (ms); `None` when the cron has no future time.
    pub next_run_at: Option<Millis>,
    /// The latest run fired.
    pub last_run_at: Option<Millis>,
    /// The job it enqueued.
    pub last_job: Option<Uuid>,
    /// Runs fired.
    pub runs: u64,
    /// Runs skipped (missed while down, with `missed: skip`).
    pub skipped: u64,
    /// Why the latest run enqueued nothing (the plugin was removed, the
    /// tenant's queue is full); cleared by the next run that enqueues.
    pub last_error: Option<String>,
}

/// A cron expression read in a time zone.
#[derive(Debug, Clone)]
pub struct When {
    cron: Cron,
    zone: Tz,
}

impl When {
    /// Parses `cron` and `timezone`; the refusal names what is wrong.
    pub fn parse(cron: &str, timezone: &str) -> Result<When, Refusal> {
        let parsed = Cron::from_str(cron)
            .map_err(|e| Refusal::Invalid(format!("cron {cron:?} is not valid: {e}")))?;
        let zone = Tz::from_str(timezone).map_err(|_| {
            Refusal::Invalid(format!(
                "timezone {timezone:?} is not an IANA time zone (such as \"Europe/Berlin\" or \"UTC\")"
            ))
        })?;
        Ok(When { cron: parsed, zone })
    }

    /// The first time strictly after `after`, if any: always a whole
    /// second, the finest a cron names.
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        let second = (after / 1_000 * 1_000) as i64;
        let start = Utc.timestamp_millis_opt(second).single()?.with_timezone(&self.zone);
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// Up to five upcoming times from `from` (inclusive of `from` itself
    /// when it is one), as RFC 3339 in the schedule's zone.
    pub fn upcoming(&self, from: Option<Millis>) -> Vec<String> {
        let mut times = Vec::new();
        let mut next = from;
        while let Some(at) = next.filter(|_| times.len() < SHOWN) {
            if let Some(local) = Utc.timestamp_millis_opt(at as i64).single() {
                times.push(local.with_timezone(&self.zone).to_rfc3339());
            }
            next = self.next_after(at);
        }
        times
    }
}

/// A checked schedule request as a record created at `now`, its first run
/// the first cron time after `now`.
pub fn admit(
    request: ScheduleRequest,
    id: Uuid,
    tenant: &str,
    owner: &str,
    now: Millis,
) -> Result<ScheduleRecord, Refusal> {
    check_labels(request.name.as_deref(), None, &[], &Default::default())?;
    if request.job.idempotency_key.is_some() {
        return Err(Refusal::Invalid(
            "a schedule's job takes no idempotency_key: each run gets its own".into(),
        ));
    }
    let when = When::parse(&request.cron, &request.timezone)?;
    let next_run_at = when.next_after(now);
    if next_run_at.is_none() {
        return Err(Refusal::Invalid(format!("cron {:?} has no time after now", request.cron)));
    }
    Ok(ScheduleRecord {
        id,
        tenant: tenant.to_string(),
        owner: owner.to_string(),
        name: request.name,
        cron: request.cron,
        timezone: request.timezone,
        job: request.job,
        missed: request.missed,
        paused: request.paused,
        created_at: now,
        next_run_at,
        last_run_at: None,
        last_job: None,
        runs: 0,
        skipped: 0,
        last_error: None,
    })
}

/// One round's decision for a due schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// The run times to enqueue a job for, oldest first (each job's
    /// idempotency key names its time).
    pub runs: Vec<Millis>,
    /// Runs missed while down that are skipped.
    pub skipped: u64,
    /// The schedule's next time after this round.
    pub next_run_at: Option<Millis>,
}

/// What to fire for `schedule` at `now`, on a host up since `up_since`:
/// each run due while a host was up fires (at most
/// [`MAX_RUNS_PER_ROUND`] per round); the runs that fell due before
/// `up_since` were missed while down and become one run (the first of
/// them) or none, as the schedule says.
pub fn plan_firing(
    schedule: &ScheduleRecord,
    when: &When,
    now: Millis,
    up_since: Millis,
) -> Firing {
    let mut runs = Vec::new();
    let mut skipped = 0;
    let mut next = schedule.next_run_at;
    while let Some(at) = next.filter(|&at| at <= now) {
        if at < up_since {
            let (count, after) = missed_runs(when, at, up_since);
            match schedule.missed {
                Missed::RunOnce => runs.push(at),
                Missed::Skip => skipped += count,
            }
            next = after;
            continue;
        }
        if runs.len() >= MAX_RUNS_PER_ROUND {
            break;
        }
        runs.push(at);
        next = when.next_after(at);
    }
    Firing { runs, skipped, next_run_at: next }
}

/// How many runs from `first` fell before `up_since`, and the first time
/// after them. Past [`MAX_COUNTED`] the rest are jumped in one step (and
/// not counted): a month-long outage of a per-second schedule is not
/// walked second by second.
fn missed_runs(when: &When, first: Millis, up_since: Millis) -> (u64, Option<Millis>) {
    let mut count = 0;
    let mut next = Some(first);
    while let Some(at) = next.filter(|&at| at < up_since) {
        if count >= MAX_COUNTED {
            return (count, when.next_after(up_since.saturating_sub(1)));
        }
        count += 1;
        next = when.next_after(at);
    }
    (count, next)
}

/// Missed runs counted one by one at most.
const MAX_COUNTED: u64 = 10_000;

/// The idempotency key of the run of `schedule` at `at`.
pub fn run_key(schedule: Uuid, at: Millis) -> String {
    format!("schedule:{schedule}:{at}")
}

/// `at` as RFC 3339 in UTC, for messages.
pub fn utc_time(at: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(at as i64).map(|t| t.to_rfc3339()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Millis = 1_000;

    fn every_second(missed: Missed, next: Millis) -> (ScheduleRecord, When) {
        let request: ScheduleRequest = serde_json::from_value(serde_json::json!({
            "cron": "* * * * * *", "job": {"job": "a.b"}, "missed": missed,
        }))
        .unwrap();
        let mut record = admit(request, Uuid::now_v7(), "acme", "ada", 0).unwrap();
        record.next_run_at = Some(next);
        let when = When::parse(&record.cron, &record.timezone).unwrap();
        (record, when)
    }

    #[test]
    fn runs_due_while_up_each_fire_once_and_the_next_time_moves_on() {
        let (schedule, when) = every_second(Missed::RunOnce, 10 * SECOND);
        let firing = plan_firing(&schedule, &when, 12 * SECOND + 500, 0);
        assert_eq!(firing.runs, [10 * SECOND, 11 * SECOND, 12 * SECOND]);
        assert_eq!(firing.next_run_at, Some(13 * SECOND));
        let nothing = plan_firing(&schedule, &when, 9 * SECOND, 0);
        assert!(nothing.runs.is_empty());
        assert_eq!(nothing.next_run_at, Some(10 * SECOND));
    }

    #[test]
    fn runs_missed_while_down_fire_once_or_are_skipped() {
        let up = 20 * SECOND + 300;
        let (once, when) = every_second(Missed::RunOnce, 10 * SECOND);
        let firing = plan_firing(&once, &when, up + 800, up);
        assert_eq!(firing.runs, [10 * SECOND, 21 * SECOND], "one for the outage, then on time");
        let (skip, when) = every_second(Missed::Skip, 10 * SECOND);
        let firing = plan_firing(&skip, &when, up + 800, up);
        assert_eq!((firing.runs, firing.skipped), (vec![21 * SECOND], 11));
        assert_eq!(firing.next_run_at, Some(22 * SECOND));
    }

    #[test]
    fn a_cron_is_read_in_its_time_zone_and_bad_ones_are_refused() {
        let berlin = When::parse("0 9 * * *", "Europe/Berlin").unwrap();
        let december = 1_796_169_600_000; // 2026-12-02T00:00:00Z
        let next = berlin.next_after(december).unwrap();
        assert_eq!(utc_time(next), "2026-12-02T08:00:00+00:00");
        assert!(berlin.upcoming(Some(next))[1].ends_with("T09:00:00+01:00"));
        assert!(When::parse("61 * * * *", "UTC").unwrap_err().to_string().contains("not valid"));
        assert!(When::parse("* * * * *", "Mars/Olympus").unwrap_err().to_string().contains("IANA"));
    }
}
