//! The networks the agents learn, and the device they run on.
//!
//! burn 0.22 picks the backend from the device at run time: the modules here carry no
//! backend type. The pure-Rust `flex` CPU backend is the default.

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, tanh};

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

/// A burn record from the bytes `into_record().into_bytes()` wrote.
pub fn record_from_bytes(bytes: &[u8], what: &str) -> Result<burn::store::ModuleRecord, crate::Error> {
    burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| crate::Error::BadModel(format!("{what} weights: {e}")))
}

/// A two-hidden-layer perceptron, with ReLU (DQN) or tanh (PPO) between layers.
#[derive(Module, Debug)]
pub struct Mlp {
    l1: Linear,
    l2: Linear,
    out: Linear,
    tanh: bool,
}

/// A linear layer with orthogonal weights of `gain` and zero bias (CleanRL's `layer_init`).
fn orthogonal(inputs: usize, outputs: usize, gain: f64, device: &Device) -> Linear {
    Linear {
        weight: Initializer::Orthogonal { gain }.init([inputs, outputs], device),
        bias: Some(Initializer::Zeros.init([outputs], device)),
    }
}

impl Mlp {
    /// `inputs -> hidden -> hidden -> outputs` with ReLU and burn's default initialisation.
    pub fn new(inputs: usize, hidden: usize, outputs: usize, device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(inputs, hidden).init(device),
            l2: LinearConfig::new(hidden, hidden).init(device),
            out: LinearConfig::new(hidden, outputs).init(device),
            tanh: false,
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
        self.out.forward(x)
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
