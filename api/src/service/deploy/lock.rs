//! One deploy or rollback at a time per namespace, across every replica of the service: a
//! leased lock in the store, renewed in the background while held. A replica that dies
//! stops renewing; once the lease lapses another replica may take the turn and clean up
//! (see `deploy::recover_interrupted`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mongodb::bson::oid::ObjectId;

use crate::infra::lease::keep_renewed;
use crate::store::{Store, StoreError};

/// The right to change the placed services of one namespace. Dropping it lets go of the lock.
pub struct DeployLock {
    store: Store,
    name: String,
    owner: String,
    /// The deployment it is held for: renewals and the release name it, so a turn of the
    /// same replica's earlier deployment, dropped late, cannot touch a later one's lock.
    deployment: ObjectId,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

/// The lock's name for a namespace.
pub fn lock_name(namespace: &str) -> String {
    format!("deploy/{namespace}")
}

impl DeployLock {
    /// Takes the turn for `deployment`, if no one else holds it; renews it every third of
    /// `lease` until dropped.
    pub async fn take(
        store: &Store,
        namespace: &str,
        owner: &str,
        deployment: ObjectId,
        lease: Duration,
    ) -> Result<Option<Self>, StoreError> {
        let name = lock_name(namespace);
        if !store.take_lock(&name, owner, deployment, lease).await? {
            return Ok(None);
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = keep_renewed(lease, format!("deploy lock `{name}`"), lost.clone(), {
            let (store, name, owner) = (store.clone(), name.clone(), owner.to_string());
            move || {
                let (store, name, owner) = (store.clone(), name.clone(), owner.clone());
                async move { store.renew_lock(&name, &owner, deployment, lease).await }
            }
        });
        Ok(Some(Self { store: store.clone(), name, owner: owner.to_string(), deployment, lost, renewer }))
    }

    /// Whether the lease lapsed and another replica may have taken over: stop changing things.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for DeployLock {
    fn drop(&mut self) {
        self.renewer.abort();
        let (store, name, owner, deployment) =
            (self.store.clone(), self.name.clone(), self.owner.clone(), self.deployment);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.release_lock(&name, &owner, deployment).await {
                    tracing::warn!("letting go of the deploy lock `{name}` (it lapses by itself): {e}");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on a database of its own on the test server (`scripts/test.sh` exports its URI).
    async fn store(test: &str) -> Store {
        let uri = std::env::var("BERTH_TEST_MONGODB_URI")
            .expect("BERTH_TEST_MONGODB_URI is not set: `scripts/test.sh` starts MongoDB and sets it");
        Store::connect(&uri, &format!("berth-turn-{test}-{}", ObjectId::new().to_hex())).await.unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn one_replica_at_a_time_and_a_held_turn_stays_held_while_renewed() {
        runtime().block_on(async {
            let store = store("held").await;
            let lease = Duration::from_millis(300);
            let a = DeployLock::take(&store, "ns", "a", ObjectId::new(), lease).await.unwrap().expect("free");
            assert!(DeployLock::take(&store, "ns", "b", ObjectId::new(), lease).await.unwrap().is_none());
            // Nor the same replica's second deploy.
            assert!(DeployLock::take(&store, "ns", "a", ObjectId::new(), lease).await.unwrap().is_none());
            // Another namespace is another lock.
            assert!(DeployLock::take(&store, "other", "b", ObjectId::new(), lease).await.unwrap().is_some());
            // Renewed in the background: still held well past one lease.
            tokio::time::sleep(lease * 3).await;
            assert!(DeployLock::take(&store, "ns", "b", ObjectId::new(), lease).await.unwrap().is_none());
            assert!(!a.lost());
            drop(a);
            let mut taken = None;
            for _ in 0..50 {
                taken = DeployLock::take(&store, "ns", "b", ObjectId::new(), lease).await.unwrap();
                if taken.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(taken.is_some(), "dropping a turn lets go of the lock");
            store.database().drop().await.unwrap();
        });
    }

    #[test]
    fn a_lapsed_lease_is_taken_over_and_racers_get_one_turn() {
        runtime().block_on(async {
            let store = store("lapsed").await;
            let name = lock_name("ns");
            let dead = ObjectId::new();
            // A replica that took the lock and died: nobody renews it.
            assert!(store.take_lock(&name, "dead", dead, Duration::from_millis(100)).await.unwrap());
            assert!(!store.take_lock(&name, "b", ObjectId::new(), Duration::from_secs(5)).await.unwrap());
            assert_eq!(store.lock(&name).await.unwrap().unwrap().deployment, dead);
            tokio::time::sleep(Duration::from_millis(150)).await;
            let (b, c) = tokio::join!(
                store.take_lock(&name, "b", ObjectId::new(), Duration::from_secs(5)),
                store.take_lock(&name, "c", ObjectId::new(), Duration::from_secs(5)),
            );
            assert!(b.unwrap() ^ c.unwrap(), "exactly one of two racers takes a lapsed lock");
            // The dead replica, come back, finds it gone.
            assert!(!store.renew_lock(&name, "dead", dead, Duration::from_secs(5)).await.unwrap());
            store.database().drop().await.unwrap();
        });
    }

    #[test]
    fn the_lock_belongs_to_its_deployment_not_to_the_replica() {
        runtime().block_on(async {
            let store = store("deployment").await;
            let name = lock_name("ns");
            let (first, second) = (ObjectId::new(), ObjectId::new());
            assert!(store.take_lock(&name, "a", first, Duration::from_millis(100)).await.unwrap());
            tokio::time::sleep(Duration::from_millis(150)).await;
            // The same replica's next deployment takes the lapsed lock.
            assert!(store.take_lock(&name, "a", second, Duration::from_secs(5)).await.unwrap());
            // The first deployment's late renewal and release leave it alone.
            assert!(!store.renew_lock(&name, "a", first, Duration::from_secs(5)).await.unwrap());
            store.release_lock(&name, "a", first).await.unwrap();
            assert_eq!(store.lock(&name).await.unwrap().unwrap().deployment, second);
            assert!(store.renew_lock(&name, "a", second, Duration::from_secs(5)).await.unwrap());
            store.release_lock(&name, "a", second).await.unwrap();
            assert!(store.lock(&name).await.unwrap().is_none());
            store.database().drop().await.unwrap();
        });
    }
}
