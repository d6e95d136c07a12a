//! `calico` / `calico-ipam`: Calico's CNI plugins in one executable (the role comes from the name it is
//! started under).

use std::io::{Read, Write};

use calico_cni::plugin::{self, Role};

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let role = Role::from_argv0(&argv0);
    if std::env::args()
        .nth(1)
        .is_some_and(|a| a == "-v" || a == "--version")
    {
        println!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
        return;
    }
    let mut stdin = Vec::new();
    // An empty stdin (VERSION may come without a config) reads fine; a failed read is reported, not
    // taken for an empty config.
    let stdin = std::io::stdin().read_to_end(&mut stdin).map(|_| stdin);
    let outcome = plugin::run(role, stdin);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(outcome.stdout.as_bytes());
    let _ = out.flush();
    std::process::exit(outcome.exit_code);
}
