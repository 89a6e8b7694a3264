//! Before anything else, the workers of a cluster check that every process
//! runs the same topology with the same settings.
//!
//! Each worker builds its dataflows from the topology and the settings it
//! was started with, and timely connects the workers' dataflows by the
//! order they are built in. Processes started with different topologies, or
//! one with `--hourly-rollups` and one without, would connect operators that
//! do not match: rows would go where nothing reads them, or a worker would
//! wait for ever. So the first dataflow every worker builds only passes each
//! worker's [`Setup`] to all the others, and a worker that finds another
//! setup than its own stops with an error that says what differs.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use statflow_dsl::Plan;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};
use timely::worker::Worker;

use crate::checkpoint::metric_fingerprints;

/// What the processes of a cluster must agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setup {
    /// The process the setup comes from (not compared).
    pub process: usize,
    /// Worker threads per process.
    pub threads: usize,
    /// The sources' names, in topology order.
    pub sources: Vec<String>,
    /// Every metric's name and fingerprint, in topology order (see
    /// [`metric_fingerprints`]).
    pub metrics: Vec<(String, u64)>,
    /// Whether the engine keeps hourly rows beside the rollup.
    pub hourly_rollups: bool,
}

impl Setup {
    /// The setup of a process.
    pub fn of(plan: &Plan, process: usize, threads: usize, hourly_rollups: bool) -> Setup {
        Setup {
            process,
            threads,
            sources: plan.sources.iter().map(|s| s.name.clone()).collect(),
            metrics: metric_fingerprints(plan),
            hourly_rollups,
        }
    }

    /// What differs between this setup and `other`'s, as sentences; none
    /// when they agree.
    pub fn differences(&self, other: &Setup) -> Vec<String> {
        let (me, them) = (self.process, other.process);
        let mut said = Vec::new();
        if self.threads != other.threads {
            said.push(format!(
                "process {them} runs {} worker(s), process {me} {}: give every process the same --workers",
                other.threads, self.threads
            ));
        }
        if self.hourly_rollups != other.hourly_rollups {
            let on = |b: bool| if b { "with" } else { "without" };
            said.push(format!(
                "process {them} runs {} --hourly-rollups, process {me} {}: give every process the same flags",
                on(other.hourly_rollups),
                on(self.hourly_rollups)
            ));
        }
        if self.sources != other.sources {
            said.push(format!(
                "process {them} reads the sources {:?}, process {me} {:?}: run every process from the same topology file",
                other.sources, self.sources
            ));
        }
        if self.metrics != other.metrics {
            let names = |s: &Setup| s.metrics.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            let changed: Vec<&str> = self
                .metrics
                .iter()
                .filter(|m| other.metrics.iter().any(|o| o.0 == m.0 && o.1 != m.1))
                .map(|(n, _)| n.as_str())
                .collect();
            said.push(if changed.is_empty() {
                format!(
                    "process {them} has the metrics {:?}, process {me} {:?}: run every process from the same topology file",
                    names(other),
                    names(self)
                )
            } else {
                format!(
                    "processes {them} and {me} define {} differently: run every process from the same topology file",
                    changed.join(", ")
                )
            });
        }
        said
    }
}

/// Passes `mine` to every worker of the cluster and waits for theirs; an
/// error says what differs from the first setup unlike this one. Gives up
/// with an error when `shutdown` is set while it waits.
pub fn agree(worker: &mut Worker, mine: Setup, shutdown: &AtomicBool) -> anyhow::Result<()> {
    let mut input = InputHandleVec::new();
    let probe = ProbeHandle::new();
    let seen: Rc<RefCell<Vec<Setup>>> = Rc::default();
    let into = Rc::clone(&seen);
    worker.dataflow_named("Agreement", |scope| {
        input
            .to_stream(scope)
            .broadcast()
            .inspect(move |setup: &Setup| into.borrow_mut().push(setup.clone()))
            .probe_with(&probe);
    });
    input.send(mine.clone());
    input.advance_to(1u64);
    wait_past(worker, &probe, 1, shutdown)?;
    let differences = seen
        .borrow()
        .iter()
        .map(|s| mine.differences(s))
        .find(|d| !d.is_empty());
    let Some(differences) = differences else {
        return Ok(());
    };
    let message = format!(
        "the processes of this cluster disagree: {}",
        differences.join("; ")
    );
    // Every process finds the same disagreement. Say it now, then leave
    // only once every process has compared too: one that left at once
    // closed its connections while another still read the setups, which
    // then saw only a peer gone.
    tracing::error!("{message}");
    input.advance_to(2u64);
    wait_past(worker, &probe, 2, shutdown)?;
    anyhow::bail!(message)
}

/// Steps `worker` until `probe` has passed `epoch`; an error when
/// `shutdown` is set first.
fn wait_past(
    worker: &mut Worker,
    probe: &ProbeHandle<u64>,
    epoch: u64,
    shutdown: &AtomicBool,
) -> anyhow::Result<()> {
    while probe.less_than(&epoch) {
        anyhow::ensure!(
            !shutdown.load(Ordering::SeqCst),
            "stopped while the processes compared their setups"
        );
        worker.step_or_park(Some(std::time::Duration::from_millis(20)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(process: usize) -> Setup {
        Setup {
            process,
            threads: 2,
            sources: vec!["events".into()],
            metrics: vec![("a".into(), 1), ("b".into(), 2)],
            hourly_rollups: false,
        }
    }

    #[test]
    fn alike_setups_agree_whatever_process_they_come_from() {
        assert!(setup(0).differences(&setup(3)).is_empty());
    }

    #[test]
    fn every_difference_is_said() {
        let mut other = setup(1);
        other.threads = 4;
        other.hourly_rollups = true;
        other.metrics[1].1 = 9;
        let said = setup(0).differences(&other);
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(said[0].contains("process 1 runs 4 worker(s), process 0 2"));
        assert!(said[1].contains("process 1 runs with --hourly-rollups, process 0 without"));
        assert!(said[2].contains("define b differently"));

        let mut other = setup(1);
        other.metrics.push(("c".into(), 3));
        other.sources.push("bets".into());
        let said = setup(0).differences(&other);
        assert!(
            said[0].contains(r#"reads the sources ["events", "bets"]"#),
            "{said:?}"
        );
        assert!(
            said[1].contains(r#"has the metrics ["a", "b", "c"]"#),
            "{said:?}"
        );
    }
}
