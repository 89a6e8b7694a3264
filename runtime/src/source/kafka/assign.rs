//! Which worker reads which Kafka partition: a fixed function of the topic,
//! the partition and the number of workers, so every process of a cluster
//! computes the same assignment without talking to the others, and a
//! restart with another number of workers is just as correct.

/// The worker (of `workers`, counted over every process) that reads
/// `partition` of `topic`.
///
/// Partitions of one topic are dealt round robin, starting at a worker
/// picked by a hash of the topic's name: a 4-partition topic on 4 workers
/// gives each worker exactly one partition, and the partitions 0 of many
/// topics do not all land on worker 0. The hash is FNV-1a with its
/// standard basis (never a per-process random seed), so it is the same in
/// every process, on every run and every platform.
pub fn owner(topic: &str, partition: i32, workers: usize) -> usize {
    let workers = workers.max(1) as u64;
    let start = fnv1a(topic.as_bytes()) % workers;
    // Partition numbers are never negative; a negative one (which the
    // broker never sends) still lands somewhere fixed.
    let partition = u64::from(partition.unsigned_abs());
    ((start + partition % workers) % workers) as usize
}

/// The 64-bit FNV-1a hash.
fn fnv1a(bytes: &[u8]) -> u64 {
    const BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(BASIS, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The name of a partition, as checkpoints, the status endpoint and dead
/// letters show it: `topic/partition`. Kafka topic names cannot hold a
/// `/`, so the name reads back unambiguously.
pub fn partition_name(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_published_fnv1a() {
        // Test vectors of the FNV reference implementation.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn every_partition_has_exactly_one_owner_and_topics_spread() {
        for workers in 1..=8 {
            for partitions in 1..=12 {
                let mut load = vec![0usize; workers];
                for p in 0..partitions {
                    let w = owner("game.bets", p, workers);
                    assert!(w < workers);
                    load[w] += 1;
                }
                // Round robin within a topic: loads differ by at most one.
                let (min, max) = (load.iter().min().unwrap(), load.iter().max().unwrap());
                assert!(
                    max - min <= 1,
                    "{workers} workers, {partitions} partitions: {load:?}"
                );
            }
        }
        let starts: std::collections::BTreeSet<usize> = (0..20)
            .map(|t| owner(&format!("topic-{t}"), 0, 4))
            .collect();
        assert!(starts.len() > 1, "partition 0 of every topic on one worker");
    }

    #[test]
    fn the_assignment_is_fixed() {
        // These values are part of the contract between processes of
        // different versions: changing them moves partitions on upgrade.
        assert_eq!(owner("bets", 0, 4), (fnv1a(b"bets") % 4) as usize);
        assert_eq!(partition_name("game.bets", 3), "game.bets/3");
    }
}
