//! Finite-difference gradient checks: the proof that an op on the training
//! path really backpropagates (candle drops gradients silently for ops
//! without a backward pass).

use candle_core::{DType, Result, Tensor, Var};

/// The largest difference between backpropagated and central-difference
/// gradients of the scalar `f(x)` with respect to `x`, in f64.
///
/// Each element of `x` is nudged by ±`step`, so keep `x` small.
pub fn max_gradient_error(f: impl Fn(&Tensor) -> Result<Tensor>, x: &Tensor, step: f64) -> Result<f64> {
    let x = x.to_dtype(DType::F64)?;
    let var = Var::from_tensor(&x)?;
    let output = f(var.as_tensor())?;
    let grads = output.backward()?;
    let analytic = match grads.get(var.as_tensor()) {
        Some(grad) => grad.flatten_all()?.to_vec1::<f64>()?,
        // No gradient at all: the op chain dropped it.
        None => vec![0.0; x.elem_count()],
    };
    let values = x.flatten_all()?.to_vec1::<f64>()?;
    let mut worst: f64 = 0.0;
    for (i, analytic) in analytic.iter().enumerate() {
        let evaluate = |delta: f64| -> Result<f64> {
            let mut nudged = values.clone();
            nudged[i] += delta;
            f(&Tensor::from_vec(nudged, x.shape(), x.device())?)?.to_scalar::<f64>()
        };
        let numeric = (evaluate(step)? - evaluate(-step)?) / (2.0 * step);
        worst = worst.max((numeric - analytic).abs());
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Module, Tensor};

    use super::max_gradient_error;
    use crate::model::nn::{LayerNorm, Linear, quick_gelu, softmax_last_dim};

    fn input(shape: (usize, usize)) -> Tensor {
        Tensor::randn(0f64, 1.0, shape, &Device::Cpu).unwrap()
    }

    /// A fixed, non-symmetric weighting so the scalar depends on every output.
    fn weigh(y: &Tensor) -> candle_core::Result<Tensor> {
        let n = y.elem_count();
        let w = Tensor::arange(1.0, n as f64 + 1.0, y.device())?.reshape(y.shape())?.sin()?;
        (y * w)?.sum_all()
    }

    #[test]
    fn our_softmax_backpropagates_and_candles_does_not() {
        let x = input((3, 5));
        let ours = max_gradient_error(|x| weigh(&softmax_last_dim(x)?), &x, 1e-5).unwrap();
        assert!(ours < 1e-7, "softmax gradient error {ours}");
        let candle = max_gradient_error(|x| weigh(&candle_nn::ops::softmax_last_dim(x)?), &x, 1e-5).unwrap();
        assert!(candle > 1e-3, "candle's softmax now has a backward pass ({candle}): the workaround can go");
    }

    #[test]
    fn layer_norm_linear_and_quick_gelu_backpropagate() {
        let device = Device::Cpu;
        let norm = LayerNorm {
            weight: Tensor::randn(1f64, 0.1, 6, &device).unwrap(),
            bias: Tensor::randn(0f64, 0.1, 6, &device).unwrap(),
            eps: 1e-5,
        };
        let linear = Linear {
            weight: Tensor::randn(0f64, 0.5, (4, 6), &device).unwrap(),
            bias: Some(Tensor::randn(0f64, 0.5, 4, &device).unwrap()),
        };
        let x = input((2, 6));
        let error = max_gradient_error(|x| weigh(&quick_gelu(&linear.forward(&norm.forward(x)?)?)?), &x, 1e-5).unwrap();
        assert!(error < 1e-7, "gradient error {error}");
    }
}
