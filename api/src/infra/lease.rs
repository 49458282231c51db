//! Keeping a lease in the store: renewed every third of its length until the holder lets go,
//! and the holder told when a renewal finds it taken (cancelled, or lapsed and taken over).
//! Task claims and the deploy lock both hold their leases this way.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::store::StoreError;

/// Spawns the renewal of a lease of length `lease`: `renew` extends it and answers whether it
/// was still held. When it was not, `lost` is raised and renewing stops; a failed renewal is
/// logged (naming `what`) and retried at the next turn, as the lease may not have lapsed
/// yet. Abort the handle to let go.
pub fn keep_renewed<F, R>(
    lease: Duration,
    what: String,
    lost: Arc<AtomicBool>,
    renew: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> R + Send + 'static,
    R: Future<Output = Result<bool, StoreError>> + Send,
{
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(lease / 3).await;
            match renew().await {
                Ok(true) => {}
                Ok(false) => {
                    lost.store(true, Ordering::SeqCst);
                    tracing::warn!("{what}: the lease was lost (cancelled, or lapsed and taken over)");
                    return;
                }
                Err(e) => tracing::warn!("{what}: renewing the lease: {e}"),
            }
        }
    })
}
