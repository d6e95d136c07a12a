//! `calicoctl version`: client and cluster versions.

use anyhow::{Result, bail};
use calico_api::Kind;
use calico_datastore::client::ClientError;
use calico_datastore::config::DatastoreConfig;
use clap::Args;
use serde_json::Value;

use crate::connect;

#[derive(Args)]
pub struct VersionArgs {
    /// Client version only.
    #[arg(long = "client")]
    pub client: bool,
    /// Accepted for compatibility.
    #[arg(long = "poll")]
    pub poll: Option<String>,
}

pub async fn version(config: &DatastoreConfig, args: VersionArgs) -> Result<()> {
    println!("Client Version:    {}", crate::VERSION);
    println!("Git commit:        {}", env!("CALICO_GIT_COMMIT"));
    if args.client {
        return Ok(());
    }
    let client = connect(config).await?;
    match client.get(Kind::ClusterInformation, None, "default").await {
        Ok(info) => {
            let spec = info.spec.to_value();
            let field = |k: &str| {
                spec.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            println!("Cluster Version:   {}", field("calicoVersion"));
            println!("Cluster Type:      {}", field("clusterType"));
        }
        Err(ClientError::NotFound { .. }) => {
            println!(
                "Unable to retrieve Cluster Version or Type: ClusterInformation 'default' does not exist yet (calico-node creates it)"
            );
        }
        Err(e) => bail!("Unable to retrieve Cluster Version or Type: {e}"),
    }
    Ok(())
}
