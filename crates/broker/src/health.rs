//! What `/health` (liveness) and `/ready` (readiness) report, and the background tasks the
//! broker supervises.
//!
//! Every long-running part of the broker registers here: the background loops (uploader,
//! retention, offset expiry) run in one [`tokio::task::JoinSet`] owned by the broker and
//! awaited at shutdown; a loop that returns before shutdown or panics is recorded as failed.
//! The WAL's threads report through the WAL itself. Partitions whose upload fails for a reason
//! retrying will not fix are recorded as stuck: the broker still serves, so that is a degraded
//! readiness, not a failed liveness.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Health of the broker's parts.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Component -> why it failed.
    failed: BTreeMap<String, String>,
    /// (topic, partition) -> why its uploads fail permanently.
    stuck: BTreeMap<(String, i32), String>,
}

/// The verdict of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every part is alive (liveness).
    pub live: bool,
    /// The broker takes traffic (readiness).
    pub ready: bool,
    /// One line per problem, empty when all is well.
    pub problems: Vec<String>,
}

impl Health {
    /// Records that `component` failed (once; the first reason is kept).
    pub fn fail(&self, component: &str, why: impl Into<String>) {
        if let Ok(mut s) = self.inner.lock() {
            s.failed
                .entry(component.to_string())
                .or_insert_with(|| why.into());
        }
    }

    /// Records a partition's upload as stuck; true if it was not already.
    pub fn set_stuck(&self, topic: &str, partition: i32, why: &str) -> bool {
        self.inner.lock().is_ok_and(|mut s| {
            s.stuck
                .insert((topic.to_string(), partition), why.to_string())
                .is_none()
        })
    }

    /// Clears a partition's stuck state; true if it was stuck.
    pub fn clear_stuck(&self, topic: &str, partition: i32) -> bool {
        self.inner
            .lock()
            .is_ok_and(|mut s| s.stuck.remove(&(topic.to_string(), partition)).is_some())
    }

    /// Partitions currently stuck.
    pub fn stuck(&self) -> Vec<(String, i32, String)> {
        self.inner
            .lock()
            .map(|s| {
                s.stuck
                    .iter()
                    .map(|((t, p), w)| (t.clone(), *p, w.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The report, given what the caller knows of the WAL and of shutdown.
    pub fn report(&self, wal_problem: Option<String>, shutting_down: bool) -> Report {
        let Ok(s) = self.inner.lock() else {
            return Report {
                live: false,
                ready: false,
                problems: vec!["health state poisoned".into()],
            };
        };
        let mut problems: Vec<String> = s
            .failed
            .iter()
            .map(|(c, w)| format!("{c} failed: {w}"))
            .collect();
        if let Some(w) = &wal_problem {
            problems.push(format!("wal: {w}"));
        }
        let live = problems.is_empty();
        if shutting_down {
            problems.push("shutting down".into());
        }
        let ready = problems.is_empty();
        problems.extend(
            s.stuck
                .iter()
                .map(|((t, p), w)| format!("degraded: uploads of {t}-{p} fail permanently: {w}")),
        );
        Report {
            live,
            ready,
            problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_stuck_partitions_show_in_the_report() {
        let h = Health::default();
        assert_eq!(
            h.report(None, false),
            Report {
                live: true,
                ready: true,
                problems: vec![]
            }
        );
        assert!(h.set_stuck("t", 3, "bad batch"));
        assert!(!h.set_stuck("t", 3, "bad batch"), "once per state change");
        let r = h.report(None, false);
        assert!(
            r.live && r.ready,
            "a stuck partition degrades, it does not fail"
        );
        assert_eq!(r.problems.len(), 1);
        assert!(r.problems[0].contains("t-3"));
        assert!(h.clear_stuck("t", 3));
        assert!(!h.clear_stuck("t", 3));
        let r = h.report(None, true);
        assert!(r.live && !r.ready);
        h.fail("uploader", "panicked: boom");
        let r = h.report(Some("write failed".into()), false);
        assert!(!r.live && !r.ready);
        assert_eq!(r.problems.len(), 2);
    }
}
