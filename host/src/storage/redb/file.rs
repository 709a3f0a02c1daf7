//! The open database file, and its reopening after an I/O failure.
//!
//! redb fails every operation after a failed write (a full disk, say) with
//! `PreviousIo` until the file is closed and opened again, which repairs it
//! from its last commit. [`DbFile`] hands out the open [`Database`]; the
//! writer [drops](DbFile::failed) it when a commit fails that way, and the
//! next caller opens it again, at most every [`RETRY`], so the host answers
//! 503 while the disk is full and works again as soon as space returns.

use super::StorageError;
use ::redb::Database;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a closed file is tried again.
const RETRY: Duration = Duration::from_millis(250);

pub(super) struct DbFile {
    path: PathBuf,
    /// Opens and checks the file (the same as at start).
    open: fn(&Path) -> Result<Database, StorageError>,
    state: Mutex<State>,
}

struct State {
    /// The open database; `None` after an I/O failure, until reopened.
    open: Option<Arc<Database>>,
    /// Why it is closed, for the errors given meanwhile.
    failure: String,
    /// The last time reopening was tried.
    tried: Option<Instant>,
}

impl DbFile {
    pub(super) fn new(
        path: &Path,
        open: fn(&Path) -> Result<Database, StorageError>,
    ) -> Result<DbFile, StorageError> {
        let db = open(path)?;
        let state = State { open: Some(Arc::new(db)), failure: String::new(), tried: None };
        Ok(DbFile { path: path.to_path_buf(), open, state: Mutex::new(state) })
    }

    /// The open database, reopening it if an I/O failure closed it.
    pub(super) fn get(&self) -> Result<Arc<Database>, StorageError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = &state.open {
            return Ok(db.clone());
        }
        if state.tried.is_some_and(|tried| tried.elapsed() < RETRY) {
            return Err(StorageError::Unavailable(state.failure.clone()));
        }
        state.tried = Some(Instant::now());
        match (self.open)(&self.path) {
            Ok(db) => {
                tracing::info!("the database file is open again");
                let db = Arc::new(db);
                state.open = Some(db.clone());
                Ok(db)
            }
            Err(e) => {
                tracing::debug!("reopening the database file: {e}");
                Err(StorageError::Unavailable(state.failure.clone()))
            }
        }
    }

    /// Closes `db` after an I/O failure (`why`), if it is still the open
    /// one: redb refuses everything on it from now on. The file closes when
    /// the reads still holding it end.
    pub(super) fn failed(&self, db: &Arc<Database>, why: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.open.as_ref().is_some_and(|open| Arc::ptr_eq(open, db)) {
            tracing::error!("database I/O failed: {why}; closing the file to reopen it");
            state.open = None;
            state.failure = why.to_string();
            state.tried = None;
        }
    }
}
