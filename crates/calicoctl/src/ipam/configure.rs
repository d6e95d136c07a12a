//! `calicoctl ipam configure`: strict affinity and the per-host block limit.

use anyhow::{Result, anyhow, bail};
use calico_ipam::Ipam;
use clap::Args;

#[derive(Args)]
pub struct ConfigureArgs {
    /// Set StrictAffinity to true/false. When StrictAffinity is true, borrowing IP addresses is not allowed.
    #[arg(long = "strictaffinity")]
    pub strict_affinity: Option<String>,
    /// Set the maximum number of blocks that can be affine to a host.
    #[arg(long = "max-blocks-per-host")]
    pub max_blocks_per_host: Option<String>,
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub async fn run(ipam: &Ipam, args: ConfigureArgs) -> Result<()> {
    let strict = args
        .strict_affinity
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            parse_go_bool(s)
                .ok_or_else(|| anyhow!("invalid value. Use true or false to set strictaffinity"))
        })
        .transpose()?;
    let max_blocks = args
        .max_blocks_per_host
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .ok()
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| anyhow!("invalid value for maxblockhost. Use a valid number"))
        })
        .transpose()?;
    if strict.is_none() && max_blocks.is_none() {
        bail!("at least one configuration option must be specified");
    }
    let current = ipam.config().await.map_err(|e| anyhow!("error: {e}"))?;
    let new_strict = strict.unwrap_or(current.strict_affinity);
    let new_max = max_blocks.unwrap_or(current.max_blocks_per_host);
    if !new_strict && !current.auto_allocate_blocks {
        bail!("error: Cannot disable 'StrictAffinity' and 'AutoAllocateBlocks' at the same time");
    }
    if new_max > 0 && !new_strict {
        bail!("error: MaxBlocksPerHost requires StrictAffinity to be enabled");
    }
    ipam.configure(strict, max_blocks)
        .await
        .map_err(|e| anyhow!("error: {e}"))?;
    if let Some(s) = strict {
        println!("Successfully set StrictAffinity to: {s}");
    }
    if let Some(m) = max_blocks {
        println!("Successfully set MaxBlocksPerHost to: {m}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_booleans() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }
}
