//! Watermarks: how far a source's event time has certainly progressed.
//!
//! A partition's watermark is its newest event time minus the source's
//! lateness bound. A source's watermark is the lowest over the partitions
//! that hold it back: a partition stops holding it back while it has nothing
//! left to read (a finished file slice, a Kafka partition at its high
//! watermark) or when it has given no record for [`IDLE_AFTER_MS`]. When no
//! partition holds it back, the source's watermark is the highest partition
//! watermark, so an idle source still reports how far it got.

use crate::ingest::PartitionStatus;

/// A partition that has given no record for this long (wall clock) is idle
/// and no longer holds its source's watermark back.
pub const IDLE_AFTER_MS: i64 = 30_000;

/// The watermark of a source with lateness bound `late_ms`, over every
/// worker's partitions of it, at wall-clock time `now_ms`; `None` before
/// any event.
pub fn source_watermark<'a>(
    late_ms: i64,
    partitions: impl IntoIterator<Item = &'a PartitionStatus>,
    now_ms: i64,
) -> Option<i64> {
    let mut holding: Option<i64> = None;
    let mut highest: Option<i64> = None;
    for p in partitions {
        let Some(newest) = p.max_event_ms else {
            continue;
        };
        let mark = newest.saturating_sub(late_ms);
        highest = highest.max(Some(mark));
        let drained = p.end.is_some_and(|end| p.position >= end);
        let idle = p
            .last_read_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= IDLE_AFTER_MS);
        if !drained && !idle {
            holding = Some(holding.map_or(mark, |h| h.min(mark)));
        }
    }
    holding.or(highest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(newest: i64, position: u64, end: Option<u64>, read_at: i64) -> PartitionStatus {
        PartitionStatus {
            name: "p".into(),
            position,
            end,
            max_event_ms: Some(newest),
            last_read_ms: Some(read_at),
        }
    }

    #[test]
    fn the_slowest_busy_partition_holds_the_watermark() {
        let now = 1_000_000;
        let parts = [
            partition(500_000, 10, Some(100), now),
            partition(400_000, 10, None, now - 1_000),
            partition(900_000, 10, Some(100), now),
        ];
        assert_eq!(source_watermark(60_000, &parts, now), Some(340_000));
    }

    #[test]
    fn idle_and_drained_partitions_do_not_hold_it_back() {
        let now = 1_000_000;
        let parts = [
            partition(100_000, 10, None, now - IDLE_AFTER_MS),
            partition(200_000, 100, Some(100), now),
            partition(700_000, 10, Some(100), now),
        ];
        assert_eq!(source_watermark(0, &parts, now), Some(700_000));
        // When nothing holds it back, the highest partition watermark stands.
        let quiet = [
            partition(100_000, 10, None, now - IDLE_AFTER_MS),
            partition(200_000, 100, Some(100), now),
        ];
        assert_eq!(source_watermark(0, &quiet, now), Some(200_000));
        assert_eq!(source_watermark(0, &[], now), None);
    }
}
