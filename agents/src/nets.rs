//! The networks the agents learn, and the device they run on.
//!
//! burn 0.22 picks the backend from the device at run time: the modules here carry no
//! backend type. The pure-Rust `flex` CPU backend is the default.

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::{relu, sigmoid};
use serde::{Deserialize, Serialize};

/// tanh, computed as `2σ(2x) − 1`: the same function, but the flex backend's sigmoid runs
/// on `expf` while its tanh calls libm's much slower `tanhf`, forward and again backward
/// (60% of PPO's time on CartPole went there).
pub(crate) fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    sigmoid(x.mul_scalar(2.0)).mul_scalar(2.0).sub_scalar(1.0)
}

/// Which network a DQN or PPO policy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyNetwork {
    /// An MLP over the flat observation, with one output per action.
    #[default]
    Flat,
    /// The size-agnostic entity network ([`crate::entity_net`]).
    Entity,
}

/// The device training and acting use, picked once by the binary.
#[derive(Debug, Clone)]
pub struct Devices {
    /// Plain device: acting and targets, no gradients.
    pub plain: Device,
    /// The same device with autodiff: learning.
    pub train: Device,
}

/// The hardware `berth train --device` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    /// The CPU: burn's `flex` backend, or LibTorch's CPU backend in a `tch` build.
    #[default]
    Cpu,
    /// The first CUDA GPU through LibTorch (`tch` builds only).
    Cuda,
}

impl Devices {
    /// The default CPU device (`flex`): also what saved models act on.
    pub fn cpu() -> Self {
        Self::on(Device::flex())
    }

    fn on(plain: Device) -> Self {
        Self { train: plain.clone().autodiff(), plain }
    }

    /// The device for `kind` in this build; CUDA without the `tch` feature is an error.
    pub fn select(kind: DeviceKind) -> Result<Self, crate::Error> {
        #[cfg(feature = "tch")]
        return Ok(match kind {
            DeviceKind::Cpu => Self::on(Device::libtorch()),
            DeviceKind::Cuda => Self::on(Device::libtorch_cuda(0)),
        });
        #[cfg(not(feature = "tch"))]
        match kind {
            DeviceKind::Cpu => Ok(Self::cpu()),
            DeviceKind::Cuda => Err(crate::Error::Config {
                name: "device".into(),
                reason: "cuda needs a binary built with `--features tch` (LibTorch)".into(),
            }),
        }
    }
}

/// Reads every float parameter, so burn's lazy initialisation draws its random values now.
struct Materialise;

impl burn::module::ModuleVisitor for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Seeds burn's random initialisation and builds a module with it under a process-wide lock,
/// drawing every parameter before the lock is released: the generator is global and burn
/// initialises parameters lazily (on first use), so without both a run on another thread
/// could draw from it in between, and the same seed would not give the same network when
/// runs train side by side.
pub fn seeded<M: Module>(devices: &Devices, seed: u64, build: impl FnOnce() -> M) -> M {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Device::seed(&devices.plain, seed);
    let module = build();
    module.visit(&mut Materialise);
    module
}

/// Widest hidden layer a config may ask for: a network is built at this width before its
/// weights are read, so a saved model's header must not name more.
pub const MAX_HIDDEN: usize = 4_096;

/// What a saved network needs to be rebuilt before its weights are loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkShape {
    /// Observation length.
    pub inputs: usize,
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Number of actions.
    pub outputs: usize,
    /// Seed of the acting agent's own random choices.
    pub seed: u64,
}

impl NetworkShape {
    /// Weights and biases of an [`Mlp`] of this shape, with or without a dueling value head.
    pub fn parameters(&self, dueling: bool) -> u64 {
        let layer = |inputs: usize, outputs: usize| (inputs as u64 + 1).saturating_mul(outputs as u64);
        let value_head = if dueling { layer(self.hidden, 1) } else { 0 };
        layer(self.inputs, self.hidden)
            .saturating_add(layer(self.hidden, self.hidden))
            .saturating_add(layer(self.hidden, self.outputs))
            .saturating_add(value_head)
    }
}

/// A burn record from the bytes `into_record().into_bytes()` wrote.
pub fn record_from_bytes(bytes: &[u8], what: &str) -> Result<burn::store::ModuleRecord, crate::Error> {
    burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| crate::Error::BadModel(format!("{what} weights: {e}")))
}

/// A two-hidden-layer perceptron, with ReLU (DQN) or tanh (PPO) between layers, and for a
/// dueling Q-network a second head for the state's value.
#[derive(Module, Debug)]
pub struct Mlp {
    l1: Linear,
    l2: Linear,
    out: Linear,
    /// The dueling network's value head: the output is then `V(s) + A(s, a) - mean_a A(s, a)`
    /// (Wang et al., 2016), so what all actions share is learnt once and `out` learns only how
    /// the actions differ.
    value: Option<Linear>,
    tanh: bool,
}

/// A linear layer with orthogonal weights of `gain` and zero bias (CleanRL's `layer_init`).
fn orthogonal(inputs: usize, outputs: usize, gain: f64, device: &Device) -> Linear {
    Linear {
        weight: Param::from_tensor(orthogonal_weights(inputs, outputs, gain, device)),
        bias: Some(Initializer::Zeros.init([outputs], device)),
    }
}

/// Orthogonal `[inputs, outputs]` weights times `gain`, distributed as torch's `orthogonal_`
/// draws them: orthonormal rows or columns, whichever are fewer, from Gram–Schmidt over that
/// side. burn's initialiser takes a QR that builds the full square Q of the longer side:
/// 200,001² floats for PPO's actor on gpu-large, which aborted the run.
pub fn orthogonal_weights(inputs: usize, outputs: usize, gain: f64, device: &Device) -> Tensor<2> {
    let (fewer, longer) = (inputs.min(outputs), inputs.max(outputs));
    let draws = values(Tensor::<2>::random([fewer, longer], Distribution::Normal(0.0, 1.0), device));
    let mut rows: Vec<Vec<f64>> =
        draws.chunks(longer).map(|r| r.iter().map(|&x| f64::from(x)).collect()).collect();
    orthonormalise(&mut rows);
    let mut weights = vec![0.0f32; inputs * outputs];
    for (i, row) in rows.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            let (r, c) = if inputs <= outputs { (i, j) } else { (j, i) };
            weights[r * outputs + c] = (x * gain) as f32;
        }
    }
    matrix(&weights, inputs, outputs, device)
}

/// Modified Gram–Schmidt, each row taken twice through the projections so the rows stay
/// orthogonal to rounding error; rows of independent normal draws are independent.
fn orthonormalise(rows: &mut [Vec<f64>]) {
    for i in 0..rows.len() {
        let (done, rest) = rows.split_at_mut(i);
        let row = &mut rest[0];
        for _ in 0..2 {
            for prev in done.iter() {
                let dot: f64 = prev.iter().zip(row.iter()).map(|(a, b)| a * b).sum();
                row.iter_mut().zip(prev).for_each(|(x, p)| *x -= dot * p);
            }
        }
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    }
}

impl Mlp {
    /// `inputs -> hidden -> hidden -> outputs` with ReLU and burn's default initialisation.
    pub fn new(inputs: usize, hidden: usize, outputs: usize, device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(inputs, hidden).init(device),
            l2: LinearConfig::new(hidden, hidden).init(device),
            out: LinearConfig::new(hidden, outputs).init(device),
            value: None,
            tanh: false,
        }
    }

    /// [`Mlp::new`] with a value head beside the action head (a dueling Q-network).
    pub fn dueling(inputs: usize, hidden: usize, outputs: usize, device: &Device) -> Self {
        Self {
            value: Some(LinearConfig::new(hidden, 1).init(device)),
            ..Self::new(inputs, hidden, outputs, device)
        }
    }

    /// `inputs -> hidden -> hidden -> outputs` with tanh, orthogonal weights (gain √2 in the
    /// hidden layers, `out_gain` in the last) and zero biases: PPO's usual initialisation,
    /// where a small `out_gain` starts a policy near uniform.
    pub fn orthogonal_tanh(
        inputs: usize,
        hidden: usize,
        outputs: usize,
        out_gain: f64,
        device: &Device,
    ) -> Self {
        Self {
            l1: orthogonal(inputs, hidden, std::f64::consts::SQRT_2, device),
            l2: orthogonal(hidden, hidden, std::f64::consts::SQRT_2, device),
            out: orthogonal(hidden, outputs, out_gain, device),
            value: None,
            tanh: true,
        }
    }

    /// # Shapes
    /// - `x`: `[batch, inputs]`
    /// - output: `[batch, outputs]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let act = |x| if self.tanh { tanh(x) } else { relu(x) };
        let x = act(self.l1.forward(x));
        let x = act(self.l2.forward(x));
        let out = self.out.forward(x.clone());
        match &self.value {
            Some(value) => value.forward(x) + out.clone() - out.mean_dim(1),
            None => out,
        }
    }

    /// The same network with output `index`'s bias set to `value`.
    pub fn with_out_bias(mut self, index: usize, value: f32) -> Self {
        if let Some(bias) = self.out.bias.take() {
            let bias = bias.val();
            let device = bias.device();
            let mut b = values(bias);
            b[index] = value;
            let len = b.len();
            self.out.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(b, [len]), &device)));
        }
        self
    }

    /// Moves every parameter a fraction `tau` of the way to `online`'s (Polyak averaging;
    /// `tau = 1` copies).
    pub fn soft_update(self, online: &Mlp, tau: f64) -> Self {
        let blend = |t: Linear, o: &Linear| Linear {
            weight: Param::from_tensor(t.weight.val() * (1.0 - tau) + o.weight.val().detach() * tau),
            bias: t
                .bias
                .zip(o.bias.as_ref())
                .map(|(tb, ob)| Param::from_tensor(tb.val() * (1.0 - tau) + ob.val().detach() * tau)),
        };
        Self {
            l1: blend(self.l1, &online.l1),
            l2: blend(self.l2, &online.l2),
            out: blend(self.out, &online.out),
            value: self.value.zip(online.value.as_ref()).map(|(t, o)| blend(t, o)),
            tanh: self.tanh,
        }
    }
}

/// A `[rows, cols]` float tensor from a flat row-major slice.
pub fn matrix(values: &[f32], rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), [rows, cols]), device)
}

/// A tensor's values as a flat vector.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 data")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a · aᵀ` of a row-major `[rows, cols]` matrix.
    fn gram(a: &[f32], rows: usize, cols: usize) -> Vec<f64> {
        let mut g = vec![0.0; rows * rows];
        for i in 0..rows {
            for j in 0..rows {
                g[i * rows + j] =
                    (0..cols).map(|k| f64::from(a[i * cols + k]) * f64::from(a[j * cols + k])).sum();
            }
        }
        g
    }

    fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..cols * rows).map(|i| a[(i % rows) * cols + i / rows]).collect()
    }

    #[test]
    fn tanh_through_the_sigmoid_is_tanh_and_so_is_its_gradient() {
        let devices = Devices::cpu();
        let xs: Vec<f32> = (-400..=400).map(|i| i as f32 / 20.0).collect();
        let y = values(tanh(matrix(&xs, 1, xs.len(), &devices.plain)));
        let x = matrix(&xs, 1, xs.len(), &devices.train).require_grad();
        let grads = tanh(x.clone()).sum().backward();
        let dy = values(x.grad(&grads).expect("x takes part"));
        for ((&x, &y), &dy) in xs.iter().zip(&y).zip(&dy) {
            assert!((y - x.tanh()).abs() < 1e-6, "tanh({x}) = {y}");
            assert!((dy - (1.0 - x.tanh().powi(2))).abs() < 1e-6, "tanh'({x}) = {dy}");
        }
    }

    #[test]
    fn orthogonal_weights_have_orthonormal_rows_or_columns_times_the_gain() {
        let device = Devices::cpu().plain;
        for (inputs, outputs) in [(3, 7), (7, 3), (5, 5)] {
            let w = values(orthogonal_weights(inputs, outputs, 2.0, &device));
            let (fewer, g) = if inputs <= outputs {
                (inputs, gram(&w, inputs, outputs))
            } else {
                (outputs, gram(&transpose(&w, inputs, outputs), outputs, inputs))
            };
            for i in 0..fewer {
                for j in 0..fewer {
                    let want = if i == j { 4.0 } else { 0.0 };
                    assert!((g[i * fewer + j] - want).abs() < 1e-4, "{inputs}x{outputs}: {g:?}");
                }
            }
        }
    }

    #[test]
    fn orthogonal_weights_for_a_huge_action_space_need_no_square_matrix() {
        // PPO's actor output on gpu-large: 200,001 actions. A square Q would be 160 GB.
        let device = Devices::cpu().plain;
        let w = values(orthogonal_weights(4, 200_001, 0.01, &device));
        let g = gram(&w, 4, 200_001);
        assert!((g[0] - 1e-4).abs() < 1e-8 && g[1].abs() < 1e-8, "{:?}", &g[..4]);
    }
}
