//! The group-commit writer: one thread owns redb's single write transaction
//! and applies every queued write in it, then commits once. Under load many
//! state changes share one fsync; no caller hears back before the commit that
//! holds its change is durable.
//!
//! A write may also wait ([`Writer::write_when`]): it is tried at the end of
//! every batch until it finds something to do or its time is up. A claim
//! waits this way, so a job enqueued while a dispatcher waits is claimed in
//! the enqueue's own commit: one fsync from enqueue to start, not two.
//!
//! A write no one waits on at once may be deferred ([`Writer::write_deferred`]):
//! it rides with the next batch, or is committed alone after [`LINGER`]. A
//! finish is, so at a steady thousand jobs a second one fsync carries a
//! job's enqueue and start and the finish of the job before it, and an
//! enqueue seldom waits behind a commit of finishes.

use super::StorageError;
use super::file::{DbFile, Opened};
use super::index::Txn;
use super::journal::{Durable, Journal, Ops};
use super::schema::CHECKPOINT;
use ::redb::{Durability, WriteTransaction};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most writes folded into one commit.
const MAX_BATCH: usize = 1024;

/// Longest a deferred write waits for a batch to ride with.
const LINGER: Duration = Duration::from_millis(2);

/// A queued write: applies itself to the batch's transaction (or hears that
/// none could be started), then hears how the commit went.
type Apply = Box<dyn FnOnce(Result<&Txn, StorageError>) -> Reply + Send>;
type Reply = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// What the writer thread is sent.
enum Queued {
    /// A write applied in the next batch.
    Once(Apply),
    /// A write tried in every batch until it does something.
    Waiting(Box<dyn Waiting>),
    /// A write applied in the next batch, which it does not start before
    /// [`LINGER`] from when it was sent is up.
    Deferred(Apply, Instant),
}

/// A write that waits for something to do (see [`Writer::write_when`]).
trait Waiting: Send {
    /// When it stops waiting and hears that nothing came.
    fn deadline(&self) -> Instant;
    /// Tries the write in `txn`: the reply that hears the commit when it
    /// did something (or failed), `None` to go on waiting.
    fn try_in(&mut self, txn: &Txn) -> Option<Reply>;
    /// Its time is up (or the writer stopped): nothing came.
    fn give_up(self: Box<Self>);
    /// Whether its caller stopped listening.
    fn abandoned(&self) -> bool;
}

/// A [`Waiting`] write and the channel its caller listens on.
struct WaitingWrite<R, F> {
    deadline: Instant,
    write: F,
    done: Option<oneshot::Sender<Result<Option<R>, StorageError>>>,
}

impl<R, F> Waiting for WaitingWrite<R, F>
where
    R: Send + 'static,
    F: FnMut(&Txn) -> Result<Option<R>, StorageError> + Send,
{
    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn try_in(&mut self, txn: &Txn) -> Option<Reply> {
        let outcome = match (self.write)(txn) {
            Ok(None) => return None,
            other => other,
        };
        let done = self.done.take()?;
        Some(Box::new(move |committed| {
            let _ = done.send(committed.and(outcome));
        }))
    }

    fn give_up(mut self: Box<Self>) {
        if let Some(done) = self.done.take() {
            let _ = done.send(Ok(None));
        }
    }

    fn abandoned(&self) -> bool {
        self.done.as_ref().is_none_or(|done| done.is_closed())
    }
}

/// Commit counters, for the benchmark and the stats endpoint.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Commits made.
    pub commits: AtomicU64,
    /// Writes applied (the sum of batch sizes).
    pub writes: AtomicU64,
    /// The largest batch so far.
    pub max_batch: AtomicU64,
    /// Nanoseconds spent applying the committed batches (their writes and
    /// the waiting writes tried in them): CPU on the one writer thread,
    /// which every write's latency includes.
    pub apply_nanos: AtomicU64,
    /// Nanoseconds spent making commits durable (the journal's write and
    /// sync, or a checkpoint): the disk's share of every write's latency.
    pub sync_nanos: AtomicU64,
    /// Checkpoints made: commits made durable in the file itself.
    pub checkpoints: AtomicU64,
    /// Nanoseconds they took (redb's page writes and the fsync), counted
    /// in `sync_nanos` too when a batch's commit was the checkpoint.
    pub checkpoint_nanos: AtomicU64,
}

/// Handle to the writer thread; cheap to clone. Dropping the last handle
/// lets the thread commit what is queued and waits for it to end, so the
/// database file is closed (and its lock released) when the drop returns.
#[derive(Clone)]
pub(super) struct Writer {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Option<mpsc::Sender<Queued>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<CommitStats>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Writer {
    pub(super) fn start(db: Arc<DbFile>) -> Writer {
        let (queue, incoming) = mpsc::channel::<Queued>();
        let stats = Arc::new(CommitStats::default());
        let counters = stats.clone();
        let thread = std::thread::Builder::new()
            .name("jobhost-writer".into())
            .spawn(move || run(&db, &incoming, &counters))
            .expect("spawning the writer thread");
        Writer { inner: Arc::new(Inner { queue: Some(queue), thread: Some(thread), stats }) }
    }

    pub(super) fn stats(&self) -> &CommitStats {
        &self.inner.stats
    }

    /// Runs `write` in the next commit and returns its result once durable.
    ///
    /// A write that returns an error must not have changed anything: check
    /// first, then write. (A redb error fails the whole commit instead.)
    pub(super) async fn write<R: Send + 'static>(
        &self,
        write: impl FnOnce(&Txn) -> Result<R, StorageError> + Send + 'static,
    ) -> Result<R, StorageError> {
        self.apply(write, Queued::Once).await
    }

    /// Runs `write` as [`write`](Self::write) does, in the next commit that
    /// another write starts, or after [`LINGER`] when none comes sooner.
    pub(super) async fn write_deferred<R: Send + 'static>(
        &self,
        write: impl FnOnce(&Txn) -> Result<R, StorageError> + Send + 'static,
    ) -> Result<R, StorageError> {
        self.apply(write, |apply| Queued::Deferred(apply, Instant::now())).await
    }

    async fn apply<R: Send + 'static>(
        &self,
        write: impl FnOnce(&Txn) -> Result<R, StorageError> + Send + 'static,
        queued: impl FnOnce(Apply) -> Queued,
    ) -> Result<R, StorageError> {
        let (done, result) = oneshot::channel();
        let apply: Apply = Box::new(move |txn| {
            let outcome = txn.and_then(write);
            Box::new(move |committed| {
                let _ = done.send(committed.and(outcome));
            })
        });
        self.send(queued(apply))?;
        result.await.map_err(|_| StorageError::Closed)?
    }

    /// Runs `write` in the next commit and, while it returns `None` (it
    /// found nothing to do and changed nothing that must last), again at
    /// the end of every later batch, for up to `wait`. Returns its result
    /// once durable, or `None` when the wait ran out.
    pub(super) async fn write_when<R: Send + 'static>(
        &self,
        wait: Duration,
        write: impl FnMut(&Txn) -> Result<Option<R>, StorageError> + Send + 'static,
    ) -> Result<Option<R>, StorageError> {
        let (done, result) = oneshot::channel();
        let deadline = Instant::now() + wait;
        self.send(Queued::Waiting(Box::new(WaitingWrite { deadline, write, done: Some(done) })))?;
        result.await.map_err(|_| StorageError::Closed)?
    }

    fn send(&self, queued: Queued) -> Result<(), StorageError> {
        let queue = self.inner.queue.as_ref().ok_or(StorageError::Closed)?;
        queue.send(queued).map_err(|_| StorageError::Closed)
    }
}

/// How long the writer waits for a write before it looks whether a closed
/// file is due to be reopened, so reads recover even when nothing writes.
const IDLE: Duration = Duration::from_millis(250);

fn run(db: &DbFile, incoming: &mpsc::Receiver<Queued>, stats: &CommitStats) {
    let mut waiting: Vec<Box<dyn Waiting>> = Vec::new();
    let mut deferred = Deferred::default();
    let mut buffer = Ops::default();
    loop {
        give_up_due(&mut waiting);
        let now = Instant::now();
        let next_deadline = waiting.iter().map(|w| w.deadline()).chain(deferred.due).min();
        let idle = next_deadline.map_or(IDLE, |at| at.saturating_duration_since(now).min(IDLE));
        let first = match incoming.recv_timeout(idle) {
            Ok(first) => Some(first),
            Err(mpsc::RecvTimeoutError::Timeout) if deferred.is_due() => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if deferred.writes.is_empty() {
                    checkpoint_idle(db, stats);
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = Vec::new();
        // Anything but a deferred write starts a batch now.
        let mut started = false;
        let mut next = first;
        while let Some(queued) = next.take() {
            match queued {
                Queued::Once(apply) => {
                    batch.push(apply);
                    started = true;
                }
                Queued::Waiting(write) => {
                    waiting.push(write);
                    started = true;
                }
                Queued::Deferred(apply, sent) => deferred.push(apply, sent),
            }
            if batch.len() + deferred.writes.len() < MAX_BATCH {
                next = incoming.try_recv().ok();
            }
        }
        if !started && !deferred.is_due() && deferred.writes.len() < MAX_BATCH {
            continue;
        }
        // The deferred writes were queued before the batch's.
        let mut writes = deferred.take();
        writes.append(&mut batch);
        if let Err(e) = commit(db, writes, &mut waiting, &mut buffer, stats) {
            tracing::error!("commit failed: {e}");
        }
    }
    let left = deferred.take();
    if !left.is_empty()
        && let Err(e) = commit(db, left, &mut waiting, &mut buffer, stats)
    {
        tracing::error!("commit failed: {e}");
    }
    for write in waiting {
        write.give_up();
    }
    checkpoint_idle(db, stats);
}

/// When nothing is being written: reopens a file an I/O failure closed once
/// its try is due, and makes the commits that live in the journal alone a
/// checkpoint, so the journal is short to replay and a file closed by a
/// stop holds every commit itself.
fn checkpoint_idle(file: &DbFile, stats: &CommitStats) {
    let Ok(db) = file.reopened() else { return };
    let mut journal = db.journal.lock().unwrap_or_else(|e| e.into_inner());
    if !journal.holds_commits() {
        return;
    }
    let epoch = journal.epoch();
    let made = db
        .begin_write()
        .map_err(StorageError::from)
        .and_then(|transaction| checkpoint(&mut journal, transaction, epoch, stats));
    if let Err(e) = made {
        tracing::error!("checkpoint failed: {e}");
        if let StorageError::Unavailable(why) = &e {
            file.failed(&db, why);
        }
    }
}

/// The deferred writes waiting for a batch, and when they go alone.
#[derive(Default)]
struct Deferred {
    writes: Vec<Apply>,
    due: Option<Instant>,
}

impl Deferred {
    /// Adds `write`, sent at `sent`: the writes go when the first of them
    /// has waited [`LINGER`], a wait that counts the time it spent queued
    /// behind a commit.
    fn push(&mut self, write: Apply, sent: Instant) {
        let due = sent + LINGER;
        self.due = Some(self.due.map_or(due, |earlier| earlier.min(due)));
        self.writes.push(write);
    }

    fn is_due(&self) -> bool {
        self.due.is_some_and(|due| due <= Instant::now())
    }

    fn take(&mut self) -> Vec<Apply> {
        self.due = None;
        std::mem::take(&mut self.writes)
    }
}

/// Tells the waiting writes whose time is up that nothing came, and drops
/// those nobody listens to any more.
fn give_up_due(waiting: &mut Vec<Box<dyn Waiting>>) {
    let now = Instant::now();
    let (due, rest) =
        std::mem::take(waiting).into_iter().partition(|w| w.deadline() <= now || w.abandoned());
    *waiting = rest;
    for write in due {
        write.give_up();
    }
}

/// `took` for a counter (which saturates rather than wraps).
fn nanos(took: Duration) -> u64 {
    u64::try_from(took.as_nanos()).unwrap_or(u64::MAX)
}

/// Applies a batch in one transaction, then tries the waiting writes in it,
/// counts it, commits and tells every writer the result. Its writes are
/// recorded into `buffer`, which is handed back emptied. A transaction in
/// which only waiting writes ran and none did anything is aborted instead:
/// it changed nothing worth an fsync. An I/O failure closes the file, to be
/// reopened by the next batch (see [`DbFile`]).
fn commit(
    file: &DbFile,
    batch: Vec<Apply>,
    waiting: &mut Vec<Box<dyn Waiting>>,
    buffer: &mut Ops,
    stats: &CommitStats,
) -> Result<(), StorageError> {
    let begun = file.reopened().and_then(|db| match db.begin_write() {
        Ok(transaction) => Ok((db, transaction)),
        Err(e) => {
            let error = StorageError::from(e);
            if let StorageError::Unavailable(why) = &error {
                file.failed(&db, why);
            }
            Err(error)
        }
    });
    let (db, transaction) = match begun {
        Ok(begun) => begun,
        Err(error) => {
            for apply in batch {
                apply(Err(error.clone()))(Err(error.clone()));
            }
            return Err(error);
        }
    };
    let applying = Instant::now();
    let txn = Txn::new(&transaction, std::mem::take(buffer));
    let mut replies: Vec<Reply> = batch.into_iter().map(|apply| apply(Ok(&txn))).collect();
    let mut still_waiting = Vec::with_capacity(waiting.len());
    for mut write in waiting.drain(..) {
        match write.try_in(&txn) {
            Some(reply) => replies.push(reply),
            None => still_waiting.push(write),
        }
    }
    *waiting = still_waiting;
    if replies.is_empty() {
        *buffer = txn.take_ops().emptied();
        drop(txn);
        return Ok(transaction.abort()?);
    }
    let size = replies.len() as u64;
    let ops = txn.close();
    let syncing = Instant::now();
    let committed = ops.and_then(|mut ops| {
        let made = make_durable(&db, transaction, &mut ops, stats);
        *buffer = ops.emptied();
        made
    });
    let synced = Instant::now();
    if let Err(StorageError::Unavailable(why)) = &committed {
        file.failed(&db, why);
    }
    drop(db);
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.writes.fetch_add(size, Ordering::Relaxed);
    stats.max_batch.fetch_max(size, Ordering::Relaxed);
    stats.apply_nanos.fetch_add(nanos(syncing - applying), Ordering::Relaxed);
    stats.sync_nanos.fetch_add(nanos(synced - syncing), Ordering::Relaxed);
    for reply in replies {
        reply(committed.clone());
    }
    committed
}

/// Commits `transaction`, whose writes are `ops`: to redb without
/// durability once its frame is synced in the journal, or durably as a
/// checkpoint when the journal says it is time for one.
fn make_durable(
    db: &Opened,
    mut transaction: WriteTransaction,
    ops: &mut Ops,
    stats: &CommitStats,
) -> Result<(), StorageError> {
    let mut journal = db.journal.lock().unwrap_or_else(|e| e.into_inner());
    let journaled = match journal.append(ops) {
        Ok(Durable::Checkpoint(epoch)) => {
            return checkpoint(&mut journal, transaction, epoch, stats);
        }
        Ok(Durable::Journaled) => transaction
            .set_durability(Durability::None)
            .map_err(|e| StorageError::Backend(e.to_string()))
            .and_then(|()| Ok(transaction.commit()?)),
        Err(e) => Err(e),
    };
    match journaled {
        Ok(()) => journal.committed(),
        Err(_) => {
            if let Err(e) = journal.undo() {
                tracing::error!("undoing a failed commit's journal frame: {e}");
            }
        }
    }
    journaled
}

/// Commits `transaction` durably with `epoch` as the last checkpoint: the
/// journal starts again.
fn checkpoint(
    journal: &mut Journal,
    transaction: WriteTransaction,
    epoch: u64,
    stats: &CommitStats,
) -> Result<(), StorageError> {
    let began = Instant::now();
    transaction.open_table(CHECKPOINT)?.insert("epoch", epoch)?;
    transaction.commit()?;
    journal.checkpointed(epoch);
    stats.checkpoints.fetch_add(1, Ordering::Relaxed);
    stats.checkpoint_nanos.fetch_add(nanos(began.elapsed()), Ordering::Relaxed);
    Ok(())
}
