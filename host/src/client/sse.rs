//! Server-sent events read from a response, one event at a time, however
//! the bytes were split on the way.

use anyhow::Context;
use serde_json::Value;

/// One event: its name, its id (the resume cursor) and its JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `state`, `progress`, `log`, `close` or `dropped`.
    pub event: String,
    /// What `Last-Event-ID` resumes after, for events that carry one.
    pub id: Option<String>,
    /// The data, parsed.
    pub data: Value,
}

/// The events of one response.
#[derive(Debug)]
pub struct EventStream {
    response: reqwest::Response,
    parser: Parser,
}

impl EventStream {
    /// Reads events from `response` (a `text/event-stream`).
    pub fn new(response: reqwest::Response) -> EventStream {
        EventStream { response, parser: Parser::default() }
    }

    /// The next event; `None` once the server closed the stream.
    pub async fn next(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(Some(event));
            }
            match self.response.chunk().await.context("reading the event stream")? {
                Some(bytes) => self.parser.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// Splits bytes into events (the `text/event-stream` format: `field: value`
/// lines, a blank line ends an event, lines starting with `:` are comments).
#[derive(Debug, Default)]
struct Parser {
    buffer: Vec<u8>,
    event: Option<String>,
    id: Option<String>,
    data: Vec<String>,
}

impl Parser {
    fn next_event(&mut self) -> anyhow::Result<Option<Event>> {
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.data.is_empty() {
                    self.event = None;
                    continue;
                }
                let data = self.data.join("\n");
                self.data.clear();
                let data = serde_json::from_str(&data)
                    .with_context(|| format!("an event's data is not JSON: {data}"))?;
                let event = self.event.take().unwrap_or_else(|| "message".into());
                return Ok(Some(Event { event, id: self.id.clone(), data }));
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_string();
            match field {
                "event" => self.event = Some(value),
                "id" => self.id = Some(value),
                "data" => self.data.push(value),
                _ => {}
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let text = ": keep-alive\n\nevent: state\nid: 1.0\ndata: {\"state\":\"running\"}\n\n\
                    event: log\r\nid: 1.1\r\ndata: {\"message\":\"a\"}\r\n\r\n";
        for split in 0..text.len() {
            let mut parser = Parser::default();
            let mut events = Vec::new();
            for part in [&text[..split], &text[split..]] {
                parser.buffer.extend_from_slice(part.as_bytes());
                while let Some(event) = parser.next_event().unwrap() {
                    events.push(event);
                }
            }
            let names: Vec<_> = events.iter().map(|e| e.event.as_str()).collect();
            assert_eq!(names, ["state", "log"], "split at {split}");
            assert_eq!(events[1].id.as_deref(), Some("1.1"));
            assert_eq!(events[1].data["message"], "a");
        }
    }
}
