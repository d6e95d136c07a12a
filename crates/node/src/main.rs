//! calico-node: one per host. Checks its local settings, registers the node, then keeps the kernel in
//! step with the datastore until SIGTERM/SIGINT.

use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use calico_datastore::client::Client;
use calico_datastore::config::DatastoreConfig;
use calico_ipam::Ipam;
use calico_node::config::Settings;
use calico_node::status::{self, Status};
use calico_node::tracked_store::TrackedStore;
use calico_node::{agent, bgp_status, startup};
use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, layer};

/// Counts every error logged, for `felix_log_errors` (whatever the log level shown).
struct CountErrors;

impl<S: tracing::Subscriber> Layer<S> for CountErrors {
    fn on_event(&self, event: &tracing::Event<'_>, _: layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            status::LOG_ERRORS.inc();
        }
    }
}

fn main() -> ExitCode {
    let settings = Settings::parse();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(EnvFilter::new(settings.log_filter())),
        )
        .with(CountErrors.with_filter(tracing_subscriber::filter::LevelFilter::ERROR))
        .init();
    // Health, metrics, the syncer and the datastore tasks share two workers, so one task stuck in a
    // slow call never silences the others; the calculation and the dataplane have threads of their own.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("calico-node-async")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("calico-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("calico-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down; the dataplane stays in place");
}

async fn bind(host: &str, port: u16, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("{what}: cannot resolve {host}:{port}"))?
        .next()
        .with_context(|| format!("{what}: {host}:{port} resolves to nothing"))?;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{what}: cannot listen on {addr}"))
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    // Local checks first: a bad setting stops here, before the datastore or the kernel is touched.
    let nodename = startup::nodename(&settings)?;
    let identity = startup::identity(&settings, nodename)?;
    let default_pool = startup::default_pool(&settings, identity.address)?;
    let datastore = DatastoreConfig::from_env(std::env::vars().collect())
        .context("datastore settings (DATASTORE_TYPE, ETCD_ENDPOINTS, CALICO_DATASTORE_PATH)")?;

    let status = Arc::new(Status::new());
    if settings.health_enabled {
        let listener = bind(
            &settings.health_host,
            settings.health_port,
            "health endpoint",
        )
        .await?;
        tokio::spawn(status::serve_health(listener, status.clone()));
    }
    if settings.metrics_enabled {
        let listener = bind(
            &settings.metrics_host,
            settings.metrics_port,
            "metrics endpoint",
        )
        .await?;
        tokio::spawn(status::serve_metrics(listener, status.clone()));
    }
    status.set_ready(false, "starting");
    startup::write_state_file(
        &settings.state_dir,
        calico_contracts::state::NODENAME_FILE,
        &format!("{}\n", identity.nodename),
    )
    .with_context(|| format!("writing {}/nodename", settings.state_dir.display()))?;

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let store = tokio::select! {
        store = startup::connect_with_backoff(&datastore, &status) => store,
        () = &mut shutdown => return Ok(()),
    };
    tracing::info!(datastore = %datastore.describe(), "connected to the datastore");
    let store = TrackedStore::wrap(store, status.clone());
    let client = Client::new(store.clone());

    // Cluster objects: retried with backoff while the datastore is flaky; a genuine conflict (another
    // node with our address) is reported and ends the process.
    let mut delay = Duration::from_secs(1);
    loop {
        let attempt = async {
            startup::register_node(&client, &identity).await?;
            startup::ensure_cluster_information(&client, &settings.cluster_type).await?;
            startup::ensure_default_pool(&client, default_pool.clone()).await?;
            anyhow::Ok(())
        };
        let outcome = tokio::select! {
            r = attempt => r,
            () = &mut shutdown => return Ok(()),
        };
        match outcome {
            Ok(()) => break,
            Err(e) if startup::is_fatal(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay, "start-up step failed; retrying");
                status.set_ready(false, &format!("start-up: {e:#}"));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
    if identity.address.is_some() {
        let ipam = Ipam::new(store.clone());
        if let Err(e) =
            startup::ensure_vxlan_tunnel_address(&client, &ipam, &identity.nodename).await
        {
            tracing::warn!(error = %format!("{e:#}"), "VXLAN tunnel address not assigned yet; will retry");
        }
    }
    // What the speaker last reported, served on the node-status socket `calicoctl node status` asks.
    let (bgp_status_tx, bgp_status_rx) = tokio::sync::watch::channel(bgp_status::NodeBgpStatus {
        speaker_running: false,
        peers: Vec::new(),
    });
    let socket = bgp_status::node_status_socket(&settings.state_dir);
    let _node_status = bgp_status::serve(socket.clone(), move || bgp_status_rx.borrow().clone())
        .with_context(|| format!("cannot serve node status on {}", socket.display()))?;
    agent::run(&settings, &identity, store, status, bgp_status_tx, shutdown).await
}
