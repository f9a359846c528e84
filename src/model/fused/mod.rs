//! Fused training ops with hand-written backward passes: GroupNorm (+ SiLU),
//! LayerNorm, GEGLU and scaled dot-product attention, on the CPU and CUDA;
//! and on the CPU the frozen convolution and the frozen linear layer with its
//! LoRA adapter. Each is one candle custom op forward and one backward, where
//! the composed versions were 10 to 40 small ops each way (and candle's
//! backward starts every node's gradient as zeros plus an add); attention
//! never holds the N×N score matrix. Weights are frozen, so only the input's
//! gradient (and an adapter's) is computed.
//!
//! CPU kernels run in f32 or f64 (half precision is widened to f32 around
//! them); CUDA kernels (`cuda.rs`) take f32, f16 and bf16 with f32 arithmetic.

/// Calls `$body` with `T` set to the CPU storage's float type.
macro_rules! cpu_float {
    ($storage:expr, $name:expr, |$t:ident| $body:expr) => {
        match $storage {
            CpuStorage::F32(_) => {
                type $t = f32;
                $body
            }
            CpuStorage::F64(_) => {
                type $t = f64;
                $body
            }
            other => bail!("{} runs in f32 or f64 on the CPU, not {:?}", $name, other.dtype()),
        }
    };
}

mod cpu;
mod cpu_attention;
mod cpu_conv;
mod cpu_matmul;
#[cfg(feature = "cuda")]
mod cuda;
mod linear;
mod lora_linear;
#[cfg(test)]
mod tests;

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, WithDType, bail,
};

pub use linear::frozen_linear;

use cpu::{NormSpec, Real, Rows};
use cpu_attention::AttentionDims;
use cpu_conv::ConvShape;

/// The contiguous elements a CPU tensor's layout covers.
fn contiguous<'a, T: Real>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<T>()?[start..end]),
        None => bail!("fused op: input is not contiguous"),
    }
}

/// Runs `f` on a (frozen, contiguous) CPU tensor's elements.
fn with_cpu_elements<T: Real, R>(tensor: &Tensor, f: impl FnOnce(&[T]) -> Result<R>) -> Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    match &*storage {
        Storage::Cpu(storage) => f(contiguous(storage, layout)?),
        _ => bail!("fused op: a weight is on another device than the input"),
    }
}

/// Half precision on the CPU runs the kernels in f32.
fn cpu_working_dtype(x: &Tensor) -> DType {
    match x.dtype() {
        DType::F16 | DType::BF16 if x.device().is_cpu() => DType::F32,
        dtype => dtype,
    }
}

/// The backward of an op whose input gradient is a function of (input,
/// output gradient) with the input's shape: the norms and GEGLU.
trait InputGradient: Send + Sync {
    const NAME: &'static str;

    fn cpu<T: Real>(&self, x: &[T], grad: &[T], layout: &Layout) -> Result<Vec<T>>;

    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        x: (&candle_core::CudaStorage, &Layout),
        grad: (&candle_core::CudaStorage, &Layout),
    ) -> Result<(candle_core::CudaStorage, Shape)>;
}

/// The input gradient of `K`'s op, as an op over (input, output gradient).
struct Backward<K>(K);

impl<K: InputGradient> CustomOp2 for Backward<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_float!(x, K::NAME, |T| {
            let out = self.0.cpu::<T>(contiguous(x, x_layout)?, contiguous(grad, grad_layout)?, x_layout)?;
            Ok((T::to_cpu_storage_owned(out), x_layout.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        x_layout: &Layout,
        grad: &candle_core::CudaStorage,
        grad_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.0.cuda((x, x_layout), (grad, grad_layout))
    }
}

/// Normalises rows (see [`Rows`]) with a frozen affine, optionally SiLU after.
#[derive(Clone)]
struct RowNorm {
    weight: Tensor,
    bias: Tensor,
    spec: NormSpec,
}

impl RowNorm {
    fn with_affine<T: Real, R>(&self, f: impl FnOnce(&[T], &[T]) -> R) -> Result<R> {
        with_cpu_elements(&self.weight, |weight: &[T]| with_cpu_elements(&self.bias, |bias: &[T]| Ok(f(weight, bias))))
    }
}

impl CustomOp1 for RowNorm {
    fn name(&self) -> &'static str {
        "fused-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_float!(storage, self.name(), |T| {
            let x = contiguous::<T>(storage, layout)?;
            let out = self.with_affine(|weight, bias| cpu::norm_forward(x, weight, bias, self.spec))?;
            Ok((T::to_cpu_storage_owned(out), layout.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::norm(storage, layout, None, &self.weight, &self.bias, self.spec)
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &Backward(self.clone()))?))
    }
}

impl InputGradient for RowNorm {
    const NAME: &'static str = "fused-norm-backward";

    fn cpu<T: Real>(&self, x: &[T], grad: &[T], _: &Layout) -> Result<Vec<T>> {
        self.with_affine(|weight, bias| cpu::norm_backward(x, grad, weight, bias, self.spec))
    }

    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        (x, x_layout): (&candle_core::CudaStorage, &Layout),
        grad: (&candle_core::CudaStorage, &Layout),
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::norm(x, x_layout, Some(grad), &self.weight, &self.bias, self.spec)
    }
}

/// Applies a [`RowNorm`] to `x`, widening half precision on the CPU.
fn row_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, spec: NormSpec) -> Result<Tensor> {
    let (dtype, working) = (x.dtype(), cpu_working_dtype(x));
    let op =
        RowNorm { weight: weight.to_dtype(working)?.contiguous()?, bias: bias.to_dtype(working)?.contiguous()?, spec };
    x.to_dtype(working)?.contiguous()?.apply_op1(op)?.to_dtype(dtype)
}

/// Group normalisation of `[batch, channels, …]` with a frozen per-channel
/// affine, then SiLU when `silu`.
pub fn group_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, groups: usize, eps: f64, silu: bool) -> Result<Tensor> {
    let (batch, channels) = (x.dim(0)?, x.dim(1)?);
    if channels % groups != 0 {
        bail!("group norm: {channels} channels do not split into {groups} groups");
    }
    let len = x.elem_count() / (batch * groups);
    let inner = len / (channels / groups);
    row_norm(x, weight, bias, NormSpec { rows: Rows { count: batch * groups, len, inner, groups }, eps, silu })
}

/// Layer normalisation over the last dimension with a frozen affine.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let len = x.dim(candle_core::D::Minus1)?;
    let rows = Rows { count: x.elem_count() / len, len, inner: 1, groups: 1 };
    row_norm(x, weight, bias, NormSpec { rows, eps, silu: false })
}

/// GEGLU: the last dimension's first half × GELU(second half).
struct Geglu;

impl CustomOp1 for Geglu {
    fn name(&self) -> &'static str {
        "fused-geglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut dims = layout.dims().to_vec();
        let width = dims.last().copied().unwrap_or(0) / 2;
        *dims.last_mut().expect("geglu checks the rank") = width;
        cpu_float!(storage, self.name(), |T| {
            let out = cpu::geglu_forward::<T>(contiguous(storage, layout)?, width);
            Ok((T::to_cpu_storage_owned(out), Shape::from(dims)))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::geglu(storage, layout, None)
    }

    fn bwd(&self, projected: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(projected.apply_op2_no_bwd(&grad.contiguous()?, &Backward(Geglu))?))
    }
}

impl InputGradient for Geglu {
    const NAME: &'static str = "fused-geglu-backward";

    fn cpu<T: Real>(&self, x: &[T], grad: &[T], layout: &Layout) -> Result<Vec<T>> {
        let width = layout.dims().last().copied().unwrap_or(0) / 2;
        Ok(cpu::geglu_backward(x, grad, width))
    }

    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        (x, x_layout): (&candle_core::CudaStorage, &Layout),
        grad: (&candle_core::CudaStorage, &Layout),
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::geglu(x, x_layout, Some(grad))
    }
}

/// The GEGLU activation of a projection `[…, 2·width]` → `[…, width]`.
pub fn geglu(projected: &Tensor) -> Result<Tensor> {
    if projected.rank() == 0 || projected.dim(candle_core::D::Minus1)? % 2 != 0 {
        bail!("geglu: the last dimension of {:?} is not even", projected.shape());
    }
    let (dtype, working) = (projected.dtype(), cpu_working_dtype(projected));
    projected.to_dtype(working)?.contiguous()?.apply_op1(Geglu)?.to_dtype(dtype)
}

/// Exact GELU for inference on the CPU (no backward: [`gelu`] uses candle's
/// op whenever a gradient is tracked).
struct GeluInference;

impl CustomOp1 for GeluInference {
    fn name(&self) -> &'static str {
        "fused-gelu-inference"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_float!(storage, self.name(), |T| {
            let out = cpu::gelu_forward::<T>(contiguous(storage, layout)?);
            Ok((T::to_cpu_storage_owned(out), layout.shape().clone()))
        })
    }
}

/// Exact (erf) GELU. On the CPU without a gradient to track, one parallel
/// pass with the vectorised erf: candle's `gelu_erf` runs on one thread with
/// an f64 erf, a tenth of BLIP's vision time on two cores. Elsewhere candle's.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.track_op() || !x.device().is_cpu() {
        return x.gelu_erf();
    }
    let (dtype, working) = (x.dtype(), cpu_working_dtype(x));
    x.to_dtype(working)?.contiguous()?.apply_op1_no_bwd(&GeluInference)?.to_dtype(dtype)
}

/// Attention over `[batch·heads, tokens, head_dim]`; keeps the log-sum-exp
/// of its forward for the backward.
struct Attention {
    causal: bool,
    lse: Mutex<Option<Tensor>>,
}

fn attention_dims(q: &Layout, k: &Layout, causal: bool) -> Result<AttentionDims> {
    let (&[batch_heads, queries, head_dim], &[key_heads, keys, key_dim]) = (q.dims(), k.dims()) else {
        bail!("attention: q and k must be [batch·heads, tokens, head_dim], not {:?} and {:?}", q.dims(), k.dims());
    };
    if (batch_heads, head_dim) != (key_heads, key_dim) {
        bail!("attention: q {:?} and k {:?} do not match", q.dims(), k.dims());
    }
    Ok(AttentionDims { batch_heads, queries, keys, head_dim, causal })
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = attention_dims(q_layout, k_layout, self.causal)?;
        cpu_float!(q, self.name(), |T| {
            let (out, lse) = cpu_attention::forward::<T>(
                contiguous(q, q_layout)?,
                contiguous(k, k_layout)?,
                contiguous(v, v_layout)?,
                dims,
            );
            let lse = Tensor::from_vec(lse, (dims.batch_heads, dims.queries), &candle_core::Device::Cpu)?;
            *self.lse.lock().expect("attention's log-sum-exp lock") = Some(lse);
            Ok((T::to_cpu_storage_owned(out), q_layout.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        q_layout: &Layout,
        k: &candle_core::CudaStorage,
        k_layout: &Layout,
        v: &candle_core::CudaStorage,
        v_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let dims = attention_dims(q_layout, k_layout, self.causal)?;
        let (out, lse) = cuda::attention_forward((q, q_layout), (k, k_layout), (v, v_layout), dims)?;
        *self.lse.lock().expect("attention's log-sum-exp lock") = Some(lse);
        Ok((out, q_layout.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(lse) = self.lse.lock().expect("attention's log-sum-exp lock").take() else {
            bail!("attention backward ran twice or before its forward");
        };
        let backward = AttentionBackward { causal: self.causal, out: out.clone(), grad: grad.contiguous()?, lse };
        let grads = q.apply_op3_no_bwd(k, v, &backward)?;
        let (q_len, k_len) = (q.elem_count(), k.elem_count());
        Ok((
            Some(grads.narrow(0, 0, q_len)?.reshape(q.shape())?),
            Some(grads.narrow(0, q_len, k_len)?.reshape(k.shape())?),
            Some(grads.narrow(0, q_len + k_len, v.elem_count())?.reshape(v.shape())?),
        ))
    }
}

/// The gradients of q, k and v as one flat tensor `[dq | dk | dv]`.
struct AttentionBackward {
    causal: bool,
    out: Tensor,
    grad: Tensor,
    lse: Tensor,
}

impl CustomOp3 for AttentionBackward {
    fn name(&self) -> &'static str {
        "fused-attention-backward"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = attention_dims(q_layout, k_layout, self.causal)?;
        cpu_float!(q, self.name(), |T| {
            let grads = with_cpu_elements(&self.out, |out: &[T]| {
                with_cpu_elements(&self.grad, |grad: &[T]| {
                    with_cpu_elements(&self.lse, |lse: &[T]| {
                        let inputs = (contiguous(q, q_layout)?, contiguous(k, k_layout)?, contiguous(v, v_layout)?);
                        Ok(cpu_attention::backward(inputs, out, grad, lse, dims))
                    })
                })
            })?;
            let len = grads.len();
            Ok((T::to_cpu_storage_owned(grads), Shape::from(len)))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        q_layout: &Layout,
        k: &candle_core::CudaStorage,
        k_layout: &Layout,
        v: &candle_core::CudaStorage,
        v_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let dims = attention_dims(q_layout, k_layout, self.causal)?;
        cuda::attention_backward((q, q_layout), (k, k_layout), (v, v_layout), (&self.out, &self.grad, &self.lse), dims)
    }
}

/// Scaled dot-product attention of `[batch·heads, tokens, head_dim]` tensors,
/// softmax(q·kᵀ/√d)·v, computed without the score matrix and with f32
/// arithmetic for half-precision inputs (diffusers' `upcast_attention`).
/// `causal`: query `i` attends to keys `0..=i` only.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
    let (dtype, working) = (q.dtype(), cpu_working_dtype(q));
    let [q, k, v] = [q, k, v].map(|t| t.to_dtype(working).and_then(|t| t.contiguous()));
    let (q, k, v) = (q?, k?, v?);
    if v.dims() != k.dims() {
        bail!("attention: k {:?} and v {:?} differ", k.dims(), v.dims());
    }
    let (batch_heads, queries, head_dim) = q.dims3()?;
    crate::model::flops::attention(4 * batch_heads * queries * k.dim(1)? * head_dim);
    if q.device().is_cuda() && (head_dim > MAX_CUDA_HEAD_DIM || batch_heads > MAX_CUDA_BATCH_HEADS) {
        return composed_attention(&q, &k, &v, causal)?.to_dtype(dtype);
    }
    q.apply_op3(&k, &v, Attention { causal, lse: Mutex::new(None) })?.to_dtype(dtype)
}

/// The widest head the CUDA kernel takes (SD's are 40 to 160 wide).
const MAX_CUDA_HEAD_DIM: usize = 160;
/// The kernel puts batch·heads on the grid's y axis, which CUDA caps.
const MAX_CUDA_BATCH_HEADS: usize = 65_535;

/// Attention from differentiable ops (half precision scored in f32): for the
/// GPU's heads wider than the kernel takes (the VAE's single 512-wide head),
/// and the reference the fused op is tested against.
fn composed_attention(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
    let dtype = q.dtype();
    let widened =
        |t: &Tensor| if matches!(dtype, DType::F16 | DType::BF16) { t.to_dtype(DType::F32) } else { Ok(t.clone()) };
    let scale = (q.dim(candle_core::D::Minus1)? as f64).powf(-0.5);
    let mut scores = (widened(q)?.matmul(&widened(k)?.t()?)? * scale)?;
    if causal {
        let (queries, keys) = (q.dim(1)?, k.dim(1)?);
        let mask: Vec<f32> =
            (0..queries * keys).map(|i| if i % keys > i / keys { f32::NEG_INFINITY } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, (queries, keys), q.device())?.to_dtype(scores.dtype())?;
        scores = scores.broadcast_add(&mask)?;
    }
    let shifted = scores.broadcast_sub(&scores.max_keepdim(candle_core::D::Minus1)?.detach())?;
    let exp = shifted.exp()?;
    exp.broadcast_div(&exp.sum_keepdim(candle_core::D::Minus1)?)?.to_dtype(dtype)?.matmul(v)
}

/// A convolution of frozen weights on the CPU (im2col + one product per
/// image); backward computes the input's gradient only.
struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl Conv {
    fn shape(&self, input: &Layout) -> Result<ConvShape> {
        let (&[batch, in_channels, height, width], &[out_channels, weight_in, kernel, kernel_w]) =
            (input.dims(), self.weight.dims())
        else {
            bail!("conv2d: input {:?} or weight {:?} is not 4-D", input.dims(), self.weight.dims());
        };
        if weight_in != in_channels
            || kernel != kernel_w
            || height + 2 * self.padding < kernel
            || width + 2 * self.padding < kernel
        {
            bail!("conv2d: weight {:?} does not fit input {:?}", self.weight.dims(), input.dims());
        }
        Ok(ConvShape {
            batch,
            in_channels,
            out_channels,
            height,
            width,
            kernel,
            stride: self.stride,
            padding: self.padding,
        })
    }
}

impl CustomOp1 for Conv {
    fn name(&self) -> &'static str {
        "frozen-conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let shape = self.shape(layout)?;
        cpu_float!(storage, self.name(), |T| {
            let input = contiguous::<T>(storage, layout)?;
            let out = with_cpu_elements(&self.weight, |weight: &[T]| match &self.bias {
                Some(bias) => {
                    with_cpu_elements(bias, |bias: &[T]| Ok(cpu_conv::forward(input, weight, Some(bias), shape)))
                }
                None => Ok(cpu_conv::forward(input, weight, None, shape)),
            })?;
            let dims = (shape.batch, shape.out_channels, shape.out_height(), shape.out_width());
            Ok((T::to_cpu_storage_owned(out), Shape::from(dims)))
        })
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let shape = self.shape(x.layout())?;
        crate::model::flops::products(2 * grad.elem_count() * shape.in_channels * shape.kernel * shape.kernel);
        let op = ConvInputGradient { weight: self.weight.clone(), shape };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

struct ConvInputGradient {
    weight: Tensor,
    shape: ConvShape,
}

impl CustomOp1 for ConvInputGradient {
    fn name(&self) -> &'static str {
        "frozen-conv2d-input-gradient"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let shape = self.shape;
        cpu_float!(storage, self.name(), |T| {
            let grad = contiguous::<T>(storage, layout)?;
            let out =
                with_cpu_elements(&self.weight, |weight: &[T]| Ok(cpu_conv::input_gradient(grad, weight, shape)))?;
            Ok((T::to_cpu_storage_owned(out), Shape::from((shape.batch, shape.in_channels, shape.height, shape.width))))
        })
    }
}

/// A 2-D convolution of `[batch, channels, height, width]` with a frozen
/// weight and bias, on the CPU in f32 or f64.
pub fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, stride: usize, padding: usize) -> Result<Tensor> {
    let op = Conv { weight: weight.contiguous()?, bias: bias.map(Tensor::contiguous).transpose()?, stride, padding };
    let y = x.contiguous()?.apply_op1(op)?;
    crate::model::flops::products(2 * y.elem_count() * weight.dims()[1..].iter().product::<usize>());
    Ok(y)
}

/// A frozen linear layer `x·Wᵀ + b` plus one LoRA adapter `scale·(x·Aᵀ)·Bᵀ`
/// as one op, on the CPU when everything is f32 (or f64); `None` elsewhere,
/// for the caller to compose.
pub fn lora_linear(
    x: &Tensor,
    (weight, bias): (&Tensor, Option<&Tensor>),
    (down, up): (&Tensor, &Tensor),
    scale: f64,
) -> Result<Option<Tensor>> {
    let dtype = x.dtype();
    let same =
        [weight.dtype(), down.dtype(), up.dtype()].into_iter().chain(bias.map(Tensor::dtype)).all(|d| d == dtype);
    if !x.device().is_cpu() || !same || !matches!(dtype, DType::F32 | DType::F64) {
        return Ok(None);
    }
    crate::model::flops::products(2 * x.elem_count() * weight.dim(0)?);
    let op = lora_linear::LoraLinear {
        weight: weight.contiguous()?,
        bias: bias.map(Tensor::contiguous).transpose()?,
        scale,
    };
    Ok(Some(x.contiguous()?.apply_op3(&down.contiguous()?, &up.contiguous()?, op)?))
}
