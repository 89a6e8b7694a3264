//! The optional `epoch` field of a query: read at exactly one completed
//! epoch instead of the newest.
//!
//! Every answer says the epoch it reflects (`as_of.epoch`). A dashboard asks
//! its first panel without `epoch`, then every other panel with the first
//! answer's epoch, so all panels of one refresh show one consistent cut.
//!
//! The engine keeps old epochs distinct only for a short while (its
//! compaction lag, two seconds by default); a query pinned to an epoch that
//! is gone fails with `epoch_not_readable` rather than being read at another
//! epoch, which would break the cut the caller asked for. An epoch that no
//! worker has opened yet is refused at once with `epoch_in_future`; one that
//! is open but not complete waits until it completes.

use serde_json::Value as Json;

use super::QueryError;

/// The path of the field in a query body.
pub const PATH: &str = "epoch";

/// The `epoch` of a decoded body: `None` when absent or `null`.
pub fn requested(body: &Json) -> Result<Option<u64>, QueryError> {
    let Some(v) = body.get(PATH).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match v.as_u64() {
        Some(n) => Ok(Some(n)),
        None => Err(QueryError::new(
            "bad_epoch",
            PATH,
            format!(
                "An epoch is a whole number of 0 or more, such as an answer's `as_of.epoch`, not {v}; leave it out to read the newest complete epoch."
            ),
        )),
    }
}

/// The error for a pinned epoch the engine has compacted away.
pub fn not_readable(epoch: u64) -> QueryError {
    QueryError::new(
        "epoch_not_readable",
        PATH,
        format!("Epoch {epoch} is no longer readable; ask again without epoch."),
    )
}

/// The error for an epoch no worker has opened yet (`open` is the newest).
pub fn in_future(epoch: u64, open: u64) -> QueryError {
    QueryError::new(
        "epoch_in_future",
        PATH,
        format!(
            "Epoch {epoch} has not started yet (the newest is {open}); use an answer's `as_of.epoch`, or leave epoch out."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_null_and_numbers() {
        assert_eq!(requested(&json!({})), Ok(None));
        assert_eq!(requested(&json!({"epoch": null})), Ok(None));
        assert_eq!(requested(&json!({"epoch": 42})), Ok(Some(42)));
    }

    #[test]
    fn anything_else_is_refused_with_its_path() {
        for bad in [json!(-1), json!(2.5), json!("7"), json!([1])] {
            let e = requested(&json!({ "epoch": bad })).unwrap_err();
            assert_eq!((e.code, e.path.as_str()), ("bad_epoch", "epoch"));
        }
    }
}
