use std::process::ExitCode;

/// glibc malloc showed up as ~15% of the api's CPU under load (fragmentation,
/// consolidation); mimalloc is the usual remedy for allocation-heavy async servers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use storeops::{cli::Cli, config::Config, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("storeops: {e}");
            return ExitCode::from(2);
        }
    };
    storeops::tls::install_crypto_provider();
    // Telemetry before the runtime: see telemetry.rs for why.
    let telemetry = telemetry::init(config.log_format, cli.command.role_label());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("storeops: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(storeops::cli::run(cli.command, config));
    drop(runtime);
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "storeops failed");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}
