//! What a job list asks for and gets: the filter, where a page starts (a
//! page number's offset, or a cursor for keyset pagination), and the page
//! with its total. The order is newest first: creation time, then id,
//! both descending, so a cursor is the (time, id) of the last job seen and
//! the next page costs the same however deep it is.

use crate::jobs::{JobRecord, JobState, Millis};
use std::fmt;
use uuid::Uuid;

/// What a job list is filtered by; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    /// Only this tenant's jobs.
    pub tenant: Option<String>,
    /// Only jobs enqueued by this owner.
    pub owner: Option<String>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this plugin.
    pub job: Option<String>,
    /// Only jobs created at or after this time.
    pub since: Option<Millis>,
    /// Case-insensitive text in the name, description, plugin or tags.
    pub search: Option<String>,
    /// Only clones of this job.
    pub cloned_from: Option<Uuid>,
    /// Only jobs this schedule enqueued.
    pub schedule: Option<Uuid>,
}

impl JobFilter {
    /// Whether `job` is one the filter asks for.
    pub fn matches(&self, job: &JobRecord) -> bool {
        let eq =
            |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
        eq(&self.tenant, &job.tenant)
            && eq(&self.owner, &job.owner)
            && eq(&self.queue, &job.queue)
            && eq(&self.job, &job.job)
            && self.state.is_none_or(|state| state == job.state)
            && self.since.is_none_or(|since| job.created_at >= since)
            && self.cloned_from.is_none_or(|original| job.cloned_from == Some(original))
            && self.schedule.is_none_or(|schedule| job.flow.schedule == Some(schedule))
            && self.search.as_deref().is_none_or(|text| {
                let text = text.to_lowercase();
                let has = |s: &str| s.to_lowercase().contains(&text);
                has(&job.job)
                    || job.name.as_deref().is_some_and(has)
                    || job.description.as_deref().is_some_and(has)
                    || job.tags.iter().any(|t| has(t))
            })
    }
}

/// One page of a list, with the total that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// The jobs of this page, newest first.
    pub jobs: Vec<JobRecord>,
    /// How many jobs matched the filter in all; a lower bound when
    /// `total_exact` is false.
    pub total: usize,
    /// False when counting every match would have meant reading more than
    /// a bounded number of jobs (a text search over many): `total` is then
    /// what was counted.
    pub total_exact: bool,
    /// Where the next page starts, when more jobs may match. A search that
    /// stopped reading returns a short page and a cursor at the last job it
    /// read.
    pub next: Option<Cursor>,
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After skipping this many matches (page numbers).
    Offset(usize),
    /// After this position (keyset pagination).
    After(Cursor),
}

/// A position in the newest-first order of a list: the creation time and
/// id of the last job a page held. Clients see it as an opaque string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// When that job was created.
    pub created_at: Millis,
    /// Its id.
    pub id: Uuid,
}

impl Cursor {
    /// The cursor after `job`.
    pub fn after(job: &JobRecord) -> Self {
        Self { created_at: job.created_at, id: job.id }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:032x}", self.created_at, self.id.as_u128())
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let refused = || format!("cursor {text:?} is not one this server gave: use next_cursor");
        if text.len() != 48 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(refused());
        }
        let created_at = u64::from_str_radix(&text[..16], 16).map_err(|_| refused())?;
        let id = u128::from_str_radix(&text[16..], 16).map_err(|_| refused())?;
        Ok(Self { created_at, id: Uuid::from_u128(id) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_anything_else_is_refused() {
        let cursor = Cursor { created_at: 1_700_000_000_123, id: Uuid::now_v7() };
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
        for bad in ["", "2", &format!("{cursor}0"), &cursor.to_string().replace('0', "g")] {
            assert!(bad.parse::<Cursor>().unwrap_err().contains("next_cursor"), "{bad}");
        }
    }
}
