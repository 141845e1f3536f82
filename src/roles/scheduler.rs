//! The scheduler role: campaigns for the lease and runs the modules' jobs while it
//! is the leader (PRODUCT §8). Any number of replicas; one acts at a time.

use sqlx::PgPool;

use super::RoleParts;
use crate::{
    admin::{Check, PoolGauges},
    announcements,
    config::Config,
    evidence::Evidence,
    maintenance, reporting,
    scheduler::{Scheduler, SchedulerOptions},
    schedules,
    shutdown::Shutdown,
    tasks,
};

/// A name for this process in the lease: host, pid and a random suffix.
fn holder_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}

pub fn start(config: &Config, db: PgPool, shutdown: &Shutdown) -> anyhow::Result<RoleParts> {
    crate::scheduler::metrics::init();
    let mut jobs = tasks::jobs::jobs(
        &db,
        &tasks::jobs::TaskJobsConfig {
            tick: config.scheduler.tick,
            escalation_delay: config.scheduler.escalation_delay,
        },
    );
    jobs.extend(announcements::jobs::jobs(
        &db,
        &announcements::jobs::AnnouncementJobsConfig {
            tick: config.scheduler.tick,
            reminder_delay: config.announcements.reminder_delay,
            escalation_delay: config.announcements.escalation_delay,
        },
    ));
    jobs.push(std::sync::Arc::new(maintenance::Partitions {
        db: db.clone(),
    }));
    jobs.push(std::sync::Arc::new(maintenance::Pruner {
        db: db.clone(),
        retention: config.retention.clone(),
        evidence: Evidence::new(&config.evidence)?,
    }));
    jobs.push(std::sync::Arc::new(reporting::stats::DailyStats {
        db: db.clone(),
        interval: config.reporting.stats_interval,
    }));
    jobs.push(std::sync::Arc::new(schedules::Planner {
        db: db.clone(),
        tick: config.scheduler.tick,
        catch_up: config.scheduler.catch_up,
    }));
    let scheduler = Scheduler {
        db: db.clone(),
        jobs,
        options: SchedulerOptions {
            lease_ttl: config.scheduler.lease_ttl,
            holder: holder_name(),
            job_timeout: std::cmp::max(
                config.scheduler.lease_ttl,
                std::time::Duration::from_secs(30),
            ),
        },
    };
    let stop = shutdown.signalled.clone();
    let task = async move {
        scheduler.run(stop).await;
        Ok(())
    };
    // Ready only on the schema this build knows: its jobs read and write the tables.
    Ok(RoleParts {
        pools: PoolGauges::default(),
        checks: vec![Check::database(db.clone()), Check::schema(db)],
        task: Box::pin(task),
    })
}
