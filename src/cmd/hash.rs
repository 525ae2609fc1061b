//! `vigil hash`: the audit hash of values, as Vault's `sys/audit-hash/<device>` answers it.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use vigil_event::AuditHasher;

/// Arguments of `vigil hash`.
#[derive(Debug, Args)]
pub struct HashArgs {
    /// The audit device's salt. Prefer --salt-file or VIGIL_AUDIT_SALT: arguments are visible
    /// to other users of the machine.
    #[arg(
        long,
        env = "VIGIL_AUDIT_SALT",
        hide_env_values = true,
        conflicts_with = "salt_file"
    )]
    salt: Option<String>,
    /// A file holding the salt (one line; the trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    salt_file: Option<PathBuf>,
    /// Values to hash; with none, one value per line is read from standard input.
    values: Vec<String>,
}

/// Prints `hmac-sha256:…` for each value, one per line: a valid watch-list file.
pub fn run(args: HashArgs) -> anyhow::Result<ExitCode> {
    let salt = match (&args.salt, &args.salt_file) {
        (Some(salt), _) => salt.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading salt file {}", path.display()))?;
            text.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, None) => bail!("no salt: give --salt, --salt-file or VIGIL_AUDIT_SALT"),
    };
    if salt.is_empty() {
        bail!("the salt is empty");
    }
    let hasher = AuditHasher::new(salt.as_bytes());
    let mut out = std::io::stdout().lock();
    if args.values.is_empty() {
        for line in std::io::stdin().lock().lines() {
            let line = line.context("reading values from standard input")?;
            writeln!(out, "{}", hasher.hash(line.trim_end_matches('\r')))?;
        }
    } else {
        for value in &args.values {
            writeln!(out, "{}", hasher.hash(value))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
