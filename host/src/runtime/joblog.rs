//! The job log of one run: guest `log` calls and stdout/stderr lines, bounded
//! by the job's line and byte limits, forwarded to the observer.
//!
//! A flooded log keeps its head and its tail, where the error usually is:
//! three quarters of the budget stream live, the last quarter holds the
//! latest lines, which are written when the run ends.

use super::observer::JobObserver;
use crate::jobs::LogLevel;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// A partial stdout/stderr line longer than this is logged as it stands,
/// so a guest that never prints a newline cannot hold memory hostage.
const MAX_PARTIAL_LINE: usize = 16 << 10;
/// Longest panic text kept for the job's error.
const MAX_PANIC: usize = 4 << 10;

/// Which standard stream a guest wrote to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuestStream {
    Stdout,
    Stderr,
}

impl GuestStream {
    fn level(self) -> LogLevel {
        match self {
            GuestStream::Stdout => LogLevel::Info,
            GuestStream::Stderr => LogLevel::Error,
        }
    }
}

/// Shared by the `log` import and both output streams of one store.
#[derive(Clone)]
pub(crate) struct JobLog {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    observer: Arc<dyn JobObserver>,
    /// What the head may still stream.
    lines_left: u32,
    bytes_left: u64,
    /// The latest lines past the head, within the tail's budget.
    tail: VecDeque<(LogLevel, String)>,
    tail_bytes: u64,
    max_tail_lines: usize,
    max_tail_bytes: u64,
    /// Lines between the head and the tail that were let go.
    dropped: u64,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The text of a Rust panic the guest printed on stderr, and whether
    /// its lines are still coming.
    panic: Option<String>,
    in_panic: bool,
}

impl JobLog {
    pub(crate) fn new(observer: Arc<dyn JobObserver>, max_lines: u32, max_bytes: u64) -> Self {
        let (tail_lines, tail_bytes) = (max_lines / 4, max_bytes / 4);
        let inner = Inner {
            observer,
            lines_left: max_lines - tail_lines,
            bytes_left: max_bytes - tail_bytes,
            tail: VecDeque::new(),
            tail_bytes: 0,
            max_tail_lines: tail_lines as usize,
            max_tail_bytes: tail_bytes,
            dropped: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            panic: None,
            in_panic: false,
        };
        Self { inner: Arc::new(Mutex::new(inner)) }
    }

    /// Logs one line, or counts it as dropped once the budget is spent.
    pub(crate) fn line(&self, level: LogLevel, message: &str) {
        self.inner.lock().unwrap().line(level, message);
    }

    /// Appends guest output; every complete line becomes a log line.
    pub(crate) fn write(&self, stream: GuestStream, bytes: &[u8]) {
        let mut inner = self.inner.lock().unwrap();
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            inner.buffer(stream).extend_from_slice(&rest[..newline]);
            inner.flush_line(stream);
            rest = &rest[newline + 1..];
        }
        inner.buffer(stream).extend_from_slice(rest);
        if inner.buffer(stream).len() > MAX_PARTIAL_LINE {
            inner.flush_line(stream);
        }
    }

    /// What the guest's panic said (`panicked at src/lib.rs:3:5: boom`),
    /// if it printed one: the job's error names it instead of a backtrace.
    pub(crate) fn panic_message(&self) -> Option<String> {
        self.inner.lock().unwrap().panic.clone()
    }

    /// Logs unterminated output, then the tail: after one warning that says
    /// how many lines were dropped before it, if any were (the only line
    /// allowed past the budget).
    pub(crate) fn finish(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.flush_line(GuestStream::Stdout);
        inner.flush_line(GuestStream::Stderr);
        if inner.dropped > 0 {
            let lines = |n: u64| if n == 1 { "1 line".into() } else { format!("{n} lines") };
            let message = match inner.tail.len() {
                0 => format!("log limit reached: {} dropped", lines(inner.dropped)),
                kept => format!(
                    "log limit reached: {} dropped here, before the last {kept}",
                    lines(inner.dropped)
                ),
            };
            inner.observer.log(LogLevel::Warn, &message);
        }
        for (level, message) in std::mem::take(&mut inner.tail) {
            inner.observer.log(level, &message);
        }
    }
}

impl Inner {
    fn buffer(&mut self, stream: GuestStream) -> &mut Vec<u8> {
        match stream {
            GuestStream::Stdout => &mut self.stdout,
            GuestStream::Stderr => &mut self.stderr,
        }
    }

    fn flush_line(&mut self, stream: GuestStream) {
        let bytes = std::mem::take(self.buffer(stream));
        if !bytes.is_empty() {
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim_end_matches('\r');
            if stream == GuestStream::Stderr {
                self.watch_panic(text);
            }
            self.line(stream.level(), text);
        }
    }

    /// Keeps the text of a Rust panic as std prints it: a line
    /// `thread '…' panicked at FILE:LINE:COL:`, the message, then `note: …`.
    fn watch_panic(&mut self, line: &str) {
        if let Some((_, place)) = line.split_once(" panicked at ") {
            self.panic = Some(format!("panicked at {place}"));
            self.in_panic = true;
        } else if line.starts_with("note: ") {
            self.in_panic = false;
        } else if self.in_panic
            && let Some(panic) = &mut self.panic
            && panic.len() < MAX_PANIC
        {
            let separator = if panic.ends_with(':') { " " } else { "\n" };
            panic.push_str(separator);
            panic.push_str(line);
            let kept = cut(panic, MAX_PANIC).len();
            panic.truncate(kept);
        }
    }

    /// Streams a line while the head has room; the first line that does not
    /// fit closes the head, and it and every later line go to the tail (cut
    /// to the tail's size), letting the oldest tail lines go to make room.
    fn line(&mut self, level: LogLevel, message: &str) {
        let size = message.len() as u64;
        if self.lines_left > 0 && self.bytes_left >= size {
            self.lines_left -= 1;
            self.bytes_left -= size;
            self.observer.log(level, message);
            return;
        }
        self.lines_left = 0;
        if self.max_tail_lines == 0 || self.max_tail_bytes == 0 {
            self.dropped += 1;
            return;
        }
        let message = cut(message, self.max_tail_bytes as usize);
        let size = message.len() as u64;
        while self.tail.len() >= self.max_tail_lines || self.tail_bytes + size > self.max_tail_bytes
        {
            let (_, old) = self.tail.pop_front().expect("a full tail has lines");
            self.tail_bytes -= old.len() as u64;
            self.dropped += 1;
        }
        self.tail_bytes += size;
        self.tail.push_back((level, message.to_string()));
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Lines(Mutex<Vec<(LogLevel, String)>>);

    impl JobObserver for Lines {
        fn log(&self, level: LogLevel, message: &str) {
            self.0.lock().unwrap().push((level, message.to_string()));
        }
        fn progress(&self, _: f32, _: Option<&str>) {}
        fn metadata(&self, _: &str, _: serde_json::Value) {}
    }

    /// A log with these budgets and the lines it passes on.
    fn recorded(max_lines: u32, max_bytes: u64) -> (Arc<Lines>, JobLog) {
        let lines = Arc::new(Lines::default());
        (lines.clone(), JobLog::new(lines, max_lines, max_bytes))
    }

    impl Lines {
        fn messages(&self) -> Vec<String> {
            self.0.lock().unwrap().iter().map(|(_, message)| message.clone()).collect()
        }
    }

    #[test]
    fn splits_output_into_lines_per_stream() {
        let (lines, log) = recorded(100, 1000);
        log.write(GuestStream::Stdout, b"one\ntw");
        log.write(GuestStream::Stderr, b"oops\r\n");
        log.write(GuestStream::Stdout, b"o\nthree");
        log.finish();
        let got = lines.0.lock().unwrap().clone();
        let expected = [
            (LogLevel::Info, "one"),
            (LogLevel::Error, "oops"),
            (LogLevel::Info, "two"),
            (LogLevel::Info, "three"),
        ];
        assert_eq!(got, expected.map(|(l, m)| (l, m.to_string())));
    }

    #[test]
    fn keeps_the_text_of_a_panic_even_past_the_budget() {
        let (lines, log) = recorded(0, 1000);
        log.write(GuestStream::Stdout, b"thread 'x' panicked at fake.rs:1:1:\nnot on stderr\n");
        assert_eq!(log.panic_message(), None);
        log.write(GuestStream::Stderr, b"\nthread '<unnamed>' panicked at src/lib.rs:16:9:\n");
        log.write(GuestStream::Stderr, b"mail server down\nnote: run with `RUST_BACKTRACE=1`\n");
        log.write(GuestStream::Stderr, b"later output\n");
        let expected = "panicked at src/lib.rs:16:9: mail server down";
        assert_eq!(log.panic_message().as_deref(), Some(expected));
        assert!(lines.messages().is_empty(), "a budget of no lines logs none of it");
    }

    #[test]
    fn keeps_the_head_and_the_tail_and_says_how_many_it_dropped() {
        let (lines, log) = recorded(8, 1000);
        for i in 0..20 {
            log.line(LogLevel::Info, &format!("line {i}"));
        }
        assert_eq!(lines.0.lock().unwrap().len(), 6, "the head streams live");
        log.finish();
        let got = lines.messages();
        let mut expected: Vec<String> = (0..6).map(|i| format!("line {i}")).collect();
        expected.push("log limit reached: 12 lines dropped here, before the last 2".into());
        expected.extend(["line 18".to_string(), "line 19".to_string()]);
        assert_eq!(got, expected);
    }

    #[test]
    fn a_log_within_its_budget_is_kept_whole_and_in_order() {
        let (lines, log) = recorded(8, 1000);
        for i in 0..8 {
            log.line(LogLevel::Info, &format!("line {i}"));
        }
        log.finish();
        let got = lines.messages();
        assert_eq!(got, (0..8).map(|i| format!("line {i}")).collect::<Vec<_>>());
    }

    #[test]
    fn a_long_line_closes_the_head_and_is_cut_to_fit_the_tail() {
        let (lines, log) = recorded(100, 400);
        log.line(LogLevel::Info, "first");
        log.line(LogLevel::Error, &"é".repeat(300));
        log.line(LogLevel::Info, "short");
        assert_eq!(lines.messages(), ["first"], "past the head nothing streams");
        log.finish();
        let got = lines.messages();
        assert_eq!(got[0], "first");
        assert_eq!(got[1], "log limit reached: 1 line dropped here, before the last 1");
        assert_eq!(got[2], "short", "the tail keeps the latest lines that fit its 100 bytes");

        let (lines, log) = recorded(100, 400);
        log.line(LogLevel::Error, &"é".repeat(300));
        log.finish();
        assert_eq!(lines.messages(), ["é".repeat(50)], "a long last line is cut, not lost");
    }

    #[test]
    fn a_budget_too_small_for_a_tail_drops_and_says_how_many() {
        let (lines, log) = recorded(2, 1000);
        for i in 0..5 {
            log.line(LogLevel::Info, &format!("line {i}"));
        }
        log.finish();
        let expected = ["line 0", "line 1", "log limit reached: 3 lines dropped"];
        assert_eq!(lines.messages(), expected);
    }

    #[test]
    fn the_byte_budget_bounds_the_tail_too() {
        let (lines, log) = recorded(100, 40);
        for i in 0..10 {
            log.line(LogLevel::Info, &format!("line {i}"));
        }
        log.finish();
        let got = lines.messages();
        let kept: u64 = got.iter().filter(|m| m.starts_with("line")).map(|m| m.len() as u64).sum();
        assert!(kept <= 40, "{got:?}");
        assert_eq!(got.last().unwrap(), "line 9");
        assert!(got[0] == "line 0" && got.iter().any(|m| m.starts_with("log limit reached")));
    }
}
