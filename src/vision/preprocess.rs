//! Images to model input as transformers' image processors make it: resize
//! with PIL's own bicubic (fixed-point weights and rounding, so the pixels
//! match), centre crop (CLIP, DINOv2; not BLIP), ×1/255, (x − mean)/std per
//! channel.

use std::path::Path;

use anyhow::bail;
use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::Deserialize;

/// CLIP's normalisation (transformers' OPENAI_CLIP_MEAN / STD).
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// ImageNet's, which DINOv2's processor uses.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// How an image becomes model input, as transformers' image processors do
/// it: resize (bicubic), centre crop, ×1/255, (x − mean)/std per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    resize: Resize,
    /// (height, width); `None`: no centre crop, so the resize must be exact.
    crop: Option<(usize, usize)>,
    mean: [f32; 3],
    std: [f32; 3],
    /// What a bare number as `size` means: a square (BLIP's
    /// `default_to_square`) or the shortest edge (CLIP, DINOv2).
    number_is_square: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Resize {
    /// The short side to this length, the aspect ratio kept.
    ShortestEdge(usize),
    /// Exactly (height, width).
    Exact(usize, usize),
}

/// `size` / `crop_size` as processor configs write them.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeSpec {
    Edge { shortest_edge: usize },
    Box { height: usize, width: usize },
    Square(usize),
}

/// `processor_config.json`: the processor's parts in one file.
#[derive(Deserialize)]
struct ProcessorBundle {
    image_processor: Option<ProcessorFile>,
}

#[derive(Deserialize)]
struct ProcessorFile {
    size: Option<SizeSpec>,
    crop_size: Option<SizeSpec>,
    do_center_crop: Option<bool>,
    image_mean: Option<[f32; 3]>,
    image_std: Option<[f32; 3]>,
}

impl Preprocess {
    /// CLIP's processor for a model of `image_size`: short side and crop
    /// both `image_size` (224 for the OpenAI models).
    pub fn clip(image_size: usize) -> Self {
        Self {
            resize: Resize::ShortestEdge(image_size),
            crop: Some((image_size, image_size)),
            mean: CLIP_MEAN,
            std: CLIP_STD,
            number_is_square: false,
        }
    }

    /// BLIP's processor for a model of `image_size`: resized to the square
    /// (aspect ratio not kept), no crop, CLIP's normalisation.
    pub fn blip(image_size: usize) -> Self {
        Self {
            resize: Resize::Exact(image_size, image_size),
            crop: None,
            mean: CLIP_MEAN,
            std: CLIP_STD,
            number_is_square: true,
        }
    }

    /// DINOv2's processor (facebook/dinov2-*): short side 256, crop 224.
    pub fn dino() -> Self {
        Self {
            resize: Resize::ShortestEdge(256),
            crop: Some((224, 224)),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            number_is_square: false,
        }
    }

    /// `preprocessor_config.json` in `folder` over `defaults`, key by key;
    /// else the `image_processor` of `processor_config.json` (where
    /// transformers 5 saves a whole processor).
    pub fn read(folder: &Path, defaults: Self) -> anyhow::Result<Self> {
        let (path, bundle) = (folder.join("preprocessor_config.json"), folder.join("processor_config.json"));
        let (path, file) = if path.is_file() {
            let file: ProcessorFile = crate::model::read_json_config(&path)?;
            (path, file)
        } else if bundle.is_file() {
            match crate::model::read_json_config::<ProcessorBundle>(&bundle)?.image_processor {
                Some(file) => (bundle, file),
                None => return Ok(defaults),
            }
        } else {
            return Ok(defaults);
        };
        let resize = match file.size {
            Some(SizeSpec::Edge { shortest_edge }) => Resize::ShortestEdge(shortest_edge),
            Some(SizeSpec::Box { height, width }) => Resize::Exact(height, width),
            Some(SizeSpec::Square(side)) if defaults.number_is_square => Resize::Exact(side, side),
            Some(SizeSpec::Square(side)) => Resize::ShortestEdge(side),
            None => defaults.resize,
        };
        let crop = match (file.do_center_crop.unwrap_or(defaults.crop.is_some()), file.crop_size) {
            (false, _) => None,
            (true, Some(SizeSpec::Box { height, width })) => Some((height, width)),
            (true, Some(SizeSpec::Square(side) | SizeSpec::Edge { shortest_edge: side })) => Some((side, side)),
            (true, None) => defaults.crop,
        };
        if crop.is_some_and(|(height, width)| height == 0 || width == 0)
            || matches!(resize, Resize::ShortestEdge(0) | Resize::Exact(0, _) | Resize::Exact(_, 0))
        {
            bail!("{}: a zero size or crop size", path.display());
        }
        if crop.is_none() && matches!(resize, Resize::ShortestEdge(_)) {
            bail!("{}: images resized by their shortest edge need a centre crop to share one size", path.display());
        }
        Ok(Self {
            resize,
            crop,
            mean: file.image_mean.unwrap_or(defaults.mean),
            std: file.image_std.unwrap_or(defaults.std),
            number_is_square: defaults.number_is_square,
        })
    }

    /// (height, width) of every prepared image.
    fn output_size(&self) -> (usize, usize) {
        match (self.crop, self.resize) {
            (Some(crop), _) => crop,
            (None, Resize::Exact(height, width)) => (height, width),
            // `read` and the constructors never pair these.
            (None, Resize::ShortestEdge(edge)) => (edge, edge),
        }
    }

    /// `images` prepared and stacked `[N, 3, crop height, crop width]`.
    pub fn pixel_values(&self, images: &[RgbImage], device: &Device) -> anyhow::Result<Tensor> {
        let planes = images.iter().map(|image| self.apply(image)).collect::<anyhow::Result<Vec<_>>>()?;
        let (height, width) = self.output_size();
        Ok(Tensor::from_vec(planes.concat(), (images.len(), 3, height, width), device)?)
    }

    /// The image as normalised channel planes `[3 × crop height × crop width]`.
    fn apply(&self, image: &RgbImage) -> anyhow::Result<Vec<f32>> {
        let (width, height) = (image.width() as usize, image.height() as usize);
        if width == 0 || height == 0 {
            bail!("cannot prepare an empty ({width}×{height}) image");
        }
        let (new_height, new_width) = self.resize.output((height, width));
        let resized = resize_bicubic(image.as_raw(), (height, width), (new_height, new_width));
        Ok(self.crop_and_normalize(&resized, (new_height, new_width)))
    }

    /// transformers' `center_crop`: top = ⌊(h − crop)/2⌋ (left alike), zeros
    /// where the crop reaches past the image, then rescale and normalise.
    fn crop_and_normalize(&self, pixels: &[u8], (height, width): (usize, usize)) -> Vec<f32> {
        let (crop_height, crop_width) = self.output_size();
        let top = (height as isize - crop_height as isize).div_euclid(2);
        let left = (width as isize - crop_width as isize).div_euclid(2);
        let mut planes = vec![0.0f32; 3 * crop_height * crop_width];
        for channel in 0..3 {
            for y in 0..crop_height {
                for x in 0..crop_width {
                    let (source_y, source_x) = (y as isize + top, x as isize + left);
                    let inside = (0..height as isize).contains(&source_y) && (0..width as isize).contains(&source_x);
                    let value = if inside {
                        f32::from(pixels[(source_y as usize * width + source_x as usize) * 3 + channel]) / 255.0
                    } else {
                        0.0
                    };
                    planes[(channel * crop_height + y) * crop_width + x] =
                        (value - self.mean[channel]) / self.std[channel];
                }
            }
        }
        planes
    }
}

impl Resize {
    /// (height, width) after resizing an image of (height, width), as
    /// transformers' `get_resize_output_image_size` (default_to_square=False):
    /// the long side ⌊edge·long/short⌋.
    fn output(self, (height, width): (usize, usize)) -> (usize, usize) {
        match self {
            Resize::Exact(h, w) => (h, w),
            Resize::ShortestEdge(edge) => {
                let (short, long) = (height.min(width), height.max(width));
                let new_long = ((edge * long) as f64 / short as f64) as usize;
                if width <= height { (new_long, edge) } else { (edge, new_long) }
            }
        }
    }
}

/// PIL's `Image.resize(..., BICUBIC)` of an 8-bit RGB image: the separable
/// cubic with a = −0.5, its support widened by the scale when shrinking
/// (antialiasing), weights in PIL's 22-bit fixed point, the horizontal pass
/// first and each pass rounded to 8 bits, as PIL does. transformers' image
/// processors resize with PIL, so the pixels match theirs.
fn resize_bicubic(pixels: &[u8], from: (usize, usize), to: (usize, usize)) -> Vec<u8> {
    let (height, width) = from;
    let (new_height, new_width) = to;
    let horizontal = if new_width == width {
        pixels.to_vec()
    } else {
        let taps = pil_taps(width, new_width);
        let mut out = vec![0u8; height * new_width * 3];
        for y in 0..height {
            for (x, (start, weights)) in taps.iter().enumerate() {
                for c in 0..3 {
                    let sum = weights
                        .iter()
                        .enumerate()
                        .map(|(k, &w)| w * i64::from(pixels[(y * width + start + k) * 3 + c]))
                        .sum::<i64>();
                    out[(y * new_width + x) * 3 + c] = round_fixed(sum);
                }
            }
        }
        out
    };
    if new_height == height {
        return horizontal;
    }
    let taps = pil_taps(height, new_height);
    let mut out = vec![0u8; new_height * new_width * 3];
    for (y, (start, weights)) in taps.iter().enumerate() {
        for x in 0..new_width {
            for c in 0..3 {
                let sum = weights
                    .iter()
                    .enumerate()
                    .map(|(k, &w)| w * i64::from(horizontal[((start + k) * new_width + x) * 3 + c]))
                    .sum::<i64>();
                out[(y * new_width + x) * 3 + c] = round_fixed(sum);
            }
        }
    }
    out
}

/// PIL's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// A fixed-point sum back to 8 bits: + ½, shift, clamp (PIL's `clip8`).
fn round_fixed(sum: i64) -> u8 {
    ((sum + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's `precompute_coeffs` for the bicubic filter, then
/// `normalize_coeffs_8bpc`: for each output pixel, the first input pixel
/// and the fixed-point weights of the ones from there.
fn pil_taps(input: usize, output: usize) -> Vec<(usize, Vec<i64>)> {
    const SUPPORT: f64 = 2.0;
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = SUPPORT * filter_scale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero.
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let weights: Vec<f64> =
                (min..max).map(|x| bicubic_filter((x as f64 - center + 0.5) / filter_scale)).collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&w| {
                    let w = if total == 0.0 { w } else { w / total };
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    (if scaled < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i64
                })
                .collect();
            (min, fixed)
        })
        .collect()
}

/// PIL's bicubic kernel (a = −0.5).
fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_keeps_the_aspect_ratio_rounding_down() {
        let resize = Resize::ShortestEdge(32);
        // 40×29 (w×h): 32·40/29 = 44.1 → 44.
        assert_eq!(resize.output((29, 40)), (32, 44));
        assert_eq!(resize.output((57, 23)), (79, 32));
        assert_eq!(resize.output((32, 32)), (32, 32));
    }

    #[test]
    fn resize_to_the_same_size_is_the_identity() {
        let pixels: Vec<u8> = (0..5 * 4 * 3).map(|v| (v * 7 % 256) as u8).collect();
        assert_eq!(resize_bicubic(&pixels, (4, 5), (4, 5)), pixels);
        // A pass at scale 1 weighs only the pixel itself.
        let taps = pil_taps(5, 5);
        assert!(taps.iter().all(|(_, w)| w.iter().filter(|&&w| w != 0).count() == 1));
    }

    #[test]
    fn crop_centres_with_the_floor() {
        let preprocess = Preprocess {
            resize: Resize::Exact(3, 4),
            crop: Some((1, 1)),
            mean: [0.0; 3],
            std: [1.0; 3],
            number_is_square: false,
        };
        // A 4×3 image whose red channel counts the pixels: the centre crop
        // starts at ⌊(4−1)/2⌋ = 1, ⌊(3−1)/2⌋ = 1 → pixel 5.
        let pixels: Vec<u8> = (0..12u8).flat_map(|i| [i, 0, 0]).collect();
        let planes = preprocess.crop_and_normalize(&pixels, (3, 4));
        assert_eq!(planes[0], 5.0 / 255.0);
    }
}
