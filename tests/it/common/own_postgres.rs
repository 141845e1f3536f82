//! PostgreSQL instances of a test's own (own port and data directory), for tests that
//! stop, restart or pause a database: the shared dev services are never touched.

use std::{path::PathBuf, process::Command};

/// A throwaway PostgreSQL cluster on a free port, stopped and removed on drop.
pub struct OwnPostgres {
    dir: PathBuf,
    port: u16,
}

impl OwnPostgres {
    /// A new primary (trust authentication on loopback, replication allowed).
    pub fn start() -> Self {
        let pg = Self::prepare();
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        pg.ctl("start");
        pg
    }

    /// A streaming replica of `primary` (a base backup with `-R`), started.
    pub fn replica_of(primary: &OwnPostgres) -> Self {
        let pg = Self::prepare();
        pg.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &pg.data(),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        pg.ctl("start");
        pg
    }

    fn prepare() -> Self {
        let dir = std::env::temp_dir().join(format!("storeops-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("data dir");
        let port = std::iter::repeat_with(super::free_port)
            .find(|p| !(55432..=55433).contains(p))
            .expect("a free port");
        if is_root() {
            // PostgreSQL refuses to run as root (as scripts/dev-env does, run it as `postgres`).
            let status = Command::new("chown")
                .args(["postgres:postgres", &dir.to_string_lossy()])
                .status()
                .expect("chown");
            assert!(status.success());
        }
        Self { dir, port }
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = pg_command(program)
            .args(args)
            .current_dir("/")
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `pg_ctl start|stop|restart`, waiting for it to finish.
    pub fn ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.to_string_lossy()
        );
        let log = self.dir.join("log").to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-m",
                "fast",
                "-w",
                action,
            ],
        );
    }

    /// The `postgres` database as the superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = pg_command("pg_ctl")
            .args(["-D", data.as_str(), "-m", "immediate", "stop"])
            .current_dir("/")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL program, run as `postgres` when the tests run as root.
fn pg_command(program: &str) -> Command {
    let bin = PathBuf::from(std::env::var("STOREOPS_PG_BIN").expect("STOREOPS_PG_BIN"));
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
