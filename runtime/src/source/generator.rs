//! The built-in generator of synthetic game events.
//!
//! Every worker owns one [`Generator`] with its own deterministic stream: a
//! ChaCha8 generator seeded from the topology's `seed` and switched to stream
//! number `worker`, so the streams never overlap and a run can be replayed.
//! Each call to [`Generator::next_into`] appends one JSON object to a buffer,
//! written by hand because the generator feeds both live runs and
//! multi-million-event benchmark files, where `serde_json` would dominate.
//!
//! The events carry the fields of `statflow_dsl::check::GENERATOR_FIELDS`:
//!
//! | kind     | share | fields besides `kind ts game_id user_id platform country` |
//! |----------|-------|------------------------------------------------------------|
//! | `reward` | 50%   | `seed_id`, `reward_type`, `amount`                         |
//! | `bet`    | 35%   | `amount`, `payout`, `won`                                  |
//! | `login`  | 15%   | none                                                       |
//!
//! Games and users are skewed with Zipf distributions ([`GAME_SKEW`],
//! [`USER_SKEW`]), countries, platforms, seeds and reward types with fixed
//! weights, and about 5% of events are late ([`LATE_PERCENT`]).
//!
//! The bytes are the same on every run with the same seed, worker and
//! nominal times on the same platform; across platforms they can differ in
//! the rare amount whose rounding depends on the last bit of `exp` or `powf`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use statflow_dsl::GeneratorSource;

/// Zipf exponent of games. Above 1, so a handful of hit games take most of
/// the traffic (with 200 games the top one gets about a fifth of the events,
/// the top three a third), which makes per-game dimensions uneven, as in production.
pub const GAME_SKEW: f64 = 1.1;

/// Zipf exponent of users. Below 1, so the tail stays long and
/// `distinct(user_id)` keeps growing (500,000 events from a million users
/// reach about 190,000 of them), while the head is heavy: the most active
/// user makes about 3% of the events.
pub const USER_SKEW: f64 = 0.9;

/// Percentage of events that are late.
pub const LATE_PERCENT: u32 = 5;

/// Every event is made up to this much earlier than its nominal time, so
/// that events from one instant are not perfectly ordered.
pub const MAX_JITTER_MS: i64 = 500;

/// A late event is made at least this much earlier than its nominal time,
/// well beyond the jitter, so that it really arrives out of order.
pub const MIN_LATE_MS: i64 = 1_000;

/// A late event is made less than this much earlier than its nominal time.
/// Strictly below 5 minutes so that a topology declaring `late = 5m` keeps
/// every generated event, whichever side of the bound the engine counts.
pub const MAX_LATE_MS: i64 = 300_000;

/// The kinds of event the generator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A reward paid to a player (about 50%).
    Reward,
    /// A bet placed by a player (about 35%).
    Bet,
    /// A player logging in (about 15%).
    Login,
}

impl EventKind {
    /// Every kind, in the order of their shares.
    pub const ALL: [EventKind; 3] = [EventKind::Reward, EventKind::Bet, EventKind::Login];

    /// The kind as written in the `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Reward => "reward",
            EventKind::Bet => "bet",
            EventKind::Login => "login",
        }
    }

    /// The kind written as `name` in the `kind` field, if there is one.
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// What [`Generator::next_into`] wrote, for callers that count, filter or test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedEvent {
    /// The event's kind.
    pub kind: EventKind,
    /// The `ts` written: the nominal time minus jitter or lateness.
    pub ts_ms: i64,
    /// Whether the event was made late (between [`MIN_LATE_MS`] and [`MAX_LATE_MS`] early).
    pub late: bool,
}

/// One worker's stream of synthetic events.
#[derive(Debug, Clone)]
pub struct Generator {
    /// The worker's own stream; ChaCha so that the bytes are portable and
    /// `set_stream` gives every worker a disjoint sequence from one seed.
    rng: ChaCha8Rng,
    /// This worker's share of the topology's `events`; `None` runs forever.
    share: Option<u64>,
    /// Events this worker may still make; counts down from `share`.
    remaining: Option<u64>,
    /// The worker's share of the topology's rate, in events per second.
    rate: f64,
    /// Skew of games over `1..=games`.
    games: Zipf<f64>,
    /// The number of games, to clamp a sample that rounding pushed past it.
    game_count: u64,
    /// Digits of a game id (`g017` has 3), so that ids sort and read evenly.
    game_width: usize,
    /// Skew of users over `1..=users`.
    users: Zipf<f64>,
    /// The number of users, to clamp a sample that rounding pushed past it.
    user_count: u64,
    /// Digits of a user id (`u0001234` has 7).
    user_width: usize,
    /// Weighted tables, built once so that each pick is one index.
    kinds: Weighted,
    platforms: Weighted,
    countries: Weighted,
    seeds: Weighted,
    reward_types: Weighted,
    multipliers: Weighted,
    /// Amounts per reward type, indexed like `REWARD_TYPES`.
    reward_amounts: [LogUniform; 6],
    /// Amounts of bets.
    bet_amount: LogUniform,
}

/// Kinds by weight: 50% rewards, 35% bets, 15% logins.
const KINDS: [(EventKind, u32); 3] = [
    (EventKind::Reward, 10),
    (EventKind::Bet, 7),
    (EventKind::Login, 3),
];

const PLATFORMS: [(&str, u32); 3] = [("android", 46), ("ios", 38), ("web", 16)];

/// A dozen countries, skewed towards the first.
const COUNTRIES: [(&str, u32); 12] = [
    ("US", 22),
    ("BR", 14),
    ("IN", 11),
    ("DE", 9),
    ("GB", 8),
    ("MX", 7),
    ("FR", 6),
    ("JP", 6),
    ("TR", 5),
    ("PH", 5),
    ("CA", 4),
    ("ES", 3),
];

/// The campaigns that seed rewards; `fuc` and `tax-up` lead, as the examples
/// in the book filter on them.
const SEEDS: [(&str, u32); 12] = [
    ("fuc", 18),
    ("tax-up", 14),
    ("welcome", 12),
    ("daily-spin", 10),
    ("level-up", 9),
    ("streak", 8),
    ("vip", 7),
    ("comeback", 6),
    ("friend-invite", 5),
    ("season-pass", 5),
    ("weekend", 3),
    ("happy-hour", 3),
];

/// A reward type with its weight and the range its amounts are drawn from, log-uniformly.
struct RewardType {
    name: &'static str,
    weight: u32,
    min: f64,
    max: f64,
}

const REWARD_TYPES: [RewardType; 6] = [
    RewardType {
        name: "task",
        weight: 40,
        min: 1.0,
        max: 50.0,
    },
    RewardType {
        name: "bonus",
        weight: 25,
        min: 5.0,
        max: 250.0,
    },
    RewardType {
        name: "daily",
        weight: 20,
        min: 1.0,
        max: 25.0,
    },
    RewardType {
        name: "tournament",
        weight: 8,
        min: 20.0,
        max: 2_000.0,
    },
    RewardType {
        name: "referral",
        weight: 6,
        min: 10.0,
        max: 100.0,
    },
    // Rare and large: one reward in a hundred, two to five orders of magnitude above a task.
    RewardType {
        name: "jackpot",
        weight: 1,
        min: 10_000.0,
        max: 1_000_000.0,
    },
];

/// Bets range from 10 cents to 500, log-uniformly.
const BET_MIN: f64 = 0.10;
const BET_MAX: f64 = 500.0;

/// Percentage of bets won.
const BET_WIN_PERCENT: u32 = 35;

/// What a won bet pays, as a multiple of the stake, per thousand won bets.
/// With 35% of bets won this returns about 94% of the stakes, like a casino game.
const MULTIPLIERS: [(u64, u32); 5] = [(2, 700), (3, 200), (5, 80), (10, 18), (50, 2)];

impl Generator {
    /// The stream of worker `worker` out of `peers`: its seed is derived from
    /// `(config.seed, worker)`, and together the `peers` streams make
    /// `config.rate` events per second and `config.events` events in all.
    /// `peers` of zero is taken as one; `games` or `users` of zero as one.
    pub fn new(config: &GeneratorSource, worker: usize, peers: usize) -> Generator {
        let peers = peers.max(1) as u64;
        let worker = worker as u64;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        rng.set_stream(worker);
        // Split evenly, the remainder to the low workers, so the shares sum to the total.
        let share = config
            .events
            .map(|total| total / peers + u64::from(worker < total % peers));
        let game_count = config.games.max(1);
        let user_count = config.users.max(1);
        Generator {
            rng,
            share,
            remaining: share,
            rate: config.rate as f64 / peers as f64,
            games: zipf(game_count, GAME_SKEW),
            game_count,
            game_width: digits(game_count).max(3),
            users: zipf(user_count, USER_SKEW),
            user_count,
            user_width: digits(user_count).max(7),
            kinds: Weighted::new(KINDS.iter().map(|(_, w)| *w)),
            platforms: Weighted::new(PLATFORMS.iter().map(|(_, w)| *w)),
            countries: Weighted::new(COUNTRIES.iter().map(|(_, w)| *w)),
            seeds: Weighted::new(SEEDS.iter().map(|(_, w)| *w)),
            reward_types: Weighted::new(REWARD_TYPES.iter().map(|t| t.weight)),
            multipliers: Weighted::new(MULTIPLIERS.iter().map(|(_, w)| *w)),
            reward_amounts: REWARD_TYPES.map(|t| LogUniform::new(t.min, t.max)),
            bet_amount: LogUniform::new(BET_MIN, BET_MAX),
        }
    }

    /// How many events this worker makes in all; `None` when it runs forever.
    pub fn events_for_this_worker(&self) -> Option<u64> {
        self.share
    }

    /// This worker's share of the rate, in events per second.
    pub fn rate_for_this_worker(&self) -> f64 {
        self.rate
    }

    /// How many events this worker may still make; `None` when it runs forever.
    pub fn remaining(&self) -> Option<u64> {
        self.remaining
    }

    /// Appends the next event to `out` as one JSON object, without a newline,
    /// and says what it wrote; `None` (with nothing written) once this worker's
    /// share of `events` is used up. `nominal_ms` is the time the caller wants
    /// the event at, in epoch milliseconds: the event's `ts` is up to
    /// [`MAX_JITTER_MS`] earlier, or, for about 5% of events, between
    /// [`MIN_LATE_MS`] and [`MAX_LATE_MS`] earlier.
    pub fn next_into(&mut self, nominal_ms: i64, out: &mut Vec<u8>) -> Option<GeneratedEvent> {
        if let Some(remaining) = &mut self.remaining {
            *remaining = remaining.checked_sub(1)?;
        }
        // The draws happen in a fixed order, whatever the kind, up to the
        // kind-specific fields, so a stream is a pure function of its seed.
        let rng = &mut self.rng;
        let kind = KINDS[self.kinds.pick(rng)].0;
        let late = rng.random_range(0..100) < LATE_PERCENT;
        let delay = if late {
            rng.random_range(MIN_LATE_MS..MAX_LATE_MS)
        } else {
            rng.random_range(0..=MAX_JITTER_MS)
        };
        let ts_ms = nominal_ms.saturating_sub(delay);
        let game = sample_rank(&self.games, self.game_count, rng);
        let user = sample_rank(&self.users, self.user_count, rng);
        let platform = PLATFORMS[self.platforms.pick(rng)].0;
        let country = COUNTRIES[self.countries.pick(rng)].0;

        out.extend_from_slice(match kind {
            EventKind::Reward => b"{\"kind\":\"reward\",\"ts\":",
            EventKind::Bet => b"{\"kind\":\"bet\",\"ts\":",
            EventKind::Login => b"{\"kind\":\"login\",\"ts\":",
        });
        push_i64(out, ts_ms);
        out.extend_from_slice(b",\"game_id\":\"g");
        push_padded(out, game, self.game_width);
        out.extend_from_slice(b"\",\"user_id\":\"u");
        push_padded(out, user, self.user_width);
        out.extend_from_slice(b"\",\"platform\":\"");
        out.extend_from_slice(platform.as_bytes());
        out.extend_from_slice(b"\",\"country\":\"");
        out.extend_from_slice(country.as_bytes());
        out.push(b'"');

        match kind {
            EventKind::Reward => {
                let seed = SEEDS[self.seeds.pick(rng)].0;
                let reward_type = self.reward_types.pick(rng);
                let reward = &REWARD_TYPES[reward_type];
                let amount = self.reward_amounts[reward_type].cents(rng);
                out.extend_from_slice(b",\"seed_id\":\"");
                out.extend_from_slice(seed.as_bytes());
                out.extend_from_slice(b"\",\"reward_type\":\"");
                out.extend_from_slice(reward.name.as_bytes());
                out.extend_from_slice(b"\",\"amount\":");
                push_cents(out, amount);
            }
            EventKind::Bet => {
                let amount = self.bet_amount.cents(rng);
                let won = rng.random_range(0..100) < BET_WIN_PERCENT;
                let payout = if won {
                    amount * MULTIPLIERS[self.multipliers.pick(rng)].0
                } else {
                    0
                };
                out.extend_from_slice(b",\"amount\":");
                push_cents(out, amount);
                out.extend_from_slice(b",\"payout\":");
                push_cents(out, payout);
                out.extend_from_slice(if won {
                    b",\"won\":true"
                } else {
                    b",\"won\":false"
                });
            }
            EventKind::Login => {}
        }
        out.push(b'}');
        Some(GeneratedEvent { kind, ts_ms, late })
    }
}

/// A Zipf distribution over `1..=n`. rand_distr 0.5 samples it by
/// rejection-inversion (Hörmann and Derflinger): O(1) per sample and O(1)
/// memory whatever `n`, so a million users cost nothing to set up.
fn zipf(n: u64, exponent: f64) -> Zipf<f64> {
    // `n` is at least 1 and the exponent a positive constant, the only two things `new` checks.
    Zipf::new(n as f64, exponent).expect("n >= 1 and exponent >= 0")
}

/// A rank in `1..=n` drawn from `zipf`; the clamp guards against float rounding at the top.
fn sample_rank(zipf: &Zipf<f64>, n: u64, rng: &mut ChaCha8Rng) -> u64 {
    (zipf.sample(rng) as u64).clamp(1, n)
}

/// Amounts drawn log-uniformly from `[min, max]`, so that small amounts are
/// common and large ones possible, in whole cents.
#[derive(Debug, Clone, Copy)]
struct LogUniform {
    /// `ln(min)`, kept so that a draw is one `exp` rather than a `powf`, at half the cost.
    ln_min: f64,
    /// `ln(max) - ln(min)`.
    ln_span: f64,
}

impl LogUniform {
    fn new(min: f64, max: f64) -> LogUniform {
        LogUniform {
            ln_min: min.ln(),
            ln_span: max.ln() - min.ln(),
        }
    }

    /// An amount in cents, at least one cent.
    fn cents(&self, rng: &mut ChaCha8Rng) -> u64 {
        let u: f64 = rng.random();
        let amount = (self.ln_min + u * self.ln_span).exp();
        ((amount * 100.0).round() as u64).max(1)
    }
}

/// Picks an index with fixed integer weights in one draw: the table holds
/// each index as many times as its weight (at most a thousand slots here).
#[derive(Debug, Clone)]
struct Weighted {
    slots: Vec<u8>,
}

impl Weighted {
    fn new(weights: impl IntoIterator<Item = u32>) -> Weighted {
        let mut slots = Vec::new();
        for (index, weight) in weights.into_iter().enumerate() {
            let index = u8::try_from(index).expect("at most 256 choices");
            slots.extend(std::iter::repeat_n(index, weight as usize));
        }
        assert!(!slots.is_empty(), "weights sum to more than zero");
        Weighted { slots }
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> usize {
        self.slots[rng.random_range(0..self.slots.len())] as usize
    }
}

/// The number of decimal digits of `n`.
fn digits(mut n: u64) -> usize {
    let mut count = 1;
    while n >= 10 {
        n /= 10;
        count += 1;
    }
    count
}

/// Appends `n` in decimal, padded with zeros to at least `width` digits (at most 20).
fn push_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = start.min(buf.len() - width.min(buf.len()));
    out.extend_from_slice(&buf[start..]);
}

/// Appends `n` in decimal.
fn push_u64(out: &mut Vec<u8>, n: u64) {
    push_padded(out, n, 1);
}

/// Appends `n` in decimal, with a minus sign when negative.
fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

/// Appends an amount of `cents` as a JSON number with at most two decimals
/// and no trailing zeros: `1250` is `12.5`, `1200` is `12`, `7` is `0.07`.
fn push_cents(out: &mut Vec<u8>, cents: u64) {
    push_u64(out, cents / 100);
    let (tenths, hundredths) = ((cents / 10 % 10) as u8, (cents % 10) as u8);
    if tenths != 0 || hundredths != 0 {
        out.push(b'.');
        out.push(b'0' + tenths);
        if hundredths != 0 {
            out.push(b'0' + hundredths);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::RngCore;
    use serde_json::Value;

    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn config(events: Option<u64>) -> GeneratorSource {
        GeneratorSource {
            rate: 1000,
            seed: 42,
            events,
            games: 200,
            users: 100_000,
        }
    }

    /// The first `count` events of `worker`, all at nominal time `NOW`.
    fn lines(
        config: &GeneratorSource,
        worker: usize,
        count: usize,
    ) -> Vec<(Vec<u8>, GeneratedEvent)> {
        let mut generator = Generator::new(config, worker, 4);
        (0..count)
            .map(|_| {
                let mut line = Vec::new();
                let event = generator.next_into(NOW, &mut line).unwrap();
                (line, event)
            })
            .collect()
    }

    #[test]
    fn same_seed_and_worker_give_the_same_bytes() {
        let a = lines(&config(None), 1, 5_000);
        let b = lines(&config(None), 1, 5_000);
        assert_eq!(a, b);
    }

    #[test]
    fn workers_and_seeds_give_different_streams() {
        let w0 = lines(&config(None), 0, 1_000);
        let w1 = lines(&config(None), 1, 1_000);
        let other_seed = lines(
            &GeneratorSource {
                seed: 43,
                ..config(None)
            },
            0,
            1_000,
        );
        let same = |a: &[(Vec<u8>, GeneratedEvent)], b: &[(Vec<u8>, GeneratedEvent)]| {
            a.iter().zip(b).filter(|(x, y)| x.0 == y.0).count()
        };
        // Identical lines can happen by chance (a hot user in a hot game), but rarely.
        assert!(same(&w0, &w1) < 10, "workers 0 and 1 share lines");
        assert!(same(&w0, &other_seed) < 10, "seeds 42 and 43 share lines");
    }

    #[test]
    fn every_line_is_json_with_the_fields_of_its_kind() {
        let common = ["kind", "ts", "game_id", "user_id", "platform", "country"];
        let id = regex::Regex::new(r"^g\d{3}$").unwrap();
        let user = regex::Regex::new(r"^u\d{7}$").unwrap();
        for (line, event) in lines(&config(None), 0, 20_000) {
            let text = std::str::from_utf8(&line).unwrap();
            let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
            let object = value.as_object().unwrap();
            assert_eq!(object["kind"], event.kind.as_str());
            assert_eq!(
                object["ts"].as_i64(),
                Some(event.ts_ms),
                "ts is an integer: {text}"
            );
            assert!(id.is_match(object["game_id"].as_str().unwrap()), "{text}");
            assert!(user.is_match(object["user_id"].as_str().unwrap()), "{text}");
            assert!(["ios", "android", "web"].contains(&object["platform"].as_str().unwrap()));
            let country = object["country"].as_str().unwrap();
            assert!(country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()));
            let extra: Vec<&str> = match event.kind {
                EventKind::Reward => vec!["seed_id", "reward_type", "amount"],
                EventKind::Bet => vec!["amount", "payout", "won"],
                EventKind::Login => vec![],
            };
            assert_eq!(object.len(), common.len() + extra.len(), "{text}");
            for field in common.iter().chain(&extra) {
                assert!(object.contains_key(*field), "no {field}: {text}");
            }
            let two_decimals = |v: &Value| {
                let x = v.as_f64().unwrap();
                ((x * 100.0).round() - x * 100.0).abs() < 1e-6
            };
            match event.kind {
                EventKind::Reward => {
                    assert!(object["seed_id"].is_string());
                    assert!(object["reward_type"].is_string());
                    assert!(object["amount"].as_f64().unwrap() > 0.0, "{text}");
                    assert!(two_decimals(&object["amount"]), "{text}");
                }
                EventKind::Bet => {
                    assert!(object["amount"].as_f64().unwrap() > 0.0, "{text}");
                    assert!(two_decimals(&object["amount"]), "{text}");
                    assert!(object["payout"].as_f64().unwrap() >= 0.0, "{text}");
                    assert!(two_decimals(&object["payout"]), "{text}");
                    let won = object["won"].as_bool().unwrap();
                    assert_eq!(won, object["payout"].as_f64().unwrap() > 0.0, "{text}");
                }
                EventKind::Login => {}
            }
        }
    }

    #[test]
    fn kinds_mix_about_half_rewards_a_third_bets() {
        let mut counts: HashMap<EventKind, usize> = HashMap::new();
        for (_, event) in lines(&config(None), 0, 100_000) {
            *counts.entry(event.kind).or_default() += 1;
        }
        let share = |k| counts[&k] as f64 / 100_000.0;
        assert!((share(EventKind::Reward) - 0.50).abs() < 0.01);
        assert!((share(EventKind::Bet) - 0.35).abs() < 0.01);
        assert!((share(EventKind::Login) - 0.15).abs() < 0.01);
    }

    #[test]
    fn about_five_percent_are_late_and_never_by_five_minutes() {
        let events = lines(&config(None), 0, 100_000);
        let late = events.iter().filter(|(_, e)| e.late).count();
        // Binomial(100k, 5%) has a standard deviation of about 70.
        assert!((4_500..5_500).contains(&late), "{late} late events");
        for (_, event) in &events {
            let delay = NOW - event.ts_ms;
            if event.late {
                assert!(
                    (MIN_LATE_MS..MAX_LATE_MS).contains(&delay),
                    "late by {delay} ms"
                );
                assert!(delay < 5 * 60 * 1000);
            } else {
                assert!((0..=MAX_JITTER_MS).contains(&delay), "jitter of {delay} ms");
            }
        }
    }

    #[test]
    fn events_are_split_across_peers_and_sum_to_the_total() {
        for (total, peers) in [(10, 3), (1_000, 4), (7, 8), (0, 2), (5, 1)] {
            let config = config(Some(total));
            let mut sum = 0;
            for worker in 0..peers {
                let mut generator = Generator::new(&config, worker, peers);
                let share = generator.events_for_this_worker().unwrap();
                assert!(share == total / peers as u64 || share == total / peers as u64 + 1);
                let mut out = Vec::new();
                let mut made = 0;
                while generator.next_into(NOW, &mut out).is_some() {
                    made += 1;
                }
                assert_eq!(made, share);
                assert_eq!(generator.remaining(), Some(0));
                sum += made;
            }
            assert_eq!(sum, total, "{total} events over {peers} peers");
        }
        // The remainder goes to the low workers.
        let shares: Vec<u64> = (0..3)
            .map(|w| {
                Generator::new(&config(Some(10)), w, 3)
                    .events_for_this_worker()
                    .unwrap()
            })
            .collect();
        assert_eq!(shares, [4, 3, 3]);
        assert_eq!(
            Generator::new(&config(None), 0, 3).events_for_this_worker(),
            None
        );
    }

    #[test]
    fn rate_is_split_across_peers() {
        let generator = Generator::new(&config(None), 2, 4);
        assert_eq!(generator.rate_for_this_worker(), 250.0);
    }

    #[test]
    fn games_and_users_are_skewed() {
        let mut games: HashMap<Value, usize> = HashMap::new();
        let mut users: HashMap<Value, usize> = HashMap::new();
        let events = lines(&config(None), 0, 100_000);
        for (line, _) in &events {
            let value: Value = serde_json::from_slice(line).unwrap();
            *games.entry(value["game_id"].clone()).or_default() += 1;
            *users.entry(value["user_id"].clone()).or_default() += 1;
        }
        let top_game = *games.values().max().unwrap() as f64 / events.len() as f64;
        // Uniform would give 1/200 = 0.5%; Zipf(1.1) gives the top game about 20%.
        assert!(top_game > 10.0 / 200.0, "top game has {top_game}");
        let top_user = *users.values().max().unwrap();
        // Uniform would give about 1 event per user.
        assert!(top_user > 100, "top user has {top_user} events");
    }

    #[test]
    fn the_six_reward_types_and_a_dozen_seeds_appear() {
        let mut types: HashMap<String, Vec<f64>> = HashMap::new();
        let mut seeds: HashMap<String, usize> = HashMap::new();
        for (line, event) in lines(&config(None), 0, 100_000) {
            if event.kind != EventKind::Reward {
                continue;
            }
            let value: Value = serde_json::from_slice(&line).unwrap();
            let kind = value["reward_type"].as_str().unwrap().to_string();
            types
                .entry(kind)
                .or_default()
                .push(value["amount"].as_f64().unwrap());
            *seeds
                .entry(value["seed_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        let mut names: Vec<&str> = types.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "bonus",
                "daily",
                "jackpot",
                "referral",
                "task",
                "tournament"
            ]
        );
        assert_eq!(seeds.len(), 12);
        assert!(seeds.contains_key("fuc") && seeds.contains_key("tax-up"));
        // Jackpots are rare and large.
        let jackpots = &types["jackpot"];
        assert!(jackpots.len() < types["task"].len() / 10);
        assert!(jackpots.iter().all(|a| *a >= 10_000.0));
    }

    #[test]
    fn a_million_users_get_seven_digit_ids() {
        let config = GeneratorSource {
            users: 1_000_000,
            games: 5_000,
            ..config(None)
        };
        let mut generator = Generator::new(&config, 0, 1);
        let mut out = Vec::new();
        let mut max_user = 0;
        for _ in 0..50_000 {
            out.clear();
            generator.next_into(NOW, &mut out).unwrap();
            let value: Value = serde_json::from_slice(&out).unwrap();
            let user = value["user_id"].as_str().unwrap();
            let game = value["game_id"].as_str().unwrap();
            assert_eq!(user.len(), 8, "{user}");
            assert_eq!(game.len(), 5, "{game}");
            max_user = max_user.max(user[1..].parse::<u64>().unwrap());
        }
        assert!(max_user <= 1_000_000);
        // With an exponent below 1 the tail is long: ids far from the head appear.
        assert!(max_user > 500_000, "largest user id {max_user}");
    }

    /// Counts the words drawn, to show that Zipf sampling is O(1).
    struct Counting {
        inner: ChaCha8Rng,
        words: u64,
    }

    impl RngCore for Counting {
        fn next_u32(&mut self) -> u32 {
            self.words += 1;
            self.inner.next_u32()
        }
        fn next_u64(&mut self) -> u64 {
            self.words += 1;
            self.inner.next_u64()
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            self.words += dest.len().div_ceil(8) as u64;
            self.inner.fill_bytes(dest)
        }
    }

    #[test]
    fn zipf_sampling_draws_a_constant_number_of_words() {
        for (n, exponent) in [
            (200, GAME_SKEW),
            (1_000_000, USER_SKEW),
            (1_000_000_000, USER_SKEW),
        ] {
            let mut rng = Counting {
                inner: ChaCha8Rng::seed_from_u64(1),
                words: 0,
            };
            let distribution = zipf(n, exponent);
            let samples = 100_000;
            for _ in 0..samples {
                let x: f64 = distribution.sample(&mut rng);
                assert!(x >= 1.0 && x <= n as f64);
            }
            // One attempt draws two words; rejection-inversion rarely needs a second.
            let per_sample = rng.words as f64 / samples as f64;
            assert!(
                per_sample < 2.5,
                "{per_sample} words per sample with n = {n}"
            );
        }
    }

    #[test]
    fn numbers_are_written_like_json() {
        let text = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            f(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(&|o| push_cents(o, 1250)), "12.5");
        assert_eq!(text(&|o| push_cents(o, 1200)), "12");
        assert_eq!(text(&|o| push_cents(o, 1205)), "12.05");
        assert_eq!(text(&|o| push_cents(o, 7)), "0.07");
        assert_eq!(text(&|o| push_cents(o, 0)), "0");
        assert_eq!(text(&|o| push_i64(o, -1_234)), "-1234");
        assert_eq!(text(&|o| push_i64(o, i64::MIN)), i64::MIN.to_string());
        assert_eq!(text(&|o| push_u64(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(text(&|o| push_padded(o, 17, 3)), "017");
        assert_eq!(text(&|o| push_padded(o, 1_234, 7)), "0001234");
        assert_eq!(text(&|o| push_padded(o, 12_345, 3)), "12345");
        assert_eq!(digits(0), 1);
        assert_eq!(digits(1_000_000), 7);
    }

    #[test]
    fn written_names_need_no_escaping() {
        // The writer copies names verbatim, which is only right for plain ASCII.
        let names = PLATFORMS
            .iter()
            .chain(&COUNTRIES)
            .chain(&SEEDS)
            .map(|(n, _)| *n)
            .chain(REWARD_TYPES.iter().map(|t| t.name))
            .chain(EventKind::ALL.iter().map(|k| k.as_str()));
        for name in names {
            assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "{name}"
            );
        }
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::from_name("rewards"), None);
    }
}
