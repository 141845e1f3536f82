//! `storeops <command>` (SPEC §2): parsing and hand-off. Each command's work lives in
//! its module; this file only routes to it.

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{
    auth::{Claims, JwtSigner, Role},
    config::Config,
    db,
    roles::{self, RoleSet, worker::WorkerOptions},
    stores::{StoreId, seed},
};

#[derive(Debug, Parser)]
#[command(
    name = "storeops",
    version,
    about = "Daily operations of a retail chain"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP API on HTTP_ADDR.
    Api,
    /// Consume RabbitMQ queues.
    Worker(WorkerArgs),
    /// Time-driven jobs; any number of replicas, one leader at a time.
    Scheduler,
    /// api + worker + scheduler in one process.
    All(WorkerArgs),
    /// Schema migrations.
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Create a demo chain: regions, stores, staff.
    Seed {
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        stores: u32,
        /// Days of task history to generate (needs the tasks module).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=730))]
        days: u32,
    },
    /// Print a signed JWT for local use and tests (needs AUTH_JWT_SECRET).
    Token {
        #[arg(long)]
        role: Role,
        #[arg(long)]
        store: Option<StoreId>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long, default_value = "local-user")]
        sub: String,
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
        ttl: u64,
    },
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Consumer groups to run, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Messages handled at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the newest N applied migrations.
    Down { steps: usize },
    /// List migrations and whether each is applied.
    Status,
}

impl Command {
    /// The `role` label for logs, traces and `storeops_build_info`.
    pub fn role_label(&self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Worker(_) => "worker",
            Self::Scheduler => "scheduler",
            Self::All(_) => "all",
            Self::Migrate { .. } => "migrate",
            Self::Seed { .. } => "seed",
            Self::Token { .. } => "token",
        }
    }
}

fn worker_options(args: WorkerArgs) -> WorkerOptions {
    WorkerOptions {
        queues: args.queues,
        concurrency: usize::from(args.concurrency),
    }
}

pub async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let all = RoleSet {
        api: true,
        worker: true,
        scheduler: true,
    };
    let none = RoleSet {
        api: false,
        worker: false,
        scheduler: false,
    };
    match command {
        Command::Api => {
            roles::run(
                config,
                RoleSet { api: true, ..none },
                WorkerOptions::default(),
            )
            .await
        }
        Command::Worker(args) => {
            roles::run(
                config,
                RoleSet {
                    worker: true,
                    ..none
                },
                worker_options(args),
            )
            .await
        }
        Command::Scheduler => {
            roles::run(
                config,
                RoleSet {
                    scheduler: true,
                    ..none
                },
                WorkerOptions::default(),
            )
            .await
        }
        Command::All(args) => roles::run(config, all, worker_options(args)).await,
        Command::Migrate { action } => migrate(&config, action.unwrap_or(MigrateAction::Up)).await,
        Command::Seed { stores, days } => {
            let pool = db::connect(&config, "seed")?;
            let report = seed::seed_chain(&pool, stores, days)
                .await
                .context("seeding")?;
            println!("{report}");
            Ok(())
        }
        Command::Token {
            role,
            store,
            region,
            sub,
            ttl,
        } => {
            let signer = JwtSigner::new(config.jwt()?)?;
            let now = chrono::Utc::now().timestamp();
            let claims = Claims {
                sub,
                role,
                store_id: store,
                region,
                exp: now + i64::try_from(ttl).unwrap_or(i64::MAX - now),
                iat: Some(now),
            };
            println!("{}", signer.sign(&claims)?);
            Ok(())
        }
    }
}

async fn migrate(config: &Config, action: MigrateAction) -> anyhow::Result<()> {
    let pool = db::connect(config, "migrate")?;
    match action {
        MigrateAction::Up => {
            db::MIGRATOR
                .run(&pool)
                .await
                .context("applying migrations")?;
            println!("schema at version {}", db::expected_schema_version());
        }
        MigrateAction::Down { steps } => {
            for version in db::migrate_down(&pool, steps)
                .await
                .context("reverting migrations")?
            {
                println!("reverted {version}");
            }
        }
        MigrateAction::Status => {
            for (version, description, applied) in db::migration_status(&pool).await? {
                let state = if applied { "applied" } else { "pending" };
                println!("{version} {state:8} {description}");
            }
        }
    }
    pool.close().await;
    Ok(())
}
