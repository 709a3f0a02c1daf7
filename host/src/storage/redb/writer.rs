//! The group-commit writer: one thread owns redb's single write transaction
//! and applies every queued write in it, then commits once. Under load many
//! state changes share one fsync; no caller hears back before the commit that
//! holds its change is durable.

use super::StorageError;
use super::file::DbFile;
use super::index::Txn;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Most writes folded into one commit.
const MAX_BATCH: usize = 1024;

/// A queued write: applies itself to the batch's transaction (or hears that
/// none could be started), then hears how the commit went.
type Apply = Box<dyn FnOnce(Result<&Txn, StorageError>) -> Reply + Send>;
type Reply = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// Commit counters, for the benchmark and the stats endpoint.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Commits made.
    pub commits: AtomicU64,
    /// Writes applied (the sum of batch sizes).
    pub writes: AtomicU64,
    /// The largest batch so far.
    pub max_batch: AtomicU64,
}

/// Handle to the writer thread; cheap to clone. Dropping the last handle
/// lets the thread commit what is queued and waits for it to end, so the
/// database file is closed (and its lock released) when the drop returns.
#[derive(Clone)]
pub(super) struct Writer {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Option<mpsc::Sender<Apply>>,
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
        let (queue, incoming) = mpsc::channel::<Apply>();
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
        let (done, result) = oneshot::channel();
        let apply: Apply = Box::new(move |txn| {
            let outcome = txn.and_then(write);
            Box::new(move |committed| {
                let _ = done.send(committed.and(outcome));
            })
        });
        let queue = self.inner.queue.as_ref().ok_or(StorageError::Closed)?;
        queue.send(apply).map_err(|_| StorageError::Closed)?;
        result.await.map_err(|_| StorageError::Closed)?
    }
}

/// How long the writer waits for a write before it looks whether a closed
/// file is due to be reopened, so reads recover even when nothing writes.
const IDLE: Duration = Duration::from_millis(250);

fn run(db: &DbFile, incoming: &mpsc::Receiver<Apply>, stats: &CommitStats) {
    loop {
        let first = match incoming.recv_timeout(IDLE) {
            Ok(first) => first,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = db.reopened();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if let Err(e) = commit(db, batch, stats) {
            tracing::error!("commit failed: {e}");
        }
    }
}

/// Applies a batch in one transaction, counts it, then tells every writer
/// the result. An I/O failure closes the file, to be reopened by the next
/// batch (see [`DbFile`]).
fn commit(file: &DbFile, batch: Vec<Apply>, stats: &CommitStats) -> Result<(), StorageError> {
    let size = batch.len() as u64;
    let begun = file.reopened().and_then(|db| match db.begin_write() {
        Ok(txn) => Ok((db, Txn::new(txn))),
        Err(e) => {
            let error = StorageError::from(e);
            if let StorageError::Unavailable(why) = &error {
                file.failed(&db, why);
            }
            Err(error)
        }
    });
    let (db, txn) = match begun {
        Ok(begun) => begun,
        Err(error) => {
            for apply in batch {
                apply(Err(error.clone()))(Err(error.clone()));
            }
            return Err(error);
        }
    };
    let replies: Vec<Reply> = batch.into_iter().map(|apply| apply(Ok(&txn))).collect();
    let committed = txn.commit();
    if let Err(StorageError::Unavailable(why)) = &committed {
        file.failed(&db, why);
    }
    drop(db);
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.writes.fetch_add(size, Ordering::Relaxed);
    stats.max_batch.fetch_max(size, Ordering::Relaxed);
    for reply in replies {
        reply(committed.clone());
    }
    committed
}
