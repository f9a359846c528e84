//! 2-D convolution of frozen weights on the CPU: per image, im2col (each
//! column row a shifted copy of one input row, so whole rows are copied) and
//! one matrix product with the weight as it is stored; the input gradient is
//! the transposed product and col2im. (candle's CPU conv re-lays the input
//! to NHWC and the kernel on every call and builds its columns an element at
//! a time; its input gradient needs a flipped kernel or a direct transposed
//! convolution.)

use rayon::prelude::*;

use super::cpu::Real;
use super::cpu_matmul::{View, Write, matmul, threads_for};

/// The shapes of one convolution (square kernel, same stride and padding on both axes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvShape {
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding - self.kernel) / self.stride + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding - self.kernel) / self.stride + 1
    }

    fn out_pixels(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// Rows of the column matrix: one per (input channel, kernel row, kernel column).
    fn patch(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    /// Output columns `[first, last)` whose input column `x·stride + offset`
    /// lies inside the image.
    fn inside(&self, offset: isize) -> (usize, usize) {
        let (stride, width) = (self.stride as isize, self.width as isize);
        let first = if offset < 0 { ((-offset + stride - 1) / stride).min(self.out_width() as isize) } else { 0 };
        let last = ((width - 1 - offset).div_euclid(stride) + 1).clamp(0, self.out_width() as isize);
        (first as usize, (last as usize).max(first as usize))
    }

    /// Calls `f(column row, input offset of its first output pixel's row, kernel row, kernel column)`.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let k = self.kernel;
        for channel in 0..self.in_channels {
            for ky in 0..k {
                for kx in 0..k {
                    f((channel * k + ky) * k + kx, channel * self.height * self.width, ky, kx);
                }
            }
        }
    }
}

/// The columns of one image: `[patch, out_pixels]`.
fn im2col<T: Real>(image: &[T], shape: ConvShape, columns: &mut [T]) {
    let (out_height, out_width, pixels) = (shape.out_height(), shape.out_width(), shape.out_pixels());
    shape.for_each_tap(|row, plane, ky, kx| {
        let destination = &mut columns[row * pixels..(row + 1) * pixels];
        let x_offset = kx as isize - shape.padding as isize;
        let (first, last) = shape.inside(x_offset);
        for oy in 0..out_height {
            let out_row = &mut destination[oy * out_width..(oy + 1) * out_width];
            let iy = (oy * shape.stride + ky) as isize - shape.padding as isize;
            if iy < 0 || iy >= shape.height as isize {
                out_row.fill(T::zero());
                continue;
            }
            let source = &image[plane + iy as usize * shape.width..];
            out_row[..first].fill(T::zero());
            out_row[last..].fill(T::zero());
            let start = (first * shape.stride) as isize + x_offset;
            if shape.stride == 1 {
                out_row[first..last].copy_from_slice(&source[start as usize..start as usize + (last - first)]);
            } else {
                for (i, value) in out_row[first..last].iter_mut().enumerate() {
                    *value = source[start as usize + i * shape.stride];
                }
            }
        }
    });
}

/// The adjoint of [`im2col`]: adds every column entry back onto its input pixel.
fn col2im<T: Real>(columns: &[T], shape: ConvShape, image: &mut [T]) {
    let (out_height, out_width, pixels) = (shape.out_height(), shape.out_width(), shape.out_pixels());
    image.fill(T::zero());
    shape.for_each_tap(|row, plane, ky, kx| {
        let source = &columns[row * pixels..(row + 1) * pixels];
        let x_offset = kx as isize - shape.padding as isize;
        let (first, last) = shape.inside(x_offset);
        for oy in 0..out_height {
            let iy = (oy * shape.stride + ky) as isize - shape.padding as isize;
            if iy < 0 || iy >= shape.height as isize {
                continue;
            }
            let start = plane + iy as usize * shape.width;
            let column_row = &source[oy * out_width..(oy + 1) * out_width];
            let begin = ((first * shape.stride) as isize + x_offset) as usize;
            if shape.stride == 1 {
                let target = &mut image[start + begin..start + begin + (last - first)];
                for (pixel, &value) in target.iter_mut().zip(&column_row[first..last]) {
                    *pixel += value;
                }
            } else {
                for (i, &value) in column_row[first..last].iter().enumerate() {
                    let pixel = &mut image[start + begin + i * shape.stride];
                    *pixel += value;
                }
            }
        }
    });
}

/// Runs `per_image(image index, scratch, output)` over the batch: images in
/// parallel when there are enough of them, otherwise one after another with
/// `threads` for each image's product.
fn per_image<T: Real>(
    shape: ConvShape,
    out: &mut [T],
    out_per_image: usize,
    per_image: impl Fn(usize, &mut [T], &mut [T], usize) + Sync,
) {
    let work = shape.out_channels * shape.patch() * shape.out_pixels();
    let threads = threads_for(work);
    let scratch_len = shape.patch() * shape.out_pixels();
    if shape.batch >= 2 && threads > 1 {
        out.par_chunks_mut(out_per_image)
            .enumerate()
            .for_each_init(|| vec![T::zero(); scratch_len], |scratch, (b, out)| per_image(b, scratch, out, 1));
    } else {
        let mut scratch = vec![T::zero(); scratch_len];
        for (b, out) in out.chunks_mut(out_per_image).enumerate() {
            per_image(b, &mut scratch, out, threads);
        }
    }
}

/// `[batch, out_channels, out_h, out_w]` = weight ⊛ input + bias.
pub fn forward<T: Real>(input: &[T], weight: &[T], bias: Option<&[T]>, shape: ConvShape) -> Vec<T> {
    let (pixels, patch) = (shape.out_pixels(), shape.patch());
    let image_len = shape.in_channels * shape.height * shape.width;
    let mut out = vec![T::zero(); shape.batch * shape.out_channels * pixels];
    let weight = View::row_major(weight, shape.out_channels, patch);
    per_image(shape, &mut out, shape.out_channels * pixels, |b, columns, out, threads| {
        let write = match bias {
            Some(bias) => {
                for (row, &value) in out.chunks_exact_mut(pixels).zip(bias) {
                    row.fill(value);
                }
                Write::Accumulate
            }
            None => Write::Overwrite,
        };
        let image = &input[b * image_len..(b + 1) * image_len];
        if shape.kernel == 1 && shape.stride == 1 && shape.padding == 0 {
            // A 1×1 convolution's columns are the image itself.
            matmul(out, weight, View::row_major(image, patch, pixels), T::one(), write, threads);
        } else {
            im2col(image, shape, columns);
            matmul(out, weight, View::row_major(columns, patch, pixels), T::one(), write, threads);
        }
    });
    out
}

/// The input gradient: col2im(weightᵀ · grad) per image.
pub fn input_gradient<T: Real>(grad: &[T], weight: &[T], shape: ConvShape) -> Vec<T> {
    let (pixels, patch) = (shape.out_pixels(), shape.patch());
    let image_len = shape.in_channels * shape.height * shape.width;
    let mut out = vec![T::zero(); shape.batch * image_len];
    let weight = View::row_major(weight, shape.out_channels, patch).t();
    per_image(shape, &mut out, image_len, |b, columns, image, threads| {
        let grad = View::row_major(&grad[b * shape.out_channels * pixels..], shape.out_channels, pixels);
        if shape.kernel == 1 && shape.stride == 1 && shape.padding == 0 {
            matmul(image, weight, grad, T::one(), Write::Overwrite, threads);
        } else {
            matmul(columns, weight, grad, T::one(), Write::Overwrite, threads);
            col2im(columns, shape, image);
        }
    });
    out
}
