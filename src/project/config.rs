//! The `project.toml` schema. Every field has a default, so a project file
//! only needs to say what differs; unknown keys are rejected so that a typo
//! never silently falls back to a default.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::auto_captions::AutoCaptionConfig;
use super::evaluate::EvaluateConfig;
pub use crate::model::base::BaseModel;
pub use crate::model::lora::LoraTargets;

/// Everything a project file can say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectConfig {
    /// Display name; the project folder's name when absent.
    pub name: Option<String>,
    /// The image folder, relative to the project folder.
    pub dataset: PathBuf,
    /// The word that will summon the concept in prompts ("" when there is none).
    pub trigger: String,
    /// The extension of the caption beside each image (`txt`: `photo.txt` for `photo.png`).
    pub caption_extension: String,
    /// Colour theme: a built-in name or a path to a theme `.toml`.
    pub theme: Option<String>,
    pub model: ModelConfig,
    pub lora: LoraConfig,
    pub train: TrainConfig,
    pub scan: ScanConfig,
    pub samples: Vec<SamplePrompt>,
    pub evaluate: EvaluateConfig,
    pub auto_captions: AutoCaptionConfig,
}

/// Thresholds of the dataset scan (`easel scan`, the Dataset pane).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// Images with a shorter side are flagged as too small and left out of training (0: `train.resolution`).
    pub min_side: u32,
    /// Blurry below this Laplacian variance (grayscale 0–255 at 256×256), whatever the dataset.
    pub blur_floor: f64,
    /// Blurry below this fraction of the dataset's median sharpness.
    pub blur_relative: f64,
    /// Mean luminance (0–1) below which an image is underexposed, above which overexposed.
    pub dark_mean: f64,
    pub bright_mean: f64,
    /// Share of pixels crushed to black or blown to white that flags clipping.
    pub clip_fraction: f64,
    /// Mean saturation (0–1) below which an image counts as grayscale or nearly so.
    pub low_colour: f64,
    /// Perceptual-hash Hamming distance (of 64 bits) within which images are near-duplicates.
    pub near_duplicate_distance: u32,
    /// Long side ÷ short side above which the aspect ratio is extreme.
    pub max_aspect: f64,
    /// Images claiming more pixels than this (millions) are not decoded (decompression bombs).
    pub max_megapixels: f64,
}

impl ScanConfig {
    /// The shortest side an image may have: shorter ones are flagged by the
    /// scan and left out of training.
    pub fn minimum_side(&self, resolution: u32) -> u32 {
        if self.min_side > 0 { self.min_side } else { resolution }
    }
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            min_side: 0,
            blur_floor: 20.0,
            blur_relative: 0.3,
            dark_mean: 0.12,
            bright_mean: 0.9,
            clip_fraction: 0.3,
            low_colour: 0.04,
            near_duplicate_distance: 10,
            max_aspect: 3.0,
            max_megapixels: 100.0,
        }
    }
}

impl Default for ProjectConfig {
    fn default() -> Self {
        Self {
            name: None,
            dataset: PathBuf::from("dataset"),
            trigger: String::new(),
            caption_extension: "txt".into(),
            theme: None,
            model: ModelConfig::default(),
            lora: LoraConfig::default(),
            train: TrainConfig::default(),
            scan: ScanConfig::default(),
            samples: Vec::new(),
            evaluate: EvaluateConfig::default(),
            auto_captions: AutoCaptionConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub base: BaseModel,
    pub family: ModelFamily,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self { base: BaseModel::BuiltinTiny, family: ModelFamily::Auto }
    }
}

/// The Stable Diffusion generation the base model belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFamily {
    /// Inferred from the weights when the model is loaded.
    Auto,
    Sd15,
    Sd2,
    Sdxl,
}

impl fmt::Display for ModelFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Sd15 => "sd15",
            Self::Sd2 => "sd2",
            Self::Sdxl => "sdxl",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: u32,
    /// The update is scaled by alpha / rank.
    pub alpha: f64,
    pub targets: LoraTargets,
    /// Also train adapters on the text encoder.
    pub text_encoder: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self { rank: 16, alpha: 16.0, targets: LoraTargets::Attention, text_encoder: false }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub steps: u32,
    pub batch_size: u32,
    pub learning_rate: f64,
    pub schedule: LrSchedule,
    pub warmup_steps: u32,
    pub seed: u64,
    /// Training side length in pixels; buckets keep the area at resolution².
    pub resolution: u32,
    /// Group images into aspect-ratio buckets instead of centre-cropping squares.
    pub bucketing: bool,
    pub precision: Precision,
    /// Write a checkpoint every N steps (0: only at the end).
    pub save_every: u32,
    /// Render the sample prompts every N steps (0: never).
    pub sample_every: u32,
    /// Compute the validation loss every N steps (0: never).
    pub validate_every: u32,
    /// Share of the images held out for validation.
    pub validation_fraction: f64,
    /// Micro-batches whose gradients add up to one optimizer step.
    pub gradient_accumulation: u32,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Clip the gradient's global norm to this (0: no clipping).
    pub max_grad_norm: f64,
    /// Recompute the UNet's blocks in backward instead of keeping their
    /// activations: less memory (SDXL on a 24 GB card) for about a third more time.
    pub gradient_checkpointing: bool,
    /// Min-SNR-γ loss weighting (0: off; 5 is the usual choice).
    pub min_snr_gamma: f64,
    /// Extra per-channel noise offset (0: off; around 0.05 helps very dark or bright images).
    pub noise_offset: f64,
    /// Shuffle a caption's comma-separated tags, keeping the first `keep_tags` in place.
    pub shuffle_tags: bool,
    pub keep_tags: u32,
    /// Share of steps that train on an empty caption.
    pub caption_dropout: f64,
    /// How many of the newest checkpoints to keep (the best by validation loss,
    /// the evaluation's recommended one and those a roll-back started from are kept too).
    pub keep_checkpoints: u32,
    /// Append a metrics line every N steps.
    pub log_every: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1500,
            batch_size: 1,
            learning_rate: 1e-4,
            schedule: LrSchedule::Cosine,
            warmup_steps: 50,
            seed: 42,
            resolution: 512,
            bucketing: true,
            precision: Precision::Auto,
            save_every: 250,
            sample_every: 250,
            validate_every: 100,
            validation_fraction: 0.1,
            gradient_accumulation: 1,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            gradient_checkpointing: false,
            min_snr_gamma: 0.0,
            noise_offset: 0.0,
            shuffle_tags: false,
            keep_tags: 1,
            caption_dropout: 0.0,
            keep_checkpoints: 3,
            log_every: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    Constant,
    Cosine,
    Linear,
}

impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Constant => "constant",
            Self::Cosine => "cosine",
            Self::Linear => "linear",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 (or f16) frozen weights where the device supports them, f32 otherwise.
    Auto,
    F32,
    F16,
    Bf16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        })
    }
}

/// A prompt rendered during training at a fixed seed, to watch the concept form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplePrompt {
    pub prompt: String,
    #[serde(default)]
    pub negative: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_sample_steps")]
    pub steps: u32,
    #[serde(default = "default_guidance")]
    pub guidance: f64,
}

fn default_sample_steps() -> u32 {
    30
}

fn default_guidance() -> f64 {
    7.5
}

/// A value that parsed but makes no sense, with the dotted key it sits under.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl ProjectConfig {
    /// Checks the ranges the types cannot express. Returns the first problem
    /// in file order, so the user fixes one thing at a time from the top.
    pub fn validate(&self) -> Result<(), Invalid> {
        let fail = |key: &str, message: String| Err(Invalid { key: key.to_string(), message });
        if self.dataset.as_os_str().is_empty() {
            return fail("dataset", "the dataset folder must not be empty".into());
        }
        if self.trigger.chars().any(|c| c == ',' || c.is_control()) {
            return fail("trigger", format!("`{}` may not contain commas or control characters", self.trigger));
        }
        if self.caption_extension.is_empty()
            || !self.caption_extension.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            let extension = &self.caption_extension;
            return fail(
                "caption_extension",
                format!("`{extension}` must be letters or digits without a dot, e.g. txt"),
            );
        }
        if super::IMAGE_EXTENSIONS.contains(&self.caption_extension.to_ascii_lowercase().as_str()) {
            let extension = &self.caption_extension;
            return fail("caption_extension", format!("`{extension}` is an image extension; captions would clash"));
        }
        if let Some(theme) = &self.theme
            && theme.trim().is_empty()
        {
            return fail("theme", "the theme name must not be empty".into());
        }
        let lora = &self.lora;
        if lora.rank == 0 || lora.rank > 1024 {
            return fail("lora.rank", format!("rank {} is outside 1..=1024", lora.rank));
        }
        if !(lora.alpha.is_finite() && lora.alpha > 0.0) {
            return fail("lora.alpha", format!("alpha must be a positive number, not {}", lora.alpha));
        }
        let train = &self.train;
        if train.steps == 0 {
            return fail("train.steps", "steps must be at least 1".into());
        }
        if train.batch_size == 0 {
            return fail("train.batch_size", "batch_size must be at least 1".into());
        }
        // 0 is allowed: it trains nothing, which gives a baseline loss curve.
        if !(train.learning_rate.is_finite() && train.learning_rate >= 0.0 && train.learning_rate < 1.0) {
            return fail(
                "train.learning_rate",
                format!("learning_rate must be at least 0 and below 1, not {}", train.learning_rate),
            );
        }
        if train.gradient_accumulation == 0 {
            return fail("train.gradient_accumulation", "gradient_accumulation must be at least 1".into());
        }
        if train.log_every == 0 {
            return fail("train.log_every", "log_every must be at least 1".into());
        }
        for (key, value, range) in [
            ("train.weight_decay", train.weight_decay, 0.0..=1.0),
            ("train.max_grad_norm", train.max_grad_norm, 0.0..=1e6),
            ("train.min_snr_gamma", train.min_snr_gamma, 0.0..=1e3),
            ("train.noise_offset", train.noise_offset, 0.0..=1.0),
            ("train.caption_dropout", train.caption_dropout, 0.0..=1.0),
        ] {
            if !range.contains(&value) {
                return fail(key, format!("{value} is outside {}..={}", range.start(), range.end()));
            }
        }
        if train.warmup_steps > train.steps {
            return fail(
                "train.warmup_steps",
                format!("warmup_steps ({}) exceeds steps ({})", train.warmup_steps, train.steps),
            );
        }
        if train.resolution < 64 || train.resolution > 4096 || !train.resolution.is_multiple_of(64) {
            return fail(
                "train.resolution",
                format!("resolution {} must be a multiple of 64 between 64 and 4096", train.resolution),
            );
        }
        if !(0.0..=0.5).contains(&train.validation_fraction) {
            return fail(
                "train.validation_fraction",
                format!("validation_fraction {} must be between 0 and 0.5", train.validation_fraction),
            );
        }
        for (i, sample) in self.samples.iter().enumerate() {
            let key = |field: &str| format!("samples[{i}].{field}");
            if sample.prompt.trim().is_empty() {
                return fail(&key("prompt"), "the sample prompt is empty".into());
            }
            if sample.steps == 0 || sample.steps > 1000 {
                return fail(&key("steps"), format!("steps {} is outside 1..=1000", sample.steps));
            }
            if !(sample.guidance.is_finite() && (0.0..=50.0).contains(&sample.guidance)) {
                return fail(&key("guidance"), format!("guidance {} is outside 0..=50", sample.guidance));
            }
        }
        self.evaluate.validate()?;
        self.auto_captions.validate()?;
        Ok(())
    }
}
