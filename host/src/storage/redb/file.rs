//! The open database file, and its reopening after an I/O failure.
//!
//! redb fails every operation after a failed write (a full disk, say) with
//! `PreviousIo` until the file is closed and opened again, which repairs it
//! from its last durable commit (then the journal restores the rest).
//! [`DbFile`] hands out the open [`Opened`]: the
//! [`Database`] and its journal, replayed at every open. The
//! writer [drops](DbFile::failed) it when a commit fails that way, readers
//! meanwhile get [`StorageError::Unavailable`], and the writer thread alone
//! [reopens](DbFile::reopened) it, at its next write or when idle (a repair
//! can take a while: never on a thread that serves requests), backing off
//! from [`RETRY`] to
//! [`MAX_RETRY`], so the host answers 503 while the disk is full and works
//! again soon after space returns.

use super::StorageError;
use super::journal::Journal;
use ::redb::Database;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The first wait before a closed file is opened again; it doubles with
/// each failed try up to [`MAX_RETRY`].
const RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(4);

/// The open database and its journal, which only the writer thread uses.
pub(super) struct Opened {
    pub(super) db: Database,
    pub(super) journal: Mutex<Journal>,
}

impl Deref for Opened {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

pub(super) struct DbFile {
    path: PathBuf,
    /// Opens and checks the file (the same as at start).
    open: fn(&Path) -> Result<Opened, StorageError>,
    state: Mutex<State>,
}

struct State {
    /// The open database; `None` after an I/O failure, until reopened.
    open: Option<Arc<Opened>>,
    /// The I/O failure that closed it.
    cause: String,
    /// What the errors given meanwhile say: the cause, and why the last
    /// try to reopen failed.
    failure: String,
    /// When to try opening it again, and the wait after that.
    next_try: Instant,
    wait: Duration,
}

impl DbFile {
    pub(super) fn new(
        path: &Path,
        open: fn(&Path) -> Result<Opened, StorageError>,
    ) -> Result<DbFile, StorageError> {
        let db = Some(Arc::new(open(path)?));
        let (cause, failure, next_try) = (String::new(), String::new(), Instant::now());
        let state = State { open: db, cause, failure, next_try, wait: RETRY };
        Ok(DbFile { path: path.to_path_buf(), open, state: Mutex::new(state) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open database, or why there is none.
    pub(super) fn get(&self) -> Result<Arc<Opened>, StorageError> {
        let state = self.state();
        state.open.clone().ok_or_else(|| StorageError::Unavailable(state.failure.clone()))
    }

    /// The open database, opening it again first if an I/O failure closed
    /// it and its next try is due. For the writer thread only.
    pub(super) fn reopened(&self) -> Result<Arc<Opened>, StorageError> {
        {
            let state = self.state();
            match &state.open {
                Some(db) => return Ok(db.clone()),
                None if Instant::now() < state.next_try => {
                    return Err(StorageError::Unavailable(state.failure.clone()));
                }
                None => {}
            }
        }
        // Outside the lock: readers keep getting their answer meanwhile.
        let opened = (self.open)(&self.path);
        let mut state = self.state();
        match opened {
            Ok(db) => {
                tracing::info!("the database file is open again");
                let db = Arc::new(db);
                state.open = Some(db.clone());
                state.wait = RETRY;
                Ok(db)
            }
            Err(e) => {
                tracing::warn!("reopening the database file: {e}; next try in {:?}", state.wait);
                state.next_try = Instant::now() + state.wait;
                state.wait = (state.wait * 2).min(MAX_RETRY);
                state.failure = format!("{}; reopening the file: {e}", state.cause);
                Err(StorageError::Unavailable(state.failure.clone()))
            }
        }
    }

    /// Closes `db` after an I/O failure (`why`), if it is still the open
    /// one: redb refuses everything on it from now on. The file closes when
    /// the reads still holding it end.
    pub(super) fn failed(&self, db: &Arc<Opened>, why: &str) {
        let mut state = self.state();
        if state.open.as_ref().is_some_and(|open| Arc::ptr_eq(open, db)) {
            tracing::error!("database I/O failed: {why}; closing the file to reopen it");
            state.open = None;
            state.cause = why.to_string();
            state.failure = why.to_string();
            state.next_try = Instant::now();
            state.wait = RETRY;
        }
    }
}
