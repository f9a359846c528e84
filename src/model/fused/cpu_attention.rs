//! Scaled dot-product attention on the CPU without the N×N score matrix:
//! queries are taken a block at a time (a block's scores fit in the cache),
//! the forward keeps only each row's log-sum-exp, and the backward recomputes
//! the block's probabilities from it.

use rayon::prelude::*;

use super::cpu::{Real, vectorised};
use super::cpu_matmul::{View, Write, matmul};

/// `[batch·heads, queries, head_dim]` queries against `[batch·heads, keys, head_dim]` keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionDims {
    pub batch_heads: usize,
    pub queries: usize,
    pub keys: usize,
    pub head_dim: usize,
    /// Query `i` sees keys `0..=i` only (CLIP's text encoder).
    pub causal: bool,
}

impl AttentionDims {
    pub fn scale(&self) -> f64 {
        (self.head_dim as f64).powf(-0.5)
    }

    /// Query rows per block: about 64 K scores, at least 16 rows.
    fn block_rows(&self) -> usize {
        (65_536 / self.keys.max(1)).clamp(16, 256).min(self.queries.max(1))
    }

    fn work(&self) -> usize {
        self.batch_heads * self.queries * self.keys * self.head_dim
    }
}

/// Attention smaller than this (multiply-adds) runs on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// Per-(batch·head) slices of a `[batch·heads, rows, head_dim]` tensor.
fn heads<T>(data: &[T], rows: usize, head_dim: usize) -> std::slice::Chunks<'_, T> {
    data.chunks(rows * head_dim)
}

/// The scores of a query block against every key, turned into probabilities
/// in place: with `lse` given they are exp(s − lse); otherwise the row's
/// log-sum-exp is computed (max-shifted) and written to `lse_out`.
#[inline(always)]
fn probabilities<T: Real>(scores: &mut [T], keys: usize, lse: &[T], lse_out: Option<&mut [T]>) {
    match lse_out {
        Some(lse_out) => {
            for (row, lse) in scores.chunks_exact_mut(keys).zip(lse_out) {
                let max = super::cpu::max(row);
                row.iter_mut().for_each(|s| *s = (*s - max).exp_fast());
                let total = super::cpu::sum(row);
                let inverse = T::narrow(1.0 / total);
                row.iter_mut().for_each(|s| *s *= inverse);
                *lse = max + T::narrow(total.ln());
            }
        }
        None => {
            for (row, &lse) in scores.chunks_exact_mut(keys).zip(lse) {
                row.iter_mut().for_each(|s| *s = (*s - lse).exp_fast());
            }
        }
    }
}

/// Hides the keys after each query (scores of a block starting at query `start`).
fn mask_future<T: Real>(scores: &mut [T], start: usize, keys: usize) {
    for (r, row) in scores.chunks_exact_mut(keys).enumerate() {
        row.iter_mut().skip(start + r + 1).for_each(|s| *s = T::neg_infinity());
    }
}

/// One head's (output, log-sum-exp) and (q, (k, v)).
type ForwardHead<'a, T> = ((&'a mut [T], &'a mut [T]), (&'a [T], (&'a [T], &'a [T])));
/// One head's ((dq, dk), dv) and its index.
type BackwardHead<'a, T> = (((&'a mut [T], &'a mut [T]), &'a mut [T]), usize);

/// softmax(q·kᵀ/√d)·v, and the log-sum-exp of every score row (for backward).
pub fn forward<T: Real>(q: &[T], k: &[T], v: &[T], dims: AttentionDims) -> (Vec<T>, Vec<T>) {
    let AttentionDims { queries, keys, head_dim, .. } = dims;
    let block = dims.block_rows();
    let scale = T::narrow(dims.scale());
    let mut out = vec![T::zero(); q.len()];
    let mut lse = vec![T::zero(); dims.batch_heads * queries];
    let head = |((out, lse), (q, (k, v))): ForwardHead<'_, T>| {
        let (k, v) = (View::row_major(k, keys, head_dim), View::row_major(v, keys, head_dim));
        let mut scores = vec![T::zero(); block * keys];
        let blocks = out.chunks_mut(block * head_dim).zip(lse.chunks_mut(block)).zip(q.chunks(block * head_dim));
        for (index, ((out, lse), q)) in blocks.enumerate() {
            let rows = lse.len();
            let scores = &mut scores[..rows * keys];
            matmul(scores, View::row_major(q, rows, head_dim), k.t(), scale, Write::Overwrite, 1);
            if dims.causal {
                mask_future(scores, index * block, keys);
            }
            vectorised(
                #[inline(always)]
                || probabilities(scores, keys, &[], Some(lse)),
            );
            matmul(out, View::row_major(scores, rows, keys), v, T::one(), Write::Overwrite, 1);
        }
    };
    let outputs = out.chunks_mut(queries * head_dim).zip(lse.chunks_mut(queries));
    let inputs = heads(q, queries, head_dim).zip(heads(k, keys, head_dim).zip(heads(v, keys, head_dim)));
    if dims.work() >= PARALLEL_MIN_WORK {
        outputs.zip(inputs).par_bridge().for_each(head);
    } else {
        outputs.zip(inputs).for_each(head);
    }
    (out, lse)
}

/// The gradients of [`forward`] for q, k and v, written one after the other
/// into one vector (`[dq | dk | dv]`), from the output, its gradient and the
/// saved log-sum-exp.
pub fn backward<T: Real>(
    (q, k, v): (&[T], &[T], &[T]),
    out: &[T],
    grad_out: &[T],
    lse: &[T],
    dims: AttentionDims,
) -> Vec<T> {
    let AttentionDims { queries, keys, head_dim, .. } = dims;
    let block = dims.block_rows();
    let scale = T::narrow(dims.scale());
    let mut grads = vec![T::zero(); q.len() + k.len() + v.len()];
    let (dq, rest) = grads.split_at_mut(q.len());
    let (dk, dv) = rest.split_at_mut(k.len());
    let head = |(((dq, dk), dv), index): BackwardHead<'_, T>| {
        let query_span = index * queries * head_dim..(index + 1) * queries * head_dim;
        let key_span = index * keys * head_dim..(index + 1) * keys * head_dim;
        let (k, v) =
            (View::row_major(&k[key_span.clone()], keys, head_dim), View::row_major(&v[key_span], keys, head_dim));
        let (q, out, grad_out) = (&q[query_span.clone()], &out[query_span.clone()], &grad_out[query_span]);
        let lse = &lse[index * queries..(index + 1) * queries];
        let mut probabilities_block = vec![T::zero(); block * keys];
        let mut score_grads = vec![T::zero(); block * keys];
        for start in (0..queries).step_by(block) {
            let rows = block.min(queries - start);
            let span = start * head_dim..(start + rows) * head_dim;
            let (q_block, grad_block) = (
                View::row_major(&q[span.clone()], rows, head_dim),
                View::row_major(&grad_out[span.clone()], rows, head_dim),
            );
            let p = &mut probabilities_block[..rows * keys];
            matmul(p, q_block, k.t(), scale, Write::Overwrite, 1);
            if dims.causal {
                mask_future(p, start, keys);
            }
            vectorised(
                #[inline(always)]
                || probabilities(p, keys, &lse[start..start + rows], None),
            );
            // dV += Pᵀ·dO
            matmul(dv, View::row_major(p, rows, keys).t(), grad_block, T::one(), Write::Accumulate, 1);
            // dS = P ∘ (dO·Vᵀ − rowsum(dO ∘ O))
            let ds = &mut score_grads[..rows * keys];
            matmul(ds, grad_block, v.t(), T::one(), Write::Overwrite, 1);
            for (r, (ds_row, p_row)) in ds.chunks_exact_mut(keys).zip(p.chunks_exact(keys)).enumerate() {
                let row = (start + r) * head_dim..(start + r + 1) * head_dim;
                let delta =
                    T::narrow(out[row.clone()].iter().zip(&grad_out[row]).map(|(&o, &g)| o.widen() * g.widen()).sum());
                for (d, &p) in ds_row.iter_mut().zip(p_row) {
                    *d = p * (*d - delta);
                }
            }
            let ds = View::row_major(&score_grads[..rows * keys], rows, keys);
            matmul(&mut dq[span], ds, k, scale, Write::Overwrite, 1);
            matmul(dk, ds.t(), q_block, scale, Write::Accumulate, 1);
        }
    };
    let per_head =
        dq.chunks_mut(queries * head_dim).zip(dk.chunks_mut(keys * head_dim)).zip(dv.chunks_mut(keys * head_dim));
    if dims.work() >= PARALLEL_MIN_WORK {
        per_head.zip(0..dims.batch_heads).par_bridge().for_each(head);
    } else {
        per_head.zip(0..dims.batch_heads).for_each(head);
    }
    grads
}
