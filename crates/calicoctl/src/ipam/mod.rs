//! `calicoctl ipam show | check | release | configure`: IP address management as Calico's calicoctl
//! presents it, over the same datastore the other verbs use. One module per subcommand.

use std::net::IpAddr;

use anyhow::{Result, anyhow};
use calico_datastore::client::Client;
use calico_ipam::Ipam;
use clap::{Args, Subcommand};

mod check;
mod configure;
mod release;
mod show;
mod table;

#[derive(Args)]
pub struct IpamArgs {
    #[command(subcommand)]
    command: IpamCommand,
}

#[derive(Subcommand)]
enum IpamCommand {
    /// Show IP usage per pool and block, one address, borrowed addresses or the configuration.
    Show(show::ShowArgs),
    /// Check IPAM's records against workload endpoints and nodes.
    Check(check::CheckArgs),
    /// Release an address, or the leaks a check report found.
    Release(release::ReleaseArgs),
    /// Change IPAM's configuration.
    Configure(configure::ConfigureArgs),
}

pub async fn run(client: &Client, args: IpamArgs, version: &str) -> Result<()> {
    let ipam = Ipam::new(client.store().clone());
    match args.command {
        IpamCommand::Show(a) => show::run(&ipam, a).await,
        IpamCommand::Check(a) => check::run(client, &ipam, a, version).await,
        IpamCommand::Release(a) => release::run(client, &ipam, a, version).await,
        IpamCommand::Configure(a) => configure::run(&ipam, a).await,
    }
}

fn parse_ip(s: &str) -> Result<IpAddr> {
    s.trim()
        .parse()
        .map_err(|_| anyhow!("invalid IP address specified: {s:?}"))
}
