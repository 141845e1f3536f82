//! `storeops <command>` (PRODUCT §2): parsing and hand-off. Each command's work lives in
//! its module; this file only routes to it.

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{
    auth::{Claims, JwtSigner, Role},
    config::Config,
    db, events,
    ids::StoreId,
    roles::{self, RoleSet, worker::WorkerOptions},
    seed,
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
    /// Run the pruning job once, printing what it removes.
    Prune {
        /// Only count what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Operate a consumer group's dead-letter queue.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Print the OpenAPI 3.1 document this build serves at /openapi.json (for client
    /// generators), with this configuration's limits.
    Openapi,
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

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Show dead messages (they stay in the queue).
    List {
        /// Consumer group, e.g. `webhook-deliveries` (or its full queue name).
        #[arg(long)]
        queue: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Send dead messages back to the group's queue, attempts reset.
    Replay {
        #[arg(long)]
        queue: String,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Delete every dead message of the group.
    Purge {
        #[arg(long)]
        queue: String,
    },
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
            Self::Dlq { .. } => "dlq",
            Self::Prune { .. } => "prune",
            Self::Openapi => "openapi",
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
            // Reports read the daily statistics: fold the history in now rather than
            // leave it to the scheduler's first runs.
            let refresh =
                crate::reporting::stats::catch_up(&pool, std::time::Duration::from_secs(3600))
                    .await
                    .context("computing daily statistics")?;
            println!("daily statistics: {} rows", refresh.rows);
            Ok(())
        }
        Command::Dlq { action } => dlq(&config, action).await,
        Command::Prune { dry_run } => {
            let pool = db::connect(&config, "prune")?;
            let pruner = crate::maintenance::Pruner {
                db: pool.clone(),
                retention: config.retention.clone(),
                evidence: crate::evidence::Evidence::new(&config.evidence)?,
            };
            let report = pruner.run_once(dry_run).await?;
            println!(
                "{}{report}",
                if dry_run {
                    "would remove:\n"
                } else {
                    "removed:\n"
                }
            );
            pool.close().await;
            Ok(())
        }
        Command::Openapi => {
            println!("{}", roles::api::openapi_for(&config));
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

async fn dlq(config: &Config, action: DlqAction) -> anyhow::Result<()> {
    let topology = roles::worker::topology(config);
    // Accept the group name or the full queue name SREs see in the broker.
    let group_of = |queue: &str| {
        let prefix = format!("{}.", topology.prefix);
        queue
            .strip_prefix(&prefix)
            .unwrap_or(queue)
            .trim_end_matches(".dead")
            .to_owned()
    };
    let connection = events::broker::connect(config.amqp_url()?, "storeops-dlq").await?;
    let channel = connection.create_channel().await?;
    let result = match action {
        DlqAction::List { queue, limit } => {
            let group = group_of(&queue);
            let (total, messages) = events::dlq::list(&channel, &topology, &group, limit).await?;
            println!("{}: {total} dead message(s)", topology.dead_queue(&group));
            for m in messages {
                println!(
                    "{}  {}  {}\n    {}",
                    m.message_id, m.routing_key, m.reason, m.payload_preview
                );
            }
            Ok(())
        }
        DlqAction::Replay { queue, limit } => {
            let group = group_of(&queue);
            let replayed = events::dlq::replay(&channel, &topology, &group, limit).await?;
            println!(
                "replayed {replayed} message(s) into {}",
                topology.queue(&group)
            );
            Ok(())
        }
        DlqAction::Purge { queue } => {
            let group = group_of(&queue);
            let purged = events::dlq::purge(&channel, &topology, &group).await?;
            println!(
                "purged {purged} message(s) from {}",
                topology.dead_queue(&group)
            );
            Ok(())
        }
    };
    let _ = connection.close(200, "done".into()).await;
    result
}
