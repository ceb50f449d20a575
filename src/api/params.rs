//! Query parameters several API paths share: none at all (a path without
//! parameters refuses any with 400 rather than ignoring it),
//! `include_machine`, and the split of a list of events into what is shown
//! and how many machine events were left out (`machine_events_hidden`).

use super::ApiError;
use crate::storage::Event;

/// A path that takes no parameters: any is a 400 naming it.
pub fn none(query: Option<&str>) -> Result<(), ApiError> {
    match url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).next() {
        Some((key, _)) => Err(ApiError::BadRequest(format!(
            "unknown parameter {key:?} (this path takes none)"
        ))),
        None => Ok(()),
    }
}

/// `include_machine`'s value: `true` or `false`.
pub fn flag(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ApiError::BadRequest(format!(
            "{key} must be true or false, not {other:?}"
        ))),
    }
}

/// A query of `include_machine` alone (default false).
pub fn include_machine_only(query: Option<&str>) -> Result<bool, ApiError> {
    let mut include = false;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "include_machine" => include = flag("include_machine", &value)?,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {other:?} (include_machine)"
                )));
            }
        }
    }
    Ok(include)
}

/// The events to show (all, or only counting ones) and how many machine
/// events were left out.
pub fn split_machine(events: &[Event], include_machine: bool) -> (Vec<&Event>, usize) {
    let shown: Vec<&Event> = events
        .iter()
        .filter(|e| include_machine || e.counts_for_metrics)
        .collect();
    let hidden = events.len() - shown.len();
    (shown, hidden)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked() {
        assert!(none(None).is_ok());
        assert!(none(Some("")).is_ok());
        assert!(matches!(none(Some("x=1")), Err(ApiError::BadRequest(_))));
        assert!(!include_machine_only(None).unwrap());
        assert!(include_machine_only(Some("include_machine=true")).unwrap());
        assert!(!include_machine_only(Some("include_machine=false")).unwrap());
        for bad in ["include_machine=1", "include_machine=", "colour=red"] {
            assert!(
                matches!(
                    include_machine_only(Some(bad)),
                    Err(ApiError::BadRequest(_))
                ),
                "{bad}"
            );
        }
    }
}
