//! Health (`/liveness`, `/readiness`) and Prometheus metrics (`/metrics`), as Felix serves them.
//!
//! Metrics are written in the Prometheus text format 0.0.4 by the small encoder below rather than with
//! prometheus-client: that crate only writes OpenMetrics, where every counter gains a `_total` suffix,
//! and Felix's counters (`felix_resyncs_started`, ...) have none. Dashboards written for Felix therefore
//! work unchanged.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use calico_dataplane::activity::Activity;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

/// How long the main loop may go without [`Status::heartbeat`] before `/liveness` fails. The main loop
/// should beat at least every 10 s (for example from a timer in its `select!`).
pub const DEFAULT_LIVENESS_TIMEOUT: Duration = Duration::from_secs(60);

/// The content type Prometheus expects for text format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const NOT_SYNCED_YET: &str = "not ready: the first datastore sync has not been applied yet";

/// How long one piece of work (an `nft` run, a netlink call, a datastore request) may take before
/// `/readiness` reports it as stuck.
pub const STALL_AFTER: Duration = Duration::from_secs(2);

/// Errors logged since start, counted by the logging layer for `felix_log_errors`.
pub static LOG_ERRORS: Counter = Counter(AtomicU64::new(0));

/// Readiness, liveness and metrics of one calico-node, shared (in an `Arc`) between the main loop,
/// which updates it, and the HTTP servers, which report it.
#[derive(Debug)]
pub struct Status {
    /// `None` when ready, else why not.
    not_ready_reason: Mutex<Option<String>>,
    /// Problems the dataplane reports but cannot fix (e.g. a pool asking for IPIP on a kernel without
    /// it); shown with the readiness answer.
    problems: Mutex<Vec<String>>,
    last_heartbeat: Mutex<Instant>,
    liveness_timeout: Duration,
    /// The worker threads' current work, by component ("dataplane", "calculation").
    activities: Mutex<Vec<(&'static str, Arc<Activity>)>>,
    /// Why the datastore cannot be used right now, by source (the syncer, the reachability probe).
    datastore_problems: Mutex<BTreeMap<&'static str, String>>,
    /// Why BGP is not ready (peers not Established), as Calico's BIRD readiness check says it.
    bgp_problems: Mutex<Vec<String>>,
    /// Datastore requests under way.
    pub datastore_requests: InFlight,
    pub metrics: Metrics,
}

/// Requests under way, each with what it is and when it started.
#[derive(Debug, Default)]
pub struct InFlight {
    next_id: AtomicU64,
    requests: Mutex<HashMap<u64, (String, Instant)>>,
}

/// Removes its request from [`InFlight`] when dropped.
#[must_use = "the request counts as under way until the guard is dropped"]
pub struct InFlightGuard<'a> {
    registry: &'a InFlight,
    id: u64,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        lock(&self.registry.requests).remove(&self.id);
    }
}

impl InFlight {
    pub fn begin(&self, what: String) -> InFlightGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.requests).insert(id, (what, Instant::now()));
        InFlightGuard { registry: self, id }
    }

    /// The longest-running request and how long it has run, as of `now`.
    pub fn oldest(&self, now: Instant) -> Option<(String, Duration)> {
        lock(&self.requests)
            .values()
            .min_by_key(|(_, since)| *since)
            .map(|(what, since)| (what.clone(), now.saturating_duration_since(*since)))
    }
}

impl Default for Status {
    fn default() -> Status {
        Status::new()
    }
}

impl Status {
    /// Not ready (until [`set_ready`](Self::set_ready)), live, with [`DEFAULT_LIVENESS_TIMEOUT`].
    pub fn new() -> Status {
        Status::with_liveness_timeout(DEFAULT_LIVENESS_TIMEOUT)
    }

    pub fn with_liveness_timeout(liveness_timeout: Duration) -> Status {
        Status {
            not_ready_reason: Mutex::new(Some(NOT_SYNCED_YET.to_string())),
            problems: Mutex::new(Vec::new()),
            last_heartbeat: Mutex::new(Instant::now()),
            liveness_timeout,
            activities: Mutex::new(Vec::new()),
            datastore_problems: Mutex::new(BTreeMap::new()),
            bgp_problems: Mutex::new(Vec::new()),
            datastore_requests: InFlight::default(),
            metrics: Metrics::default(),
        }
    }

    /// Sets readiness; when not ready, `reason` becomes the body of the 503 answer.
    pub fn set_ready(&self, ready: bool, reason: &str) {
        *lock(&self.not_ready_reason) = (!ready).then(|| reason.to_string());
    }

    pub fn is_ready(&self) -> bool {
        lock(&self.not_ready_reason).is_none()
    }

    /// `Ok` when ready, else the reasons, one per line: not synced or started yet, a datastore the syncer
    /// cannot list or watch, and work that has been running for longer than [`STALL_AFTER`].
    pub fn readiness(&self) -> Result<(), String> {
        let mut reasons: Vec<String> = Vec::new();
        if let Some(reason) = &*lock(&self.not_ready_reason) {
            reasons.push(reason.clone());
        }
        for problem in lock(&self.datastore_problems).values() {
            reasons.push(format!("not ready: datastore: {problem}"));
        }
        for problem in lock(&self.bgp_problems).iter() {
            reasons.push(format!("calico/node is not ready: {problem}"));
        }
        reasons.extend(self.stalls(Instant::now(), STALL_AFTER));
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("\n"))
        }
    }

    /// Work under way for at least `limit`, as lines naming the component, the work and how long.
    fn stalls(&self, now: Instant, limit: Duration) -> Vec<String> {
        let mut stalls = Vec::new();
        for (component, activity) in lock(&self.activities).iter() {
            if let Some((what, running)) = activity.current(now)
                && running >= limit
            {
                stalls.push(format!(
                    "not ready: {component} is stuck: {what} has been running for {:.1} s",
                    running.as_secs_f64()
                ));
            }
        }
        if let Some((what, running)) = self.datastore_requests.oldest(now)
            && running >= limit
        {
            stalls.push(format!(
                "not ready: datastore: {what} has been waiting for {:.1} s",
                running.as_secs_f64()
            ));
        }
        stalls
    }

    /// Lets the health endpoints see what `component`'s thread is doing.
    pub fn watch_activity(&self, component: &'static str, activity: Arc<Activity>) {
        lock(&self.activities).push((component, activity));
    }

    /// Records (Some) or clears (None) why the datastore cannot be used, as seen by `source`.
    pub fn set_datastore_problem(&self, source: &'static str, problem: Option<String>) {
        let mut problems = lock(&self.datastore_problems);
        match problem {
            Some(problem) => {
                problems.insert(source, problem);
            }
            None => {
                problems.remove(source);
            }
        }
    }

    /// Replaces the reasons BGP is not ready (one per line; empty when it is ready).
    pub fn set_bgp_problems(&self, problems: Vec<String>) {
        *lock(&self.bgp_problems) = problems;
    }

    /// Replaces the list of current dataplane problems.
    pub fn set_problems(&self, problems: Vec<String>) {
        *lock(&self.problems) = problems;
    }

    pub fn problems(&self) -> Vec<String> {
        lock(&self.problems).clone()
    }

    /// Records that the main loop is making progress.
    pub fn heartbeat(&self) {
        *lock(&self.last_heartbeat) = Instant::now();
    }

    /// `Ok` when the main loop has beaten within the liveness timeout and no worker has been stuck in
    /// one piece of work for longer than that, else why not.
    pub fn liveness(&self) -> Result<(), String> {
        let silent_for = lock(&self.last_heartbeat).elapsed();
        if silent_for > self.liveness_timeout {
            return Err(format!(
                "not live: the main loop has not reported for {:.1} s (limit {:.1} s)",
                silent_for.as_secs_f64(),
                self.liveness_timeout.as_secs_f64()
            ));
        }
        let stuck = self.stalls(Instant::now(), self.liveness_timeout);
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(stuck.join("\n").replace("not ready:", "not live:"))
        }
    }
}

/// Our values stay consistent even if a holder panicked, so a poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves `GET`/`HEAD` `/liveness` and `/readiness` on `listener` until the future is dropped: 200 with
/// body "ok", or 503 with the reason as body.
pub async fn serve_health(listener: TcpListener, status: Arc<Status>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/liveness", get(liveness))
        .route("/readiness", get(readiness))
        .with_state(status);
    axum::serve(listener, app).await
}

/// Serves `GET /metrics` (Prometheus text format 0.0.4) on `listener` until the future is dropped.
pub async fn serve_metrics(listener: TcpListener, status: Arc<Status>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(status);
    axum::serve(listener, app).await
}

async fn liveness(State(status): State<Arc<Status>>) -> (StatusCode, String) {
    health_answer(status.liveness())
}

async fn readiness(State(status): State<Arc<Status>>) -> (StatusCode, String) {
    let (code, mut body) = health_answer(status.readiness());
    for problem in status.problems() {
        body.push_str(&format!("warning: {problem}\n"));
    }
    (code, body)
}

fn health_answer(result: Result<(), String>) -> (StatusCode, String) {
    match result {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

async fn metrics(State(status): State<Arc<Status>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        status.metrics.encode(),
    )
}

/// A gauge (a value that goes up and down, such as a number of endpoints).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the duration histograms: 1 ms to 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations in seconds, with [`DURATION_BUCKETS`].
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

#[derive(Debug)]
struct HistogramState {
    /// Observations per bucket (not cumulative); the last entry is the `+Inf` bucket.
    per_bucket: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            bounds: DURATION_BUCKETS,
            state: Mutex::new(HistogramState {
                per_bucket: vec![0; DURATION_BUCKETS.len() + 1],
                sum: 0.0,
                count: 0,
            }),
        }
    }
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        let mut state = lock(&self.state);
        state.per_bucket[bucket] += 1;
        state.sum += seconds;
        state.count += 1;
    }

    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        lock(&self.state).count
    }

    fn encode(&self, name: &str, out: &mut String) {
        let state = lock(&self.state);
        let mut cumulative = 0;
        for (bound, observed) in self.bounds.iter().zip(&state.per_bucket) {
            cumulative += observed;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", state.count);
        let _ = writeln!(out, "{name}_sum {}", state.sum);
        let _ = writeln!(out, "{name}_count {}", state.count);
    }
}

/// The metrics calico-node exports: Felix's names where Felix has the same metric, `calico_node_*`
/// for our own. Felix labels some counters by message type; these are unlabelled totals.
#[derive(Debug, Default)]
pub struct Metrics {
    pub active_local_endpoints: Gauge,
    pub cluster_num_hosts: Gauge,
    pub cluster_num_workload_endpoints: Gauge,
    pub resyncs_started: Counter,
    pub int_dataplane_apply_time_seconds: Histogram,
    pub int_dataplane_failures: Counter,
    pub int_dataplane_messages: Counter,
    pub calc_graph_update_time_seconds: Histogram,
    pub calc_graph_updates_processed: Counter,
    pub vxlan_vteps: Gauge,
    pub routes: Gauge,
    pub bgp_peers_established: Gauge,
    pub bgp_peers_not_established: Gauge,
    pub bgp_routes: Gauge,
}

enum Family<'a> {
    Gauge(&'a Gauge),
    Counter(&'a Counter),
    Histogram(&'a Histogram),
}

impl Metrics {
    fn families(&self) -> [(&'static str, &'static str, Family<'_>); 15] {
        [
            (
                "felix_active_local_endpoints",
                "Number of active workload endpoints on this host.",
                Family::Gauge(&self.active_local_endpoints),
            ),
            (
                "felix_cluster_num_hosts",
                "Total number of Calico hosts in the cluster.",
                Family::Gauge(&self.cluster_num_hosts),
            ),
            (
                "felix_cluster_num_workload_endpoints",
                "Total number of workload endpoints in the cluster.",
                Family::Gauge(&self.cluster_num_workload_endpoints),
            ),
            (
                "felix_resyncs_started",
                "Number of times a full resync with the datastore was started.",
                Family::Counter(&self.resyncs_started),
            ),
            (
                "felix_int_dataplane_apply_time_seconds",
                "Time in seconds taken to apply an update to the kernel.",
                Family::Histogram(&self.int_dataplane_apply_time_seconds),
            ),
            (
                "felix_int_dataplane_failures",
                "Number of times applying an update to the kernel failed.",
                Family::Counter(&self.int_dataplane_failures),
            ),
            (
                "felix_int_dataplane_messages",
                "Number of updates passed to the dataplane.",
                Family::Counter(&self.int_dataplane_messages),
            ),
            (
                "felix_calc_graph_update_time_seconds",
                "Time in seconds taken to compute the desired state after a datastore update.",
                Family::Histogram(&self.calc_graph_update_time_seconds),
            ),
            (
                "felix_calc_graph_updates_processed",
                "Number of datastore updates processed.",
                Family::Counter(&self.calc_graph_updates_processed),
            ),
            (
                "felix_log_errors",
                "Number of errors encountered while logging.",
                Family::Counter(&LOG_ERRORS),
            ),
            (
                "calico_node_vxlan_vteps",
                "Number of remote VXLAN tunnel endpoints programmed on this host.",
                Family::Gauge(&self.vxlan_vteps),
            ),
            (
                "calico_node_routes",
                "Number of routes calico-node programs on this host.",
                Family::Gauge(&self.routes),
            ),
            (
                "calico_node_bgp_peers_established",
                "Number of BGP peers whose session is Established.",
                Family::Gauge(&self.bgp_peers_established),
            ),
            (
                "calico_node_bgp_peers_not_established",
                "Number of configured BGP peers whose session is not Established.",
                Family::Gauge(&self.bgp_peers_not_established),
            ),
            (
                "calico_node_bgp_routes",
                "Number of routes learned over BGP that are programmed into the kernel.",
                Family::Gauge(&self.bgp_routes),
            ),
        ]
    }

    /// All metrics in the Prometheus text format 0.0.4.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (name, help, family) in self.families() {
            let kind = match family {
                Family::Gauge(_) => "gauge",
                Family::Counter(_) => "counter",
                Family::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            match family {
                Family::Gauge(gauge) => {
                    let _ = writeln!(out, "{name} {}", gauge.get());
                }
                Family::Counter(counter) => {
                    let _ = writeln!(out, "{name} {}", counter.get());
                }
                Family::Histogram(histogram) => histogram.encode(name, &mut out),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let histogram = Histogram::default();
        for seconds in [0.001, 0.02, 0.02, 0.75, 12.0] {
            histogram.observe(seconds);
        }
        let mut out = String::new();
        histogram.encode("x", &mut out);
        let expected = "\
x_bucket{le=\"0.001\"} 1
x_bucket{le=\"0.0025\"} 1
x_bucket{le=\"0.005\"} 1
x_bucket{le=\"0.01\"} 1
x_bucket{le=\"0.025\"} 3
x_bucket{le=\"0.05\"} 3
x_bucket{le=\"0.1\"} 3
x_bucket{le=\"0.25\"} 3
x_bucket{le=\"0.5\"} 3
x_bucket{le=\"1\"} 4
x_bucket{le=\"2.5\"} 4
x_bucket{le=\"5\"} 4
x_bucket{le=\"10\"} 4
x_bucket{le=\"+Inf\"} 5
x_sum 12.791
x_count 5
";
        assert_eq!(out, expected);
    }

    #[test]
    fn counters_keep_felix_names_without_total_suffix() {
        let metrics = Metrics::default();
        metrics.resyncs_started.inc();
        metrics.int_dataplane_failures.inc_by(4);
        metrics.routes.set(7);
        let text = metrics.encode();
        assert!(text.contains("# TYPE felix_resyncs_started counter\nfelix_resyncs_started 1\n"));
        assert!(text.contains("\nfelix_int_dataplane_failures 4\n"));
        assert!(text.contains("# TYPE calico_node_routes gauge\ncalico_node_routes 7\n"));
        assert!(!text.contains("_total"), "{text}");
        // Every sample line belongs to a family announced just before it.
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(current), "{line} after TYPE {current}");
            }
        }
    }

    #[test]
    fn liveness_follows_the_heartbeat_and_readiness_the_flag() {
        let status = Status::with_liveness_timeout(Duration::from_millis(50));
        assert_eq!(status.readiness(), Err(NOT_SYNCED_YET.to_string()));
        assert!(!status.is_ready());
        status.set_ready(true, "ignored when ready");
        assert!(status.is_ready());
        assert_eq!(status.readiness(), Ok(()));
        status.set_ready(false, "lost the datastore");
        assert_eq!(status.readiness(), Err("lost the datastore".to_string()));
        assert_eq!(status.liveness(), Ok(()));
        std::thread::sleep(Duration::from_millis(80));
        let reason = status.liveness().unwrap_err();
        assert!(reason.contains("has not reported"), "{reason}");
        status.heartbeat();
        assert_eq!(status.liveness(), Ok(()));
    }

    #[test]
    fn every_bgp_family_line_in_readiness_names_calico_node() {
        let status = Status::with_liveness_timeout(Duration::from_secs(60));
        status.set_ready(true, "");
        status.set_bgp_problems(vec![
            "BIRD is not ready: BGP not established with 198.18.0.3".into(),
            "BIRD6 is not ready: BGP not established with fd00::3".into(),
        ]);
        assert_eq!(
            status.readiness(),
            Err("calico/node is not ready: BIRD is not ready: BGP not established with 198.18.0.3\n\
                 calico/node is not ready: BIRD6 is not ready: BGP not established with fd00::3"
                .to_string())
        );
        status.set_bgp_problems(Vec::new());
        assert_eq!(status.readiness(), Ok(()));
    }
}
