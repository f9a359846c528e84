//! A frozen linear layer with one trained LoRA adapter, as one op on the CPU:
//! y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ forward, and dx, dA, dB in one backward. The
//! composed version is about ten graph nodes per layer (transposes, two
//! products, a scale, casts, adds), and candle's backward starts every node's
//! gradient as zeros plus an add.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType, bail};

use super::cpu::Real;
use super::cpu_matmul::{View, Write, matmul, threads_for};
use super::linear::biased_product;
use super::{contiguous, with_cpu_elements};

/// The sizes: `rows` inputs of `inputs` features, `outputs` out, rank `rank`.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    rows: usize,
    inputs: usize,
    outputs: usize,
    rank: usize,
}

/// Forward: `[rows, outputs]`.
fn forward<T: Real>(x: &[T], weight: &[T], bias: Option<&[T]>, (down, up): (&[T], &[T]), scale: T, n: Sizes) -> Vec<T> {
    let mut y = biased_product(x, View::row_major(weight, n.outputs, n.inputs).t(), bias, n.rows, n.inputs);
    let x_view = View::row_major(x, n.rows, n.inputs);
    let threads = threads_for(n.rows * n.inputs * n.outputs);
    let mut low = vec![T::zero(); n.rows * n.rank];
    matmul(&mut low, x_view, View::row_major(down, n.rank, n.inputs).t(), T::one(), Write::Overwrite, 1);
    let up = View::row_major(up, n.outputs, n.rank).t();
    matmul(&mut y, View::row_major(&low, n.rows, n.rank), up, scale, Write::Accumulate, threads);
    y
}

/// Backward: `[dx | dA | dB]` (dx left out when x needs no gradient).
#[allow(clippy::too_many_arguments)]
fn backward<T: Real>(
    x: &[T],
    grad: &[T],
    weight: &[T],
    (down, up): (&[T], &[T]),
    scale: T,
    n: Sizes,
    with_input_gradient: bool,
) -> Vec<T> {
    let input_len = if with_input_gradient { n.rows * n.inputs } else { 0 };
    let mut out = vec![T::zero(); input_len + n.rank * n.inputs + n.outputs * n.rank];
    let (dx, rest) = out.split_at_mut(input_len);
    let (d_down, d_up) = rest.split_at_mut(n.rank * n.inputs);
    let (x_view, grad_view) = (View::row_major(x, n.rows, n.inputs), View::row_major(grad, n.rows, n.outputs));
    let (down_view, up_view) = (View::row_major(down, n.rank, n.inputs), View::row_major(up, n.outputs, n.rank));
    let threads = threads_for(n.rows * n.inputs * n.outputs);
    // g·B and x·Aᵀ, `[rows, rank]` each.
    let mut grad_low = vec![T::zero(); n.rows * n.rank];
    matmul(&mut grad_low, grad_view, up_view, T::one(), Write::Overwrite, 1);
    let mut low = vec![T::zero(); n.rows * n.rank];
    matmul(&mut low, x_view, down_view.t(), T::one(), Write::Overwrite, 1);
    let grad_low_view = View::row_major(&grad_low, n.rows, n.rank);
    if with_input_gradient {
        matmul(dx, grad_view, View::row_major(weight, n.outputs, n.inputs), T::one(), Write::Overwrite, threads);
        matmul(dx, grad_low_view, down_view, scale, Write::Accumulate, threads);
    }
    matmul(d_down, grad_low_view.t(), x_view, scale, Write::Overwrite, threads);
    matmul(d_up, grad_view.t(), View::row_major(&low, n.rows, n.rank), scale, Write::Overwrite, threads);
    out
}

/// The op over (x, A, B); W and b are frozen.
pub(super) struct LoraLinear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub scale: f64,
}

fn sizes(x: &Layout, down: &Layout, up: &Layout) -> Result<Sizes> {
    let (&[rank, inputs], &[outputs, up_rank]) = (down.dims(), up.dims()) else {
        bail!("lora linear: A {:?} and B {:?} must be matrices", down.dims(), up.dims());
    };
    let x_inputs = x.dims().last().copied().unwrap_or(0);
    if rank != up_rank || x_inputs != inputs {
        bail!("lora linear: x {:?}, A {:?} and B {:?} do not fit", x.dims(), down.dims(), up.dims());
    }
    Ok(Sizes { rows: x.shape().elem_count() / inputs.max(1), inputs, outputs, rank })
}

impl LoraLinear {
    fn with_weights<T: Real, R>(&self, f: impl FnOnce(&[T], Option<&[T]>) -> Result<R>) -> Result<R> {
        with_cpu_elements(&self.weight, |weight: &[T]| match &self.bias {
            Some(bias) => with_cpu_elements(bias, |bias: &[T]| f(weight, Some(bias))),
            None => f(weight, None),
        })
    }
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        down: &CpuStorage,
        down_layout: &Layout,
        up: &CpuStorage,
        up_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = sizes(x_layout, down_layout, up_layout)?;
        let mut dims = x_layout.dims().to_vec();
        *dims.last_mut().expect("sizes checks the rank") = n.outputs;
        cpu_float!(x, self.name(), |T| {
            let adapter = (contiguous::<T>(down, down_layout)?, contiguous::<T>(up, up_layout)?);
            let x = contiguous::<T>(x, x_layout)?;
            let y =
                self.with_weights(|weight, bias| Ok(forward(x, weight, bias, adapter, T::narrow(self.scale), n)))?;
            Ok((T::to_cpu_storage_owned(y), Shape::from(dims)))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        down: &Tensor,
        up: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let with_input_gradient = x.track_op();
        crate::model::flops::products(2 * grad.elem_count() * self.weight.dim(1)? * usize::from(with_input_gradient));
        let op = LoraLinearBackward {
            weight: self.weight.clone(),
            grad: grad.contiguous()?,
            scale: self.scale,
            with_input_gradient,
        };
        let grads = x.apply_op3_no_bwd(down, up, &op)?;
        let (input_len, down_len) = (if with_input_gradient { x.elem_count() } else { 0 }, down.elem_count());
        let dx = if with_input_gradient { Some(grads.narrow(0, 0, input_len)?.reshape(x.shape())?) } else { None };
        Ok((
            dx,
            Some(grads.narrow(0, input_len, down_len)?.reshape(down.shape())?),
            Some(grads.narrow(0, input_len + down_len, up.elem_count())?.reshape(up.shape())?),
        ))
    }
}

struct LoraLinearBackward {
    weight: Tensor,
    grad: Tensor,
    scale: f64,
    with_input_gradient: bool,
}

impl CustomOp3 for LoraLinearBackward {
    fn name(&self) -> &'static str {
        "lora-linear-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        down: &CpuStorage,
        down_layout: &Layout,
        up: &CpuStorage,
        up_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = sizes(x_layout, down_layout, up_layout)?;
        cpu_float!(x, self.name(), |T| {
            let adapter = (contiguous::<T>(down, down_layout)?, contiguous::<T>(up, up_layout)?);
            let x = contiguous::<T>(x, x_layout)?;
            let grads = with_cpu_elements(&self.weight, |weight: &[T]| {
                with_cpu_elements(&self.grad, |grad: &[T]| {
                    let scale = T::narrow(self.scale);
                    Ok(backward(x, grad, weight, adapter, scale, n, self.with_input_gradient))
                })
            })?;
            let len = grads.len();
            Ok((T::to_cpu_storage_owned(grads), Shape::from(len)))
        })
    }
}
