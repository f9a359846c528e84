//! What the pixels of one image say: sharpness, exposure, colourfulness,
//! alpha, and a 64-bit DCT perceptual hash.

use image::{DynamicImage, GrayImage, RgbImage, imageops::FilterType};

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
    let mut luma_sum = 0.0;
    let (mut dark, mut bright) = (0usize, 0usize);
    let mut saturation_sum = 0.0;
    for pixel in view.pixels() {
        let [r, g, b] = pixel.0.map(f64::from);
        let luma = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0;
        luma_sum += luma;
        dark += usize::from(luma <= 5.0 / 255.0);
        bright += usize::from(luma >= 250.0 / 255.0);
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        if max > 0.0 {
            saturation_sum += (max - min) / max;
        }
    }
    let count = (view.width() as usize * view.height() as usize).max(1) as f64;
    let gray = DynamicImage::ImageRgb8(view).to_luma8();
    PixelStats {
        sharpness: laplacian_variance(&gray),
        mean_luma: luma_sum / count,
        shadows_clipped: dark as f64 / count,
        highlights_clipped: bright as f64 / count,
        saturation: saturation_sum / count,
        uses_alpha,
        phash: perceptual_hash(&gray),
    }
}

/// Area-averaging downscale to `side`×`side`: each output pixel is the mean
/// of the source block it covers. Rows are summed into a buffer first, so
/// every source pixel is read once, in order (image's `thumbnail` took half
/// of the scan's time).
fn box_downscale(rgb: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let side_usize = side as usize;
    let raw = rgb.as_raw();
    let mut out = vec![0u8; side_usize * side_usize * 3];
    let mut row_sums = vec![0u32; w * 3];
    for oy in 0..side_usize {
        let (y0, y1) = (oy * h / side_usize, ((oy + 1) * h / side_usize).max(oy * h / side_usize + 1));
        row_sums.iter_mut().for_each(|v| *v = 0);
        for y in y0..y1 {
            for (sum, &value) in row_sums.iter_mut().zip(&raw[y * w * 3..(y + 1) * w * 3]) {
                *sum += u32::from(value);
            }
        }
        for ox in 0..side_usize {
            let (x0, x1) = (ox * w / side_usize, ((ox + 1) * w / side_usize).max(ox * w / side_usize + 1));
            let count = ((y1 - y0) * (x1 - x0)) as u32;
            for channel in 0..3 {
                let total: u32 = (x0..x1).map(|x| row_sums[x * 3 + channel]).sum();
                out[(oy * side_usize + ox) * 3 + channel] = ((total + count / 2) / count) as u8;
            }
        }
    }
    RgbImage::from_raw(side, side, out).expect("side × side × 3 bytes")
}

/// Variance of the 4-neighbour Laplacian over the interior pixels.
pub fn laplacian_variance(gray: &GrayImage) -> f64 {
    let (w, h) = gray.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    let at = |x: u32, y: u32| f64::from(gray.get_pixel(x, y)[0]);
    let (mut sum, mut sum_sq, mut n) = (0.0, 0.0, 0.0);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let value = at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y);
            sum += value;
            sum_sq += value * value;
            n += 1.0;
        }
    }
    let mean = sum / n;
    sum_sq / n - mean * mean
}

/// The pHash of imagehash: 32×32 grayscale, 2-D DCT-II, the 8×8 lowest
/// frequencies, one bit per coefficient above their median.
pub fn perceptual_hash(gray: &GrayImage) -> u64 {
    const N: usize = 32;
    let small = image::imageops::resize(gray, N as u32, N as u32, FilterType::Lanczos3);
    let pixels: Vec<f64> = small.pixels().map(|p| f64::from(p[0])).collect();
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
