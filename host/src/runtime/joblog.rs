//! The job log of one run: guest `log` calls and stdout/stderr lines, bounded
//! by the job's line and byte limits, forwarded to the observer.

use super::observer::JobObserver;
use crate::jobs::LogLevel;
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
    lines_left: u32,
    bytes_left: u64,
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
        let inner = Inner {
            observer,
            lines_left: max_lines,
            bytes_left: max_bytes,
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

    /// Logs unterminated output and, if lines were dropped, one warning that
    /// says how many (the only line allowed past the budget).
    pub(crate) fn finish(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.flush_line(GuestStream::Stdout);
        inner.flush_line(GuestStream::Stderr);
        if inner.dropped > 0 {
            let message = format!("log limit reached: {} more lines were dropped", inner.dropped);
            inner.observer.log(LogLevel::Warn, &message);
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
            if panic.len() > MAX_PANIC {
                let mut end = MAX_PANIC;
                while !panic.is_char_boundary(end) {
                    end -= 1;
                }
                panic.truncate(end);
            }
        }
    }

    fn line(&mut self, level: LogLevel, message: &str) {
        let size = message.len() as u64;
        if self.lines_left == 0 || self.bytes_left < size {
            self.dropped += 1;
            return;
        }
        self.lines_left -= 1;
        self.bytes_left -= size;
        self.observer.log(level, message);
    }
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

    #[test]
    fn splits_output_into_lines_per_stream() {
        let lines = Arc::new(Lines::default());
        let log = JobLog::new(lines.clone(), 100, 1000);
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
        let lines = Arc::new(Lines::default());
        let log = JobLog::new(lines.clone(), 0, 1000);
        log.write(GuestStream::Stdout, b"thread 'x' panicked at fake.rs:1:1:\nnot on stderr\n");
        assert_eq!(log.panic_message(), None);
        log.write(GuestStream::Stderr, b"\nthread '<unnamed>' panicked at src/lib.rs:16:9:\n");
        log.write(GuestStream::Stderr, b"mail server down\nnote: run with `RUST_BACKTRACE=1`\n");
        log.write(GuestStream::Stderr, b"later output\n");
        let expected = "panicked at src/lib.rs:16:9: mail server down";
        assert_eq!(log.panic_message().as_deref(), Some(expected));
    }

    #[test]
    fn drops_past_the_budget_and_says_how_many() {
        let lines = Arc::new(Lines::default());
        let log = JobLog::new(lines.clone(), 2, 1000);
        for i in 0..5 {
            log.line(LogLevel::Info, &format!("line {i}"));
        }
        log.finish();
        let got = lines.0.lock().unwrap().clone();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].1, "line 1");
        assert_eq!(got[2], (LogLevel::Warn, "log limit reached: 3 more lines were dropped".into()));
    }
}
