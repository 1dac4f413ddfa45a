//! Periodic background work on files (certificate reload, the secret catalogue): run on the
//! blocking pool, and log the first failure of a streak only, so a broken file cannot flood
//! the log while the last good state keeps serving.

use std::sync::Arc;
use std::time::Duration;

/// Runs `step` every `interval` until the task is aborted. `step` returns whether something
/// changed worth an info line; `what` names the work in log lines.
pub async fn every<E, F>(interval: Duration, what: &'static str, step: F)
where
    E: std::error::Error + Send + 'static,
    F: Fn() -> Result<bool, E> + Send + Sync + 'static,
{
    let step = Arc::new(step);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let run = step.clone();
        match tokio::task::spawn_blocking(move || run()).await {
            Ok(Ok(changed)) => {
                if failing {
                    tracing::info!(what, "recovered");
                } else if changed {
                    tracing::info!(what, "updated");
                }
                failing = false;
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                let error = crate::error::Chain(&e);
                tracing::warn!(what, error = %error, "failed; keeping the last good state");
            }
            Ok(Err(_)) => {}
            Err(e) => tracing::warn!(what, error = %e, "task failed"),
        }
    }
}
