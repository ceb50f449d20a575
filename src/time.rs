//! Time as stored data counts it: milliseconds since the Unix epoch, shown
//! as RFC 3339 UTC, read from RFC 3339 times or dates.

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `ms` as RFC 3339 UTC (`2026-01-02T03:04:05.678Z`; no fraction when it
/// is zero); empty when out of range.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// An RFC 3339 time, or a date meaning its midnight UTC.
pub fn parse(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    text.parse::<jiff::civil::Date>()
        .map_err(|e| format!("{text:?}: not an RFC 3339 time or a date: {e}"))?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())
}
