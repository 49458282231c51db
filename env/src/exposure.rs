//! How exposed a placement is to one node's failure: the services whose every replica stands
//! on the same node, so that node going NotReady takes the whole service down until its
//! replicas are moved and cold-started elsewhere. Kubernetes users guard against this with
//! pod anti-affinity or topology spread constraints. The shield ([`crate::shield`]) uses the
//! count to refuse a policy's move or plan that leaves more such services than `greedy`'s.
//! The wider count, services of which one node holds more than half ([`crowded_services`]),
//! is the `lookahead` baseline's guard ([`crate::baselines::lookahead`]).

use crate::PlacementEnv;

/// Services of two or more replicas that all stand on one node in `placement` (node of each
/// replica; `replica_service` the service of each, below `services`).
pub fn lone_services(placement: &[usize], replica_service: &[usize], services: usize) -> usize {
    // Per service: the node its first replica stands on, its replicas seen, and whether two
    // of them stand apart.
    let mut seen: Vec<(usize, u32, bool)> = vec![(0, 0, false); services];
    for (&node, &service) in placement.iter().zip(replica_service) {
        let Some((first, count, apart)) = seen.get_mut(service) else { continue };
        if *count == 0 {
            *first = node;
        } else if *first != node {
            *apart = true;
        }
        *count += 1;
    }
    seen.iter().filter(|&&(_, count, apart)| count >= 2 && !apart).count()
}

/// Services of two or more replicas of which one node holds more than half: that node going
/// NotReady takes most of the service down. With two replicas, the same as [`lone_services`].
pub fn crowded_services(placement: &[usize], replica_service: &[usize], services: usize) -> usize {
    let mut pairs: Vec<(usize, usize)> =
        replica_service.iter().copied().zip(placement.iter().copied()).collect();
    pairs.sort_unstable();
    let mut replicas = vec![0usize; services];
    for &(service, _) in &pairs {
        if let Some(count) = replicas.get_mut(service) {
            *count += 1;
        }
    }
    let mut crowded = vec![false; services];
    for run in pairs.chunk_by(|a, b| a == b) {
        let service = run[0].0;
        if let Some(&total) = replicas.get(service) {
            crowded[service] |= total >= 2 && 2 * run.len() > total;
        }
    }
    crowded.iter().filter(|&&c| c).count()
}

/// [`lone_services`] of `env`'s cluster with `placement`, once each `(replica, node)` move of
/// `moves` is made.
pub fn lone_services_moved(
    env: &PlacementEnv,
    placement: &[usize],
    moves: impl IntoIterator<Item = (usize, usize)>,
) -> usize {
    lone_services(&moved(placement, moves), env.replica_service(), env.scenario().services.len())
}

/// [`lone_services`] of the placement `env` would have after `action` (keep: as it is).
pub fn lone_services_after(env: &PlacementEnv, action: usize) -> usize {
    lone_services_moved(env, env.placement(), env.decode(action).map(|mv| (mv.replica, mv.node)))
}

/// [`crowded_services`] of the placement `env` would have after `action` (keep: as it is).
pub fn crowded_services_after(env: &PlacementEnv, action: usize) -> usize {
    let placement = moved(env.placement(), env.decode(action).map(|mv| (mv.replica, mv.node)));
    crowded_services(&placement, env.replica_service(), env.scenario().services.len())
}

/// `placement` once each `(replica, node)` move of `moves` is made.
fn moved(placement: &[usize], moves: impl IntoIterator<Item = (usize, usize)>) -> Vec<usize> {
    let mut placement = placement.to_vec();
    for (replica, to) in moves {
        if let Some(node) = placement.get_mut(replica) {
            *node = to;
        }
    }
    placement
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gym::Env;
    use crate::shipped;

    #[test]
    fn a_service_is_lone_when_all_of_its_two_or_more_replicas_share_a_node() {
        // Service 0: two replicas on node 3; service 1: apart; service 2: one replica.
        assert_eq!(lone_services(&[3, 3, 1, 2, 4], &[0, 0, 1, 1, 2], 3), 1);
        assert_eq!(lone_services(&[3, 5, 1, 2, 4], &[0, 0, 1, 1, 2], 3), 0);
        assert_eq!(lone_services(&[3, 3, 2, 2, 4], &[0, 0, 1, 1, 2], 3), 2);
        assert_eq!(lone_services(&[], &[], 0), 0);
    }

    #[test]
    fn a_service_is_crowded_when_one_node_holds_more_than_half_of_it() {
        // Service 0: four replicas, three on node 1; service 1: two on node 2 (lone);
        // service 2: two of four on node 5 (half, not more).
        let services = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2];
        assert_eq!(crowded_services(&[1, 1, 1, 4, 2, 2, 5, 5, 6, 7], &services, 3), 2);
        assert_eq!(crowded_services(&[1, 1, 3, 4, 2, 3, 5, 5, 6, 7], &services, 3), 0);
        // Every lone service is crowded.
        assert_eq!(crowded_services(&[3, 3, 1, 2, 4], &[0, 0, 1, 1, 2], 3), 1);
        assert_eq!(crowded_services(&[], &[], 0), 0);
    }

    #[test]
    fn a_move_that_joins_a_service_on_one_node_makes_it_lone() {
        let mut env = PlacementEnv::new(shipped::load("gpu-small").unwrap()).unwrap();
        env.reset(7);
        let before = lone_services_after(&env, 0);
        assert_eq!(
            before,
            lone_services(env.placement(), env.replica_service(), env.scenario().services.len())
        );
        // Move a replica onto the node of another replica of its service, where allowed.
        let (placement, services) = (env.placement().to_vec(), env.replica_service().to_vec());
        let joining = (0..placement.len())
            .flat_map(|r| (0..placement.len()).map(move |o| (r, o)))
            .filter(|&(r, o)| r != o && services[r] == services[o] && placement[r] != placement[o])
            .map(|(r, o)| env.encode(crate::Move { replica: r, node: placement[o] }))
            .find(|&a| env.action_mask()[a]);
        let action = joining.expect("gpu-small has a service to join on one node");
        assert_eq!(lone_services_after(&env, action), before + 1);
    }
}
