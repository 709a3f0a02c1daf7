use jobhost::jobs::changes::Resubmit;
use jobhost::jobs::{
    FailureKind, JobRecord, JobState, NewJob, Outcome, RetryPolicy, RunReport, TenantDefaults,
    now_ms,
};
use jobhost::storage::{ClaimRules, Cursor, Finishing, JobFilter, OutputBatch, Start, Storage};
use jobhost_tests::storage::{Backend, open_in};
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

fn job(tenant: &str, queue: &str, plugin: &str, owner: &str, name: &str) -> NewJob {
    NewJob {
        tenant: tenant.into(),
        owner: owner.into(),
        job: plugin.into(),
        queue: queue.into(),
        args: "{}".into(),
        name: Some(name.into()),
        ..NewJob::default()
    }
}

fn claim(worker: &str, max: usize, now: u64) -> ClaimRules {
    ClaimRules { worker: worker.into(), max, now, lease_ms: 30_000 }
}

fn ending(worker: &str, outcome: Outcome, now: u64) -> Finishing {
    let report =
        RunReport { outcome, fuel_used: 1, duration: Duration::from_millis(3), memory_peak: 0 };
    let policy = RetryPolicy::default();
    let output = OutputBatch::default();
    Finishing { worker: worker.into(), attempt: 1, report, policy, now, random: 0, output }
}

/// A small deterministic random sequence, so a failure replays.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % sides as u64) as usize
    }
}

/// Every page of `filter` by cursor, `per_page` at a time.
async fn walk(storage: &dyn Storage, filter: &JobFilter, per_page: usize) -> Vec<Uuid> {
    let mut seen = Vec::new();
    let mut start = Start::Offset(0);
    loop {
        let page = storage.list(filter, start, per_page).await.unwrap();
        assert!(page.jobs.len() <= per_page);
        seen.extend(page.jobs.iter().map(|job| job.id));
        match page.next {
            Some(cursor) => start = Start::After(cursor),
            None => return seen,
        }
    }
}

/// What `filter` must list: the matching records, newest first.
fn expected(records: &[JobRecord], filter: &JobFilter) -> Vec<Uuid> {
    let mut matching: Vec<&JobRecord> = records.iter().filter(|job| filter.matches(job)).collect();
    matching.sort_by_key(|job| std::cmp::Reverse((job.created_at, job.id)));
    matching.iter().map(|job| job.id).collect()
}

/// Every stored record of `ids`.
async fn records(storage: &dyn Storage, ids: &[Uuid]) -> Vec<JobRecord> {
    storage.get_many(ids).await.unwrap().into_iter().flatten().collect()
}

/// The filters a dashboard or a client asks for, over the values used.
fn filters() -> Vec<JobFilter> {
    let mut filters = Vec::new();
    for tenant in [None, Some("acme"), Some("globex")] {
        for state in std::iter::once(None).chain(JobState::ALL.map(Some)) {
            let base =
                JobFilter { tenant: tenant.map(str::to_string), state, ..JobFilter::default() };
            filters.push(base.clone());
            for queue in ["fast", "slow"] {
                filters.push(JobFilter { queue: Some(queue.into()), ..base.clone() });
            }
            filters.push(JobFilter { job: Some("examples.hello".into()), ..base.clone() });
            filters.push(JobFilter { owner: Some("ada".into()), ..base.clone() });
            filters.push(JobFilter {
                queue: Some("slow".into()),
                owner: Some("bob".into()),
                ..base.clone()
            });
            filters.push(JobFilter { search: Some("NUMBER 1".into()), ..base.clone() });
        }
    }
    filters
}

/// Checks every filter's pages, totals and the queues' counts against the
/// records.
async fn check(storage: &dyn Storage, ids: &[Uuid], when: &str) {
    let all = records(storage, ids).await;
    for filter in filters() {
        let want = expected(&all, &filter);
        let first = storage.list(&filter, Start::Offset(0), 1000).await.unwrap();
        assert_eq!(first.total, want.len(), "{when}: total of {filter:?}");
        assert!(first.total_exact, "{when}: {filter:?}");
        let listed: Vec<Uuid> = first.jobs.iter().map(|job| job.id).collect();
        assert_eq!(listed, want, "{when}: the list of {filter:?}, newest first");
        assert_eq!(walk(storage, &filter, 7).await, want, "{when}: cursor pages of {filter:?}");
        let third = storage.list(&filter, Start::Offset(14), 7).await.unwrap();
        let ids: Vec<Uuid> = third.jobs.iter().map(|job| job.id).collect();
        assert_eq!(ids, want.iter().skip(14).take(7).copied().collect::<Vec<_>>(), "{when}");
    }
    let mut counted: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for job in &all {
        *counted.entry((job.queue.clone(), job.state.as_str())).or_default() += 1;
    }
    let stats = storage.queue_stats(None, now_ms(), 3_600_000, 600_000).await.unwrap();
    let mut reported = BTreeMap::new();
    for queue in &stats {
        for (state, count) in &queue.counts {
            reported.insert((queue.queue.clone(), *state), *count);
        }
    }
    assert_eq!(reported, counted, "{when}: queue counts by state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_counts_agree_with_the_records_through_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open_in(BACKEND, dir.path(), TenantDefaults::default()).await;
    let mut dice = Dice(7);
    let mut ids: Vec<Uuid> = Vec::new();
    let tenants = ["acme", "globex"];
    let (queues, plugins, owners) =
        (["fast", "slow"], ["examples.hello", "examples.echo"], ["ada", "bob"]);
    for round in 0..6 {
        let mut batch = Vec::new();
        for i in 0..30 {
            let new = job(
                tenants[dice.roll(2)],
                queues[dice.roll(2)],
                plugins[dice.roll(2)],
                owners[dice.roll(2)],
                &format!("number {round}{i}"),
            );
            batch.push(new);
        }
        for enqueued in storage.enqueue_many(batch, now_ms()).await.unwrap() {
            ids.push(enqueued.unwrap().job.id);
        }
        let later = NewJob {
            run_at: Some(now_ms() + 3_600_000),
            ..job("acme", "slow", plugins[0], "ada", "later")
        };
        ids.push(storage.enqueue(later, now_ms()).await.unwrap().job.id);
        let blocked = NewJob {
            flow: jobhost::jobs::flow::Flow {
                depends_on: vec![ids[ids.len() - 1]],
                ..Default::default()
            },
            ..job("acme", "fast", plugins[1], "bob", "waits")
        };
        ids.push(storage.enqueue(blocked, now_ms()).await.unwrap().job.id);
        let claimed = storage.claim(claim("w1", 20, now_ms())).await.unwrap();
        for (n, running) in claimed.iter().enumerate() {
            let outcome = match n % 3 {
                0 => Outcome::Completed { result: n.to_string() },
                1 => Outcome::Failed { kind: FailureKind::Trap, message: "no".into() },
                _ => continue,
            };
            storage.finish(running.id, ending("w1", outcome, now_ms())).await.unwrap();
        }
        let all = records(&*storage, &ids).await;
        let pending: Vec<&JobRecord> =
            all.iter().filter(|job| job.state == JobState::Pending).collect();
        for job in pending.iter().take(3) {
            storage.cancel(job.id, now_ms()).await.unwrap();
        }
        let finished: Vec<&JobRecord> = all.iter().filter(|job| job.state.is_terminal()).collect();
        let removed = finished.first().map(|job| job.id);
        if let Some(id) = removed {
            storage.remove(id).await.unwrap();
        }
        if let Some(job) = finished.iter().skip(1).find(|job| job.retried_by.is_none()) {
            ids.push(storage.retry(job.id, Resubmit::default(), now_ms()).await.unwrap().id);
        }
        if let Some(job) = all.iter().rev().find(|job| Some(job.id) != removed) {
            ids.push(storage.clone_job(job.id, Resubmit::default(), now_ms()).await.unwrap().id);
        }
        let late = NewJob {
            expires_at: Some(now_ms() + 1_000),
            ..job("globex", "slow", plugins[0], "bob", "late")
        };
        ids.push(storage.enqueue(late, now_ms()).await.unwrap().job.id);
        assert!(storage.expire(now_ms() + 2_000).await.unwrap() >= 1);
        check(&*storage, &ids, &format!("round {round}")).await;
    }
    let pruned = storage.prune(now_ms() + 1, 5).await.unwrap();
    assert_eq!(pruned, 5, "five finished jobs to prune");
    check(&*storage, &ids, "after pruning").await;
    drop(storage);
    storage = open_in(BACKEND, dir.path(), TenantDefaults::default()).await;
    check(&*storage, &ids, "after a restart").await;
}

#[tokio::test]
async fn cursor_pages_stay_put_while_new_jobs_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_in(BACKEND, dir.path(), TenantDefaults::default()).await;
    let acme = JobFilter { tenant: Some("acme".into()), ..JobFilter::default() };
    let mut ids = Vec::new();
    for i in 0..12 {
        let new = job("acme", "fast", "examples.hello", "ada", &format!("j{i}"));
        ids.push(storage.enqueue(new, now_ms()).await.unwrap().job.id);
    }
    let first = storage.list(&acme, Start::Offset(0), 5).await.unwrap();
    let next = first.next.expect("more than a page");
    assert_eq!(next, Cursor::after(&first.jobs[4]));
    for i in 0..3 {
        let new = job("acme", "fast", "examples.hello", "ada", &format!("new {i}"));
        storage.enqueue(new, now_ms()).await.unwrap();
    }
    let second = storage.list(&acme, Start::After(next), 5).await.unwrap();
    let seen: Vec<Uuid> = second.jobs.iter().map(|job| job.id).collect();
    let want: Vec<Uuid> = ids.iter().rev().skip(5).take(5).copied().collect();
    assert_eq!(seen, want, "the page after the cursor is where the first left off");
    assert_eq!(second.total, 15, "the total counts every job, the new ones too");
    let last = storage.list(&acme, Start::After(second.next.unwrap()), 5).await.unwrap();
    assert_eq!(last.jobs.len(), 2);
    assert_eq!(last.next, None, "the last page says so");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_over_many_jobs_stays_bounded_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let roomy = TenantDefaults { max_queued: 1_000_000, ..TenantDefaults::default() };
    let storage = open_in(BACKEND, dir.path(), roomy).await;
    for chunk in 0..11 {
        let size = if chunk < 10 { 10_000 } else { 50 };
        let jobs: Vec<NewJob> = (0..size)
            .map(|i| {
                let name = format!("report {}", chunk * 10_000 + i);
                job("acme", "fast", "examples.hello", "ada", &name)
            })
            .collect();
        for enqueued in storage.enqueue_many(jobs, now_ms()).await.unwrap() {
            enqueued.unwrap();
        }
    }
    let search = JobFilter {
        tenant: Some("acme".into()),
        search: Some("REPORT".into()),
        ..JobFilter::default()
    };
    let page = storage.list(&search, Start::Offset(0), 20).await.unwrap();
    assert_eq!(page.jobs.len(), 20);
    assert!(!page.total_exact, "a search over 100,050 jobs does not read them all to count");
    assert!((10_000..100_050).contains(&page.total), "a lower bound: {}", page.total);
    assert!(page.next.is_some());

    // Only the oldest job matches: the first request stops reading before
    // it and says where to go on; the next finds it.
    let oldest = JobFilter { search: Some("report 0".into()), ..search.clone() };
    let first = storage.list(&oldest, Start::Offset(0), 20).await.unwrap();
    assert_eq!((first.jobs.len(), first.total_exact), (0, false), "stopped after a bounded read");
    let rest = storage.list(&oldest, Start::After(first.next.unwrap()), 20).await.unwrap();
    let names: Vec<_> = rest.jobs.iter().map(|job| job.name.clone().unwrap()).collect();
    assert_eq!(names, ["report 0"]);
    assert_eq!(rest.next, None, "nothing after the oldest");

    let counted = JobFilter { search: None, ..search };
    let all = storage.list(&counted, Start::Offset(0), 20).await.unwrap();
    assert_eq!((all.total, all.total_exact), (100_050, true), "counts come from tallies");
}

#[tokio::test]
async fn retention_prunes_the_oldest_finished_jobs_first() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_in(BACKEND, dir.path(), TenantDefaults::default()).await;
    let base = now_ms();
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = storage
            .enqueue(job("acme", "fast", "examples.hello", "ada", &format!("j{i}")), base)
            .await
            .unwrap()
            .job
            .id;
        ids.push(id);
    }
    for (i, id) in ids.iter().enumerate().rev() {
        storage.cancel(*id, base + 10 * i as u64).await.unwrap();
    }
    assert_eq!(storage.prune(base + 25, 1).await.unwrap(), 1, "at most max");
    assert_eq!(storage.prune(base + 25, 10).await.unwrap(), 2);
    let left = storage.get_many(&ids).await.unwrap();
    let kept: Vec<bool> = left.iter().map(Option::is_some).collect();
    assert_eq!(kept, [false, false, false, true], "those finished before the cutoff went");
    let acme = JobFilter { tenant: Some("acme".into()), ..JobFilter::default() };
    assert_eq!(storage.list(&acme, Start::Offset(0), 10).await.unwrap().total, 1);
}
