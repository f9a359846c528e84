//! `easel bench caption`: BLIP-base captions (the real architecture, random
//! weights, written once as a Hugging Face folder) of photo-like images; with
//! `--python`, transformers' `BlipForConditionalGeneration` on the same folder
//! and images (benches/caption.py). Every caption is forced to exactly
//! `max_tokens` new tokens on both sides (the end token held off, as
//! transformers' `min_new_tokens`), so both do the same work whatever the
//! random weights would say.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use serde_json::{Value, json};

use crate::captioner::blip::Blip;
use crate::captioner::blip::random::{base_config, write_random_blip};
use crate::captioner::{CaptionRequest, Captioner};

/// Bump when the model folder's recipe changes, so an old cache is not reused.
const MODEL_VERSION: u32 = 1;
/// The photo-like images' size: a typical camera aspect, resized to 384² by the processor.
const IMAGE_SIZE: (u32, u32) = (640, 480);

pub struct BenchCaption {
    pub count: usize,
    pub batch: usize,
    pub max_tokens: usize,
    /// Where the model folder and the images are kept between runs.
    pub dir: PathBuf,
    pub python: Option<PathBuf>,
}

pub fn run(options: &BenchCaption, device: &Device) -> Result<Vec<Value>> {
    let model = ensure_model(&options.dir)?;
    let images = ensure_images(&options.dir, options.count)?;
    let (mut easel, captions) =
        crate::device::on_compute_threads(device, || easel_side(&model, &images, options, device))?;
    let Some(script) = &options.python else { return Ok(vec![easel]) };
    let mut reference = python_side(script, &model, options, device)?;
    let ratio = easel["images_per_s"].as_f64().unwrap_or(0.0) / reference["images_per_s"].as_f64().unwrap_or(f64::NAN);
    easel["speed_vs_transformers"] = json!(ratio);
    // The same greedy captions on both sides: the full-size model agrees too.
    let theirs: Vec<String> = serde_json::from_value(reference["captions"].take()).unwrap_or_default();
    easel["captions_equal_to_transformers"] = json!(captions.iter().zip(&theirs).filter(|(a, b)| a == b).count());
    reference["first_caption"] = json!(theirs.first());
    if let Some(fields) = reference.as_object_mut() {
        fields.remove("captions");
    }
    Ok(vec![easel, reference])
}

/// Easel's JSON line and its captions.
fn easel_side(
    model: &Path,
    images: &[image::RgbImage],
    options: &BenchCaption,
    device: &Device,
) -> Result<(Value, Vec<String>)> {
    let mut blip = Blip::load(model, device)?;
    let fixed = |tokens| CaptionRequest { prompt: None, max_tokens: tokens, min_tokens: tokens };
    // Warm-up, as the Python side does: first-call allocations and thread start.
    blip.caption(&images[..1], &fixed(2))?;
    let started = Instant::now();
    let mut captions = Vec::with_capacity(images.len());
    for batch in images.chunks(options.batch) {
        captions.extend(blip.caption(batch, &fixed(options.max_tokens))?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let line = json!({
        "side": "easel", "model": blip.describe(), "device": format!("{device:?}"),
        "images": images.len(), "batch": options.batch, "threads": rayon::current_num_threads(),
        "seconds": seconds, "images_per_s": images.len() as f64 / seconds,
        "tokens": images.len() * options.max_tokens, "first_caption": captions.first(),
    });
    Ok((line, captions))
}

/// Runs benches/caption.py on the same folder and images; its JSON line.
fn python_side(script: &Path, model: &Path, options: &BenchCaption, device: &Device) -> Result<Value> {
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg("--model")
        .arg(model)
        .arg("--images")
        .arg(images_dir(&options.dir))
        .args(["--count", &options.count.to_string()])
        .args(["--batch", &options.batch.to_string()])
        .args(["--max-tokens", &options.max_tokens.to_string()])
        .args(["--threads", &rayon::current_num_threads().to_string()])
        .args(["--device", if device.is_cuda() { "cuda" } else { "cpu" }])
        .output()
        .with_context(|| format!("cannot run python3 {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "python3 {} failed (it needs `pip install torch transformers pillow`):\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|line| line.starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("python3 {} printed no JSON line:\n{stdout}", script.display()))
}

/// The random BLIP-base folder under `dir`, written on first use (built
/// aside and renamed in, so an interrupted write is never reused).
fn ensure_model(dir: &Path) -> Result<PathBuf> {
    let folder = dir.join(format!("blip-base-random-v{MODEL_VERSION}"));
    if folder.join("config.json").is_file() {
        return Ok(folder);
    }
    let partial = dir.join(format!(".blip-base-random.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    write_random_blip(&partial, &base_config())?;
    std::fs::rename(&partial, &folder).with_context(|| format!("cannot move the model into {}", folder.display()))?;
    Ok(folder)
}

fn images_dir(dir: &Path) -> PathBuf {
    dir.join("images")
}

/// `count` photo-like images, also written as PNGs for the Python side
/// (lossless, so both caption the same pixels).
fn ensure_images(dir: &Path, count: usize) -> Result<Vec<image::RgbImage>> {
    let folder = images_dir(dir);
    std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
    (0..count)
        .map(|index| {
            let image = super::photo_like(index as u32, IMAGE_SIZE.0, IMAGE_SIZE.1);
            let path = folder.join(format!("image-{index}.png"));
            if !path.is_file() {
                let mut png = std::io::Cursor::new(Vec::new());
                image.write_to(&mut png, image::ImageFormat::Png)?;
                crate::fsutil::atomic_write(&path, png.get_ref())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(image)
        })
        .collect()
}
