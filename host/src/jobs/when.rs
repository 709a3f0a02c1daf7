//! Times as clients send them: milliseconds since the Unix epoch, or an
//! RFC 3339 datetime (`2026-11-24T10:00:00Z`, with an offset or fractional
//! seconds), as clients of MOJO and Tethys do.

use super::Millis;
use serde::{Deserialize, Deserializer};

/// Parses `text` as epoch milliseconds or an RFC 3339 datetime.
pub fn parse(text: &str) -> Result<Millis, String> {
    if let Ok(ms) = text.trim().parse::<Millis>() {
        return Ok(ms);
    }
    let time = humantime::parse_rfc3339_weak(text.trim())
        .map_err(|e| format!("{text:?} is neither epoch milliseconds nor an RFC 3339 time: {e}"))?;
    let since_epoch = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{text:?} is before 1970"))?;
    Ok(since_epoch.as_millis() as Millis)
}

/// Deserializes an optional time given either way.
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Millis(Millis),
        Text(String),
    }
    match Option::<Given>::deserialize(d)? {
        None => Ok(None),
        Some(Given::Millis(ms)) => Ok(Some(ms)),
        Some(Given::Text(text)) => parse(&text).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_milliseconds_and_rfc3339() {
        assert_eq!(parse("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse("2023-11-14T22:13:20.5Z"), Ok(1_700_000_000_500));
        assert!(parse("next tuesday").unwrap_err().contains("RFC 3339"));
    }
}
