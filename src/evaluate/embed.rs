//! Image and text embeddings for the evaluation scores, from models in local
//! Hugging Face folders: CLIP (`CLIPModel`: image and text towers with their
//! projections) and DINOv2 (`Dinov2Model`: the CLS token). Each embedding
//! comes back L2-normalised, as the scores expect.
//!
//! The numerics follow transformers (checked against it by
//! tests/eval_models.rs): the vision transformers are written here, sharing
//! one pre-norm block; CLIP's text tower is Easel's own `model::clip`, with
//! Easel's CLIP tokenizer. Images are prepared as the models' image
//! processors do, PIL's bicubic resize included (`vision::preprocess`); the
//! vision transformer both share is `vision::vit`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use serde::Deserialize;

use crate::model::clip::{Activation, ClipTextConfig, ClipTextModel};
use crate::model::nn::Linear;
use crate::model::tokenizer::{CONTEXT_LENGTH, ClipTokenizer, Padding};
use crate::model::weights::{WeightFiles, WeightSource};
use crate::vision::preprocess::Preprocess;
use crate::vision::vit::{CLIP_LAYOUT, DINO_LAYOUT, VisionTransformer, VitConfig};

/// Images embedded per forward pass: bounds the activations' memory.
const BATCH: usize = 16;

/// A transformers `CLIPModel`: image and text embeddings in one space.
pub struct Clip {
    vision: VisionTransformer,
    visual_projection: Linear,
    text: ClipTextModel,
    tokenizer: ClipTokenizer,
    preprocess: Preprocess,
    device: Device,
}

/// A transformers `Dinov2Model`: the final-normed CLS token as the embedding.
pub struct Dino {
    vision: VisionTransformer,
    preprocess: Preprocess,
    device: Device,
}

impl Clip {
    /// Reads `config.json` and `model.safetensors` from `folder`, the
    /// tokenizer from `vocab.json` + `merges.txt` or `tokenizer.json` there
    /// (else the CLIP tokenizer Easel ships, which every OpenAI CLIP uses),
    /// and `preprocessor_config.json` when present (else CLIP's processor
    /// for the model's image size: short side and crop both `image_size`).
    pub fn load(folder: &Path, device: &Device) -> anyhow::Result<Self> {
        let (config_path, vb) =
            open_folder(folder, device, "a transformers CLIPModel folder, e.g. openai/clip-vit-base-patch32")?;
        let config: ClipConfigFile = crate::model::read_json_config(&config_path)?;
        let text_config = config.text_config.into_model_config();
        if text_config.max_position_embeddings < CONTEXT_LENGTH {
            bail!(
                "{}: text_config.max_position_embeddings is {}; CLIP prompts take {CONTEXT_LENGTH} tokens",
                config_path.display(),
                text_config.max_position_embeddings
            );
        }
        let vision_config = config.vision_config.into_vit();
        let size = vision_config.image_size;
        let vision = VisionTransformer::load(vb.pp("vision_model"), &vision_config, &CLIP_LAYOUT)
            .with_context(|| format!("{}: the vision tower", folder.display()))?;
        let visual_projection = load_projection(vb.pp("visual_projection"), vision_config.hidden_size)
            .with_context(|| format!("{}: visual_projection", folder.display()))?;
        // ClipTextModel also loads without a projection (SD1's encoder); a CLIPModel has one.
        if !vb.contains_tensor("text_projection.weight") {
            bail!("{}: no text_projection.weight: not a CLIPModel (image and text towers)", folder.display());
        }
        let text =
            ClipTextModel::load(vb, &text_config).with_context(|| format!("{}: the text tower", folder.display()))?;
        Ok(Self {
            vision,
            visual_projection,
            text,
            tokenizer: folder_tokenizer(folder)?,
            preprocess: Preprocess::read(folder, Preprocess::clip(size))?,
            device: device.clone(),
        })
    }

    /// Embeds images: prepared as `CLIPImageProcessor` does, then the vision
    /// tower and the visual projection.
    pub fn image_embeddings(&self, images: &[RgbImage]) -> anyhow::Result<Vec<Vec<f32>>> {
        embed_in_batches(images, |batch| self.pixel_embeddings(&self.pixel_values(batch)?))
    }

    /// The model input for `images` `[N, 3, crop, crop]`, as `CLIPImageProcessor`'s `pixel_values`.
    pub fn pixel_values(&self, images: &[RgbImage]) -> anyhow::Result<Tensor> {
        self.preprocess.pixel_values(images, &self.device)
    }

    /// Embeds prepared pixels `[N, 3, image_size, image_size]`.
    pub fn pixel_embeddings(&self, pixels: &Tensor) -> anyhow::Result<Vec<Vec<f32>>> {
        let expected = self.vision.image_size;
        let (_, _, height, width) = pixels.dims4().context("CLIP pixels must be [N, 3, height, width]")?;
        if (height, width) != (expected, expected) {
            bail!("CLIP takes {expected}×{expected} pixels (its position embeddings are fixed), got {width}×{height}");
        }
        let features = self.visual_projection.forward(&self.vision.forward(&model_input(pixels, &self.device)?)?)?;
        normalized_rows(&features)
    }

    /// Embeds prompts: the tokenizer's 77 ids (cut if longer), the text
    /// tower, the final-normed state at the end token, the text projection.
    pub fn text_embeddings(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        let ids: Vec<u32> = texts.iter().flat_map(|text| self.tokenizer.encode(text)).collect();
        self.id_embeddings(&Tensor::from_vec(ids, (texts.len(), CONTEXT_LENGTH), &self.device)?)
    }

    /// Embeds token ids `[N, tokens]`, the end token the highest id in each row.
    pub fn id_embeddings(&self, ids: &Tensor) -> anyhow::Result<Vec<Vec<f32>>> {
        if ids.dim(0)? == 0 {
            return Ok(Vec::new());
        }
        normalized_rows(&self.text.forward(&ids.to_dtype(DType::U32)?.to_device(&self.device)?)?.pooled)
    }
}

impl Dino {
    /// Reads `config.json` and `model.safetensors` from `folder`, and
    /// `preprocessor_config.json` when present (else DINOv2's processor:
    /// short side 256, crop 224, whatever the position embeddings' size,
    /// since they are interpolated to the input).
    pub fn load(folder: &Path, device: &Device) -> anyhow::Result<Self> {
        let (config_path, vb) =
            open_folder(folder, device, "a transformers Dinov2Model folder, e.g. facebook/dinov2-base")?;
        let config: DinoConfigFile = crate::model::read_json_config(&config_path)?;
        if config.use_swiglu_ffn {
            bail!("{}: use_swiglu_ffn (DINOv2 giant) is not supported", config_path.display());
        }
        let vision = VisionTransformer::load(vb, &config.into_vit(), &DINO_LAYOUT)
            .with_context(|| format!("{}: the DINOv2 model", folder.display()))?;
        Ok(Self { vision, preprocess: Preprocess::read(folder, Preprocess::dino())?, device: device.clone() })
    }

    /// Embeds images: prepared as DINOv2's `BitImageProcessor` does, then
    /// the model's final-normed CLS token.
    pub fn image_embeddings(&self, images: &[RgbImage]) -> anyhow::Result<Vec<Vec<f32>>> {
        embed_in_batches(images, |batch| self.pixel_embeddings(&self.pixel_values(batch)?))
    }

    /// The model input for `images` `[N, 3, crop, crop]`, as `BitImageProcessor`'s `pixel_values`.
    pub fn pixel_values(&self, images: &[RgbImage]) -> anyhow::Result<Tensor> {
        self.preprocess.pixel_values(images, &self.device)
    }

    /// Embeds prepared pixels `[N, 3, H, W]`, any size of at least one patch.
    pub fn pixel_embeddings(&self, pixels: &Tensor) -> anyhow::Result<Vec<Vec<f32>>> {
        normalized_rows(&self.vision.forward(&model_input(pixels, &self.device)?)?)
    }
}

/// Checks the folder holds a model and opens its weights; the error says
/// what the folder should be.
fn open_folder(folder: &Path, device: &Device, expected: &str) -> anyhow::Result<(PathBuf, VarBuilder<'static>)> {
    let (config, weights) = (folder.join("config.json"), folder.join("model.safetensors"));
    if !config.is_file() || !weights.is_file() {
        let missing = if folder.is_dir() { "" } else { " (no such folder)" };
        bail!("{}{missing}: needs config.json and model.safetensors ({expected})", folder.display());
    }
    let files = WeightFiles::open(&[weights])?;
    Ok((config, WeightSource::direct(files).var_builder(DType::F32, device)))
}

/// The folder's own tokenizer files when it has them, else Easel's copy.
fn folder_tokenizer(folder: &Path) -> anyhow::Result<ClipTokenizer> {
    let has = |name: &str| folder.join(name).is_file();
    if (has("vocab.json") && has("merges.txt")) || has("tokenizer.json") {
        return Ok(ClipTokenizer::from_folder(folder, Padding::EndOfText)?);
    }
    Ok(ClipTokenizer::shipped(Padding::EndOfText))
}

/// A bias-free projection whose output width is read from the stored weight.
fn load_projection(vb: VarBuilder, input: usize) -> candle_core::Result<Linear> {
    let output = vb.get_unchecked("weight")?.dim(0)?;
    Linear::load(vb, input, output, false)
}

/// Embeds images `BATCH` at a time.
fn embed_in_batches(
    images: &[RgbImage],
    embed: impl Fn(&[RgbImage]) -> anyhow::Result<Vec<Vec<f32>>>,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut embeddings = Vec::with_capacity(images.len());
    for batch in images.chunks(BATCH) {
        embeddings.extend(embed(batch)?);
    }
    Ok(embeddings)
}

/// Pixels as the models take them: f32 (the weights are loaded in f32) on
/// the model's device, wherever the caller made them.
fn model_input(pixels: &Tensor, device: &Device) -> candle_core::Result<Tensor> {
    pixels.to_dtype(DType::F32)?.to_device(device)
}

/// The rows of `[N, D]` as vectors of length 1 (a zero row stays zero).
fn normalized_rows(features: &Tensor) -> anyhow::Result<Vec<Vec<f32>>> {
    let rows = features.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let norm = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
            if norm == 0.0 { row } else { row.iter().map(|&x| (f64::from(x) / norm) as f32).collect() }
        })
        .collect())
}

// --- configs -------------------------------------------------------------

/// The keys of a `CLIPModel` config.json used here.
#[derive(Deserialize)]
struct ClipConfigFile {
    #[serde(default)]
    text_config: ClipTextSection,
    #[serde(default)]
    vision_config: ClipVisionSection,
}

/// `text_config`; absent keys take transformers' defaults (ViT-B/32's).
#[derive(Deserialize)]
#[serde(default)]
struct ClipTextSection {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: Activation,
    layer_norm_eps: f64,
}

impl Default for ClipTextSection {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl ClipTextSection {
    fn into_model_config(self) -> ClipTextConfig {
        ClipTextConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            max_position_embeddings: self.max_position_embeddings,
            hidden_act: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
        }
    }
}

/// `vision_config`; absent keys take transformers' defaults (ViT-B/32's).
#[derive(Deserialize)]
#[serde(default)]
struct ClipVisionSection {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_channels: usize,
    image_size: usize,
    patch_size: usize,
    hidden_act: Activation,
    layer_norm_eps: f64,
}

impl Default for ClipVisionSection {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl ClipVisionSection {
    fn into_vit(self) -> VitConfig {
        VitConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            channels: self.num_channels,
            image_size: self.image_size,
            patch_size: self.patch_size,
            activation: self.hidden_act,
            eps: self.layer_norm_eps,
        }
    }
}

/// The keys of a `Dinov2Model` config.json used here; absent keys take
/// transformers' defaults (ViT-B/16 at 224 px).
#[derive(Deserialize)]
#[serde(default)]
struct DinoConfigFile {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    mlp_ratio: usize,
    num_channels: usize,
    image_size: usize,
    patch_size: usize,
    hidden_act: Activation,
    layer_norm_eps: f64,
    use_swiglu_ffn: bool,
}

impl Default for DinoConfigFile {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            mlp_ratio: 4,
            num_channels: 3,
            image_size: 224,
            patch_size: 16,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-6,
            use_swiglu_ffn: false,
        }
    }
}

impl DinoConfigFile {
    fn into_vit(self) -> VitConfig {
        VitConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.hidden_size * self.mlp_ratio,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            channels: self.num_channels,
            image_size: self.image_size,
            patch_size: self.patch_size,
            activation: self.hidden_act,
            eps: self.layer_norm_eps,
        }
    }
}
