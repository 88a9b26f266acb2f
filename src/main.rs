//! `mcp-gateway`: the command line. Runs the gateway from a config file, checks a config,
//! starts the demo (gateway + 1000 mock MCP servers), or runs only the mock fleet or the
//! static-response floor server used by the benchmarks.

mod bootstrap;
mod demo;
mod fd_limit;
mod fleet;
mod floor;
mod jwks;
mod logging;
mod mgmt;
mod sse_bridge;
mod stdio;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mcp-gateway",
    version,
    about = "Thread-per-core io_uring gateway for MCP servers"
)]
struct Cli {
    /// Config file; written with commented defaults when missing [default:
    /// api-gateway.config.json]. Only for running the gateway: subcommands refuse it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and list every error.
    Check {
        /// The config file to check.
        file: PathBuf,
    },
    /// Start mock MCP servers on loopback and the gateway in front of them.
    Demo {
        /// How many mock MCP servers.
        #[arg(long, default_value_t = 1000)]
        servers: usize,
        /// First mock server port; they take consecutive ports.
        #[arg(long, default_value_t = 9001)]
        base_port: u16,
        /// Gateway data port.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Management (dashboard, admin API) port.
        #[arg(long, default_value_t = 8081)]
        management_port: u16,
        /// Shards: "auto" or a number.
        #[arg(long, default_value = "auto")]
        workers: String,
    },
    /// Run only the mock MCP servers (for benchmarks and tests).
    Fleet {
        #[arg(long, default_value_t = 1000)]
        servers: usize,
        #[arg(long, default_value_t = 9001)]
        base_port: u16,
        /// Threads serving the fleet.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// A static-response HTTP server on the gateway's codec and runtime: the cost floor of
    /// one request, for the benchmark table.
    StaticFloor {
        #[arg(long, default_value_t = 8090)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcp-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the gateway's config is read when `--config` is not given.
const DEFAULT_CONFIG: &str = "api-gateway.config.json";

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let (Some(file), Some(command)) = (&cli.config, &cli.command) {
        // Silently ignoring it would run something other than what was asked for.
        let why = match command {
            Command::Demo { .. } => "the demo builds its own config from its flags",
            Command::Check { .. } => "check takes the file to check as its argument",
            _ => "it names the config of the gateway (`mcp-gateway --config FILE`)",
        };
        anyhow::bail!(
            "--config {} is not used by `{}`: {why}",
            file.display(),
            command.name()
        );
    }
    match cli.command {
        Some(Command::Check { file }) => Ok(check(&file)),
        Some(Command::Demo {
            servers,
            base_port,
            port,
            management_port,
            workers,
        }) => {
            let _guard = logging::init("info", None)?;
            demo::run(demo::DemoOptions {
                servers,
                base_port,
                port,
                management_port,
                workers,
            })
        }
        Some(Command::Fleet {
            servers,
            base_port,
            threads,
        }) => {
            let _guard = logging::init("info", None)?;
            fleet::run_forever(servers, base_port, threads)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::StaticFloor { port }) => {
            let _guard = logging::init("info", None)?;
            floor::run(port)?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let path = cli.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
            let loading = || format!("loading {}", path.display());
            let created = mcp_gateway_config::ensure_file(&path)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(loading)?;
            let text = std::fs::read_to_string(&path).with_context(loading)?;
            let loaded = mcp_gateway_config::parse_document(
                &path.display().to_string(),
                &text,
                &mcp_gateway_config::process_env,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(loading)?;
            let logging = &loaded.config.logging;
            let _guard = logging::init(&logging.level, logging.file.as_deref())?;
            if created {
                tracing::info!(path = %path.display(), "no config file found: wrote a commented default and started with it");
            }
            bootstrap::run_forever(loaded, Some(path.clone()), text, |_| {})
        }
    }
}

impl Command {
    /// The subcommand as typed.
    fn name(&self) -> &'static str {
        match self {
            Command::Check { .. } => "check",
            Command::Demo { .. } => "demo",
            Command::Fleet { .. } => "fleet",
            Command::StaticFloor { .. } => "static-floor",
        }
    }
}

fn check(file: &std::path::Path) -> ExitCode {
    let loaded = std::fs::read_to_string(file)
        .map_err(|source| mcp_gateway_config::LoadError::Io {
            path: file.to_path_buf(),
            source,
        })
        .and_then(|text| {
            let source = file.display().to_string();
            mcp_gateway_config::parse_document(&source, &text, &mcp_gateway_config::process_env)
        });
    match loaded {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("{}: warning: {warning}", file.display());
            }
            let config = loaded.config;
            println!(
                "{}: OK ({} upstream servers, {} port {}, management port {})",
                file.display(),
                config.upstreams.len(),
                config.server.host,
                config.server.port,
                config.monitoring.management_port
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}
