//! SIGTERM/SIGINT → one cancellation token that every role and the readiness probe watch.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The shutdown sequence of PRODUCT §6, shared by all roles of a process.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// Cancelled the moment a signal arrives: `/readyz` turns 503 at once.
    pub signalled: CancellationToken,
    /// Time between the signal and refusing new work, for load balancers to notice.
    pub drain: Duration,
    /// Upper bound for finishing in-flight work after the drain.
    pub grace: Duration,
}

impl Shutdown {
    pub fn new(drain: Duration, grace: Duration) -> Self {
        Self {
            signalled: CancellationToken::new(),
            drain,
            grace,
        }
    }

    /// Resolves when the role should stop taking new work: signal plus drain delay.
    pub async fn stop_accepting(&self) {
        self.signalled.cancelled().await;
        tokio::time::sleep(self.drain).await;
    }

    /// Cancels `signalled` on the first SIGTERM or SIGINT.
    pub fn listen_for_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let token = self.signalled.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                () = token.cancelled() => return,
            };
            tracing::info!(signal = name, "shutdown requested");
            token.cancel();
        });
        Ok(())
    }
}
