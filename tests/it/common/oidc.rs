//! The real OpenID provider (`scripts/oidc-provider`, docs/IDENTITY.md) for the identity
//! tests: tokens from the dev instance `scripts/dev-env` runs, and instances of a test's
//! own (on a free port, in a directory of its own) for the tests that rotate keys or
//! stop the provider: the shared one is never touched.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use super::TestApp;

/// The launcher: `$STOREOPS_OIDC_PROVIDER` (an installed checkout's), else this one's.
pub fn launcher() -> PathBuf {
    std::env::var_os("STOREOPS_OIDC_PROVIDER").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/oidc-provider"),
        PathBuf::from,
    )
}

/// The dev provider's issuer and private keys (`scripts/dev-env env`).
pub fn dev_issuer() -> String {
    std::env::var("STOREOPS_OIDC_ISSUER")
        .expect("STOREOPS_OIDC_ISSUER is not set: eval \"$(scripts/dev-env env)\" first")
}

pub fn dev_keys() -> String {
    std::env::var("STOREOPS_OIDC_KEYS").expect("STOREOPS_OIDC_KEYS is not set")
}

/// Runs the launcher off the async runtime; its stdout, trimmed. Panics with its stderr.
pub async fn run(args: Vec<String>) -> String {
    let shown = args.join(" ");
    let output: Output = tokio::task::spawn_blocking(move || {
        Command::new(launcher())
            .args(&args)
            .env("STOREOPS_OIDC_PASSWORD", "storeops-dev")
            .output()
    })
    .await
    .expect("join")
    .expect("run scripts/oidc-provider");
    assert!(
        output.status.success(),
        "scripts/oidc-provider {shown}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// A user's access token from the provider at `issuer` (`extra`: `--alg ES256`, …).
pub async fn user_token(issuer: &str, user: &str, extra: &[&str]) -> String {
    let mut args = strings(&["token", "--issuer", issuer, "--user", user]);
    args.extend(strings(extra));
    run(args).await
}

/// The integration client's client-credentials token.
pub async fn client_token(issuer: &str) -> String {
    run(strings(&[
        "token",
        "--issuer",
        issuer,
        "--client-credentials",
    ]))
    .await
}

/// `forge.mjs`: a token made from `token` that the api must refuse.
pub async fn forge(token: &str, how: &[&str]) -> String {
    let mut args = strings(&["forge", "--token", token]);
    args.extend(strings(how));
    run(args).await
}

/// `token` re-signed with a private key file, with `changes` (`--set iss=…`,
/// `--exp-in=-60`): only what they change is wrong.
pub async fn resign(token: &str, keys: &str, changes: &[&str]) -> String {
    let mut how = vec!["--keys", keys];
    how.extend(changes);
    forge(token, &how).await
}

/// The api's settings for a provider: `AUTH_JWT_SECRET` emptied (unset), the issuer
/// and audience, and the caller's own.
pub fn api_env(issuer: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    [
        ("AUTH_JWT_SECRET", ""),
        ("AUTH_OIDC_ISSUER", issuer),
        ("AUTH_OIDC_AUDIENCE", "storeops-api"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// The api as the provider's resource server, on a fresh database seeded with `stores`.
pub async fn spawn(stores: u32, issuer: &str, extra: &[(&str, &str)]) -> TestApp {
    let env = api_env(issuer, extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestApp::spawn_configured(stores, false, &env).await
}

/// As `spawn`, on the database of `app` (which stops serving).
pub async fn spawn_on_database(app: TestApp, issuer: &str, extra: &[(&str, &str)]) -> TestApp {
    let env = api_env(issuer, extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (database, db) = (app.database.clone(), app.db.clone());
    drop(app);
    let url = super::url_for_database(&super::database_url(), &database);
    TestApp::spawn_on(database, db, url, 0, false, &env).await
}

/// A provider instance of the test's own, stopped when dropped.
pub struct OwnProvider {
    pub dir: PathBuf,
    pub issuer: String,
    pub port: String,
    pidfile: PathBuf,
}

impl OwnProvider {
    /// A directory for its files: keys, users, pid and log.
    pub fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("storeops-oidc-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("provider dir");
        dir
    }

    /// Starts an instance with this key file and users (a JSON array) in `dir`.
    pub async fn start(dir: PathBuf, keys: &str, users: &serde_json::Value) -> Self {
        let users_file = dir.join("users.json");
        std::fs::write(&users_file, users.to_string()).expect("users file");
        let pidfile = dir.join("op.pid");
        let out = run(vec![
            "start".into(),
            "--keys".into(),
            dir.join(keys).display().to_string(),
            "--users".into(),
            users_file.display().to_string(),
            "--pidfile".into(),
            pidfile.display().to_string(),
        ])
        .await;
        let issuer = out.lines().nth(1).expect("issuer line").trim().to_owned();
        let port = issuer.rsplit(':').next().expect("port").to_owned();
        Self {
            dir,
            issuer,
            port,
            pidfile,
        }
    }

    /// The same issuer (same port), another key file.
    pub async fn restart(&self, keys: &str) {
        run(vec![
            "restart".into(),
            "--pidfile".into(),
            self.pidfile.display().to_string(),
            "--port".into(),
            self.port.clone(),
            "--keys".into(),
            self.dir.join(keys).display().to_string(),
            "--users".into(),
            self.dir.join("users.json").display().to_string(),
        ])
        .await;
    }

    pub async fn stop(&self) {
        run(vec![
            "stop".into(),
            "--pidfile".into(),
            self.pidfile.display().to_string(),
        ])
        .await;
    }

    /// `keys generate` into this directory.
    pub async fn generate(dir: &std::path::Path, alg: &str, kid: &str, out: &str) {
        run(strings(&[
            "keys",
            "generate",
            "--alg",
            alg,
            "--kid",
            kid,
            "--out",
            &dir.join(out).display().to_string(),
        ]))
        .await;
    }

    /// `keys merge` of files of this directory; the first one's keys sign.
    pub async fn merge(&self, inputs: &[&str], out: &str) {
        let mut args = strings(&["keys", "merge"]);
        args.extend(
            inputs
                .iter()
                .map(|f| self.dir.join(f).display().to_string()),
        );
        args.extend(["--out".to_owned(), self.dir.join(out).display().to_string()]);
        run(args).await;
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for OwnProvider {
    fn drop(&mut self) {
        let _ = Command::new(launcher())
            .args(["stop", "--pidfile"])
            .arg(&self.pidfile)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
