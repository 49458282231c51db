//! The store's figures that `/metrics` and `/health/ready` report (task and deployment counts,
//! whether MongoDB answers), cached for a second: however often Prometheus and the kubelet
//! probes ask, and however many replicas they ask, the database sees at most one round of
//! queries a second from each replica.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::store::{Status, Store};

/// How long figures are answered from the cache.
const MAX_AGE: Duration = Duration::from_secs(1);

/// How long one round of queries may take before MongoDB counts as not answering.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// One round's figures.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// MongoDB answered the last ping.
    pub reachable: bool,
    /// Tasks by status (the last figures read, if MongoDB stopped answering since).
    pub tasks: Vec<(Status, u64)>,
    /// Deployments by status (the same).
    pub deployments: Vec<(&'static str, u64)>,
}

/// The cache.
#[derive(Debug, Default)]
pub struct StoreFigures {
    cached: Mutex<Option<(Instant, Figures)>>,
}

impl StoreFigures {
    /// The figures, read anew if the cached ones are older than a second. Callers that
    /// arrive while they are read wait for that round rather than starting their own.
    pub async fn get(&self, store: &Store) -> Figures {
        let mut cached = self.cached.lock().await;
        if let Some((at, figures)) = cached.as_ref()
            && at.elapsed() < MAX_AGE
        {
            return figures.clone();
        }
        let previous = cached.take().map(|(_, f)| f).unwrap_or_default();
        let figures = read(store, previous).await;
        *cached = Some((Instant::now(), figures.clone()));
        figures
    }
}

async fn read(store: &Store, previous: Figures) -> Figures {
    let round = async {
        store.ping().await?;
        let tasks = store.count_tasks_by_status().await?;
        let deployments = store.count_deployments_by_status().await?;
        Ok::<_, crate::store::StoreError>((tasks, deployments))
    };
    match tokio::time::timeout(QUERY_TIMEOUT, round).await {
        Ok(Ok((tasks, deployments))) => Figures { reachable: true, tasks, deployments },
        Ok(Err(e)) => {
            tracing::warn!("reading the store's figures: {e}");
            Figures { reachable: false, ..previous }
        }
        Err(_) => Figures { reachable: false, ..previous },
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;
    use mongodb::bson::oid::ObjectId;

    use super::*;

    fn pending(figures: &Figures) -> u64 {
        figures.tasks.iter().find(|(s, _)| *s == Status::Pending).map_or(0, |(_, n)| *n)
    }

    /// A scrape within a second of the last one is answered from the cache, without asking
    /// the database; after that the figures are read anew.
    #[test]
    fn figures_are_read_at_most_once_a_second() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let uri = std::env::var("BERTH_TEST_MONGODB_URI")
                .expect("BERTH_TEST_MONGODB_URI is not set: `scripts/test.sh` starts MongoDB and sets it");
            let store = Store::connect(&uri, &format!("berth-figures-{}", ObjectId::new())).await.unwrap();
            let figures = StoreFigures::default();
            let first = figures.get(&store).await;
            assert!(first.reachable);
            assert_eq!(pending(&first), 0);
            let tasks = store.database().collection::<mongodb::bson::Document>("tasks");
            tasks.insert_one(doc! {"status": "pending"}).await.unwrap();
            assert_eq!(pending(&figures.get(&store).await), 0, "still the cached figures");
            tokio::time::sleep(MAX_AGE + Duration::from_millis(50)).await;
            assert_eq!(pending(&figures.get(&store).await), 1, "read anew after a second");
            store.database().drop().await.unwrap();
        });
    }
}
