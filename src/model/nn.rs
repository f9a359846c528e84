//! Building blocks made only of ops that backpropagate, with frozen weights.
//!
//! candle-nn's `softmax_last_dim` and fused layer norm have no backward pass
//! (gradients through them are silently dropped; the norms here are the
//! fused ops of [`super::fused`], which have one), and candle's own backward
//! for matmul and conv computes a gradient for *both* operands, so a frozen
//! weight would get a gradient computed and stored at every step. The layers
//! here compute their output from a detached input and carry the gradient back
//! to the input with [`frozen_map`], so only the input's gradient is computed.

use std::sync::{Arc, OnceLock};

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{CpuStorage, CudaStorage, CustomOp2, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;

use super::{flops, fused};

type Vjp = Arc<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;

/// A custom op over (value, input) that returns the value and, in backward,
/// sends the incoming gradient through `vjp` to the input: it routes a
/// gradient to the input of a frozen function. The value costs one copy
/// (an op's output is always new storage) and nothing else: no zero-filled
/// stand-in to add, and no gradient for the value itself.
struct GradientCarrier {
    vjp: Vjp,
}

/// A fresh contiguous copy of the tensor `storage` and `layout` describe.
pub(crate) fn copy_of<S>(storage: &S, layout: &Layout) -> Result<(S, Shape)>
where
    S: BackendStorage,
    S::Device: BackendDevice<Storage = S>,
{
    let shape = layout.shape().clone();
    // SAFETY: the copy below writes every element before anything reads them.
    let mut copy = unsafe { storage.device().alloc_uninit(&shape, storage.dtype())? };
    storage.copy_strided_src(&mut copy, 0, layout)?;
    Ok((copy, shape))
}

impl CustomOp2 for GradientCarrier {
    fn name(&self) -> &'static str {
        "frozen-gradient-carrier"
    }

    fn cpu_fwd(&self, value: &CpuStorage, layout: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        copy_of(value, layout)
    }

    fn cuda_fwd(
        &self,
        value: &CudaStorage,
        layout: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        copy_of(value, layout)
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, _: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((None, Some((self.vjp)(grad)?)))
    }
}

/// Applies a function of `x` whose other operands are frozen weights.
/// Without a gradient to track, it is just `value(x)`. Otherwise the value is
/// computed from a detached `x`, and `vjp` (the gradient of the output mapped
/// to the gradient of `x`) is the only backward work done.
pub fn frozen_map(
    x: &Tensor,
    value: impl FnOnce(&Tensor) -> Result<Tensor>,
    vjp: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    if !x.track_op() {
        return value(x);
    }
    value(&x.detach())?.apply_op2(x, GradientCarrier { vjp: Arc::new(vjp) })
}

/// `[batch, tokens, parts·heads·head_dim]` (a fused projection's outputs
/// side by side, e.g. q, k, v) → each part as `[batch·heads, tokens,
/// head_dim]`, contiguous, the layout [`fused::attention`] takes: one copy
/// for all the parts, where splitting each part first copies twice.
pub fn split_heads<const PARTS: usize>(x: &Tensor, heads: usize) -> Result<[Tensor; PARTS]> {
    let (batch, tokens, width) = x.dims3()?;
    let head_dim = width / (PARTS * heads);
    let split = x
        .reshape((batch, tokens, PARTS, heads, head_dim))?
        .permute((2, 0, 3, 1, 4))?
        .contiguous()?
        .reshape((PARTS, batch * heads, tokens, head_dim))?;
    let parts = (0..PARTS).map(|part| split.get(part)).collect::<Result<Vec<_>>>()?;
    parts.try_into().map_err(|_| candle_core::Error::msg("split_heads: a part is missing"))
}

/// A frozen linear layer `y = x·Wᵀ + b` over the last dimension.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn load(vb: VarBuilder, in_features: usize, out_features: usize, bias: bool) -> Result<Self> {
        let weight = vb.get((out_features, in_features), "weight")?;
        let bias = if bias { Some(vb.get(out_features, "bias")?) } else { None };
        Ok(Self { weight, bias })
    }

    /// The same layer with its weight kept transposed in memory (`weight`
    /// stays `[out, in]`, a view of a contiguous `[in, out]` tensor): a
    /// product with a few rows (decoding a token at a time) then reads the
    /// weight in the order gemm wants, about twice as fast on the CPU.
    pub fn with_transposed_storage(self) -> Result<Self> {
        Ok(Self { weight: self.weight.t()?.contiguous()?.t()?, bias: self.bias })
    }

    /// Layers reading the same input as one, their outputs side by side:
    /// one product instead of several (attention's query, key and value).
    pub fn stacked(parts: &[Linear]) -> Result<Self> {
        let weights: Vec<&Tensor> = parts.iter().map(|p| &p.weight).collect();
        let biases = parts.iter().map(|p| p.bias.as_ref()).collect::<Option<Vec<_>>>();
        Ok(Self { weight: Tensor::cat(&weights, 0)?, bias: biases.map(|b| Tensor::cat(&b, 0)).transpose()? })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let weight = self.weight.clone();
        flops::products(2 * x.elem_count() * self.weight.dim(0)?);
        frozen_map(
            x,
            |x| {
                if let Some(bias) = &self.bias
                    && let Some(fused) = fused::frozen_linear(x, &self.weight, bias)
                {
                    return fused;
                }
                let y = x.broadcast_matmul(&self.weight.t()?)?;
                match &self.bias {
                    Some(bias) => y.broadcast_add(bias),
                    None => Ok(y),
                }
            },
            move |grad| grad.broadcast_matmul(&weight),
        )
    }
}

/// A frozen 2-D convolution over `[batch, channels, height, width]`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub padding: usize,
    pub stride: usize,
    /// The kernel as a same-size convolution's input gradient needs it, on
    /// the GPU (made at the first backward, then kept).
    pub flipped: Arc<OnceLock<Tensor>>,
}

impl Conv2d {
    pub fn load(
        vb: VarBuilder,
        channels: (usize, usize),
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let (in_channels, out_channels) = channels;
        let weight = vb.get((out_channels, in_channels, kernel, kernel), "weight")?;
        Ok(Self { weight, bias: Some(vb.get(out_channels, "bias")?), padding, stride, flipped: Arc::default() })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
            return fused::conv2d(x, &self.weight, self.bias.as_ref(), self.stride, self.padding);
        }
        let (weight, padding, stride) = (self.weight.clone(), self.padding, self.stride);
        let flipped = self.flipped.clone();
        let input_height = x.dim(2)?;
        frozen_map(
            x,
            |x| {
                let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
                flops::products(2 * y.elem_count() * self.weight.dims()[1..].iter().product::<usize>());
                match &self.bias {
                    Some(bias) => y.broadcast_add(&bias.reshape((1, (), 1, 1))?),
                    None => Ok(y),
                }
            },
            move |grad| {
                let kernel = weight.dim(2)?;
                if stride == 1 && 2 * padding + 1 == kernel {
                    // A same-size convolution's input gradient is the
                    // convolution of the gradient with the flipped, transposed
                    // kernel (made once, at the first backward): im2col +
                    // matmul, much faster than candle's direct conv_transpose2d.
                    let flipped = match flipped.get() {
                        Some(flipped) => flipped.clone(),
                        None => {
                            let made = flipped_transposed(&weight)?;
                            flipped.get_or_init(|| made).clone()
                        }
                    };
                    return grad.conv2d(&flipped, kernel - 1 - padding, 1, 1, 1);
                }
                // Otherwise the transposed convolution, padded back to the
                // input's size when the stride dropped a trailing row.
                let covered = (grad.dim(2)? - 1) * stride + kernel - 2 * padding;
                grad.conv_transpose2d(&weight, padding, input_height - covered, stride, 1)
            },
        )
    }
}

/// `[out, in, h, w]` → `[in, out, h, w]` with both spatial axes reversed.
fn flipped_transposed(weight: &Tensor) -> Result<Tensor> {
    let (_, _, height, width) = weight.dims4()?;
    let reversed = |n: usize| Tensor::from_vec((0..n as u32).rev().collect::<Vec<_>>(), n, weight.device());
    let transposed = weight.transpose(0, 1)?.contiguous()?;
    transposed.index_select(&reversed(height)?, 2)?.contiguous()?.index_select(&reversed(width)?, 3)?.contiguous()
}

/// Layer normalisation over the last dimension, with affine weight and bias.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(vb: VarBuilder, size: usize, eps: f64) -> Result<Self> {
        Ok(Self { weight: vb.get(size, "weight")?, bias: vb.get(size, "bias")?, eps })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Group normalisation of `[batch, channels, …]` with per-channel affine.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    pub fn load(vb: VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<Self> {
        Ok(Self { weight: vb.get(channels, "weight")?, bias: vb.get(channels, "bias")?, groups, eps })
    }
}

impl GroupNorm {
    /// The normalisation followed by SiLU, as one op (how ResNet blocks and
    /// the output heads use it).
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        fused::group_norm(x, &self.weight, &self.bias, self.groups, self.eps, true)
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::group_norm(x, &self.weight, &self.bias, self.groups, self.eps, false)
    }
}

/// Nearest-neighbour 2× upsampling of `[batch, channels, height, width]` by
/// broadcasting, whose backward sums the four copies. (candle's
/// `upsample_nearest2d` backward overwrites instead of accumulating.)
pub fn upsample_nearest_2x(x: &Tensor) -> Result<Tensor> {
    let (batch, channels, height, width) = x.dims4()?;
    x.reshape((batch, channels, height, 1, width, 1))?.broadcast_as((batch, channels, height, 2, width, 2))?.reshape((
        batch,
        channels,
        height * 2,
        width * 2,
    ))
}

/// CLIP's activation: x·σ(1.702·x).
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
}
