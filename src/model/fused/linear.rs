//! A frozen linear layer's value on the CPU, `y = x·Wᵀ + b`, as one op: the
//! bias written into the output first and one product over every row
//! accumulating onto it. Composed, candle runs one product per batch item
//! (`broadcast_matmul`) and a second pass over the output for the bias.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType, bail};

use super::contiguous;
use super::cpu::Real;
use super::cpu_matmul::{View, Write, matmul, threads_for};

/// `[rows, outputs]`: `x·weightᵀ + bias`, `weight_t` the weight's transpose
/// `[inputs, outputs]` (a view: stored either way round).
pub(super) fn biased_product<T: Real>(
    x: &[T],
    weight_t: View<T>,
    bias: Option<&[T]>,
    rows: usize,
    inputs: usize,
) -> Vec<T> {
    let outputs = weight_t.cols();
    let mut y = vec![T::zero(); rows * outputs];
    let write = match bias {
        Some(bias) => {
            y.chunks_exact_mut(outputs).for_each(|row| row.copy_from_slice(bias));
            Write::Accumulate
        }
        None => Write::Overwrite,
    };
    let threads = threads_for(rows * inputs * outputs);
    matmul(&mut y, View::row_major(x, rows, inputs), weight_t, T::one(), write, threads);
    y
}

/// The transpose of a `[outputs, inputs]` weight, stored row-major or as
/// the transpose of a row-major `[inputs, outputs]` (`Linear::with_transposed_storage`).
fn transposed_weight<'a, T: Real>(storage: &'a CpuStorage, layout: &Layout) -> Result<View<'a, T>> {
    let &[outputs, inputs] = layout.dims() else { bail!("linear: the weight must be [outputs, inputs]") };
    let data = &storage.as_slice::<T>()?[layout.start_offset()..];
    if data.len() < outputs * inputs {
        bail!("linear: the weight's storage is too short");
    }
    match layout.stride() {
        [s, 1] if *s == inputs => Ok(View::row_major(data, outputs, inputs).t()),
        [1, s] if *s == outputs => Ok(View::row_major(data, inputs, outputs)),
        other => bail!("linear: weight strides {other:?} are neither layout"),
    }
}

/// A frozen linear layer's value, `x·weightᵀ + bias` over the last
/// dimension, as one op on the CPU in f32 or f64 (no gradient flows through
/// it: `nn::Linear` carries the input's gradient itself); `None` where
/// candle's composed ops should run (another device or dtype).
pub fn frozen_linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Option<Result<Tensor>> {
    let cpu_float = matches!(x.dtype(), DType::F32 | DType::F64);
    let same = weight.dtype() == x.dtype() && bias.dtype() == x.dtype();
    (x.device().is_cpu() && cpu_float && same && !x.track_op())
        .then(|| x.contiguous()?.apply_op3_no_bwd(weight, &bias.contiguous()?, &FrozenLinear))
}

/// `x · weightᵀ + bias` over the last dimension (frozen: no backward).
struct FrozenLinear;

impl CustomOp3 for FrozenLinear {
    fn name(&self) -> &'static str {
        "fused-frozen-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let inputs = *x_layout.dims().last().unwrap_or(&0);
        let outputs = weight_layout.dims().first().copied().unwrap_or(0);
        if inputs == 0 || weight_layout.dims() != [outputs, inputs] || bias_layout.dims() != [outputs] {
            bail!(
                "linear: x {:?}, weight {:?}, bias {:?} do not fit",
                x_layout.dims(),
                weight_layout.dims(),
                bias_layout.dims()
            );
        }
        let rows = x_layout.shape().elem_count() / inputs;
        let mut dims = x_layout.dims().to_vec();
        *dims.last_mut().expect("x has a last dimension") = outputs;
        cpu_float!(x, self.name(), |T| {
            let y = biased_product::<T>(
                contiguous(x, x_layout)?,
                transposed_weight(weight, weight_layout)?,
                Some(contiguous(bias, bias_layout)?),
                rows,
                inputs,
            );
            Ok((T::to_cpu_storage_owned(y), Shape::from(dims)))
        })
    }
}
