//! Matrix products on slices for the CPU kernels, through `gemm` (the crate
//! candle's own CPU matmul uses).

use super::cpu::Real;

/// A row-major matrix (or its transpose) inside a slice.
#[derive(Clone, Copy)]
pub struct View<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> View<'a, T> {
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix view: {rows}×{cols} does not fit in {} elements", data.len());
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }
}

/// How many threads a product of `work` multiply-adds should use: all of
/// them from about a million on, below that the calling thread only.
pub fn threads_for(work: usize) -> usize {
    if work >= 1 << 20 { rayon::current_num_threads() } else { 1 }
}

/// Whether a product replaces the destination or adds to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Overwrite,
    Accumulate,
}

/// `dst = scale · lhs · rhs` (or `dst += …`), `dst` row-major, on `threads` threads.
pub fn matmul<T: Real>(dst: &mut [T], lhs: View<T>, rhs: View<T>, scale: T, write: Write, threads: usize) {
    assert_eq!(lhs.cols, rhs.rows, "matmul: inner sizes differ");
    assert!(dst.len() >= lhs.rows * rhs.cols, "matmul: destination too small");
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the asserts above and the views' constructor keep every index
    // gemm forms inside the three slices; `dst` is borrowed mutably, so it
    // aliases neither input.
    unsafe {
        gemm::gemm(
            lhs.rows,
            rhs.cols,
            lhs.cols,
            dst.as_mut_ptr(),
            1,
            rhs.cols as isize,
            write == Write::Accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::one(),
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}
