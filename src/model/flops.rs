//! Counts the floating-point work of the frozen model as it runs, for
//! `easel bench train`'s achieved TFLOP/s. Off unless [`count`] is running;
//! then every linear layer, convolution and attention adds its products.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

static COUNTING: AtomicBool = AtomicBool::new(false);
static PRODUCTS: AtomicU64 = AtomicU64::new(0);
static ATTENTION: AtomicU64 = AtomicU64::new(0);

/// A linear layer or convolution's forward: `2 · outputs · inputs per output`.
pub fn products(flops: usize) {
    if COUNTING.load(Relaxed) {
        PRODUCTS.fetch_add(flops as u64, Relaxed);
    }
}

/// Attention's two products, q·kᵀ and P·v.
pub fn attention(flops: usize) {
    if COUNTING.load(Relaxed) {
        ATTENTION.fetch_add(flops as u64, Relaxed);
    }
}

/// What one forward pass did.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardFlops {
    pub products: u64,
    pub attention: u64,
}

impl ForwardFlops {
    /// A LoRA step over frozen weights: the forward, each frozen product's
    /// input gradient (the same size again; no weight gradients), attention's
    /// four backward products (twice its forward). The adapters' own work is
    /// under 1% and left out.
    pub fn training_step(&self) -> u64 {
        2 * self.products + 3 * self.attention
    }
}

/// Runs `f` (one forward pass, on this process's only model) and counts it.
pub fn count<R>(f: impl FnOnce() -> R) -> (R, ForwardFlops) {
    PRODUCTS.store(0, Relaxed);
    ATTENTION.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    let result = f();
    COUNTING.store(false, Relaxed);
    (result, ForwardFlops { products: PRODUCTS.load(Relaxed), attention: ATTENTION.load(Relaxed) })
}
