//! The Kafka reader against librdkafka's in-process mock cluster: fast
//! checks of assignment, positions, resume, start positions, metadata and
//! an outage. The integration tests (`tests/kafka.rs`) use a real broker.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use statflow_dataflow::ingest::{ReadState, RecordReader, Resume};
use statflow_dsl::{KafkaSource, StartPosition, Topics};

use super::producer::{producer, send};
use super::KafkaReader;

fn cluster(topic: &str, partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic(topic, partitions, 1).expect("a topic");
    cluster
}

fn source(topics: Topics, start: StartPosition) -> KafkaSource {
    KafkaSource {
        topics,
        brokers: Vec::new(),
        start,
        // Find partitions quickly in tests.
        settings: BTreeMap::from([(
            "statflow.discovery.interval.ms".to_string(),
            "200".to_string(),
        )]),
        dead_letters: None,
    }
}

/// Sends `n` JSON records `{"i": k}` for k in `from..from+n`, keyed by `k`.
fn produce(brokers: &str, topic: &str, from: usize, n: usize) {
    let p = producer(brokers, &BTreeMap::new()).expect("a producer");
    for k in from..from + n {
        let payload = format!(r#"{{"i": {k}}}"#);
        send(
            &p,
            topic,
            Some(k.to_string().as_bytes()),
            payload.as_bytes(),
            None,
        )
        .expect("sent");
    }
    rdkafka::producer::Producer::flush(&p, Duration::from_secs(10)).expect("flushed");
}

/// Reads until `want` records came or 20 s passed; returns the records as text.
fn read(readers: &mut [KafkaReader], want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while seen.len() < want && Instant::now() < deadline {
        for r in readers.iter_mut() {
            let state = r.read(7, &mut |rec, at| {
                assert!(at.position < u64::MAX);
                seen.push(String::from_utf8_lossy(rec).into_owned());
            });
            assert_ne!(state, ReadState::Finished, "a Kafka source never finishes");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    seen
}

fn numbers(records: &[String]) -> BTreeSet<u64> {
    records
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(r).unwrap()["i"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn every_message_is_read_once_by_the_worker_that_owns_its_partition() {
    let c = cluster("bets", 4);
    let brokers = c.bootstrap_servers();
    produce(&brokers, "bets", 0, 200);
    let kafka = source(Topics::Names(vec!["bets".into()]), StartPosition::Earliest);
    let mut readers: Vec<KafkaReader> = (0..3)
        .map(|w| {
            KafkaReader::open("bets", &kafka, brokers.clone(), w, 3, &Resume::new(), false).unwrap()
        })
        .collect();
    let seen = read(&mut readers, 200);
    assert_eq!(seen.len(), 200, "every message once");
    assert_eq!(numbers(&seen), (0..200).collect());
    // Four partitions over three workers, each on exactly one.
    let mut names: Vec<String> = readers
        .iter()
        .flat_map(|r| r.partitions().to_vec())
        .collect();
    names.sort();
    assert_eq!(names, ["bets/0", "bets/1", "bets/2", "bets/3"]);
    for r in &readers {
        for (i, name) in r.partitions().iter().enumerate() {
            let p: i32 = name.strip_prefix("bets/").unwrap().parse().unwrap();
            assert_eq!(
                super::assign::owner("bets", p, 3),
                readers.iter().position(|x| std::ptr::eq(x, r)).unwrap()
            );
            // Caught up: the position is the end, and nothing more comes.
            let deadline = Instant::now() + Duration::from_secs(5);
            while r.ends()[i] != Some(r.positions()[i]) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(r.ends()[i], Some(r.positions()[i]), "{name}");
        }
    }
    let total: u64 = readers.iter().flat_map(|r| r.positions()).sum();
    assert_eq!(total, 200, "positions are offsets of the next message");
}

#[test]
fn positions_resume_on_another_number_of_workers() {
    let c = cluster("bets", 4);
    let brokers = c.bootstrap_servers();
    produce(&brokers, "bets", 0, 120);
    let kafka = source(Topics::Names(vec!["bets".into()]), StartPosition::Earliest);
    let mut first =
        vec![
            KafkaReader::open("bets", &kafka, brokers.clone(), 0, 1, &Resume::new(), false)
                .unwrap(),
        ];
    let part = read(&mut first, 50);
    assert!(part.len() >= 50 && part.len() < 120, "{}", part.len());
    let resume: Resume = first[0]
        .partitions()
        .iter()
        .cloned()
        .zip(first[0].positions())
        .collect();
    drop(first);
    produce(&brokers, "bets", 120, 30);
    let mut second: Vec<KafkaReader> = (0..2)
        .map(|w| KafkaReader::open("bets", &kafka, brokers.clone(), w, 2, &resume, false).unwrap())
        .collect();
    let rest = read(&mut second, 150 - part.len());
    let mut all = numbers(&part);
    let again = numbers(&rest);
    assert!(all.is_disjoint(&again), "nothing read twice");
    all.extend(again);
    assert_eq!(all, (0..150).collect(), "nothing missed");
    assert_eq!(part.len() + rest.len(), 150);
}

#[test]
fn latest_starts_after_what_is_there_and_metadata_is_spliced_in() {
    let c = cluster("bets", 2);
    let brokers = c.bootstrap_servers();
    produce(&brokers, "bets", 0, 10);
    let kafka = source(Topics::Pattern("be.*".into()), StartPosition::Latest);
    let mut readers =
        vec![
            KafkaReader::open("bets", &kafka, brokers.clone(), 0, 1, &Resume::new(), true).unwrap(),
        ];
    // Wait until both partitions are assigned at their ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    while readers[0].partitions().len() < 2 && Instant::now() < deadline {
        readers[0].read(10, &mut |_, _| panic!("nothing before start"));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(readers[0].positions().iter().sum::<u64>(), 10);
    produce(&brokers, "bets", 10, 5);
    let seen = read(&mut readers, 5);
    assert_eq!(numbers(&seen), (10..15).collect());
    let v: serde_json::Value = serde_json::from_str(&seen[0]).unwrap();
    let meta = &v["_kafka"];
    assert_eq!(meta["topic"], "bets");
    assert!(meta["partition"].as_i64().is_some() && meta["offset"].as_i64().unwrap() >= 0);
    assert_eq!(meta["key"].as_str().unwrap(), v["i"].to_string());
    assert!(meta["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
}

#[test]
fn an_outage_loses_and_repeats_nothing() {
    let c = cluster("bets", 2);
    let brokers = c.bootstrap_servers();
    produce(&brokers, "bets", 0, 40);
    let kafka = source(Topics::Names(vec!["bets".into()]), StartPosition::Earliest);
    let mut readers =
        vec![
            KafkaReader::open("bets", &kafka, brokers.clone(), 0, 1, &Resume::new(), false)
                .unwrap(),
        ];
    let mut seen = read(&mut readers, 40);
    c.broker_down(1).expect("broker down");
    // Reading through the outage neither fails nor blocks.
    let started = Instant::now();
    for _ in 0..50 {
        let state = readers[0].read(10, &mut |r, _| {
            seen.push(String::from_utf8_lossy(r).into_owned())
        });
        assert!(matches!(state, ReadState::Idle(_) | ReadState::Busy));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "read() must not block"
    );
    c.broker_up(1).expect("broker up");
    produce(&brokers, "bets", 40, 20);
    seen.extend(read(&mut readers, 20));
    assert_eq!(seen.len(), 60, "each message once");
    assert_eq!(numbers(&seen), (0..60).collect());
}

#[test]
fn committed_offsets_follow_the_positions_only_when_asked() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c = cluster("bets", 2);
    let brokers = c.bootstrap_servers();
    produce(&brokers, "bets", 0, 30);
    let committed = |group: &str| -> i64 {
        let checker: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", group)
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition("bets", 0);
        tpl.add_partition("bets", 1);
        checker
            .committed_offsets(tpl, Duration::from_secs(5))
            .unwrap()
            .elements()
            .iter()
            .filter_map(|e| e.offset().to_raw().filter(|o| *o >= 0))
            .sum()
    };
    for (group, commit) in [("lag.tools", true), ("statflow.bets", false)] {
        let mut kafka = source(Topics::Names(vec!["bets".into()]), StartPosition::Earliest);
        if commit {
            kafka.settings.extend([
                ("group.id".to_string(), group.to_string()),
                ("enable.auto.commit".to_string(), "true".to_string()),
                ("auto.commit.interval.ms".to_string(), "100".to_string()),
            ]);
        }
        let mut readers =
            vec![
                KafkaReader::open("bets", &kafka, brokers.clone(), 0, 1, &Resume::new(), false)
                    .unwrap(),
            ];
        assert_eq!(read(&mut readers, 30).len(), 30);
        // Keep polling a little, so the commit timer fires and its result is served.
        for _ in 0..20 {
            readers[0].read(10, &mut |_, _| {});
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(readers);
        assert_eq!(
            committed(group),
            if commit { 30 } else { 0 },
            "group {group}"
        );
    }
}

#[test]
fn a_bad_client_setting_is_refused_with_its_name() {
    let mut kafka = source(Topics::Names(vec!["bets".into()]), StartPosition::Earliest);
    kafka
        .settings
        .insert("fetch.max.bites".to_string(), "1048576".to_string());
    let error = KafkaReader::open(
        "bets",
        &kafka,
        "127.0.0.1:1".into(),
        0,
        1,
        &Resume::new(),
        false,
    )
    .err()
    .expect("an unknown setting is refused");
    let text = format!("{error:#}");
    assert!(
        text.contains("fetch.max.bites") && text.contains("settings"),
        "{text}"
    );
}
