//! The model loader fed damaged and hostile model files: bytes flipped, the file cut short,
//! and header fields (the network's width, its sizes) set to extremes. Every one must load
//! into an agent that picks allowed actions or be refused with an error; none may panic or
//! build a network larger than the file could fill.

use std::sync::OnceLock;

use berth_agents::{ActMode, AgentKind, Flow, SavedModel, Target, TrainRequest, load_agent, train};
use berth_env::shipped::shipped;
use berth_env::{Env, PlacementEnv};
use proptest::prelude::*;

/// One small trained model of each algorithm on `tiny`, as bytes.
fn models() -> &'static [Vec<u8>; 3] {
    static MODELS: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    MODELS.get_or_init(|| {
        [AgentKind::Qlearning, AgentKind::Dqn, AgentKind::Ppo].map(|agent| {
            let request = TrainRequest {
                agent,
                target: Target::Placement(shipped("tiny").unwrap()),
                steps: Some(600),
                seed: 5,
                hyperparameters: match agent {
                    AgentKind::Dqn => serde_json::json!({"learning_starts": 100, "batch_size": 16, "buffer_size": 200, "hidden": 8}),
                    AgentKind::Ppo => serde_json::json!({"num_envs": 1, "num_steps": 100, "hidden": 8}),
                    AgentKind::Qlearning => serde_json::Value::Null,
                },
                device: Default::default(),
            };
            train(&request, &mut |_| Flow::Continue).unwrap().model.to_bytes()
        })
    })
}

/// Loads `bytes` as a model for `tiny`; if it loads, it must act within the mask.
fn load_and_act(bytes: &[u8]) -> Result<(), String> {
    let model = SavedModel::from_bytes(bytes).map_err(|e| e.to_string())?;
    let mut env = PlacementEnv::new(shipped("tiny").unwrap()).unwrap();
    let mut agent = load_agent(&model, &env).map_err(|e| e.to_string())?;
    env.reset(3);
    for _ in 0..5 {
        let action = agent.act(env.observation(), env.action_mask(), ActMode::Greedy);
        assert!(env.action_mask()[action], "a loaded model chose a masked action");
        env.step(action).unwrap();
    }
    Ok(())
}

/// The model with one header field set to `value`.
fn with_header_field(bytes: &[u8], path: &[&str], value: serde_json::Value) -> Vec<u8> {
    let mut model = SavedModel::from_bytes(bytes).unwrap();
    let mut header = serde_json::to_value(&model.header).unwrap();
    let mut at = &mut header;
    for key in &path[..path.len() - 1] {
        at = at.get_mut(*key).unwrap();
    }
    at[path[path.len() - 1]] = value;
    model.header = serde_json::from_value(header).unwrap();
    model.to_bytes()
}

const EXTREMES: [i64; 6] = [0, 1, 7, 4097, 1 << 31, i64::MAX];

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn flipped_bytes_and_cut_files_load_or_are_refused(
        which in 0..3usize,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        keep in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = models()[which].clone();
        for (at, byte) in &flips {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        if let Some(keep) = keep {
            bytes.truncate(keep.index(bytes.len()));
        }
        let _ = load_and_act(&bytes);
    }

    #[test]
    fn extreme_header_sizes_are_refused_before_a_network_is_built(
        which in 1..3usize,
        field in 0..3usize,
        value in 0..EXTREMES.len(),
    ) {
        let path: &[&str] = [&["config", "hidden"][..], &["observation_len"][..], &["action_count"][..]][field];
        let bytes = with_header_field(&models()[which], path, serde_json::json!(EXTREMES[value]));
        let outcome = load_and_act(&bytes);
        if EXTREMES[value] > 4096 {
            prop_assert!(outcome.is_err(), "{path:?} = {} loaded", EXTREMES[value]);
        }
    }
}

#[test]
fn a_header_wider_than_its_weights_is_refused_with_both_sizes() {
    let bytes = with_header_field(&models()[1], &["config", "hidden"], serde_json::json!(4096));
    let error = load_and_act(&bytes).unwrap_err();
    assert!(error.contains("parameters") && error.contains("the weights hold"), "{error}");
    let bytes = with_header_field(&models()[2], &["config", "hidden"], serde_json::json!(1_000_000_000));
    let error = load_and_act(&bytes).unwrap_err();
    assert!(error.contains("hidden") && error.contains("over the limit of 4096"), "{error}");
}
