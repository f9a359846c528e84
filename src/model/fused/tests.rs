//! The fused ops against the composed, differentiable versions they replace
//! (kept here as the reference), in f64 and f32, values and gradients; and
//! a finite-difference check of each fused backward in f64.

use candle_core::{D, DType, Device, Result, Tensor, Var};

use super::{attention, frozen_linear, geglu, gelu, group_norm, layer_norm};
use crate::model::gradcheck::{max_gradient_error, weighted_sum};

fn input(shape: &[usize], dtype: DType) -> Tensor {
    Tensor::randn(0f64, 1.0, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

fn reference_norm(grouped: &Tensor, dim: usize, eps: f64) -> Result<Tensor> {
    let centered = grouped.broadcast_sub(&grouped.mean_keepdim(dim)?)?;
    let variance = centered.sqr()?.mean_keepdim(dim)?;
    centered.broadcast_div(&(variance + eps)?.sqrt()?)
}

fn reference_group_norm(x: &Tensor, w: &Tensor, b: &Tensor, groups: usize, silu: bool) -> Result<Tensor> {
    let normalized = reference_norm(&x.reshape((x.dim(0)?, groups, ()))?, 2, 1e-5)?.reshape(x.shape())?;
    let mut shape = vec![1; x.rank()];
    shape[1] = w.elem_count();
    let y = normalized.broadcast_mul(&w.reshape(shape.as_slice())?)?.broadcast_add(&b.reshape(shape.as_slice())?)?;
    if silu { y.silu() } else { Ok(y) }
}

fn reference_layer_norm(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    reference_norm(x, x.rank() - 1, 1e-5)?.broadcast_mul(w)?.broadcast_add(b)
}

fn reference_geglu(x: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    x.narrow(D::Minus1, 0, half)? * x.narrow(D::Minus1, half, half)?.gelu_erf()?
}

/// Largest |a − b| over every element.
fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
    let difference = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    difference.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Largest |difference| between the fused and reference outputs and between
/// their gradients for every input.
fn largest_difference(
    fused: impl Fn(&[Tensor]) -> Result<Tensor>,
    reference: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
) -> (f64, f64) {
    let run = |f: &dyn Fn(&[Tensor]) -> Result<Tensor>| {
        let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&tensors).unwrap();
        let grads = weighted_sum(&y).unwrap().backward().unwrap();
        let grads: Vec<Tensor> =
            tensors.iter().map(|t| grads.get(t).expect("a gradient for every input").clone()).collect();
        (y, grads)
    };
    let (fused_y, fused_grads) = run(&fused);
    let (reference_y, reference_grads) = run(&reference);
    let gradient = fused_grads.iter().zip(&reference_grads).map(|(a, b)| max_difference(a, b)).fold(0.0, f64::max);
    (max_difference(&fused_y, &reference_y), gradient)
}

fn assert_matches(what: &str, result: (f64, f64), dtype: DType) {
    assert_within(&format!("{what} {dtype:?}"), result, if dtype == DType::F64 { 1e-10 } else { 2e-4 });
}

fn assert_within(what: &str, (value, gradient): (f64, f64), tolerance: f64) {
    assert!(
        value < tolerance && gradient < tolerance,
        "{what}: value off by {value}, gradient by {gradient} (tolerance {tolerance})"
    );
}

#[test]
fn fused_group_norm_matches_the_composed_one() {
    for dtype in [DType::F64, DType::F32] {
        let (w, b) = (input(&[8], dtype).affine(0.5, 1.0).unwrap(), input(&[8], dtype));
        for silu in [false, true] {
            // Large enough to run the rows in parallel, and a small one.
            for shape in [[2, 8, 3, 5], [2, 8, 64, 72]] {
                let x = input(&shape, dtype).affine(2.0, 3.0).unwrap();
                let result = largest_difference(
                    |t| group_norm(&t[0], &w, &b, 4, 1e-5, silu),
                    |t| reference_group_norm(&t[0], &w, &b, 4, silu),
                    &[x],
                );
                assert_matches(&format!("group norm (silu {silu}, {shape:?})"), result, dtype);
            }
        }
    }
}

#[test]
fn fused_layer_norm_and_geglu_match_the_composed_ones() {
    for dtype in [DType::F64, DType::F32] {
        let (w, b) = (input(&[40], dtype), input(&[40], dtype));
        let x = input(&[2, 7, 40], dtype).affine(3.0, -1.0).unwrap();
        let result =
            largest_difference(|t| layer_norm(&t[0], &w, &b, 1e-5), |t| reference_layer_norm(&t[0], &w, &b), &[x]);
        assert_matches("layer norm", result, dtype);
        let x = input(&[2, 5, 2 * 24], dtype).affine(2.0, 0.0).unwrap();
        // candle's GELU backward rounds 1/√(2π) to 0.398942 (the fused one is
        // exact, as the finite-difference check below shows): 1e-6 apart.
        let result = largest_difference(|t| geglu(&t[0]), |t| reference_geglu(&t[0]), &[x]);
        assert_within(&format!("geglu {dtype:?}"), result, if dtype == DType::F64 { 5e-6 } else { 2e-4 });
    }
}

#[test]
fn inference_gelu_matches_candles_exact_gelu() {
    // Enough elements for the parallel blocks, one partial at the end.
    for dtype in [DType::F64, DType::F32] {
        let x = input(&[3, 40_001], dtype).affine(3.0, 0.0).unwrap();
        let difference = max_difference(&gelu(&x).unwrap(), &x.gelu_erf().unwrap());
        assert!(difference < 1e-5, "{dtype:?}: {difference}");
    }
}

#[test]
fn frozen_linear_matches_the_composed_layer_for_both_weight_layouts() {
    for dtype in [DType::F64, DType::F32] {
        let (x, weight, bias) = (input(&[2, 37, 48], dtype), input(&[24, 48], dtype), input(&[24], dtype));
        let composed = x.broadcast_matmul(&weight.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
        let transposed_storage = weight.t().unwrap().contiguous().unwrap().t().unwrap();
        for weight in [&weight, &transposed_storage] {
            let fused = frozen_linear(&x, weight, &bias).expect("the CPU takes it").unwrap();
            assert_eq!(fused.dims(), [2, 37, 24]);
            let difference = max_difference(&fused, &composed);
            assert!(difference < if dtype == DType::F64 { 1e-12 } else { 1e-5 }, "{dtype:?}: {difference}");
        }
    }
}

#[test]
fn fused_attention_matches_the_composed_one() {
    // Self-attention over more queries than one block holds, cross-attention
    // to 77 text tokens, SD's head widths, and CLIP's causal mask.
    let cases = [(3, 300, 300, 40, false), (2, 64, 77, 64, false), (2, 20, 77, 80, false), (2, 77, 77, 64, true)];
    for dtype in [DType::F64, DType::F32] {
        for (batch_heads, queries, keys, head_dim, causal) in cases {
            let q = input(&[batch_heads, queries, head_dim], dtype);
            let (k, v) = (input(&[batch_heads, keys, head_dim], dtype), input(&[batch_heads, keys, head_dim], dtype));
            let result = largest_difference(
                |t| attention(&t[0], &t[1], &t[2], causal),
                |t| super::composed_attention(&t[0], &t[1], &t[2], causal),
                &[q, k, v],
            );
            assert_matches(
                &format!("attention {batch_heads}×{queries}×{keys}×{head_dim} causal {causal}"),
                result,
                dtype,
            );
        }
    }
}

#[test]
fn fused_backward_passes_agree_with_finite_differences() {
    let check = |what: &str, f: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor| {
        let error = max_gradient_error(|x| weighted_sum(&f(x)?), x, 1e-5).unwrap();
        assert!(error < 1e-6, "{what}: gradient error {error}");
    };
    let (w, b) = (input(&[4], DType::F64).affine(0.5, 1.0).unwrap(), input(&[4], DType::F64));
    check("group norm + silu", &|x| group_norm(x, &w, &b, 2, 1e-5, true), &input(&[1, 4, 2, 3], DType::F64));
    check("layer norm", &|x| layer_norm(x, &w, &b, 1e-5), &input(&[3, 4], DType::F64));
    check("geglu", &|x| geglu(x), &input(&[3, 8], DType::F64));
    let (weight, bias) = (input(&[3, 2, 3, 3], DType::F64), input(&[3], DType::F64));
    check(
        "conv stride 2, odd sizes",
        &|x| super::conv2d(x, &weight, Some(&bias), 2, 1),
        &input(&[1, 2, 5, 7], DType::F64),
    );
    let (k, v) = (input(&[2, 5, 4], DType::F64), input(&[2, 5, 4], DType::F64));
    check("attention (queries)", &|q| attention(q, &k, &v, false), &input(&[2, 3, 4], DType::F64));
    let q = input(&[2, 5, 4], DType::F64);
    check("attention (keys, causal)", &|k| attention(&q, k, &v, true), &input(&[2, 5, 4], DType::F64));
    check("attention (values)", &|v| attention(&q, &k, v, false), &input(&[2, 5, 4], DType::F64));
}

#[test]
fn half_precision_on_the_cpu_runs_in_f32() {
    let x = input(&[1, 4, 3, 3], DType::F32);
    let (w, b) = (input(&[4], DType::F32), input(&[4], DType::F32));
    let full = group_norm(&x, &w, &b, 2, 1e-5, true).unwrap();
    let half =
        group_norm(&x.to_dtype(DType::BF16).unwrap(), &w.to_dtype(DType::BF16).unwrap(), &b, 2, 1e-5, true).unwrap();
    assert_eq!(half.dtype(), DType::BF16);
    let difference = (half.to_dtype(DType::F32).unwrap() - full).unwrap().abs().unwrap().max_all().unwrap();
    assert!(difference.to_scalar::<f32>().unwrap() < 0.05);
}

#[test]
fn fused_conv_matches_candles() {
    // (batch, in, out, size, kernel, stride, padding): same-size, strided
    // with and without padding, 1×1, and a batch large enough to run images
    // in parallel. (candle's own backward fails when a stride drops a
    // trailing row: odd sizes are checked by finite differences below.)
    let cases = [
        (1, 3, 4, 7, 3, 1, 1),
        (2, 4, 5, 8, 3, 2, 1),
        (1, 4, 4, 9, 3, 2, 0),
        (2, 6, 3, 5, 1, 1, 0),
        (3, 32, 32, 24, 3, 1, 1),
    ];
    for dtype in [DType::F64, DType::F32] {
        for (batch, inputs, outputs, size, kernel, stride, padding) in cases {
            let weight = input(&[outputs, inputs, kernel, kernel], dtype);
            let bias = input(&[outputs], dtype);
            let x = input(&[batch, inputs, size, size], dtype);
            let result = largest_difference(
                |t| super::conv2d(&t[0], &weight, Some(&bias), stride, padding),
                |t| t[0].conv2d(&weight, padding, stride, 1, 1)?.broadcast_add(&bias.reshape((1, outputs, 1, 1))?),
                &[x],
            );
            let what = format!("conv {batch}×{inputs}→{outputs} {size}px k{kernel} s{stride} p{padding}");
            assert_within(&format!("{what} {dtype:?}"), result, if dtype == DType::F64 { 1e-10 } else { 1e-3 });
        }
    }
}

#[test]
fn fused_lora_linear_matches_the_composed_layer() {
    for dtype in [DType::F64, DType::F32] {
        // Sizes large enough for the threaded products, and a small one.
        for (rows, inputs, outputs, rank) in [(2 * 7, 12, 10, 3), (2 * 256, 320, 320, 16)] {
            let weight = input(&[outputs, inputs], dtype);
            let bias = input(&[outputs], dtype);
            for bias in [Some(&bias), None] {
                let composed = |t: &[Tensor]| -> Result<Tensor> {
                    let base = t[0].broadcast_matmul(&weight.t()?)?;
                    let base = match bias {
                        Some(bias) => base.broadcast_add(bias)?,
                        None => base,
                    };
                    base + (t[0].broadcast_matmul(&t[1].t()?)?.broadcast_matmul(&t[2].t()?)? * 0.75)?
                };
                let fused = |t: &[Tensor]| -> Result<Tensor> {
                    Ok(super::lora_linear(&t[0], (&weight, bias), (&t[1], &t[2]), 0.75)?
                        .expect("f32 and f64 on the CPU fuse"))
                };
                let x = input(&[2, rows / 2, inputs], dtype);
                let adapter = [input(&[rank, inputs], dtype), input(&[outputs, rank], dtype)];
                let result = largest_difference(fused, composed, &[x, adapter[0].clone(), adapter[1].clone()]);
                // f32 sums over 320–512 products of unit-size terms (gradients near 100).
                let tolerance = if dtype == DType::F64 { 1e-10 } else { 1e-2 };
                assert_within(
                    &format!("lora linear {rows}×{inputs}→{outputs} r{rank} bias {}", bias.is_some()),
                    result,
                    tolerance,
                );
            }
        }
    }
}
