//! A restored `distinct` sketch frees its buffer with the size it was
//! allocated with (see `statflow_dataflow::distinct`).
//!
//! The allocator of this test binary counts every free whose layout
//! disagrees with its allocation: undefined behaviour that the system
//! allocator would not report.

use serde::Deserialize;
use statflow_alloccheck::{mismatched_frees, SizeChecking};
use statflow_dataflow::aggregate::DistinctSketch;

#[global_allocator]
static ALLOCATOR: SizeChecking = SizeChecking;

#[derive(Deserialize)]
struct Restored(
    #[serde(deserialize_with = "statflow_dataflow::distinct::deserialize")] DistinctSketch,
);

fn sketch_of(n: usize) -> DistinctSketch {
    let mut s = DistinctSketch::new();
    for i in 0..n {
        s.insert(&format!("player-{i}"));
    }
    s
}

/// Every form, and every array length (most are not powers of two).
fn sizes() -> impl Iterator<Item = usize> {
    (0..=130).chain([1_000, 50_000])
}

#[test]
fn restored_sketches_free_what_they_allocated() {
    // Both serializers statflow uses: bincode (checkpoints, between
    // processes) and JSON.
    let before = mismatched_frees();
    for n in sizes() {
        let sketch = sketch_of(n);
        let binary = bincode::serialize(&sketch).unwrap();
        let json = serde_json::to_vec(&sketch).unwrap();
        for mut restored in [
            bincode::deserialize::<Restored>(&binary).unwrap().0,
            serde_json::from_slice::<Restored>(&json).unwrap().0,
        ] {
            assert!(restored == sketch, "{n} values");
            // Growing a restored sketch frees and replaces its buffer too.
            for i in 0..200 {
                restored.insert(&format!("more-{i}"));
            }
            drop(restored);
        }
    }
    assert_eq!(
        mismatched_frees() - before,
        0,
        "a restored sketch freed its buffer with another size than it was allocated with"
    );

    // The crate's own deserializer still does: the day this fails, the
    // crate is fixed and `statflow_dataflow::distinct` can go.
    let before = mismatched_frees();
    for n in sizes() {
        let binary = bincode::serialize(&sketch_of(n)).unwrap();
        drop(bincode::deserialize::<DistinctSketch>(&binary).unwrap());
    }
    assert!(
        mismatched_frees() > before,
        "cardinality-estimator's own deserializer now frees what it allocated"
    );
}
