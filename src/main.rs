//! The `scim-gateway` binary: `serve`, `migrate`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use scim_gateway::config::{DEFAULT_TENANT, Settings, TokenHash, hash_token};
use scim_gateway::startup::Application;
use scim_gateway::store::{Db, Target};
use scim_gateway::telemetry;

#[derive(Parser)]
#[command(
    name = "scim-gateway",
    version,
    about = "SCIM 2.0 provisioning gateway"
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "SCIM_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway.
    Serve {
        /// Address to listen on (overrides configuration and SCIM_GATEWAY_LISTEN).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(&settings.log.format, &settings.log.level);
    match cli.command {
        Command::Migrate => {
            Db::open(&settings.database).context("migrating the database")?;
            println!("migrations are up to date");
            Ok(())
        }
        Command::Serve { listen } => {
            if let Some(l) = listen {
                settings.server.listen = l;
            }
            let mut tokens = settings.token_hashes()?;
            if tokens.is_empty() {
                tokens.push(development_token(&settings)?);
            }
            serve(settings, tokens)
        }
    }
}

#[actix_web::main]
async fn serve(settings: Settings, tokens: Vec<TokenHash>) -> anyhow::Result<()> {
    let app = Application::build(&settings, tokens)?;
    let _engine = app.start_delivery().await?;
    tracing::info!(
        listen = %settings.server.listen,
        port = app.port(),
        database = %describe(&settings.database.url),
        "scim-gateway listening; SCIM base path /scim/v2"
    );
    app.run_until_stopped().await?;
    Ok(())
}

fn describe(url: &str) -> String {
    match Target::parse(url) {
        Target::Sqlite(path) => format!("sqlite {path}"),
        Target::Postgres(_) => "postgres".into(),
    }
}

/// With no token configured, a development token is generated, printed once
/// and remembered by its hash next to the database (`dev-token.sha256`), so
/// a restart keeps it working without printing it again.
fn development_token(settings: &Settings) -> anyhow::Result<TokenHash> {
    let dir = match Target::parse(&settings.database.url) {
        Target::Sqlite(path) => Path::new(&path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        Target::Postgres(_) => PathBuf::from("data"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("dev-token.sha256");
    let hash = match std::fs::read_to_string(&file) {
        Ok(hex_hash) => {
            let bytes = hex::decode(hex_hash.trim()).context("dev-token.sha256 is not hex")?;
            let hash = <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| anyhow::anyhow!("dev-token.sha256 is not a SHA-256"))?;
            eprintln!(
                "Using the development token printed at first start (its hash is in {}; delete that file to get a new one).",
                file.display()
            );
            hash
        }
        Err(_) => {
            use rand::Rng;
            let secret: String = rand::rng()
                .sample_iter(rand::distr::Alphanumeric)
                .take(40)
                .map(char::from)
                .collect();
            let hash = hash_token(&secret);
            std::fs::write(&file, hex::encode(hash))
                .with_context(|| format!("writing {}", file.display()))?;
            println!(
                "\nDevelopment bearer token (shown once, tenant \"{DEFAULT_TENANT}\"):\n\n    {secret}\n"
            );
            println!(
                "Try: curl -H 'Authorization: Bearer {secret}' http://{}/scim/v2/Users\n",
                settings.server.listen
            );
            hash
        }
    };
    Ok(TokenHash {
        tenant: DEFAULT_TENANT.into(),
        token_id: "development".into(),
        hash,
        app: None,
    })
}
