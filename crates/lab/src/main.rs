//! `calico-lab`: a multi-host Calico cluster on one machine. Hosts are network namespaces on a shared
//! underlay bridge, each running calico-node; pods are namespaces wired by the real `calico` CNI plugin.

use std::process::ExitCode;

use anyhow::Context;
use calico_lab::tor::Tor;
use calico_lab::{Backend, DatastoreChoice, Encap, datastore, lab, paths, relay};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "calico-lab",
    version,
    about = "A Calico cluster of hosts built from network namespaces on this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the lab: underlay, datastore, calico-node per host, pods through the CNI plugin, and wait
    /// until every pod reaches every other pod.
    Up {
        #[arg(long, default_value = "lab")]
        name: String,
        /// How many hosts (default 3, or as many as --node-names gives).
        #[arg(long)]
        nodes: Option<usize>,
        /// Host names instead of node1..N, comma-separated (k8s-master,k8s-node1,k8s-node2).
        #[arg(long, value_delimiter = ',')]
        node_names: Option<Vec<String>>,
        #[arg(long, default_value_t = 2)]
        pods_per_node: usize,
        #[arg(long, value_enum, default_value = "embedded")]
        datastore: DatastoreChoice,
        /// none: Calico's BGP mode (plain routes learned over BGP), the seeds' "pure layer 3".
        #[arg(long, value_enum, default_value = "none")]
        encap: Encap,
        /// calico-node's networking backend (default: vxlan for --encap vxlan, else bird).
        #[arg(long, value_enum)]
        backend: Option<Backend>,
        /// Make the first N hosts BGP route reflectors and turn the node-to-node mesh off.
        #[arg(long, default_value_t = 0)]
        route_reflectors: usize,
        /// Spread the hosts over N L2 segments (198.18.<s>.0/24), routed by the underlay namespace.
        #[arg(long, default_value_t = 1)]
        subnets: usize,
        /// Run a top-of-rack router (BIRD or FRR) in the underlay namespace, peering over eBGP with
        /// every host through a global BGPPeer.
        #[arg(long, value_enum)]
        tor: Option<Tor>,
        /// BIG TCP on the underlay (IPv4 GSO/GRO up to 192 KiB, as a NIC with it enabled); calico-node
        /// hands it on to pods routed without encapsulation. Needs Linux 6.3 or later.
        #[arg(long)]
        big_tcp: bool,
        /// Seconds to wait for calico-node readiness, and again for pod-to-pod reachability.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Print the lab's state as JSON on stdout (progress still goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Show hosts (is calico-node running and ready?) and pods.
    Status {
        #[arg(long, default_value = "lab")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside a pod's, a host's or the underlay's namespace.
    Exec {
        #[arg(long, default_value = "lab")]
        name: String,
        /// A pod (node1-pod1), a host (node1) or `underlay`.
        target: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Ping the second pod's address from the first pod (3 packets).
    Ping {
        #[arg(long, default_value = "lab")]
        name: String,
        from: String,
        to: String,
    },
    /// Add a pod to a host through the CNI plugin.
    AddPod {
        #[arg(long, default_value = "lab")]
        name: String,
        host: String,
        /// Labels for the pod's WorkloadEndpoint: k=v,k2=v2
        #[arg(long)]
        labels: Option<String>,
        /// The pod's Kubernetes namespace (default: default).
        #[arg(long)]
        namespace: Option<String>,
        /// Named ports in the pod's WorkloadEndpoint, served by its probe server: name=port/proto,...
        /// (e.g. http=8080/tcp,dns=53/udp,assoc=9000/sctp).
        #[arg(long)]
        ports: Option<String>,
    },
    /// Who reaches whom: from every pod (or --from) to every other pod (or --to), a real TCP connection,
    /// UDP exchange or SCTP INIT/INIT-ACK with the target's probe server, all pairs at once; prints the
    /// matrix (rows senders, columns receivers; . allowed, X dropped). Every pod's server answers on
    /// port 80 and on its named ports; servers start on first use.
    Probe {
        #[arg(long, default_value = "lab")]
        name: String,
        #[arg(long, default_value_t = calico_lab::state::SERVED_PORT)]
        port: u16,
        /// tcp, udp or sctp (SCTP over raw IP sockets: an INIT answered by an INIT-ACK naming the pod).
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// Senders (pod names, comma-separated); all pods when not given.
        #[arg(long, value_delimiter = ',')]
        from: Vec<String>,
        /// Receivers (pod names, comma-separated); all pods when not given.
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
        /// How long to wait for an answer before a pair counts as dropped.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        #[arg(long)]
        json: bool,
    },
    /// Create a Kubernetes namespace (as kube-controllers sync it: the profile kns.<namespace>, its labels
    /// handed to its pods as pcns.<key>), or replace its labels.
    AddNamespace {
        #[arg(long, default_value = "lab")]
        name: String,
        namespace: String,
        /// Labels: k=v,k2=v2
        #[arg(long)]
        labels: Option<String>,
    },
    /// Remove a pod (CNI DEL, then its namespace).
    DelPod {
        #[arg(long, default_value = "lab")]
        name: String,
        pod: String,
    },
    /// Stop a host's calico-node and start it again (it reconciles, nothing is flushed).
    RestartNode {
        #[arg(long, default_value = "lab")]
        name: String,
        host: String,
        /// SIGKILL instead of SIGTERM, as in a crash.
        #[arg(long)]
        kill: bool,
    },
    /// Remove everything the lab created (also after a crash, without its state file).
    Down {
        #[arg(long, default_value = "lab")]
        name: String,
    },
    /// Create an embedded datastore file, as calico-node does at start-up, for using calicoctl or the CNI
    /// plugin without a lab or calico-node (both only open a store that exists). An existing store is
    /// left as it is.
    InitDatastore { path: std::path::PathBuf },
    /// (internal) A pod's probe server: answers on the given ports inside the pod's namespace.
    #[command(hide = true)]
    ServePod {
        #[arg(long)]
        name: String,
        #[arg(long)]
        pod: String,
        #[arg(long)]
        netns: String,
        #[arg(long)]
        ports: String,
    },
    /// (internal) Forward 127.0.0.1:PORT inside the given namespaces to etcd in the root namespace.
    #[command(hide = true)]
    Relay {
        #[arg(long)]
        name: String,
        #[arg(long)]
        port: u16,
        namespaces: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("calico-lab: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    paths::require_root()?;
    match cli.command {
        Command::Up {
            name,
            nodes,
            node_names,
            pods_per_node,
            datastore,
            encap,
            backend,
            route_reflectors,
            subnets,
            tor,
            big_tcp,
            timeout,
            json,
        } => lab::up(&lab::UpOptions {
            name,
            host_names: lab::host_names(nodes, node_names)?,
            pods_per_node,
            datastore,
            encap,
            backend: backend.unwrap_or(encap.default_backend()),
            route_reflectors,
            subnets,
            tor,
            big_tcp,
            timeout: std::time::Duration::from_secs(timeout),
            json,
        }),
        Command::Status { name, json } => lab::status(&name, json),
        Command::Exec {
            name,
            target,
            command,
        } => lab::exec(&name, &target, &command),
        Command::Ping { name, from, to } => lab::ping(&name, &from, &to),
        Command::AddPod {
            name,
            host,
            labels,
            namespace,
            ports,
        } => lab::add_pod(
            &name,
            &host,
            &lab::NewPod {
                labels,
                namespace,
                ports,
            },
        ),
        Command::AddNamespace {
            name,
            namespace,
            labels,
        } => lab::add_namespace(&name, &namespace, labels.as_deref()),
        Command::Probe {
            name,
            port,
            protocol,
            from,
            to,
            timeout_ms,
            json,
        } => {
            let protocol = calico_lab::state::Transport::parse(&protocol)
                .with_context(|| format!("--protocol {protocol:?}: use tcp, udp or sctp"))?;
            lab::probe(
                &name,
                &lab::ProbeOptions {
                    port,
                    protocol,
                    from,
                    to,
                    limit: std::time::Duration::from_millis(timeout_ms),
                    json,
                },
            )
        }
        Command::ServePod {
            name,
            pod,
            netns,
            ports,
        } => {
            let lab = paths::Lab::new(&name)?;
            calico_lab::serve::run(
                &lab,
                &pod,
                &netns,
                &calico_lab::serve::parse_ports_arg(&ports)?,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DelPod { name, pod } => lab::del_pod(&name, &pod),
        Command::RestartNode { name, host, kill } => lab::restart_node(&name, &host, kill),
        Command::Down { name } => lab::down(&name),
        Command::InitDatastore { path } => {
            datastore::create_embedded(&path)?;
            println!("embedded datastore ready at {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Relay {
            name,
            port,
            namespaces,
        } => {
            let lab = paths::Lab::new(&name)?;
            relay::run(&lab, port, &namespaces)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
