//! The networks the agents learn, and the device they run on.
//!
//! burn 0.22 picks the backend from the device at run time: the modules here carry no
//! backend type. The pure-Rust `flex` CPU backend is the default.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;

/// The device training and acting use, picked once by the binary.
#[derive(Debug, Clone)]
pub struct Devices {
    /// Plain device: acting and targets, no gradients.
    pub plain: Device,
    /// The same device with autodiff: learning.
    pub train: Device,
}

impl Devices {
    /// The default CPU device (`flex`).
    pub fn cpu() -> Self {
        let plain = Device::flex();
        Self { train: plain.clone().autodiff(), plain }
    }
}

/// A two-hidden-layer perceptron with ReLU.
#[derive(Module, Debug)]
pub struct Mlp {
    l1: Linear,
    l2: Linear,
    out: Linear,
    act: Relu,
}

impl Mlp {
    /// `inputs -> hidden -> hidden -> outputs`, initialised on `device`.
    pub fn new(inputs: usize, hidden: usize, outputs: usize, device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(inputs, hidden).init(device),
            l2: LinearConfig::new(hidden, hidden).init(device),
            out: LinearConfig::new(hidden, outputs).init(device),
            act: Relu::new(),
        }
    }

    /// # Shapes
    /// - `x`: `[batch, inputs]`
    /// - output: `[batch, outputs]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.act.forward(self.l1.forward(x));
        let x = self.act.forward(self.l2.forward(x));
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
            act: self.act,
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
