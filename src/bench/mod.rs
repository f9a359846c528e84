//! `easel bench`: the LoRA training step (`train.rs`), the caption rules and
//! the dataset scan, each beside a reference where there is one.

pub mod caption;
pub mod conformance;
pub mod lora;
pub mod train;

use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

/// A photo-like picture for the scan benchmark and the scan tests: sky and
/// ground, seven objects, sensor grain; layout and colours differ for every
/// index, so unrelated pictures are not near duplicates of each other.
pub fn photo_like(index: u32, width: u32, height: u32) -> image::RgbImage {
    // splitmix64: every picture its own layout and colours, from its index.
    let mut state = u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    };
    fn colour(next: &mut impl FnMut() -> f32) -> [f32; 3] {
        [next() * 255.0, next() * 255.0, next() * 255.0]
    }
    let (sky, ground) = (colour(&mut next), colour(&mut next));
    // Objects: an ellipse each (centre, radii) and its colour.
    let objects: Vec<([f32; 4], [f32; 3])> =
        (0..7).map(|_| ([next(), next(), 0.05 + 0.25 * next(), 0.05 + 0.25 * next()], colour(&mut next))).collect();
    let horizon = 0.3 + 0.4 * next();
    image::RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let mut pixel = if fy < horizon { sky } else { ground };
        let shade = 0.75 + 0.5 * fy;
        for ([cx, cy, rx, ry], paint) in &objects {
            if ((fx - cx) / rx).powi(2) + ((fy - cy) / ry).powi(2) < 1.0 {
                pixel = *paint;
            }
        }
        // Sensor grain, so the picture has the fine detail a photo has.
        let grain = ((x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ index.wrapping_mul(83_492_791)) % 25)
            as f32
            - 12.0;
        image::Rgb(pixel.map(|c| (c * shade + grain).clamp(0.0, 255.0) as u8))
    })
}

/// Writes `count` photo-like JPEGs of about `size` px (varied aspect) into
/// `dir`, unless they are there already.
pub fn scan_images(dir: &std::path::Path, count: u32, size: u32) -> Result<()> {
    use rayon::prelude::*;
    std::fs::create_dir_all(dir)?;
    (0..count).into_par_iter().try_for_each(|i| -> Result<()> {
        let path = dir.join(format!("photo_{i:04}.jpg"));
        if path.is_file() {
            return Ok(());
        }
        let (w, h) = match i % 3 {
            0 => (size, size),
            1 => (size, size * 3 / 4),
            _ => (size * 3 / 4, size),
        };
        let mut bytes = Vec::new();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90);
        photo_like(i, w, h).write_with_encoder(encoder)?;
        crate::fsutil::atomic_write(&path, &bytes)?;
        std::fs::write(path.with_extension("txt"), format!("photo {i}"))?;
        Ok(())
    })
}

/// Times a cold scan (empty cache) and a warm one (everything cached) of
/// `dir`; with `python`, that script's scan of the same files right after,
/// so the ratio compares runs on the same machine state.
pub fn scan(dir: &std::path::Path, python: Option<&std::path::Path>) -> Result<serde_json::Value> {
    let mut config = crate::project::ProjectConfig::default();
    config.train.resolution = 512;
    let cache = tempfile_dir()?;
    let started = Instant::now();
    let cold = crate::dataset::scan::scan(dir, &cache, &config, &|_, _| {});
    let cold_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let warm = crate::dataset::scan::scan(dir, &cache, &config, &|_, _| {});
    let warm_seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&cache);
    let images = cold.findings.len();
    let images_per_s = images as f64 / cold_seconds;
    let mut result = json!({
        "images": images, "threads": rayon::current_num_threads(),
        "cold_s": cold_seconds, "images_per_s": images_per_s,
        "warm_s": warm_seconds, "warm_from_cache": warm.from_cache,
        "flagged": cold.findings.iter().filter(|f| !f.flags.is_empty()).count(),
    });
    if let Some(script) = python {
        let python_per_s = python_scan(script, dir)?;
        result["python_images_per_s"] = json!(python_per_s);
        result["speedup_over_python"] = json!(images_per_s / python_per_s);
    }
    Ok(result)
}

/// Runs the Python scan script on `dir`; its images per second.
fn python_scan(script: &std::path::Path, dir: &std::path::Path) -> Result<f64> {
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(dir)
        .output()
        .with_context(|| format!("cannot run python3 {}", script.display()))?;
    if !output.status.success() {
        anyhow::bail!("python3 {} failed:\n{}", script.display(), String::from_utf8_lossy(&output.stderr));
    }
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("the Python scan printed no JSON")?;
    report["images_per_s"].as_f64().context("the Python scan reported no images_per_s")
}

/// A fresh folder for a throwaway scan cache.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("easel-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A caption of the kind the caption benchmark lints: a trigger, a product
/// with varying terms (some of them aliases), a setting, light, extras, and
/// now and then a banned or repeated tag or a very long tail.
pub fn synthetic_caption(index: usize) -> String {
    const COLOURS: [&str; 6] = ["teal", "red", "navy blue", "cream", "olive", "matte black"];
    const THINGS: [&str; 5] = ["mug", "cup", "coffee cup", "mugs", "Cups"];
    const PLACES: [&str; 5] =
        ["on a wooden table", "on a marble counter", "on a linen tablecloth", "on a desk", "on a shelf"];
    const LIGHT: [&str; 4] = ["soft light from the left", "hard light", "window light", "studio lighting"];
    const EXTRAS: [&str; 5] = ["potted plant", "stack of books", "red apple", "steam rising", "a spoon"];
    let pick = |list: &[&'static str], salt: usize| list[(index.wrapping_mul(2_654_435_761) >> salt) % list.len()];
    let mut tags = vec![
        "zeltmug".to_string(),
        format!("a {} ceramic {} with an orange star emblem", pick(&COLOURS, 3), pick(&THINGS, 7)),
        pick(&PLACES, 11).to_string(),
        pick(&LIGHT, 13).to_string(),
        pick(&EXTRAS, 17).to_string(),
    ];
    match index % 10 {
        0 => tags.push("masterpiece".into()),
        1 => tags.push(pick(&PLACES, 11).to_string()),
        2 => tags.extend((0..12).map(|i| format!("detail number {i} of the scene"))),
        3 => tags.swap(0, 2),
        _ => {}
    }
    tags.join(", ")
}

/// Normalize + lint of `count` generated captions (written to a temporary
/// dataset first, so reading them is timed too, apart).
pub fn captions(count: usize) -> Result<serde_json::Value> {
    use crate::captions::{CaptionContext, normalization};
    let root = tempfile_dir()?;
    let dataset = root.join(crate::project::ProjectConfig::default().dataset);
    std::fs::create_dir_all(&dataset)?;
    for i in 0..count {
        // The images are never decoded here: empty files stand in for them.
        std::fs::write(dataset.join(format!("img_{i:05}.png")), b"")?;
        std::fs::write(dataset.join(format!("img_{i:05}.txt")), synthetic_caption(i))?;
    }
    let vocabulary = "banned = [\"masterpiece\", \"best quality\"]\ncontradictions = [[\"hard light\", \"soft light\"]]\n\
                      [terms]\nmug = [\"cup\", \"coffee cup\"]\n\"studio light\" = [\"studio lighting\"]\n";
    std::fs::write(root.join(crate::captions::vocabulary::FILE), vocabulary)?;
    let mut project = crate::project::Project {
        root: root.clone(),
        config: crate::project::ProjectConfig::default(),
        source: String::new(),
    };
    project.config.trigger = "zeltmug".into();
    let context = CaptionContext::open(&project)?;
    let started = Instant::now();
    let captions = context.captions();
    let read_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let changes = normalization(&captions, &context.rules);
    let normalize_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let suggestions = context.suggestions(&captions);
    let suggest_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let findings = context.lint(&captions);
    let lint_seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&root);
    Ok(json!({
        "captions": captions.len(), "read_s": read_seconds,
        "normalize_s": normalize_seconds, "lint_s": lint_seconds,
        "normalize_and_lint_s": normalize_seconds + lint_seconds,
        "captions_per_s": captions.len() as f64 / (normalize_seconds + lint_seconds),
        "changed": changes.len(), "findings": findings.iter().map(Vec::len).sum::<usize>(),
        "suggest_s": suggest_seconds, "suggestions": suggestions.len(),
    }))
}
