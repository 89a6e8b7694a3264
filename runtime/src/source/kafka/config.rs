//! The librdkafka client settings of a Kafka source: where the brokers
//! come from, statflow's defaults, the topology's settings passed through,
//! and the few settings that are statflow's own.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use statflow_dsl::KafkaSource;

/// The environment variable naming the brokers when neither the topology
/// nor `--kafka-brokers` does.
pub const BROKERS_ENV: &str = "STATFLOW_KAFKA_BROKERS";

/// Settings under this prefix are statflow's, not librdkafka's, and are
/// not passed to the client.
pub const OWN_PREFIX: &str = "statflow.";

/// How often a source looks for new topics (patterns) and new partitions,
/// unless `statflow.discovery.interval.ms` says otherwise.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);

/// Why a Kafka source cannot be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No brokers anywhere.
    #[error(
        "source `{source_name}` names no Kafka brokers: add `brokers = [\"host:9092\"]` to it, \
         run with --kafka-brokers host:9092, or set {BROKERS_ENV}"
    )]
    NoBrokers {
        /// The source.
        source_name: String,
    },
    /// A statflow setting with a bad value or an unknown name.
    #[error("source `{source_name}`: setting `{key}` = {value:?}: {why}")]
    BadSetting {
        /// The source.
        source_name: String,
        /// The setting.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong and what to write.
        why: String,
    },
}

/// Where the brokers of a source come from, most specific first: the
/// source's own `brokers` in the topology, then `--kafka-brokers`, then
/// the `STATFLOW_KAFKA_BROKERS` environment variable.
pub fn brokers(
    source_name: &str,
    kafka: &KafkaSource,
    flag: Option<&str>,
    env: Option<&str>,
) -> Result<String, ConfigError> {
    let from_topology = kafka.brokers.join(",");
    let found = [Some(from_topology.as_str()), flag, env]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|b| !b.is_empty())
        .map(str::to_string);
    found.ok_or_else(|| ConfigError::NoBrokers {
        source_name: source_name.to_string(),
    })
}

/// statflow's own settings of one source.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnSettings {
    /// How often to look for new topics and partitions.
    pub discovery_interval: Duration,
}

/// Splits the topology's settings into librdkafka's and statflow's own.
pub fn split_settings(
    source_name: &str,
    settings: &BTreeMap<String, String>,
) -> Result<(BTreeMap<String, String>, OwnSettings), ConfigError> {
    let mut client = BTreeMap::new();
    let mut own = OwnSettings {
        discovery_interval: DISCOVERY_INTERVAL,
    };
    for (key, value) in settings {
        let Some(name) = key.strip_prefix(OWN_PREFIX) else {
            client.insert(key.clone(), value.clone());
            continue;
        };
        let bad = |why: &str| ConfigError::BadSetting {
            source_name: source_name.to_string(),
            key: key.clone(),
            value: value.clone(),
            why: why.to_string(),
        };
        match name {
            "discovery.interval.ms" => {
                let ms: u64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("write a number of milliseconds, such as 5000"))?;
                if ms < 100 {
                    return Err(bad("look at least every 100 ms"));
                }
                own.discovery_interval = Duration::from_millis(ms);
            }
            _ => {
                return Err(bad(
                    "statflow knows `statflow.discovery.interval.ms`; other settings go to \
                     librdkafka without the prefix",
                ))
            }
        }
    }
    Ok((client, own))
}

/// The consumer's settings: statflow's defaults, then the topology's
/// settings over them (a user who sets one knows why).
pub fn consumer(
    source_name: &str,
    brokers: &str,
    settings: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", format!("statflow-{source_name}"))
        // librdkafka needs a group to assign partitions by hand. statflow
        // never joins it (no subscribe, no rebalancing) and never reads its
        // committed offsets; set "enable.auto.commit" = true to have them
        // committed for outside lag tools.
        .set("group.id", format!("statflow.{source_name}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // A position that is gone (retention) restarts at the oldest kept
        // message, not at the newest: losing less is the better surprise.
        .set("auto.offset.reset", "earliest")
        // Backpressure: librdkafka prefetches into a local queue and stops
        // fetching while the queue is full. The reader takes a bounded batch
        // per worker step, so a slow pipeline leaves messages on the broker
        // instead of in memory: at most 16 MiB queued (the default is
        // 64 MiB), refilled below 20,000 messages per partition.
        .set("queued.max.messages.kbytes", "16384")
        .set("queued.min.messages", "20000")
        // High watermarks (for lag) and the brokers' states come from the
        // client's statistics.
        .set("statistics.interval.ms", "1000")
        // A fetch that finds nothing new is answered after at most 100 ms
        // (librdkafka's default is 500 ms): Kafka answers as soon as data
        // arrives anyway, but some brokers (Tansu) hold the fetch for the
        // whole wait, and that wait is added to every event's freshness.
        .set("fetch.wait.max.ms", "100")
        // Reconnect with backoff, from 100 ms up to 10 s.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "10000");
    for (key, value) in settings {
        config.set(key, value);
    }
    config
}

/// The settings of a producer: lz4 and a short linger by default, then
/// `settings` over them.
pub fn producer(brokers: &str, settings: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", "statflow-producer")
        // lz4 compresses well and every Kafka-protocol broker reads it back
        // (Tansu cannot read snappy).
        .set("compression.type", "lz4")
        .set("linger.ms", "5");
    for (key, value) in settings {
        config.set(key, value);
    }
    config
}

/// The settings of a source that a producer on the same cluster needs too
/// (for its dead-letter topic): security and connection settings, not the
/// consumer's fetch settings.
pub fn connection_settings(settings: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    settings
        .iter()
        .filter(|(key, _)| {
            [
                "security.",
                "sasl.",
                "ssl.",
                "socket.",
                "broker.",
                "reconnect.",
            ]
            .iter()
            .any(|p| key.starts_with(p))
                || matches!(key.as_str(), "api.version.request" | "client.dns.lookup")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use statflow_dsl::{StartPosition, Topics};

    fn source(brokers: &[&str]) -> KafkaSource {
        KafkaSource {
            topics: Topics::Names(vec!["t".into()]),
            brokers: brokers.iter().map(|b| b.to_string()).collect(),
            start: StartPosition::Earliest,
            settings: BTreeMap::new(),
            dead_letters: None,
        }
    }

    #[test]
    fn brokers_come_from_the_topology_then_the_flag_then_the_environment() {
        let s = source(&["a:1", "b:2"]);
        assert_eq!(
            brokers("s", &s, Some("f:1"), Some("e:1")).unwrap(),
            "a:1,b:2"
        );
        let s = source(&[]);
        assert_eq!(brokers("s", &s, Some("f:1"), Some("e:1")).unwrap(), "f:1");
        assert_eq!(brokers("s", &s, Some(" "), Some("e:1")).unwrap(), "e:1");
        let e = brokers("rewards", &s, None, None).unwrap_err().to_string();
        assert!(
            e.contains("--kafka-brokers") && e.contains(BROKERS_ENV),
            "{e}"
        );
    }

    #[test]
    fn own_settings_are_taken_out_and_checked() {
        let settings: BTreeMap<String, String> = [
            ("fetch.max.bytes", "1048576"),
            ("statflow.discovery.interval.ms", "250"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (client, own) = split_settings("s", &settings).unwrap();
        assert_eq!(client.len(), 1);
        assert_eq!(own.discovery_interval, Duration::from_millis(250));
        for (k, v) in [
            ("statflow.discovery.interval.ms", "soon"),
            ("statflow.discovery.interval.ms", "5"),
            ("statflow.unknown", "1"),
        ] {
            let settings = BTreeMap::from([(k.to_string(), v.to_string())]);
            assert!(split_settings("s", &settings).is_err(), "{k} = {v}");
        }
    }

    #[test]
    fn the_topology_overrides_defaults() {
        let settings = BTreeMap::from([
            ("queued.max.messages.kbytes".to_string(), "1024".to_string()),
            ("security.protocol".to_string(), "SASL_SSL".to_string()),
            ("fetch.max.bytes".to_string(), "1000".to_string()),
        ]);
        let c = consumer("bets", "h:1", &settings);
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("1024"));
        assert_eq!(c.get("group.id"), Some("statflow.bets"));
        let p = producer("h:1", &connection_settings(&settings));
        assert_eq!(p.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(p.get("fetch.max.bytes"), None);
    }
}
