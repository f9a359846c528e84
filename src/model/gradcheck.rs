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

/// Σ yᵢ·sin(i + 1): a fixed, non-symmetric weighting, so the scalar depends
/// on every output and errors in different outputs cannot cancel.
pub fn weighted_sum(y: &Tensor) -> Result<Tensor> {
    let n = y.elem_count();
    let weights = Tensor::arange(1.0, n as f64 + 1.0, y.device())?.reshape(y.shape())?.sin()?.to_dtype(y.dtype())?;
    (y * weights)?.sum_all()
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Module, Tensor, Var};

    use super::{max_gradient_error, weighted_sum};
    use crate::model::nn::{Conv2d, GroupNorm, LayerNorm, Linear, quick_gelu, upsample_nearest_2x};
    use crate::model::resnet::Downsample;

    fn input(shape: &[usize]) -> Tensor {
        Tensor::randn(0f64, 1.0, shape, &Device::Cpu).unwrap()
    }

    fn conv(channels: (usize, usize), kernel: usize, stride: usize, padding: usize) -> Conv2d {
        Conv2d {
            weight: input(&[channels.1, channels.0, kernel, kernel]),
            bias: Some(input(&[channels.1])),
            padding,
            stride,
            flipped: Default::default(),
        }
    }

    fn assert_backpropagates(what: &str, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>, x: &Tensor) {
        let error = max_gradient_error(|x| weighted_sum(&f(x)?), x, 1e-5).unwrap();
        assert!(error < 1e-6, "{what}: gradient error {error}");
    }

    #[test]
    fn layer_norm_linear_and_quick_gelu_backpropagate() {
        let norm = LayerNorm { weight: input(&[6]).affine(0.1, 1.0).unwrap(), bias: input(&[6]), eps: 1e-5 };
        let linear = Linear { weight: input(&[4, 6]), bias: Some(input(&[4])) };
        let f = |x: &Tensor| quick_gelu(&linear.forward(&norm.forward(x)?)?);
        assert_backpropagates("layer norm → linear → quick gelu", f, &input(&[2, 6]));
    }

    #[test]
    fn convolutions_group_norm_and_resampling_backpropagate() {
        let x = input(&[1, 4, 6, 6]);
        let plain = conv((4, 3), 3, 1, 1);
        assert_backpropagates("conv 3×3", |x| plain.forward(x), &x);
        let strided = conv((4, 4), 3, 2, 1);
        assert_backpropagates("conv 3×3 stride 2", |x| strided.forward(x), &x);
        let vae_down = Downsample::from_conv(conv((4, 4), 3, 2, 0), true);
        assert_backpropagates("VAE downsample (bottom-right pad)", |x| vae_down.forward(x), &x);
        let norm = GroupNorm { weight: input(&[4]), bias: input(&[4]), groups: 2, eps: 1e-5 };
        assert_backpropagates("group norm", |x| norm.forward(x), &x);
        assert_backpropagates("nearest 2× upsample", upsample_nearest_2x, &x);
    }

    /// The shapes of everything candle stored a gradient for.
    fn stored_gradient_shapes(output: &Tensor) -> Vec<Vec<usize>> {
        let grads = output.sum_all().unwrap().backward().unwrap();
        grads.get_ids().map(|id| grads.get_id(*id).unwrap().dims().to_vec()).collect()
    }

    /// candle's own backward computes and stores a gradient for both operands
    /// of a matmul or convolution; the frozen layers store none for weights.
    #[test]
    fn frozen_weights_get_no_gradient() {
        let f32 = |shape: &[usize]| input(shape).to_dtype(DType::F32).unwrap();
        let x = Var::from_tensor(&f32(&[1, 4, 6, 6])).unwrap();
        let c = Conv2d {
            weight: f32(&[4, 4, 3, 3]),
            bias: Some(f32(&[4])),
            padding: 1,
            stride: 1,
            flipped: Default::default(),
        };
        let norm = GroupNorm { weight: f32(&[4]), bias: f32(&[4]), groups: 2, eps: 1e-5 };
        let linear = Linear { weight: f32(&[3, 6]), bias: Some(f32(&[3])) };
        let y = linear.forward(&norm.forward(&c.forward(x.as_tensor()).unwrap()).unwrap()).unwrap();
        let shapes = stored_gradient_shapes(&y);
        assert!(shapes.contains(&vec![1, 4, 6, 6]), "the input lost its gradient: {shapes:?}");
        for weight_shape in [vec![4, 4, 3, 3], vec![1, 4, 1, 1], vec![4], vec![3, 6], vec![6, 3], vec![3]] {
            assert!(
                !shapes.contains(&weight_shape),
                "a weight-shaped gradient {weight_shape:?} was stored: {shapes:?}"
            );
        }
        let plain = x.as_tensor().conv2d(&c.weight, 1, 1, 1, 1).unwrap();
        assert!(
            stored_gradient_shapes(&plain).contains(&vec![4, 4, 3, 3]),
            "candle no longer computes frozen weights' gradients: nn's workaround can go"
        );
    }
}
