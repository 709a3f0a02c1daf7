//! The journal: how a commit becomes durable with one sequential write.
//!
//! A durable redb commit writes every B-tree page it changed, each in its
//! own place in the file, then syncs: about thirty scattered page writes a
//! commit under load, and on a disk like this one the sync's cost grows with
//! them (docs/BENCHMARKS.md). So the writer commits to redb without making
//! the commit durable (`Durability::None`: redb keeps the pages in memory,
//! and readers see them), after appending the commit's writes (table, key,
//! value, as redb stores them; [`Ops`]) to this file as one frame and
//! syncing that. Every so often a commit is made durable in redb instead,
//! a checkpoint, which stores its epoch in the `checkpoint` table, and the
//! journal starts again from its beginning. Opening the file replays the
//! frames after its last checkpoint, so a crash loses nothing acknowledged.
//!
//! The file has a fixed size, written once with zeros, so a frame's sync
//! never waits for the file system to record a new length. A frame is
//! valid when its magic, length and checksum hold and its epoch follows the
//! previous frame's: a torn last frame, or one left from an earlier round
//! of the file, ends the replay.

use super::StorageError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The journal file's size. A commit whose frame would not fit is made a
/// checkpoint instead, so a large commit (a plugin upload) costs what it
/// did before the journal, and the journal never holds more than this to
/// replay.
const BYTES: u64 = 8 << 20;

/// A commit is a checkpoint when the last one is this old, so the file
/// frees its pages (redb frees pages only in a durable commit) and the
/// journal to replay stays short.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

const MAGIC: u32 = 0x4a48_4a31; // "JHJ1"

/// magic (4), payload length (4), epoch (8), checksum of the rest (4).
const HEADER: usize = 20;

/// The writes of one commit, encoded: for each, the table's name, the key
/// and the value (none for a removal) as redb stores them. They are kept
/// behind room for the frame's header, so the journal writes them as they
/// are, without copying.
pub(super) struct Ops(Vec<u8>);

impl Default for Ops {
    fn default() -> Self {
        Ops(vec![0; HEADER])
    }
}

/// The largest buffer [`Ops::emptied`] keeps for the next commit.
const KEEP: usize = 1 << 20;

impl Ops {
    /// This buffer, emptied for the next commit's writes. A commit's writes
    /// run to hundreds of KiB, and a fresh buffer each commit had its pages
    /// faulted in and zeroed by the kernel again as it grew (3.6% of the
    /// writer's time under load). A buffer grown past [`KEEP`] by a
    /// rare big commit (a plugin's upload) is let go instead.
    pub(super) fn emptied(mut self) -> Ops {
        if self.0.capacity() > KEEP {
            return Ops::default();
        }
        self.0.truncate(HEADER);
        self
    }

    pub(super) fn push(&mut self, table: &str, key: &[u8], value: Option<&[u8]>) {
        let ops = &mut self.0;
        let name = u8::try_from(table.len()).expect("table names are short");
        ops.push(name);
        ops.extend_from_slice(table.as_bytes());
        ops.extend_from_slice(&(key.len() as u32).to_le_bytes());
        ops.extend_from_slice(key);
        match value {
            Some(value) => {
                ops.push(1);
                ops.extend_from_slice(&(value.len() as u32).to_le_bytes());
                ops.extend_from_slice(value);
            }
            None => ops.push(0),
        }
    }

    fn payload(&self) -> &[u8] {
        &self.0[HEADER..]
    }

    /// Each write of a frame's payload `ops`, in order.
    pub(super) fn each(
        mut ops: &[u8],
        mut write: impl FnMut(&str, &[u8], Option<&[u8]>) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        fn take<'a>(ops: &mut &'a [u8], n: usize) -> Result<&'a [u8], StorageError> {
            if ops.len() < n {
                return Err(StorageError::Corrupt("a journal frame ends inside a write".into()));
            }
            let (head, rest) = ops.split_at(n);
            *ops = rest;
            Ok(head)
        }
        fn len(ops: &mut &[u8]) -> Result<usize, StorageError> {
            Ok(u32::from_le_bytes(take(ops, 4)?.try_into().unwrap()) as usize)
        }
        while !ops.is_empty() {
            let name = take(&mut ops, 1)?[0] as usize;
            let table = std::str::from_utf8(take(&mut ops, name)?)
                .map_err(|_| StorageError::Corrupt("a journal frame names no table".into()))?;
            let n = len(&mut ops)?;
            let key = take(&mut ops, n)?;
            let value = match take(&mut ops, 1)?[0] {
                0 => None,
                _ => {
                    let n = len(&mut ops)?;
                    Some(take(&mut ops, n)?)
                }
            };
            write(table, key, value)?;
        }
        Ok(())
    }
}

/// The open journal of a database file; the writer thread's alone.
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    /// Where the next frame goes.
    at: u64,
    /// The epoch of the last commit, journaled or checkpointed.
    epoch: u64,
    /// Where the frame written last ends, until its commit to redb is
    /// known to have succeeded or failed.
    pending: Option<u64>,
    checkpointed: Instant,
}

/// How a commit is to be made durable.
pub(super) enum Durable {
    /// Its frame is synced in the journal: commit it to redb without
    /// durability.
    Journaled,
    /// Commit it to redb durably, with its epoch: the journal starts again.
    Checkpoint(u64),
}

impl Journal {
    /// Opens the journal beside the database file at `db` (creating it),
    /// locked so that no second host replays or writes it meanwhile.
    pub(super) fn open(db: &Path) -> Result<Journal, StorageError> {
        let path = db.with_extension("journal");
        let io = |e: std::io::Error| StorageError::Unavailable(format!("{}: {e}", path.display()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        file.try_lock().map_err(|_| {
            StorageError::Unavailable(format!("{} is already open in another host", path.display()))
        })?;
        let have = file.metadata().map_err(io)?.len();
        if have < BYTES {
            let zeros = vec![0; 1 << 20];
            let mut at = have;
            while at < BYTES {
                let n = zeros.len().min((BYTES - at) as usize);
                file.write_all_at(&zeros[..n], at).map_err(io)?;
                at += n as u64;
            }
            file.sync_all().map_err(io)?;
            if let Some(dir) = path.parent() {
                File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)?;
            }
        }
        Ok(Journal { file, path, at: 0, epoch: 0, pending: None, checkpointed: Instant::now() })
    }

    /// The frames after `epoch` (the last checkpoint's), in order, each with
    /// its epoch. A frame left from before that checkpoint is skipped; one
    /// that would leave a gap after it means the journal is not this file's.
    pub(super) fn frames_after(&self, epoch: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let mut frames = Vec::new();
        let mut at = 0;
        let mut previous = None;
        while let Some((this, payload)) = self.frame_at(at)? {
            if previous.is_some_and(|previous| this != previous + 1) {
                break;
            }
            previous = Some(this);
            at += (HEADER + payload.len()) as u64;
            if this > epoch {
                frames.push((this, payload));
            }
        }
        if let Some((first, _)) = frames.first()
            && *first != epoch + 1
        {
            return Err(StorageError::Corrupt(format!(
                "{} starts at commit {first}, but the database's last checkpoint is {epoch}",
                self.path.display()
            )));
        }
        Ok(frames)
    }

    fn frame_at(&self, at: u64) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let mut header = [0; HEADER];
        if at + HEADER as u64 > BYTES || self.read(at, &mut header).is_err() {
            return Ok(None);
        }
        let word = |from: usize| u32::from_le_bytes(header[from..from + 4].try_into().unwrap());
        let (magic, len, sum) = (word(0), word(4) as u64, word(16));
        let epoch = u64::from_le_bytes(header[8..16].try_into().unwrap());
        if magic != MAGIC || at + HEADER as u64 + len > BYTES {
            return Ok(None);
        }
        let mut payload = vec![0; len as usize];
        self.read(at + HEADER as u64, &mut payload)?;
        Ok((checksum(epoch, &payload) == sum).then_some((epoch, payload)))
    }

    fn read(&self, at: u64, into: &mut [u8]) -> Result<(), StorageError> {
        self.file
            .read_exact_at(into, at)
            .map_err(|e| StorageError::Unavailable(format!("{}: {e}", self.path.display())))
    }

    /// The checkpoint of `epoch` is durable (or the file was opened at
    /// it): the journal starts again.
    pub(super) fn checkpointed(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.at = 0;
        self.pending = None;
        self.checkpointed = Instant::now();
    }

    /// Makes the commit of `ops` durable, or says it is to be a checkpoint:
    /// when the last one is [`CHECKPOINT_EVERY`] old or the frame would not
    /// fit. A journaled commit is then [`committed`](Self::committed) to
    /// redb, or [`undone`](Self::undo) if that fails.
    pub(super) fn append(&mut self, ops: &mut Ops) -> Result<Durable, StorageError> {
        let epoch = self.epoch + 1;
        let end = self.at + ops.0.len() as u64;
        if end > BYTES || self.checkpointed.elapsed() >= CHECKPOINT_EVERY {
            return Ok(Durable::Checkpoint(epoch));
        }
        let len = ops.payload().len() as u32;
        let sum = checksum(epoch, ops.payload());
        let header = &mut ops.0[..HEADER];
        header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        header[4..8].copy_from_slice(&len.to_le_bytes());
        header[8..16].copy_from_slice(&epoch.to_le_bytes());
        header[16..20].copy_from_slice(&sum.to_le_bytes());
        let io = |e: std::io::Error| StorageError::Unavailable(format!("the journal: {e}"));
        self.pending = Some(end);
        self.file.write_all_at(&ops.0, self.at).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        Ok(Durable::Journaled)
    }

    /// The last frame's commit to redb succeeded.
    pub(super) fn committed(&mut self) {
        if let Some(end) = self.pending.take() {
            self.at = end;
            self.epoch += 1;
        }
    }

    /// Undoes the last frame, whose commit failed (in its sync or in redb),
    /// so that a replay does not make it happen after all.
    pub(super) fn undo(&mut self) -> Result<(), StorageError> {
        if self.pending.take().is_some() {
            let io = |e: std::io::Error| StorageError::Unavailable(format!("the journal: {e}"));
            self.file.write_all_at(&[0; HEADER], self.at).map_err(io)?;
            self.file.sync_data().map_err(io)?;
        }
        Ok(())
    }

    /// The epoch of the last commit, for a checkpoint that adds none.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether commits since the last checkpoint live in the journal alone.
    pub(super) fn holds_commits(&self) -> bool {
        self.at > 0
    }
}

fn checksum(epoch: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&epoch.to_le_bytes());
    hasher.update(&(payload.len() as u32).to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new journal beside a database path in a temp dir.
    fn fresh() -> (tempfile::TempDir, PathBuf, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("jobhost.redb");
        let journal = Journal::open(&db).unwrap();
        (dir, db, journal)
    }

    fn ops(key: &[u8]) -> Ops {
        let mut ops = Ops::default();
        push_writes(&mut ops, key);
        ops
    }

    /// Pushes the writes [`written`]`(key)` reads back.
    fn push_writes(ops: &mut Ops, key: &[u8]) {
        ops.push("jobs", key, Some(b"value"));
        ops.push("listing", key, None);
    }

    fn journaled(journal: &mut Journal, key: &[u8]) {
        assert!(matches!(journal.append(&mut ops(key)).unwrap(), Durable::Journaled));
        journal.committed();
    }

    fn epochs(frames: &[(u64, Vec<u8>)]) -> Vec<u64> {
        frames.iter().map(|(epoch, _)| *epoch).collect()
    }

    type Write = (String, Vec<u8>, Option<Vec<u8>>);

    fn writes(payload: &[u8]) -> Vec<Write> {
        let mut writes = Vec::new();
        Ops::each(payload, |table, key, value| {
            writes.push((table.to_string(), key.to_vec(), value.map(<[u8]>::to_vec)));
            Ok(())
        })
        .unwrap();
        writes
    }

    /// The writes of [`ops`]`(key)` and [`push_writes`].
    fn written(key: &[u8]) -> Vec<Write> {
        vec![
            ("jobs".into(), key.to_vec(), Some(b"value".to_vec())),
            ("listing".into(), key.to_vec(), None),
        ]
    }

    #[test]
    fn an_emptied_buffer_carries_only_the_next_commits_writes() {
        let (_dir, db, mut journal) = fresh();
        let mut buffer = ops(b"a");
        assert!(matches!(journal.append(&mut buffer).unwrap(), Durable::Journaled));
        journal.committed();
        let mut buffer = buffer.emptied();
        push_writes(&mut buffer, b"b");
        assert!(matches!(journal.append(&mut buffer).unwrap(), Durable::Journaled));
        journal.committed();
        drop(journal);
        let frames = Journal::open(&db).unwrap().frames_after(0).unwrap();
        assert_eq!(epochs(&frames), [1, 2]);
        assert_eq!(writes(&frames[0].1), written(b"a"));
        assert_eq!(writes(&frames[1].1), written(b"b"));

        let mut big = Ops::default();
        big.push("jobs", b"plugin", Some(&vec![7; 2 * KEEP]));
        assert!(big.emptied().0.capacity() <= KEEP, "a rare big buffer is let go");
    }

    #[test]
    fn frames_come_back_in_order_with_their_writes_after_a_reopen() {
        let (_dir, db, mut journal) = fresh();
        journal.checkpointed(7);
        journaled(&mut journal, b"a");
        journaled(&mut journal, b"b");
        drop(journal);
        let journal = Journal::open(&db).unwrap();
        let frames = journal.frames_after(7).unwrap();
        assert_eq!(epochs(&frames), [8, 9]);
        assert_eq!(writes(&frames[1].1), written(b"b"));
        assert_eq!(
            epochs(&journal.frames_after(8).unwrap()),
            [9],
            "a checkpoint at 8 has the first"
        );
    }

    #[test]
    fn a_torn_last_frame_ends_the_replay_before_it() {
        let (_dir, db, mut journal) = fresh();
        journaled(&mut journal, b"a");
        let torn = journal.at;
        journaled(&mut journal, b"b");
        drop(journal);
        let file = OpenOptions::new().write(true).open(db.with_extension("journal")).unwrap();
        file.write_all_at(b"X", torn + HEADER as u64 + 3).unwrap();
        assert_eq!(epochs(&Journal::open(&db).unwrap().frames_after(0).unwrap()), [1]);
    }

    #[test]
    fn frames_of_an_earlier_round_are_not_replayed_after_a_checkpoint() {
        let (_dir, _, mut journal) = fresh();
        for key in [b"a", b"b", b"c"] {
            journaled(&mut journal, key);
        }
        journal.checkpointed(3);
        assert!(journal.frames_after(3).unwrap().is_empty(), "all three are in the file");
        journaled(&mut journal, b"a long key that ends past where the second frame began");
        assert_eq!(epochs(&journal.frames_after(3).unwrap()), [4]);
    }

    #[test]
    fn an_undone_frame_is_not_replayed_and_its_epoch_is_used_again() {
        let (_dir, _, mut journal) = fresh();
        journaled(&mut journal, b"a");
        assert!(matches!(journal.append(&mut ops(b"b")).unwrap(), Durable::Journaled));
        journal.undo().unwrap();
        assert_eq!(epochs(&journal.frames_after(0).unwrap()), [1]);
        journaled(&mut journal, b"c");
        assert_eq!(epochs(&journal.frames_after(0).unwrap()), [1, 2]);
    }

    #[test]
    fn a_journal_that_skips_commits_after_the_checkpoint_is_refused() {
        let (_dir, _, mut journal) = fresh();
        journal.checkpointed(10);
        journaled(&mut journal, b"a");
        let error = journal.frames_after(5).unwrap_err().to_string();
        assert!(
            error.contains("starts at commit 11") && error.contains("checkpoint is 5"),
            "{error}"
        );
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_it() {
        let (_dir, db, first) = fresh();
        assert!(Journal::open(&db).is_err());
        drop(first);
        Journal::open(&db).unwrap();
    }

    #[test]
    fn a_frame_that_does_not_fit_makes_the_commit_a_checkpoint() {
        let (_dir, _, mut journal) = fresh();
        journaled(&mut journal, b"a");
        let mut big = Ops::default();
        big.push("components", b"big", Some(&vec![0; BYTES as usize]));
        assert!(matches!(journal.append(&mut big).unwrap(), Durable::Checkpoint(2)));
    }
}
