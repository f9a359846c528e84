//! BLIP captions (`BlipForConditionalGeneration`, e.g.
//! Salesforce/blip-image-captioning-base or -large) from a local Hugging Face
//! folder, greedy as transformers' `generate` does by default.
//!
//! The model is written here rather than taken from candle-transformers'
//! `models::blip`: that text decoder recomputes the cross-attention keys and
//! values of all 577 image tokens at every generated token (about 8 GMAC per
//! token per image at BLIP-base, more than the rest of decoding), and decodes
//! one row at a time with no batching of prompts or finished rows. Here the
//! image's keys and values are computed once per batch
//! ([`text::TextDecoder::start`]), rows decode together, and finished rows
//! leave the batch. The vision model is the project's shared ViT
//! ([`crate::vision::vit`], BLIP's layout).

mod config;
pub mod random;
mod text;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use image::RgbImage;

pub use config::{BlipConfig, BlipTextConfig, BlipVisionConfig};
use text::TextDecoder;

use super::wordpiece::WordPiece;
use super::{CaptionRequest, Captioner};
use crate::model::weights::{WeightFiles, WeightSource};
use crate::vision::preprocess::Preprocess;
use crate::vision::vit::{BLIP_LAYOUT, VisionTransformer};

/// How to get a model when the folder lacks one.
const DOWNLOAD_HINT: &str =
    "download one with `huggingface-cli download Salesforce/blip-image-captioning-base --local-dir DIR`";

pub struct Blip {
    name: String,
    vision: VisionTransformer,
    decoder: TextDecoder,
    tokenizer: WordPiece,
    preprocess: Preprocess,
    text: BlipTextConfig,
    device: Device,
    dtype: DType,
}

impl Blip {
    /// Loads the model in `folder`: `config.json`, `model.safetensors` (or a
    /// sharded index), the tokenizer (`vocab.txt` or `tokenizer.json`) and
    /// `preprocessor_config.json` when present. f32 on the CPU, bf16 on a GPU.
    pub fn load(folder: &Path, device: &Device) -> anyhow::Result<Self> {
        let config_path = folder.join("config.json");
        if !config_path.is_file() {
            let what = if folder.is_dir() { "has no config.json" } else { "does not exist" };
            bail!("{}: {what}; a BLIP captioning model is a Hugging Face folder, {DOWNLOAD_HINT}", folder.display());
        }
        let config: BlipConfig = crate::model::read_json_config(&config_path)?;
        let weights = weight_files(folder)?;
        let dtype = if device.is_cpu() { DType::F32 } else { DType::BF16 };
        let vb = WeightSource::direct(WeightFiles::open(&weights)?).var_builder(dtype, device);
        let vision = VisionTransformer::load(vb.pp("vision_model"), &config.vit(), &BLIP_LAYOUT)
            .with_context(|| format!("{}: the vision model", folder.display()))?;
        let decoder = TextDecoder::load(vb.pp("text_decoder"), &config.text_config, config.cross_width())
            .with_context(|| format!("{}: the text decoder", folder.display()))?;
        let tokenizer = WordPiece::read(folder)?;
        let preprocess = Preprocess::read(folder, Preprocess::blip(config.vision_config.image_size))?;
        Ok(Self {
            name: model_name(folder),
            vision,
            decoder,
            tokenizer,
            preprocess,
            text: config.text_config,
            device: device.clone(),
            dtype,
        })
    }

    /// `images` as the model's input `[N, 3, size, size]` (f32, on the CPU).
    pub fn pixel_values(&self, images: &[RgbImage]) -> anyhow::Result<Tensor> {
        self.preprocess.pixel_values(images, &Device::Cpu)
    }

    /// Every final-normed image token `[N, tokens, hidden]` for `pixels`.
    pub fn image_tokens(&self, pixels: &Tensor) -> anyhow::Result<Tensor> {
        let pixels = pixels.to_device(&self.device)?.to_dtype(self.dtype)?;
        self.vision.tokens(&pixels)
    }

    /// The decoder's logits `[N, tokens, vocab]` for `ids` `[N, tokens]`
    /// attending to `image` tokens (the whole sequence in one step).
    pub fn text_logits(&self, ids: &Tensor, image: &Tensor) -> anyhow::Result<Tensor> {
        let mut state = self.decoder.start(image)?;
        let hidden = self.decoder.step(&ids.to_device(&self.device)?, &mut state)?;
        Ok(self.decoder.logits(&hidden)?.to_dtype(DType::F32)?)
    }

    /// The ids decoding starts from: BOS, then the prompt's WordPiece ids
    /// (transformers' processor wraps the prompt in [CLS]…[SEP], and
    /// `generate` puts BOS in place of [CLS] and drops the [SEP]).
    pub fn prompt_ids(&self, prompt: Option<&str>) -> Vec<u32> {
        let mut ids = vec![self.text.bos_token_id];
        ids.extend(prompt.map(|p| self.tokenizer.encode(p)).unwrap_or_default());
        ids
    }

    /// Greedy decoding for every image of `pixels`: the whole sequence per
    /// row (the prompt ids, then the new ones up to and including the end
    /// token when one came). At least `min_tokens` new tokens each (the end
    /// token is masked until then, transformers' `min_new_tokens`), at most
    /// `max_tokens`.
    pub fn generate(&self, pixels: &Tensor, request: &CaptionRequest) -> anyhow::Result<Vec<Vec<u32>>> {
        let image = self.image_tokens(pixels)?;
        let rows = image.dim(0)?;
        let prompt = self.prompt_ids(request.prompt.as_deref());
        let mut sequences = vec![prompt.clone(); rows];
        let mut state = self.decoder.start(&image)?;
        let input = Tensor::new(prompt.as_slice(), &self.device)?.unsqueeze(0)?.repeat((rows, 1))?;
        let mut hidden = self.decoder.step(&input, &mut state)?;
        // Indices into `sequences` of the rows still in the batch.
        let mut active: Vec<usize> = (0..rows).collect();
        let end = self.text.sep_token_id;
        for made in 0..request.max_tokens {
            let logits = self.decoder.last_logits(&hidden)?.to_vec2::<f32>()?;
            let allow_end = made >= request.min_tokens;
            let next: Vec<u32> = logits.iter().map(|row| greedy(row, (!allow_end).then_some(end))).collect();
            let mut still = Vec::with_capacity(active.len());
            for (position, (&row, &token)) in active.iter().zip(&next).enumerate() {
                sequences[row].push(token);
                if token != end {
                    still.push(position as u32);
                }
            }
            if still.is_empty() || made + 1 == request.max_tokens {
                break;
            }
            let tokens: Vec<u32> = still.iter().map(|&position| next[position as usize]).collect();
            if still.len() < active.len() {
                state.keep(&still)?;
                active = still.iter().map(|&position| active[position as usize]).collect();
            }
            let input = Tensor::new(tokens.as_slice(), &self.device)?.unsqueeze(1)?;
            hidden = self.decoder.step(&input, &mut state)?;
        }
        Ok(sequences)
    }

    /// Ids to caption text (special tokens skipped, as transformers'
    /// `decode(skip_special_tokens=True)`).
    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids)
    }
}

/// The largest logit's index (the first of equals, as torch's argmax),
/// never `banned`.
fn greedy(logits: &[f32], banned: Option<u32>) -> u32 {
    let mut best = (0, f32::NEG_INFINITY);
    for (index, &value) in logits.iter().enumerate() {
        if value > best.1 && Some(index as u32) != banned {
            best = (index, value);
        }
    }
    best.0 as u32
}

impl Captioner for Blip {
    fn describe(&self) -> String {
        format!("BLIP ({})", self.name)
    }

    /// A CPU is kept busy by a few images' products; a GPU wants more rows.
    fn preferred_batch(&self) -> usize {
        if self.device.is_cpu() { 4 } else { 16 }
    }

    fn caption(&mut self, images: &[RgbImage], request: &CaptionRequest) -> anyhow::Result<Vec<String>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let pixels = self.pixel_values(images)?;
        Ok(self.generate(&pixels, request)?.iter().map(|ids| self.decode(ids)).collect())
    }
}

/// The folder's weight files: `model.safetensors` or a sharded index; a
/// PyTorch pickle alone is refused, naming the file (`part_weights`).
fn weight_files(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    crate::model::pipeline::part_weights(folder, "model")
        .with_context(|| format!("a BLIP model's weights are model.safetensors; {DOWNLOAD_HINT}"))
}

/// The model's name for messages: the folder's name (the hub's repository
/// name when downloaded with `--local-dir`).
fn model_name(folder: &Path) -> String {
    let folder = folder.canonicalize().unwrap_or_else(|_| folder.to_path_buf());
    folder.file_name().map_or_else(|| folder.display().to_string(), |name| name.to_string_lossy().into_owned())
}
