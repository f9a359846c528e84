//! What a run trains on: the dataset's captioned images, each assigned to an
//! aspect-ratio bucket, split into training and validation sets, batched
//! per epoch, and turned into pixel tensors and (optionally shuffled) captions.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::captions::drafts::unreviewed_uncaptioned;
use crate::dataset::buckets::{self, Bucket};
use crate::dataset::integrity::incomplete;
use crate::dataset::scan::Flag;
use crate::dataset::{CaptionState, Inventory};
use crate::project::{ProjectConfig, TrainConfig};

/// One training image.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub image: PathBuf,
    pub caption: String,
    pub bucket: Bucket,
}

/// Why an image is left out when its only text is a draft nobody has accepted yet.
pub const DRAFT_AWAITS_REVIEW: &str = "no caption: its draft awaits review";

/// The images a run uses, and those it leaves out with the reason.
#[derive(Debug, Clone, Default)]
pub struct TrainingSet {
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// A seeded generator for one purpose at one step: the same (seed, purpose,
/// step) always gives the same numbers, so a resumed run repeats exactly
/// what an uninterrupted one would have done.
pub fn rng_for(seed: u64, purpose: u64, step: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ step.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

/// Purposes for [`rng_for`].
pub mod purpose {
    pub const SPLIT: u64 = 1;
    pub const EPOCH_ORDER: u64 = 2;
    pub const NOISE: u64 = 3;
    pub const CAPTION: u64 = 4;
    pub const VALIDATION: u64 = 5;
}

impl TrainingSet {
    /// Reads the dataset folder. Images without a usable caption, or that the
    /// scan calls too small (`[scan] min_side`, else the resolution), are
    /// skipped with the reason; an uncaptioned image whose draft awaits
    /// review is named as such (a draft is never trained on).
    pub fn read(dataset: &Path, project: &ProjectConfig) -> Result<Self> {
        let (caption_extension, config) = (project.caption_extension.as_str(), &project.train);
        let minimum = project.scan.minimum_side(config.resolution);
        let inventory = Inventory::read(dataset, caption_extension, None);
        if let Some(error) = inventory.folder_error {
            bail!(error);
        }
        let drafted: HashSet<PathBuf> = unreviewed_uncaptioned(dataset, caption_extension)?.into_iter().collect();
        let list = buckets::buckets(config.resolution, config.bucketing);
        let mut set = Self::default();
        let mut usable = Vec::new();
        for entry in inventory.entries {
            let path = dataset.join(&entry.path);
            // A file cut short may still have a whole header, and decodes to grey fill.
            let damage = match std::fs::read(&path) {
                Ok(data) => incomplete(&data),
                Err(error) => Some(format!("cannot read: {error}")),
            };
            if let Some(reason) = damage {
                set.skipped.push((path, format!("unreadable: {reason}")));
                continue;
            }
            let Some((width, height)) = entry.dimensions else {
                set.skipped.push((path, entry.header_error.unwrap_or_else(|| "unreadable image".into())));
                continue;
            };
            let short_side = width.min(height);
            if short_side < minimum {
                set.skipped.push((path, Flag::TooSmall { short_side, minimum }.describe()));
                continue;
            }
            let caption = match entry.caption {
                CaptionState::Text(text) => text.trim().to_string(),
                CaptionState::Missing | CaptionState::Empty if drafted.contains(&entry.path) => {
                    set.skipped.push((path, DRAFT_AWAITS_REVIEW.into()));
                    continue;
                }
                CaptionState::Missing => {
                    set.skipped.push((path, "no caption".into()));
                    continue;
                }
                CaptionState::Empty => {
                    set.skipped.push((path, "empty caption".into()));
                    continue;
                }
                CaptionState::Unreadable(why) => {
                    set.skipped.push((path, format!("caption unreadable: {why}")));
                    continue;
                }
            };
            match buckets::assign(&list, width, height) {
                Some(bucket) => usable.push(Example { image: path, caption, bucket }),
                None => set.skipped.push((path, format!("{width}×{height} is smaller than the smallest bucket"))),
            }
        }
        if usable.is_empty() {
            bail!("{}: no captioned images to train on", dataset.display());
        }
        // A seeded split, so validation images stay the same across runs and resumes.
        usable.shuffle(&mut rng_for(config.seed, purpose::SPLIT, 0));
        let held_out = if usable.len() >= 2 && config.validation_fraction > 0.0 {
            ((usable.len() as f64 * config.validation_fraction).round() as usize).clamp(1, usable.len() - 1)
        } else {
            0
        };
        set.validation = usable.split_off(usable.len() - held_out);
        set.validation.sort_by(|a, b| a.image.cmp(&b.image));
        set.train = usable;
        set.train.sort_by(|a, b| a.image.cmp(&b.image));
        Ok(set)
    }
}

/// The batches of one epoch: examples grouped by bucket (a batch shares one
/// size), shuffled within buckets, cut into batches, and the batches shuffled.
pub fn epoch_batches(examples: &[Example], batch_size: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
    let mut rng = rng_for(seed, purpose::EPOCH_ORDER, epoch);
    let mut by_bucket: std::collections::BTreeMap<Bucket, Vec<usize>> = Default::default();
    for (index, example) in examples.iter().enumerate() {
        by_bucket.entry(example.bucket).or_default().push(index);
    }
    let mut batches = Vec::new();
    for mut indices in by_bucket.into_values() {
        indices.shuffle(&mut rng);
        batches.extend(indices.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// The caption to train on: tags shuffled after the first `keep_tags` when
/// asked, or empty with probability `caption_dropout`.
pub fn training_caption(caption: &str, config: &TrainConfig, rng: &mut StdRng) -> String {
    use rand::Rng;
    if config.caption_dropout > 0.0 && rng.random_bool(config.caption_dropout) {
        return String::new();
    }
    if !config.shuffle_tags {
        return caption.to_string();
    }
    let mut tags: Vec<&str> = caption.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    let keep = (config.keep_tags as usize).min(tags.len());
    tags[keep..].shuffle(rng);
    tags.join(", ")
}

/// The image cropped to the bucket's aspect, scaled to it, as `[3, h, w]` in [−1, 1].
pub fn load_pixels(example: &Example, device: &Device) -> Result<Tensor> {
    let image =
        image::open(&example.image).with_context(|| format!("cannot read {}", example.image.display()))?.to_rgb8();
    let (x, y, w, h) = buckets::centre_crop(example.bucket, image.width(), image.height());
    let cropped = image::imageops::crop_imm(&image, x, y, w, h).to_image();
    let (bw, bh) = (example.bucket.width, example.bucket.height);
    let resized = image::imageops::resize(&cropped, bw, bh, image::imageops::FilterType::CatmullRom);
    let data: Vec<f32> = resized.into_raw().into_iter().map(|v| f32::from(v) / 127.5 - 1.0).collect();
    Ok(Tensor::from_vec(data, (bh as usize, bw as usize, 3), device)?.permute((2, 0, 1))?.contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str, bucket: Bucket) -> Example {
        Example { image: name.into(), caption: String::new(), bucket }
    }

    #[test]
    fn an_uncaptioned_image_with_a_draft_is_skipped_as_awaiting_review() {
        use crate::captions::drafts::{Draft, update};
        use crate::captions::{normalize::Rules, vocabulary::Vocabulary};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["captioned", "drafted", "bare"] {
            image::RgbImage::new(64, 64).save(d.join(format!("{name}.png"))).unwrap();
        }
        std::fs::write(d.join("captioned.txt"), "ohwx, a teal mug").unwrap();
        let rules = Rules::new(&Vocabulary::default(), "ohwx").unwrap();
        update(d, |drafts| {
            drafts.insert(Draft::new("drafted.png".into(), "a mug", "test", &rules));
            Ok(())
        })
        .unwrap();
        let train = TrainConfig { resolution: 64, validation_fraction: 0.0, ..TrainConfig::default() };
        let set = TrainingSet::read(d, &ProjectConfig { train, ..ProjectConfig::default() }).unwrap();
        assert_eq!(set.train.len(), 1);
        let skipped: Vec<(String, &str)> = set
            .skipped
            .iter()
            .map(|(path, why)| (path.file_name().unwrap().to_string_lossy().into_owned(), why.as_str()))
            .collect();
        assert_eq!(skipped, [("bare.png".to_string(), "no caption"), ("drafted.png".to_string(), DRAFT_AWAITS_REVIEW)]);
    }

    #[test]
    fn batches_share_a_bucket_and_cover_the_epoch_once() {
        let (square, wide) = (Bucket { width: 128, height: 128 }, Bucket { width: 192, height: 64 });
        let examples: Vec<Example> =
            (0..7).map(|i| example(&format!("{i}"), if i % 3 == 0 { wide } else { square })).collect();
        let batches = epoch_batches(&examples, 2, 42, 0);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        for batch in &batches {
            assert!(batch.iter().all(|&i| examples[i].bucket == examples[batch[0]].bucket));
        }
        assert_eq!(batches, epoch_batches(&examples, 2, 42, 0), "same seed and epoch, same order");
        assert_ne!(batches, epoch_batches(&examples, 2, 42, 1), "another epoch, another order");
    }

    #[test]
    fn captions_shuffle_after_the_kept_tags_and_drop_out() {
        let mut config = TrainConfig { shuffle_tags: true, keep_tags: 1, ..TrainConfig::default() };
        let caption = "zeltmug, teal, mug, star, table, wood";
        let mut rng = rng_for(1, purpose::CAPTION, 0);
        let shuffled: Vec<String> = (0..20).map(|_| training_caption(caption, &config, &mut rng)).collect();
        assert!(shuffled.iter().all(|c| c.starts_with("zeltmug, ")));
        assert!(shuffled.iter().any(|c| c != caption), "never shuffled");
        config.caption_dropout = 1.0;
        assert_eq!(training_caption(caption, &config, &mut rng), "");
    }
}
