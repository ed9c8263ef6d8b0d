//! `scim-conformance`: a black-box RFC 7643/7644 conformance suite for any
//! SCIM 2.0 service provider. It parses the command line, selects checks
//! from the table in `checks/`, runs them one by one printing `PASS name` or
//! `FAIL name: reason`, closes with `N passed, M failed`, optionally writes
//! JUnit XML, and exits 0 only when nothing failed (1 when something did,
//! 2 on a usage or I/O problem).

mod checks;
mod client;
mod expect;
mod fixtures;
mod junit;
mod runner;
mod session;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::client::Client;
use crate::runner::CaseResult;
use crate::session::Ctx;

/// Command line.
#[derive(Parser)]
#[command(
    name = "scim-conformance",
    version,
    about = "Black-box SCIM 2.0 (RFC 7643/7644) conformance checks against a running server"
)]
struct Cli {
    /// SCIM base URL, e.g. http://127.0.0.1:8080/scim/v2
    #[arg(
        long,
        env = "SCIM_CONFORMANCE_BASE_URL",
        required_unless_present = "list"
    )]
    base_url: Option<String>,
    /// Bearer token (the environment variable keeps it out of `ps` output)
    #[arg(
        long,
        env = "SCIM_CONFORMANCE_TOKEN",
        hide_env_values = true,
        required_unless_present = "list"
    )]
    token: Option<String>,
    /// Run only checks whose name contains this (repeatable; any may match)
    #[arg(long, value_name = "NAME_SUBSTRING")]
    only: Vec<String>,
    /// Skip checks whose name contains this (repeatable)
    #[arg(long, value_name = "NAME_SUBSTRING")]
    skip: Vec<String>,
    /// Also write the results as JUnit XML to this file
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Print the selected check names and exit
    #[arg(long)]
    list: bool,
    /// Per-request timeout
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let selected = runner::select(&checks::all(), &cli.only, &cli.skip);
    if selected.is_empty() {
        eprintln!("scim-conformance: no check matches the --only/--skip filters (see --list)");
        return ExitCode::from(2);
    }
    if cli.list {
        for check in &selected {
            println!("{}", check.name);
        }
        return ExitCode::SUCCESS;
    }
    let (Some(base_url), Some(token)) = (cli.base_url, cli.token) else {
        eprintln!("scim-conformance: --base-url and --token are required");
        return ExitCode::from(2);
    };
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        eprintln!("scim-conformance: --base-url must start with http:// or https://");
        return ExitCode::from(2);
    }
    let client = match Client::new(&base_url, &token, Duration::from_secs(cli.timeout)) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("scim-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let ctx = Ctx::new(client);
    runner::capture_panics();
    let results: Vec<CaseResult> = selected
        .iter()
        .map(|check| {
            let result = runner::run_check(&ctx, check);
            println!("{}", result.line());
            let _ = std::io::stdout().flush();
            result
        })
        .collect();
    println!("{}", runner::summary_line(&results));
    if let Some(path) = &cli.junit
        && let Err(e) = std::fs::write(path, junit::render(&results))
    {
        eprintln!("scim-conformance: cannot write {}: {e}", path.display());
        return ExitCode::from(2);
    }
    match runner::count(&results) {
        (_, 0) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}
