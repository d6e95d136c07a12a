//! The health and metrics servers, queried over real TCP connections on loopback.

use std::sync::Arc;
use std::time::Duration;

use calico_node::status::{self, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One parsed HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends `method path` with `Connection: close` and reads the whole answer.
async fn request(port: u16, method: &str, path: &str) -> Answer {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        String::from_utf8(raw).unwrap()
    };
    let raw = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            panic!("{method} {path}: no complete answer within {REQUEST_TIMEOUT:?}")
        });
    let (head, body) = raw.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.lines();
    let status_line = lines.next().unwrap();
    let code = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect();
    Answer {
        code,
        headers,
        body: body.to_string(),
    }
}

async fn start_health(status: &Arc<Status>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(status::serve_health(listener, Arc::clone(status)));
    port
}

async fn start_metrics(status: &Arc<Status>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(status::serve_metrics(listener, Arc::clone(status)));
    port
}

#[tokio::test]
async fn readiness_is_503_with_the_reason_until_ready() {
    let status = Arc::new(Status::new());
    let port = start_health(&status).await;

    let answer = request(port, "GET", "/readiness").await;
    assert_eq!(answer.code, 503, "{answer:?}");
    assert!(answer.body.contains("first datastore sync"), "{answer:?}");

    status.set_ready(true, "ok");
    let answer = request(port, "GET", "/readiness").await;
    assert_eq!((answer.code, answer.body.as_str()), (200, "ok\n"));

    status.set_ready(false, "datastore connection lost");
    let answer = request(port, "GET", "/readiness").await;
    assert_eq!(
        (answer.code, answer.body.as_str()),
        (503, "datastore connection lost\n")
    );
}

#[tokio::test]
async fn liveness_fails_after_a_stale_heartbeat_and_recovers() {
    let status = Arc::new(Status::with_liveness_timeout(Duration::from_millis(300)));
    let port = start_health(&status).await;

    let answer = request(port, "GET", "/liveness").await;
    assert_eq!((answer.code, answer.body.as_str()), (200, "ok\n"));

    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = request(port, "GET", "/liveness").await;
    assert_eq!(answer.code, 503, "{answer:?}");
    assert!(
        answer.body.contains("main loop has not reported"),
        "{answer:?}"
    );

    status.heartbeat();
    let answer = request(port, "GET", "/liveness").await;
    assert_eq!(answer.code, 200, "{answer:?}");
}

#[tokio::test]
async fn head_is_answered_without_a_body_and_unknown_paths_are_404() {
    let status = Arc::new(Status::new());
    let port = start_health(&status).await;

    let answer = request(port, "HEAD", "/liveness").await;
    assert_eq!((answer.code, answer.body.as_str()), (200, ""));
    let answer = request(port, "HEAD", "/readiness").await;
    assert_eq!((answer.code, answer.body.as_str()), (503, ""));
    assert_eq!(request(port, "GET", "/metrics").await.code, 404);
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text_with_felix_names() {
    let status = Arc::new(Status::new());
    let port = start_metrics(&status).await;
    let metrics = &status.metrics;
    metrics.active_local_endpoints.set(3);
    metrics.cluster_num_hosts.set(2);
    metrics.cluster_num_workload_endpoints.set(5);
    metrics.resyncs_started.inc();
    metrics.int_dataplane_messages.inc_by(4);
    metrics.int_dataplane_failures.inc();
    metrics.calc_graph_updates_processed.inc_by(9);
    metrics
        .int_dataplane_apply_time_seconds
        .observe_duration(Duration::from_millis(250));
    metrics.int_dataplane_apply_time_seconds.observe(2.0);
    metrics.calc_graph_update_time_seconds.observe(0.5);
    metrics.vxlan_vteps.set(1);
    metrics.routes.set(6);

    let answer = request(port, "GET", "/metrics").await;
    assert_eq!(answer.code, 200, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let samples: Vec<&str> = answer.body.lines().collect();
    for expected in [
        "# TYPE felix_active_local_endpoints gauge",
        "felix_active_local_endpoints 3",
        "felix_cluster_num_hosts 2",
        "felix_cluster_num_workload_endpoints 5",
        "# TYPE felix_resyncs_started counter",
        "felix_resyncs_started 1",
        "felix_int_dataplane_messages 4",
        "felix_int_dataplane_failures 1",
        "felix_calc_graph_updates_processed 9",
        "felix_log_errors 0",
        "# TYPE felix_int_dataplane_apply_time_seconds histogram",
        "felix_int_dataplane_apply_time_seconds_bucket{le=\"0.1\"} 0",
        "felix_int_dataplane_apply_time_seconds_bucket{le=\"0.25\"} 1",
        "felix_int_dataplane_apply_time_seconds_bucket{le=\"2.5\"} 2",
        "felix_int_dataplane_apply_time_seconds_bucket{le=\"+Inf\"} 2",
        "felix_int_dataplane_apply_time_seconds_sum 2.25",
        "felix_int_dataplane_apply_time_seconds_count 2",
        "felix_calc_graph_update_time_seconds_count 1",
        "calico_node_vxlan_vteps 1",
        "calico_node_routes 6",
    ] {
        assert!(
            samples.contains(&expected),
            "missing {expected:?} in:\n{}",
            answer.body
        );
    }
    assert!(!answer.body.contains("_total"), "{}", answer.body);

    // Values are read at request time.
    metrics.routes.set(8);
    let answer = request(port, "GET", "/metrics").await;
    assert!(
        answer
            .body
            .lines()
            .any(|line| line == "calico_node_routes 8")
    );
}
