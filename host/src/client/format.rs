//! Small conversions between what the server sends and what a person
//! reads or types: ages, sizes, durations, path segments and queries.

use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `value` as a cell: strings bare, `null` as `-`, the rest as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How long ago an epoch-ms time was: `12s`, `5m`, `3h`, `2d`.
pub fn ago(value: &Value) -> String {
    let Some(at) = value.as_u64() else { return "-".into() };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    format!("{} ago", short(Duration::from_millis(now.saturating_sub(at))))
}

/// An epoch-ms time as RFC 3339 (UTC, seconds).
pub fn time(value: &Value) -> String {
    match value.as_u64() {
        Some(ms) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        None => "-".into(),
    }
}

/// A duration in its largest whole unit.
pub fn short(duration: Duration) -> String {
    let s = duration.as_secs();
    match s {
        0 => format!("{}ms", duration.as_millis()),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Bytes with a binary unit.
pub fn bytes(value: &Value) -> String {
    let Some(n) = value.as_u64() else { return "-".into() };
    let units = ["B", "KiB", "MiB", "GiB"];
    let (mut size, mut unit) = (n as f64, 0);
    while size >= 1024.0 && unit < units.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{size:.1} {}", units[unit]) }
}

/// A progress percent with its message.
pub fn progress(value: &Value) -> String {
    match value["percent"].as_f64() {
        Some(percent) => match value["message"].as_str() {
            Some(message) => format!("{percent:.0}% {message}"),
            None => format!("{percent:.0}%"),
        },
        None => "-".into(),
    }
}

/// A digest cut to its first 12 hex digits.
pub fn digest(value: &Value) -> String {
    let full = text(value);
    let hex = full.strip_prefix("sha256:").unwrap_or(&full);
    hex.chars().take(12).collect()
}

/// `value` percent-encoded for one path segment.
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `?k=v&...` of the pairs that have a value, percent-encoded.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| format!("{key}={}", segment(v))))
        .collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_read_as_a_person_reads_them() {
        assert_eq!(bytes(&json!(512)), "512 B");
        assert_eq!(bytes(&json!(3 << 20)), "3.0 MiB");
        assert_eq!(short(Duration::from_secs(7200)), "2h");
        assert_eq!(progress(&json!({"percent": 40.0, "message": "half"})), "40% half");
        assert_eq!(digest(&json!("sha256:0123456789abcdef")), "0123456789ab");
        assert_eq!(time(&json!(0)), "1970-01-01T00:00:00Z");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(query(&[("state", Some("running".into())), ("queue", None)]), "?state=running");
    }
}
