//! A whole Stable Diffusion model loaded for use: tokenizers, text encoders,
//! UNet, VAE and noise schedule, from a diffusers folder, a single-file
//! checkpoint or the built-in tiny model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device, Tensor};

use super::Family;
use super::clip::{Activation, ClipTextConfig, ClipTextModel};
use super::lora::{LoraHost, LoraLayers};
use super::schedule::{PredictionType, SchedulerConfig};
use super::single_file;
use super::tokenizer::{ClipTokenizer, Padding};
use super::unet::{AddedConditioning, UNet, UNetConfig};
use super::vae::{Vae, VaeConfig};
use super::weights::{WeightFiles, WeightSource, refuse_pickle};

/// How to load: precision, device, and for single files what the weights
/// cannot say.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub dtype: DType,
    pub device: Device,
    /// A diffusers folder whose configs (and tokenizer) replace the ones a
    /// single-file checkpoint's shapes imply: needed for non-standard models,
    /// since attention head counts are not stored in the weights.
    pub config_folder: Option<PathBuf>,
    /// Overrides the prediction type (SD2 files do not record it).
    pub prediction: Option<PredictionType>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { dtype: DType::F32, device: Device::Cpu, config_folder: None, prediction: None }
    }
}

/// One tokenizer and its text encoder.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    pub tokenizer: std::sync::Arc<ClipTokenizer>,
    pub model: ClipTextModel,
}

/// The UNet's conditioning for a batch of prompts.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// `[batch, 77, cross_attention_dim]`.
    pub context: Tensor,
    /// SDXL's pooled text and size ids.
    pub added: Option<AddedConditioning>,
}

impl Conditioning {
    /// Stacks two conditionings along the batch (unconditional first, for guidance).
    pub fn concat(first: &Self, second: &Self) -> candle_core::Result<Self> {
        let added = match (&first.added, &second.added) {
            (Some(a), Some(b)) => Some(AddedConditioning {
                text_embeds: Tensor::cat(&[&a.text_embeds, &b.text_embeds], 0)?,
                time_ids: Tensor::cat(&[&a.time_ids, &b.time_ids], 0)?,
            }),
            _ => None,
        };
        Ok(Self { context: Tensor::cat(&[&first.context, &second.context], 0)?, added })
    }
}

#[derive(Debug, Clone)]
pub struct StableDiffusion {
    pub family: Family,
    pub text_encoders: Vec<TextEncoder>,
    pub unet: UNet,
    pub vae: Vae,
    pub scheduler: SchedulerConfig,
    pub device: Device,
    /// Where it came from, for messages and LoRA metadata.
    pub origin: String,
}

/// The files holding a diffusers part's weights, preferring safetensors,
/// full precision, then fp16 variants, then sharded indexes.
pub(crate) fn part_weights(folder: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    for name in [format!("{stem}.safetensors"), format!("{stem}.fp16.safetensors")] {
        let path = folder.join(&name);
        if path.is_file() {
            return Ok(vec![path]);
        }
    }
    let index = folder.join(format!("{stem}.safetensors.index.json"));
    if index.is_file() {
        let text = std::fs::read_to_string(&index).with_context(|| format!("cannot read {}", index.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}", index.display()))?;
        let mut files: Vec<PathBuf> = json["weight_map"]
            .as_object()
            .ok_or_else(|| anyhow!("{}: no weight_map", index.display()))?
            .values()
            .filter_map(|v| v.as_str().map(|name| folder.join(name)))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    // transformers names its pickle `pytorch_model.bin` (text encoders in a
    // diffusers folder, captioning models), diffusers `{stem}.bin`.
    let pickles = ["bin", "ckpt", "pt"].map(|extension| format!("{stem}.{extension}"));
    for name in pickles.iter().chain([&format!("pytorch_{stem}.bin")]) {
        let pickle = folder.join(name);
        if pickle.is_file() {
            refuse_pickle(&pickle)?;
        }
    }
    bail!("{}: no {stem}.safetensors", folder.display())
}

/// A diffusers model's family, from its configs: SDXL has two text encoders,
/// SD2 a 1024-wide context or OpenCLIP's exact GELU.
pub(crate) fn diffusers_family(encoders: usize, cross_attention_dim: usize, first_activation: Activation) -> Family {
    match (encoders, cross_attention_dim) {
        (2, _) => Family::Sdxl,
        (_, 1024) => Family::Sd2,
        _ if first_activation == Activation::Gelu => Family::Sd2,
        _ => Family::Sd1,
    }
}

fn tokenizer_padding(folder: &Path) -> Padding {
    let config: Option<serde_json::Value> = std::fs::read_to_string(folder.join("tokenizer_config.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let pad = config
        .as_ref()
        .and_then(|c| c.get("pad_token"))
        .and_then(|p| p.as_str().or_else(|| p.get("content")?.as_str()));
    if pad == Some("!") { Padding::Exclamation } else { Padding::EndOfText }
}

fn load_tokenizer(folder: &Path) -> Result<ClipTokenizer> {
    Ok(ClipTokenizer::from_folder(folder, tokenizer_padding(folder))?)
}

/// The VAE's dtype: f32 instead of f16 when its config asks to be upcast,
/// as diffusers does (f16 overflows in SDXL's VAE).
fn vae_dtype(config: &VaeConfig, options: &LoadOptions) -> DType {
    if options.dtype == DType::F16 && config.force_upcast { DType::F32 } else { options.dtype }
}

fn load_text_encoder(source: WeightSource, config: &ClipTextConfig, options: &LoadOptions) -> Result<ClipTextModel> {
    Ok(ClipTextModel::load(source.var_builder(options.dtype, &options.device), config)?)
}

/// What would otherwise only fail inside the first UNet call, as a matrix
/// product of the wrong width: the text encoders' width against the UNet's
/// cross-attention, SDXL's pooled text and size ids against its add
/// embedding, the VAE's latent channels against the UNet's. Messages name
/// the UNet config keys; the caller says which file they came from.
fn check_parts_agree(unet: &UNetConfig, text_encoders: &[TextEncoder], vae: &VaeConfig) -> Result<()> {
    let widths: Vec<usize> = text_encoders.iter().map(|e| e.model.config.hidden_size).collect();
    let text_width: usize = widths.iter().sum();
    if text_width != unet.cross_attention_dim {
        let parts = widths.iter().map(usize::to_string).collect::<Vec<_>>().join(" + ");
        bail!(
            "`cross_attention_dim` is {}, but the text encoders give {text_width}-wide states ({parts})",
            unet.cross_attention_dim
        );
    }
    if let (Some(time), Some(input)) = (unet.addition_time_embed_dim, unet.projection_class_embeddings_input_dim) {
        let pooled = text_encoders.last().map_or(0, |e| e.model.pooled_width());
        if pooled + 6 * time != input {
            bail!(
                "`projection_class_embeddings_input_dim` is {input}, but the add embedding gets the pooled text \
                 ({pooled} wide) and six size ids of `addition_time_embed_dim` {time}: {}",
                pooled + 6 * time
            );
        }
    }
    if vae.latent_channels != unet.in_channels || vae.latent_channels != unet.out_channels {
        bail!(
            "`in_channels`/`out_channels` are {}/{}, but the VAE's latents have {} channels",
            unet.in_channels,
            unet.out_channels,
            vae.latent_channels
        );
    }
    Ok(())
}

impl StableDiffusion {
    /// Loads a diffusers folder or a single-file `.safetensors` checkpoint.
    pub fn load(path: &Path, options: &LoadOptions) -> Result<Self> {
        refuse_pickle(path)?;
        if options.dtype == DType::BF16 && options.device.is_cpu() {
            bail!(
                "bf16 needs a CUDA GPU (candle's CPU backend has no bf16 matrix multiply); use f32 or f16 on the CPU"
            );
        }
        if path.is_dir() {
            Self::from_diffusers(path, options)
        } else if path.is_file() {
            Self::from_single_file(path, options)
        } else {
            bail!("{}: no such model file or folder", path.display())
        }
    }

    fn part(folder: &Path, name: &str) -> Result<PathBuf> {
        let part = folder.join(name);
        if !part.is_dir() {
            bail!(
                "{}: missing `{name}/` (a diffusers model folder has unet/, vae/, text_encoder/, tokenizer/ and scheduler/)",
                folder.display()
            );
        }
        Ok(part)
    }

    pub fn from_diffusers(folder: &Path, options: &LoadOptions) -> Result<Self> {
        let open = |part: &Path, stem: &str| -> Result<WeightSource> {
            Ok(WeightSource::direct(WeightFiles::open(&part_weights(part, stem)?)?))
        };
        let unet_dir = Self::part(folder, "unet")?;
        let unet_config = UNetConfig::from_file(&unet_dir.join("config.json"))?;
        let unet = UNet::load(
            open(&unet_dir, "diffusion_pytorch_model")?.var_builder(options.dtype, &options.device),
            &unet_config,
        )?;
        let vae_dir = Self::part(folder, "vae")?;
        let vae_config = VaeConfig::from_file(&vae_dir.join("config.json"))?;
        let vae = Vae::load(
            open(&vae_dir, "diffusion_pytorch_model")?.var_builder(vae_dtype(&vae_config, options), &options.device),
            &vae_config,
        )?;

        let mut text_encoders = Vec::new();
        for (encoder, tokenizer) in [("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")] {
            if encoder.ends_with("_2") && !folder.join(encoder).is_dir() {
                break;
            }
            let dir = Self::part(folder, encoder)?;
            let te_config = ClipTextConfig::from_file(&dir.join("config.json"))?;
            let model = load_text_encoder(open(&dir, "model")?, &te_config, options)?;
            let tokenizer = load_tokenizer(&Self::part(folder, tokenizer)?)?;
            text_encoders.push(TextEncoder { tokenizer: tokenizer.into(), model });
        }

        check_parts_agree(&unet_config, &text_encoders, &vae_config)
            .with_context(|| unet_dir.join("config.json").display().to_string())?;
        let mut scheduler =
            SchedulerConfig::from_file(&Self::part(folder, "scheduler")?.join("scheduler_config.json"))?;
        if let Some(prediction) = options.prediction {
            scheduler.prediction_type = prediction;
        }
        let family = diffusers_family(
            text_encoders.len(),
            unet_config.cross_attention_dim,
            text_encoders[0].model.config.hidden_act,
        );
        Ok(Self {
            family,
            text_encoders,
            unet,
            vae,
            scheduler,
            device: options.device.clone(),
            origin: folder.display().to_string(),
        })
    }

    pub fn from_single_file(file: &Path, options: &LoadOptions) -> Result<Self> {
        let files = WeightFiles::open(&[file.to_path_buf()])?;
        let shapes = files.shapes();
        let in_file = || file.display().to_string();
        let family = single_file::detect_family(&shapes).with_context(in_file)?;
        let overrides = options.config_folder.as_deref();
        let override_config = |part: &str, name: &str| overrides.map(|folder| folder.join(part).join(name));

        let (mut unet_config, unet_names) = single_file::unet(&shapes, family).with_context(in_file)?;
        if let Some(path) = override_config("unet", "config.json") {
            unet_config = UNetConfig::from_file(&path)?;
        }
        let unet = UNet::load(
            WeightSource::translated(files.clone(), unet_names, "model.diffusion_model.*")
                .var_builder(options.dtype, &options.device),
            &unet_config,
        )?;
        let (mut vae_config, vae_names) = single_file::vae(&shapes, family).with_context(in_file)?;
        if let Some(path) = override_config("vae", "config.json") {
            vae_config = VaeConfig::from_file(&path)?;
        }
        let vae = Vae::load(
            WeightSource::translated(files.clone(), vae_names, "first_stage_model.*")
                .var_builder(vae_dtype(&vae_config, options), &options.device),
            &vae_config,
        )?;

        let mut text_encoders = Vec::new();
        let encoders = single_file::text_encoders(&shapes, family).with_context(in_file)?;
        for (encoder, (part, tokenizer_part)) in
            encoders.into_iter().zip([("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")])
        {
            let single_file::TextEncoderNames { prefix, open_clip, config: mut te_config, names } = encoder;
            if let Some(path) = override_config(part, "config.json") {
                te_config = ClipTextConfig::from_file(&path)?;
            }
            let model = load_text_encoder(
                WeightSource::translated(files.clone(), names, &format!("{prefix}*")),
                &te_config,
                options,
            )?;
            // A single file carries no tokenizer: use the one Easel ships,
            // padded as the family's own tokenizer pads.
            let tokenizer = match overrides.map(|folder| folder.join(tokenizer_part)).filter(|dir| dir.is_dir()) {
                Some(dir) => load_tokenizer(&dir)?,
                None => ClipTokenizer::shipped(if open_clip { Padding::Exclamation } else { Padding::EndOfText }),
            };
            text_encoders.push(TextEncoder { tokenizer: tokenizer.into(), model });
        }

        check_parts_agree(&unet_config, &text_encoders, &vae_config).map_err(|e| {
            match override_config("unet", "config.json") {
                Some(path) => anyhow!("{} (with {}): {e:#}", file.display(), path.display()),
                None => anyhow!("{}: {e:#} (as inferred from the tensor shapes)", file.display()),
            }
        })?;
        let mut scheduler = match override_config("scheduler", "scheduler_config.json") {
            Some(path) => SchedulerConfig::from_file(&path)?,
            None => SchedulerConfig::stable_diffusion(),
        };
        if overrides.is_none() && family == Family::Sd2 {
            // Nothing in an SD2 file says ε or v; the 768 models most people use are v.
            scheduler.prediction_type = PredictionType::VPrediction;
        }
        if let Some(prediction) = options.prediction {
            scheduler.prediction_type = prediction;
        }
        Ok(Self {
            family,
            text_encoders,
            unet,
            vae,
            scheduler,
            device: options.device.clone(),
            origin: file.display().to_string(),
        })
    }

    /// Encodes prompts for images of `(height, width)` pixels.
    pub fn encode_prompts(&self, prompts: &[&str], size: (usize, usize)) -> Result<Conditioning> {
        let mut outputs = Vec::new();
        for encoder in &self.text_encoders {
            let ids: Vec<u32> = prompts.iter().flat_map(|p| encoder.tokenizer.encode(p)).collect();
            let ids = Tensor::from_vec(ids, (prompts.len(), super::tokenizer::CONTEXT_LENGTH), &self.device)?;
            outputs.push(encoder.model.forward(&ids)?);
        }
        if self.family != Family::Sdxl {
            return Ok(Conditioning { context: outputs[0].last_hidden_state.clone(), added: None });
        }
        // SDXL: both encoders' penultimate states side by side; the second's pooled output.
        let context = Tensor::cat(&[&outputs[0].penultimate, &outputs[1].penultimate], 2)?;
        let (height, width) = (size.0 as f32, size.1 as f32);
        let ids: Vec<f32> = prompts.iter().flat_map(|_| [height, width, 0.0, 0.0, height, width]).collect();
        let time_ids = Tensor::from_vec(ids, (prompts.len(), 6), &self.device)?;
        Ok(Conditioning {
            context,
            added: Some(AddedConditioning { text_embeds: outputs[1].pooled.clone(), time_ids }),
        })
    }

    /// Every adaptable layer, as `unet.…`, `text_encoder.…`, `text_encoder_2.…`.
    pub fn lora_layers(&mut self) -> LoraLayers<'_> {
        let mut layers = Vec::new();
        self.unet.lora_layers("unet", &mut layers);
        for (index, encoder) in self.text_encoders.iter_mut().enumerate() {
            let prefix = if index == 0 { "text_encoder" } else { "text_encoder_2" };
            encoder.model.lora_layers(prefix, &mut layers);
        }
        layers
    }

    /// Folds every attached adapter into the base weights (faster sampling;
    /// no way back except reloading).
    pub fn merge_adapters(&mut self) -> Result<()> {
        for (_, layer) in self.lora_layers() {
            layer.merge()?;
        }
        Ok(())
    }

    /// Detaches the adapters of one LoRA (by label) or of all.
    pub fn unload_adapters(&mut self, label: Option<&str>) {
        super::lora::unload(&mut self.lora_layers(), label);
    }

    /// The latent size for an image size, checking it fits the model.
    pub fn latent_size(&self, height: usize, width: usize) -> Result<(usize, usize)> {
        let factor = self.vae.config.spatial_factor() << self.unet.config.downsamplings();
        if height == 0 || width == 0 || !height.is_multiple_of(factor) || !width.is_multiple_of(factor) {
            bail!("image size {width}×{height} must be a positive multiple of {factor} for this model");
        }
        let spatial = self.vae.config.spatial_factor();
        Ok((height / spatial, width / spatial))
    }
}
