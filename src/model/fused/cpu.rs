//! CPU kernels of the fused normalisation and GEGLU ops, for f32 and f64.
//! Sums run in eight f64 lanes so the loops vectorise and a row of 40 960
//! elements (SD 1.5's GroupNorm at 512 px) loses no precision.

use rayon::prelude::*;

/// The float types the CPU kernels run in (half precision is widened to f32
/// before it gets here).
pub trait Real:
    num_traits::Float
    + candle_core::WithDType
    + std::ops::AddAssign
    + std::ops::MulAssign
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    fn widen(self) -> f64;
    fn narrow(value: f64) -> Self;
    /// eˣ in a form loops over slices vectorise (f32); the library's for f64.
    fn exp_fast(self) -> Self;
    fn erf(self) -> Self;
}

impl Real for f32 {
    fn widen(self) -> f64 {
        f64::from(self)
    }
    fn narrow(value: f64) -> Self {
        value as f32
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn erf(self) -> Self {
        erf_f32(self)
    }
}

impl Real for f64 {
    fn widen(self) -> f64 {
        self
    }
    fn narrow(value: f64) -> Self {
        value
    }
    fn exp_fast(self) -> Self {
        self.exp()
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
}

/// eˣ for f32 without a library call or a float-to-int conversion, so a loop
/// over a slice vectorises: reduction by ln 2, with n read from the bits of
/// x·log₂e + 1.5·2²³ (rounding by the addition), and Cephes' degree-6
/// polynomial; within 2 ulp, 0 below −87.3, NaN stays NaN.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.3, 88.0);
    let shifted = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r
        + 0.5;
    let exponent = shifted.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    let value = (p * r * r + r + 1.0) * f32::from_bits(exponent << 23);
    if x < -87.3 { 0.0 } else { value }
}

/// The largest element (−∞ for none), in eight lanes so it vectorises.
#[inline(always)]
pub fn max<T: Real>(xs: &[T]) -> T {
    let mut lanes = [T::neg_infinity(); 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder().iter().copied().fold(T::neg_infinity(), |a, b| if b > a { b } else { a });
    for chunk in chunks {
        for lane in 0..8 {
            if chunk[lane] > lanes[lane] {
                lanes[lane] = chunk[lane];
            }
        }
    }
    lanes.into_iter().fold(rest, |a, b| if b > a { b } else { a })
}

/// erf for f32 without a library call (Abramowitz & Stegun 7.1.26: 1.5·10⁻⁷
/// in exact arithmetic, under 10⁻⁶ in f32, a few ulp of values near 1).
#[inline(always)]
fn erf_f32(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_7) * t - 0.284_496_74) * t + 0.254_829_6) * t;
    let magnitude = 1.0 - poly * exp_f32(-a * a);
    magnitude.copysign(x)
}

/// Runs `f` compiled for AVX2 and FMA when the CPU has them (nearly every
/// x86-64 CPU since 2013): its loops then use 8-wide vectors where the
/// baseline target has SSE2's 4. `f` must inline into the feature-enabled
/// function (closures and helpers marked `#[inline(always)]`); results are
/// the same either way (Rust never fuses a multiply and an add by itself).
#[inline(always)]
pub fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: both features were detected on this CPU just above.
            return unsafe { with_avx2(f) };
        }
    }
    f()
}

/// Below this many elements a kernel runs on the calling thread: handing
/// small work to the pool costs more than it saves.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// Σ f(xᵢ, yᵢ) in eight f64 lanes.
#[inline(always)]
fn lane_sum<T: Real>(xs: &[T], ys: &[T], f: impl Fn(f64, f64) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let (x_chunks, y_chunks) = (xs.chunks_exact(8), ys.chunks_exact(8));
    let (x_rest, y_rest) = (x_chunks.remainder(), y_chunks.remainder());
    for (x, y) in x_chunks.zip(y_chunks) {
        for lane in 0..8 {
            lanes[lane] += f(x[lane].widen(), y[lane].widen());
        }
    }
    let rest: f64 = x_rest.iter().zip(y_rest).map(|(&x, &y)| f(x.widen(), y.widen())).sum();
    lanes.iter().sum::<f64>() + rest
}

/// Σ xᵢ in f64 lanes.
#[inline(always)]
pub fn sum<T: Real>(xs: &[T]) -> f64 {
    lane_sum(xs, xs, |x, _| x)
}

/// What one normalisation layer normalises: `count` rows of `len` contiguous
/// elements, each row made of `len / inner` channels of `inner` elements.
/// Row `r` starts at channel `(r % groups) · len / inner` of the affine
/// weights. LayerNorm: one group, `inner` 1; GroupNorm over `[batch, C, H, W]`:
/// `groups` groups, `inner` = H·W.
#[derive(Debug, Clone, Copy)]
pub struct Rows {
    pub count: usize,
    pub len: usize,
    pub inner: usize,
    pub groups: usize,
}

impl Rows {
    fn check(&self, elements: usize) {
        assert_eq!(elements, self.count * self.len, "norm: the input is not {} rows of {}", self.count, self.len);
    }

    fn channels(&self, row: usize) -> std::ops::Range<usize> {
        let per_row = self.len / self.inner;
        let first = (row % self.groups) * per_row;
        first..first + per_row
    }
}

/// The normalisation's constants and the activation fused after it.
#[derive(Debug, Clone, Copy)]
pub struct NormSpec {
    pub rows: Rows,
    pub eps: f64,
    pub silu: bool,
}

/// Mean and 1/σ of a row (two passes: the centred sum of squares is exact).
#[inline(always)]
fn row_statistics<T: Real>(row: &[T], eps: f64) -> (f64, f64) {
    let n = row.len() as f64;
    let mean = sum(row) / n;
    let variance = lane_sum(row, row, |x, _| (x - mean) * (x - mean)) / n;
    (mean, 1.0 / (variance + eps).sqrt())
}

#[inline(always)]
fn sigmoid<T: Real>(z: T) -> T {
    T::one() / (T::one() + (-z).exp_fast())
}

/// Runs `f(row index, input row, other row, output row)` over every row,
/// in parallel when the work is large enough.
fn for_each_row<T: Real>(
    len: usize,
    out_len: usize,
    inputs: (&[T], &[T]),
    out: &mut [T],
    f: impl Fn(usize, &[T], &[T], &mut [T]) + Sync,
) {
    let (first, second) = inputs;
    let second_len = if second.is_empty() { 0 } else { len };
    let row = |(r, output): (usize, &mut [T])| {
        let other = if second_len == 0 { &[][..] } else { &second[r * len..(r + 1) * len] };
        vectorised(
            #[inline(always)]
            || f(r, &first[r * len..(r + 1) * len], other, output),
        )
    };
    if out.len() >= PARALLEL_MIN_ELEMENTS {
        out.par_chunks_mut(out_len).enumerate().for_each(row);
    } else {
        out.chunks_mut(out_len).enumerate().for_each(row);
    }
}

/// (x − mean)/σ·w + b as x·scale + shift.
#[inline(always)]
fn folded_affine<T: Real>(w: T, b: T, mean: f64, inverse_std: f64) -> (T, T) {
    (T::narrow(w.widen() * inverse_std), T::narrow(b.widen() - mean * w.widen() * inverse_std))
}

/// y = norm(x)·w + b (then SiLU) for every row.
pub fn norm_forward<T: Real>(x: &[T], weight: &[T], bias: &[T], spec: NormSpec) -> Vec<T> {
    let NormSpec { rows, eps, silu } = spec;
    rows.check(x.len());
    let mut out = vec![T::zero(); x.len()];
    for_each_row(
        rows.len,
        rows.len,
        (x, &[]),
        &mut out,
        #[inline(always)]
        |r, row, _, out| {
            let (mean, inverse_std) = row_statistics(row, eps);
            let channels = rows.channels(r);
            let per_channel = row.chunks_exact(rows.inner).zip(out.chunks_exact_mut(rows.inner));
            for ((xs, ys), (&w, &b)) in per_channel.zip(weight[channels.clone()].iter().zip(&bias[channels])) {
                let (scale, shift) = folded_affine(w, b, mean, inverse_std);
                for (y, &x) in ys.iter_mut().zip(xs) {
                    *y = x * scale + shift;
                }
                if silu {
                    for y in ys.iter_mut() {
                        *y = *y * sigmoid(*y);
                    }
                }
            }
        },
    );
    out
}

/// The input gradient of [`norm_forward`], statistics recomputed from `x`:
/// with x̂ the normalised row, d = ∂L/∂x̂ = ∂L/∂y·(SiLU′)·w, the gradient is
/// (d − mean(d) − x̂·mean(d·x̂)) / σ.
pub fn norm_backward<T: Real>(x: &[T], grad: &[T], weight: &[T], bias: &[T], spec: NormSpec) -> Vec<T> {
    let NormSpec { rows, eps, silu } = spec;
    rows.check(x.len());
    let mut out = vec![T::zero(); x.len()];
    for_each_row(
        rows.len,
        rows.len,
        (x, grad),
        &mut out,
        #[inline(always)]
        |r, row, grad, out| {
            let (mean, inverse_std) = row_statistics(row, eps);
            let channels = rows.channels(r);
            let per_channel = row.chunks_exact(rows.inner).zip(grad.chunks_exact(rows.inner));
            let affine = weight[channels.clone()].iter().zip(&bias[channels]);
            for (((xs, gs), ds), (&w, &b)) in per_channel.zip(out.chunks_exact_mut(rows.inner)).zip(affine) {
                if silu {
                    let (scale, shift) = folded_affine(w, b, mean, inverse_std);
                    for ((d, &x), &g) in ds.iter_mut().zip(xs).zip(gs) {
                        let z = x * scale + shift;
                        let s = sigmoid(z);
                        *d = g * s * (T::one() + z * (T::one() - s)) * w;
                    }
                } else {
                    for (d, &g) in ds.iter_mut().zip(gs) {
                        *d = g * w;
                    }
                }
            }
            let n = row.len() as f64;
            let mean_d = sum(out) / n;
            let mean_d_xhat = lane_sum(out, row, |d, x| d * (x - mean)) * inverse_std / n;
            let (a, c) = (T::narrow(inverse_std), T::narrow(mean_d));
            let (slope, x0) = (T::narrow(mean_d_xhat * inverse_std), T::narrow(mean));
            for (d, &x) in out.iter_mut().zip(row) {
                *d = a * (*d - c - (x - x0) * slope);
            }
        },
    );
    out
}

/// GELU(x) = x·Φ(x) with the exact normal CDF, and its derivative.
#[inline(always)]
fn gelu_and_slope<T: Real>(x: T) -> (T, T) {
    let half = T::narrow(0.5);
    let cdf = half * (T::one() + (x * T::narrow(std::f64::consts::FRAC_1_SQRT_2)).erf());
    let density =
        (-(x * x) * half).exp() * T::narrow(0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
    (x * cdf, cdf + x * density)
}

/// GEGLU over rows of `2·width`: value (first half) × GELU(gate).
pub fn geglu_forward<T: Real>(projected: &[T], width: usize) -> Vec<T> {
    let mut out = vec![T::zero(); projected.len() / 2];
    for_each_row(
        2 * width,
        width,
        (projected, &[]),
        &mut out,
        #[inline(always)]
        |_, row, _, out| {
            let (value, gate) = row.split_at(width);
            for ((y, &v), &g) in out.iter_mut().zip(value).zip(gate) {
                *y = v * gelu_and_slope(g).0;
            }
        },
    );
    out
}

/// Exact GELU of every element, in parallel blocks (inference: no backward).
pub fn gelu_forward<T: Real>(x: &[T]) -> Vec<T> {
    const BLOCK: usize = 1 << 14;
    let mut out = vec![T::zero(); x.len()];
    let block = |(b, out): (usize, &mut [T])| {
        let x = &x[b * BLOCK..b * BLOCK + out.len()];
        vectorised(
            #[inline(always)]
            || {
                for (y, &x) in out.iter_mut().zip(x) {
                    *y = gelu_and_slope(x).0;
                }
            },
        )
    };
    if out.len() >= PARALLEL_MIN_ELEMENTS {
        out.par_chunks_mut(BLOCK).enumerate().for_each(block);
    } else {
        out.chunks_mut(BLOCK).enumerate().for_each(block);
    }
    out
}

/// One row of [`geglu_backward`]: `projected` 2·w wide, `grad` w wide.
#[inline(always)]
fn geglu_backward_row<T: Real>(projected: &[T], grad: &[T], out: &mut [T]) {
    let width = grad.len();
    let (value, gate) = projected.split_at(width);
    let (d_value, d_gate) = out.split_at_mut(width);
    for i in 0..width {
        let (gelu, slope) = gelu_and_slope(gate[i]);
        d_value[i] = grad[i] * gelu;
        d_gate[i] = grad[i] * value[i] * slope;
    }
}

/// The gradient of [`geglu_forward`] for the whole projected row.
pub fn geglu_backward<T: Real>(projected: &[T], grad: &[T], width: usize) -> Vec<T> {
    let mut out = vec![T::zero(); projected.len()];
    let row = |(r, out): (usize, &mut [T])| {
        let (projected, grad) = (&projected[r * 2 * width..(r + 1) * 2 * width], &grad[r * width..(r + 1) * width]);
        vectorised(
            #[inline(always)]
            || geglu_backward_row(projected, grad, out),
        )
    };
    if out.len() >= PARALLEL_MIN_ELEMENTS {
        out.par_chunks_mut(2 * width).enumerate().for_each(row);
    } else {
        out.chunks_mut(2 * width).enumerate().for_each(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{erf_f32, exp_f32};

    #[test]
    fn the_vectorisable_exp_and_erf_are_as_close_as_f32_allows() {
        let mut worst_exp: f64 = 0.0;
        let mut worst_erf: f64 = 0.0;
        for i in -197_000..=200_000 {
            let x = i as f32 * 4.4e-4;
            let exact = f64::from(x).exp();
            worst_exp = worst_exp.max((f64::from(exp_f32(x)) - exact).abs() / exact);
            worst_erf = worst_erf.max((f64::from(erf_f32(x / 10.0)) - libm::erf(f64::from(x / 10.0))).abs());
        }
        assert!(worst_exp < 3e-7, "exp: relative error {worst_exp}");
        assert!(worst_erf < 1e-6, "erf: absolute error {worst_erf}");
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(88.0).is_finite());
    }
}
