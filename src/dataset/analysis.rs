//! What the pixels of one image say: sharpness, exposure, colourfulness,
//! alpha, and a 64-bit DCT perceptual hash.

use image::{DynamicImage, GrayImage, RgbImage};

/// Measurements of one decoded image.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PixelStats {
    /// Variance of the Laplacian of the grayscale image at 256×256, or at its
    /// own size when smaller, since upscaling would blur it (0–255 scale).
    pub sharpness: f64,
    /// Mean luminance, 0–1.
    pub mean_luma: f64,
    /// Share of pixels at or below 5/255, and at or above 250/255.
    pub shadows_clipped: f64,
    pub highlights_clipped: f64,
    /// Mean HSV-style saturation (max − min over max), 0–1.
    pub saturation: f64,
    /// Whether any pixel is not fully opaque.
    pub uses_alpha: bool,
    /// 64-bit DCT perceptual hash.
    pub phash: u64,
}

/// The side of the square view every measurement is taken on.
pub const MEASUREMENT_SIDE: u32 = 256;

/// Measures an image. Everything but the alpha check is computed on a
/// 256×256 area-averaged thumbnail (never an enlargement): the statistics
/// barely move, and it is several times faster than full-size passes.
pub fn analyse(image: &DynamicImage) -> PixelStats {
    let uses_alpha = image.color().has_alpha() && image.to_rgba8().pixels().any(|p| p[3] < 255);
    let converted;
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => {
            converted = other.to_rgb8();
            &converted
        }
    };
    let view = if rgb.width().min(rgb.height()) < MEASUREMENT_SIDE {
        rgb.clone()
    } else {
        box_downscale(rgb, MEASUREMENT_SIDE)
    };
    // Integer luma ×1000 (BT.601 weights): exact sums, no per-pixel float conversions.
    let (mut luma_sum, mut dark, mut bright) = (0u64, 0usize, 0usize);
    // f64: an f32 sum stops growing past 2^24 pixels (a tall narrow image is measured whole).
    let mut saturation_sum = 0.0f64;
    let mut gray = Vec::with_capacity(view.as_raw().len() / 3);
    for pixel in view.as_raw().chunks_exact(3) {
        let [r, g, b] = [pixel[0], pixel[1], pixel[2]].map(u32::from);
        let luma = 299 * r + 587 * g + 114 * b;
        luma_sum += u64::from(luma);
        dark += usize::from(luma <= 5_000);
        bright += usize::from(luma >= 250_000);
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        if max > 0 {
            saturation_sum += f64::from(max - min) / f64::from(max);
        }
        gray.push(((luma + 500) / 1000) as u8);
    }
    let count = (view.width() as usize * view.height() as usize).max(1) as f64;
    let gray = GrayImage::from_raw(view.width(), view.height(), gray).expect("one byte per pixel");
    PixelStats {
        sharpness: laplacian_variance(&gray),
        mean_luma: luma_sum as f64 / 255_000.0 / count,
        shadows_clipped: dark as f64 / count,
        highlights_clipped: bright as f64 / count,
        saturation: saturation_sum / count,
        uses_alpha,
        phash: perceptual_hash(&gray),
    }
}

/// Area-averaging downscale to `side`×`side`: each output pixel is the mean
/// of the source block it covers (image's `thumbnail` took half of the
/// scan's time).
fn box_downscale(rgb: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let bytes = box_average(rgb.as_raw(), w, h, 3, side as usize, |total, count| ((total + count / 2) / count) as u8);
    RgbImage::from_raw(side, side, bytes).expect("side × side × 3 bytes")
}

/// Block means of interleaved `channels`-channel pixels, `side`×`side`
/// blocks. Rows are summed into a buffer first, so every source value is
/// read once, in order. A source smaller than `side` repeats its pixels.
/// `mean` turns a block's (total, count) into the output value.
fn box_average<T: Copy + Default>(
    raw: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    side: usize,
    mean: impl Fn(u32, u32) -> T,
) -> Vec<T> {
    let stride = w * channels;
    let mut out = vec![T::default(); side * side * channels];
    let mut row_sums = vec![0u32; stride];
    for oy in 0..side {
        let (y0, y1) = (oy * h / side, ((oy + 1) * h / side).max(oy * h / side + 1));
        row_sums.iter_mut().for_each(|v| *v = 0);
        for y in y0..y1 {
            for (sum, &value) in row_sums.iter_mut().zip(&raw[y * stride..(y + 1) * stride]) {
                *sum += u32::from(value);
            }
        }
        for ox in 0..side {
            let (x0, x1) = (ox * w / side, ((ox + 1) * w / side).max(ox * w / side + 1));
            let count = ((y1 - y0) * (x1 - x0)) as u32;
            for channel in 0..channels {
                let total: u32 = (x0..x1).map(|x| row_sums[x * channels + channel]).sum();
                out[(oy * side + ox) * channels + channel] = mean(total, count);
            }
        }
    }
    out
}

/// Variance of the 4-neighbour Laplacian over the interior pixels.
pub fn laplacian_variance(gray: &GrayImage) -> f64 {
    let (w, h) = gray.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    let (w, h) = (w as usize, h as usize);
    let raw = gray.as_raw();
    // Integer sums are exact: a Laplacian value is at most 4·255 in size.
    let (mut sum, mut sum_sq) = (0i64, 0i64);
    for y in 1..h - 1 {
        let (above, row, below) = (&raw[(y - 1) * w..y * w], &raw[y * w..(y + 1) * w], &raw[(y + 1) * w..(y + 2) * w]);
        for x in 1..w - 1 {
            let value = i64::from(row[x - 1]) + i64::from(row[x + 1]) + i64::from(above[x]) + i64::from(below[x])
                - 4 * i64::from(row[x]);
            sum += value;
            sum_sq += value * value;
        }
    }
    let n = ((w - 2) * (h - 2)) as f64;
    let mean = sum as f64 / n;
    sum_sq as f64 / n - mean * mean
}

/// The pHash of imagehash: 32×32 grayscale, 2-D DCT-II, the 8×8 lowest
/// frequencies, one bit per coefficient above their median. The 32×32 is
/// area-averaged (imagehash uses Lanczos): as robust for duplicates, and a
/// fraction of the cost.
pub fn perceptual_hash(gray: &GrayImage) -> u64 {
    const N: usize = 32;
    let (w, h) = (gray.width() as usize, gray.height() as usize);
    let pixels = box_average(gray.as_raw(), w, h, 1, N, |total, count| f64::from(total) / f64::from(count));
    let cosines: Vec<f64> = (0..8 * N)
        .map(|i| {
            let (k, n) = (i / N, i % N);
            (std::f64::consts::PI / N as f64 * (n as f64 + 0.5) * k as f64).cos()
        })
        .collect();
    // Rows first (only the 8 lowest frequencies are needed), then columns.
    let mut rows = vec![0.0; N * 8];
    for y in 0..N {
        for k in 0..8 {
            rows[y * 8 + k] = (0..N).map(|x| pixels[y * N + x] * cosines[k * N + x]).sum();
        }
    }
    let mut low = [0.0; 64];
    for ky in 0..8 {
        for kx in 0..8 {
            low[ky * 8 + kx] = (0..N).map(|y| rows[y * 8 + kx] * cosines[ky * N + y]).sum();
        }
    }
    let mut sorted = low;
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    low.iter().enumerate().fold(0u64, |hash, (i, &v)| if v > median { hash | 1 << i } else { hash })
}

#[cfg(test)]
mod tests {
    use image::imageops::FilterType;
    use image::{Rgb, RgbImage};

    use super::*;

    fn checkerboard(side: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(side, side, |x, y| {
            if (x / 8 + y / 8) % 2 == 0 { Rgb([230, 200, 40]) } else { Rgb([30, 40, 150]) }
        }))
    }

    #[test]
    fn blur_lowers_sharpness_and_keeps_the_hash_close() {
        let sharp = checkerboard(256);
        let blurred = sharp.blur(4.0);
        let (a, b) = (analyse(&sharp), analyse(&blurred));
        assert!(b.sharpness < a.sharpness / 10.0, "{} vs {}", a.sharpness, b.sharpness);
        // The hash: a resized copy stays close, another picture does not.
        let scene = DynamicImage::ImageRgb8(RgbImage::from_fn(300, 300, |x, y| {
            let blob = (x as i32 - 100).pow(2) + (y as i32 - 180).pow(2) < 3600;
            Rgb([if blob { 240 } else { (x / 2) as u8 }, (y / 2) as u8, 90])
        }));
        let resized = scene.resize_exact(180, 180, FilterType::Triangle);
        let hash = analyse(&scene).phash;
        assert!((hash ^ analyse(&resized).phash).count_ones() <= 6);
        let other =
            DynamicImage::ImageRgb8(RgbImage::from_fn(300, 300, |x, y| Rgb([(y / 2) as u8, 40, (x / 2) as u8])));
        assert!((hash ^ analyse(&other).phash).count_ones() > 16);
    }

    #[test]
    fn exposure_and_colour_are_measured() {
        let white = analyse(&DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb([255, 255, 255]))));
        assert!(white.mean_luma > 0.99 && white.highlights_clipped > 0.99 && white.saturation < 0.01);
        let colour = analyse(&checkerboard(64));
        assert!(colour.saturation > 0.5 && colour.shadows_clipped == 0.0 && !colour.uses_alpha);
    }
}
