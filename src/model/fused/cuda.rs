//! CUDA side of the fused ops: `kernels.cu` compiled once per process with
//! NVRTC (no nvcc at build time), loaded into each device, launched on its
//! stream. Storage types f32, f16 and bf16; arithmetic f32.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{CudaDevice, CudaStorage, Layout, Result, Shape, Storage, Tensor, bail};

use super::cpu::NormSpec;
use super::cpu_attention::AttentionDims;

const SOURCE: &str = include_str!("kernels.cu");
const MODULE: &str = "easel_fused";
/// Must match `kernels.cu`: warps per block, rows per warp, keys per tile.
const WARPS: u32 = 8;
const ROWS_PER_BLOCK: usize = 32;
const TILE: usize = 32;
const MAX_HEAD_DIM: usize = super::MAX_CUDA_HEAD_DIM;

fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    let compiled = PTX.get_or_init(|| {
        nvrtc::compile_ptx(SOURCE).map(|ptx| ptx.to_src()).map_err(|e| format!("compiling the fused kernels: {e}"))
    });
    compiled.as_deref().map_err(|e| candle_core::Error::Msg(e.clone()))
}

/// The kernel `{name}_{suffix}` on `device` (candle does not export the type to name it in a function).
macro_rules! kernel {
    ($device:expr, $name:expr, $suffix:expr) => {
        $device.get_or_load_custom_func(&format!("{}_{}", $name, $suffix), MODULE, ptx()?)?
    };
}

/// The contiguous elements of a storage, as the kernel's element type.
fn view<'a, T: candle_core::cuda_backend::CudaDType + DeviceRepr>(
    slice: &'a CudaSlice<T>,
    layout: &Layout,
) -> Result<CudaView<'a, T>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(slice.slice(start..end)),
        None => bail!("fused op: input is not contiguous"),
    }
}

/// Device memory for `len` elements of the type of `_like`, not initialised.
///
/// # Safety
/// The kernel it is made for must write every element before anything reads it.
unsafe fn alloc_like<T: DeviceRepr>(device: &CudaDevice, _like: &CudaSlice<T>, len: usize) -> Result<CudaSlice<T>> {
    // SAFETY: passed on to the caller.
    unsafe { device.alloc::<T>(len) }
}

/// Another input's elements, of the same type as `_like`.
fn slice_like<'a, T: candle_core::cuda_backend::CudaDType>(
    _like: &CudaSlice<T>,
    storage: &'a CudaStorage,
) -> Result<&'a CudaSlice<T>> {
    storage.as_cuda_slice::<T>()
}

/// The output gradient's elements (backward ops), of the same type as `like`.
fn optional_view<'a, T: candle_core::cuda_backend::CudaDType + DeviceRepr>(
    like: &CudaSlice<T>,
    grad: Option<(&'a CudaStorage, &Layout)>,
) -> Result<Option<CudaView<'a, T>>> {
    grad.map(|(grad, layout)| view(slice_like(like, grad)?, layout)).transpose()
}

/// Runs `f` on a CUDA tensor's elements (a weight, a saved tensor) of the
/// same type as `_like`.
fn with_tensor<T, R>(_like: &CudaSlice<T>, tensor: &Tensor, f: impl FnOnce(CudaView<T>) -> Result<R>) -> Result<R>
where
    T: candle_core::cuda_backend::CudaDType + DeviceRepr,
{
    let (storage, layout) = tensor.storage_and_layout();
    match &*storage {
        Storage::Cuda(storage) => f(view(storage.as_cuda_slice::<T>()?, layout)?),
        _ => bail!("fused op: a tensor is on another device than the input"),
    }
}

/// Calls `$body` with `$s` the storage's CUDA slice and `$suffix` its kernel suffix.
macro_rules! by_dtype {
    ($storage:expr, |$s:ident, $suffix:ident| $body:expr) => {
        match &$storage.slice {
            CudaStorageSlice::F32($s) => {
                let $suffix = "f32";
                $body
            }
            CudaStorageSlice::F16($s) => {
                let $suffix = "f16";
                $body
            }
            CudaStorageSlice::BF16($s) => {
                let $suffix = "bf16";
                $body
            }
            _ => bail!("the fused CUDA ops take f32, f16 or bf16, not {:?}", $storage.dtype()),
        }
    };
}

fn blocks(n: usize, per_block: usize) -> u32 {
    n.div_ceil(per_block).max(1) as u32
}

/// GroupNorm/LayerNorm (+ SiLU) forward, or with `grad` its input gradient.
pub fn norm(
    x: &CudaStorage,
    layout: &Layout,
    grad: Option<(&CudaStorage, &Layout)>,
    weight: &Tensor,
    bias: &Tensor,
    spec: NormSpec,
) -> Result<(CudaStorage, Shape)> {
    let device = x.device().clone();
    let NormSpec { rows, eps, silu } = spec;
    let config = LaunchConfig { grid_dim: (rows.count as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let (len, inner, groups, eps, silu) =
        (rows.len as i32, rows.inner as i32, rows.groups as i32, eps as f32, silu as i32);
    let out = by_dtype!(x, |slice, suffix| {
        let input = view(slice, layout)?;
        // SAFETY: the kernel writes every element.
        let out = unsafe { alloc_like(&device, slice, input.len())? };
        with_tensor(slice, weight, |weight| {
            with_tensor(slice, bias, |bias| {
                let name = if grad.is_some() { "norm_backward" } else { "norm_forward" };
                let func = kernel!(device, name, suffix);
                let mut builder = func.builder();
                builder.arg(&input);
                let grad_view = optional_view(slice, grad)?;
                if let Some(grad_view) = &grad_view {
                    builder.arg(grad_view);
                }
                builder.arg(&weight).arg(&bias).arg(&out).arg(&len).arg(&inner).arg(&groups).arg(&eps).arg(&silu);
                // SAFETY: argument list as the kernel declares it; sizes from the layout.
                unsafe { builder.launch(config) }.w()?;
                Ok(())
            })
        })?;
        CudaStorage::wrap_cuda_slice(out, device.clone())
    });
    Ok((out, layout.shape().clone()))
}

/// GEGLU forward (`[…, 2w]` → `[…, w]`), or with `grad` the gradient of its input.
pub fn geglu(x: &CudaStorage, layout: &Layout, grad: Option<(&CudaStorage, &Layout)>) -> Result<(CudaStorage, Shape)> {
    let device = x.device().clone();
    let mut dims = layout.dims().to_vec();
    let width = dims.last().copied().unwrap_or(0) / 2;
    let outputs = layout.shape().elem_count() / 2;
    let config = LaunchConfig {
        grid_dim: (blocks(outputs, 256).min(65_535), 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let (n, width_arg) = (outputs as i64, width as i32);
    let out = by_dtype!(x, |slice, suffix| {
        let input = view(slice, layout)?;
        let len = if grad.is_some() { input.len() } else { outputs };
        // SAFETY: the kernel writes every element.
        let out = unsafe { alloc_like(&device, slice, len)? };
        let func = kernel!(device, if grad.is_some() { "geglu_backward" } else { "geglu_forward" }, suffix);
        let mut builder = func.builder();
        builder.arg(&input);
        let grad_view = optional_view(slice, grad)?;
        if let Some(grad_view) = &grad_view {
            builder.arg(grad_view);
        }
        builder.arg(&out).arg(&n).arg(&width_arg);
        // SAFETY: argument list as the kernel declares it.
        unsafe { builder.launch(config) }.w()?;
        CudaStorage::wrap_cuda_slice(out, device.clone())
    });
    if grad.is_none() {
        *dims.last_mut().expect("geglu checks the rank") = width;
    }
    Ok((out, Shape::from(dims)))
}

fn check_head_dim(dims: AttentionDims) -> Result<()> {
    if dims.head_dim > MAX_HEAD_DIM {
        bail!("fused attention on CUDA takes heads up to {MAX_HEAD_DIM} wide, not {}", dims.head_dim);
    }
    Ok(())
}

/// Launch shape of the row kernels: 32 rows a block, one grid row per head.
fn row_config(rows: usize, dims: AttentionDims) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks(rows, ROWS_PER_BLOCK), dims.batch_heads as u32, 1),
        block_dim: (WARPS * 32, 1, 1),
        shared_mem_bytes: (2 * TILE * (dims.head_dim + 1) * std::mem::size_of::<f32>()) as u32,
    }
}

/// Runs `f` on the saved f32 log-sum-exp.
fn with_lse<R>(lse: &Tensor, f: impl FnOnce(CudaView<f32>) -> Result<R>) -> Result<R> {
    let (storage, layout) = lse.storage_and_layout();
    match &*storage {
        Storage::Cuda(storage) => f(view(storage.as_cuda_slice::<f32>()?, layout)?),
        _ => bail!("fused attention: the saved log-sum-exp is not on the GPU"),
    }
}

type Input<'a> = (&'a CudaStorage, &'a Layout);

/// Attention forward: the output and the f32 log-sum-exp `[batch·heads, queries]`.
pub fn attention_forward(q: Input, k: Input, v: Input, dims: AttentionDims) -> Result<(CudaStorage, Tensor)> {
    check_head_dim(dims)?;
    let device = q.0.device().clone();
    let (nq, nk, d) = (dims.queries as i32, dims.keys as i32, dims.head_dim as i32);
    let (scale, causal) = (dims.scale() as f32, dims.causal as i32);
    // SAFETY: the kernel writes every row's log-sum-exp.
    let lse: CudaSlice<f32> = unsafe { device.alloc(dims.batch_heads * dims.queries)? };
    let out = by_dtype!(q.0, |slice, suffix| {
        let q_view = view(slice, q.1)?;
        let (k_view, v_view) = (view(slice_like(slice, k.0)?, k.1)?, view(slice_like(slice, v.0)?, v.1)?);
        // SAFETY: the kernel writes every element.
        let out = unsafe { alloc_like(&device, slice, q_view.len())? };
        let func = kernel!(device, "attention_forward", suffix);
        let mut builder = func.builder();
        builder.arg(&q_view).arg(&k_view).arg(&v_view).arg(&out).arg(&lse);
        builder.arg(&nq).arg(&nk).arg(&d).arg(&scale).arg(&causal);
        // SAFETY: argument list as the kernel declares it.
        unsafe { builder.launch(row_config(dims.queries, dims)) }.w()?;
        CudaStorage::wrap_cuda_slice(out, device.clone())
    });
    let lse = Storage::Cuda(CudaStorage::wrap_cuda_slice(lse, device));
    Ok((out, Tensor::from_storage(lse, (dims.batch_heads, dims.queries), BackpropOp::none(), false)))
}

/// Attention backward: `[dq | dk | dv]` flat, from the saved output, its
/// gradient and the log-sum-exp.
pub fn attention_backward(
    q: Input,
    k: Input,
    v: Input,
    (out, grad, lse): (&Tensor, &Tensor, &Tensor),
    dims: AttentionDims,
) -> Result<(CudaStorage, Shape)> {
    check_head_dim(dims)?;
    let device = q.0.device().clone();
    let (nq, nk, d) = (dims.queries as i32, dims.keys as i32, dims.head_dim as i32);
    let (scale, causal) = (dims.scale() as f32, dims.causal as i32);
    let (q_len, k_len) =
        (dims.batch_heads * dims.queries * dims.head_dim, dims.batch_heads * dims.keys * dims.head_dim);
    let rows = (dims.batch_heads * dims.queries) as i64;
    // SAFETY: the delta kernel writes every row.
    let delta: CudaSlice<f32> = unsafe { device.alloc(rows as usize)? };
    let grads = by_dtype!(q.0, |slice, suffix| {
        let q_view = view(slice, q.1)?;
        let (k_view, v_view) = (view(slice_like(slice, k.0)?, k.1)?, view(slice_like(slice, v.0)?, v.1)?);
        // SAFETY: the dq and dkv kernels write every element between them.
        let mut grads = unsafe { alloc_like(&device, slice, q_len + 2 * k_len)? };
        with_tensor(slice, out, |out| {
            with_tensor(slice, grad, |grad| {
                with_lse(lse, |lse| {
                    let func = kernel!(device, "attention_delta", suffix);
                    let mut builder = func.builder();
                    builder.arg(&out).arg(&grad).arg(&delta).arg(&rows).arg(&d);
                    let config = LaunchConfig {
                        grid_dim: (blocks(rows as usize * 32, 256), 1, 1),
                        block_dim: (256, 1, 1),
                        shared_mem_bytes: 0,
                    };
                    // SAFETY: argument list as the kernel declares it.
                    unsafe { builder.launch(config) }.w()?;

                    let (mut dq, mut rest) = grads.split_at_mut(q_len);
                    let (mut dk, mut dv) = rest.split_at_mut(k_len);
                    let func = kernel!(device, "attention_dq", suffix);
                    let mut builder = func.builder();
                    builder.arg(&q_view).arg(&k_view).arg(&v_view).arg(&grad).arg(&lse).arg(&delta).arg(&mut dq);
                    builder.arg(&nq).arg(&nk).arg(&d).arg(&scale).arg(&causal);
                    // SAFETY: as above.
                    unsafe { builder.launch(row_config(dims.queries, dims)) }.w()?;

                    let func = kernel!(device, "attention_dkv", suffix);
                    let mut builder = func.builder();
                    builder.arg(&q_view).arg(&k_view).arg(&v_view).arg(&grad).arg(&lse).arg(&delta);
                    builder.arg(&mut dk).arg(&mut dv);
                    builder.arg(&nq).arg(&nk).arg(&d).arg(&scale).arg(&causal);
                    // SAFETY: as above.
                    unsafe { builder.launch(row_config(dims.keys, dims)) }.w()?;
                    Ok(())
                })
            })
        })?;
        CudaStorage::wrap_cuda_slice(grads, device.clone())
    });
    Ok((grads, Shape::from(q_len + 2 * k_len)))
}

#[cfg(test)]
mod tests {
    /// NVRTC needs no GPU: the kernels compile wherever the library is.
    #[test]
    fn the_kernels_compile_with_nvrtc() {
        let ptx = super::ptx().unwrap();
        let kernels = [
            "norm_forward",
            "norm_backward",
            "geglu_forward",
            "geglu_backward",
            "attention_forward",
            "attention_delta",
            "attention_dq",
            "attention_dkv",
        ];
        for kernel in kernels {
            for suffix in ["f32", "f16", "bf16"] {
                assert!(ptx.contains(&format!(".entry {kernel}_{suffix}(")), "{kernel}_{suffix} missing from the PTX");
            }
        }
    }
}
