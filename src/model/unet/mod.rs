//! The denoising UNet (diffusers' `UNet2DConditionModel`): SD 1.x, 2.x and
//! SDXL layouts, driven by the model's own `config.json`, with weight names
//! as diffusers stores them. Every op backpropagates and frozen weights get
//! no gradient (see `nn`), so LoRA adapters in its transformers can be trained.

pub mod config;
pub mod transformer;

use std::sync::Arc;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

pub use config::{PerBlock, UNetConfig};
use transformer::{SpatialTransformer, TransformerShape};

use super::checkpoint;
use super::lora::{LoraHost, LoraLayers, join};
use super::nn::{Conv2d, GroupNorm, Linear};
use super::resnet::{Downsample, ResnetBlock, ResnetShape, Upsample};

/// Sinusoidal embedding of timesteps `[batch]` → `[batch, width]`, as
/// diffusers' `Timesteps` computes it (f32 throughout).
pub fn timestep_embedding(timesteps: &Tensor, width: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Result<Tensor> {
    let half = width / 2;
    let exponent = (Tensor::arange(0u32, half as u32, timesteps.device())?.to_dtype(DType::F32)?
        * (-(10000f64.ln()) / (half as f64 - freq_shift)))?;
    let arguments = timesteps.to_dtype(DType::F32)?.unsqueeze(1)?.broadcast_mul(&exponent.exp()?.unsqueeze(0)?)?;
    let (sin, cos) = (arguments.sin()?, arguments.cos()?);
    if flip_sin_to_cos { Tensor::cat(&[cos, sin], 1) } else { Tensor::cat(&[sin, cos], 1) }
}

/// Linear → SiLU → Linear on a sinusoidal embedding.
#[derive(Debug, Clone)]
struct TimestepMlp {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepMlp {
    fn load(vb: VarBuilder, in_features: usize, width: usize) -> Result<Self> {
        Ok(Self {
            linear_1: Linear::load(vb.pp("linear_1"), in_features, width, true)?,
            linear_2: Linear::load(vb.pp("linear_2"), width, width, true)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(x)?.silu()?)
    }
}

/// One resolution level: residual blocks, each optionally followed by a
/// spatial transformer, then (except at the end) a resolution change.
#[derive(Debug, Clone)]
struct Level<S> {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    sampler: Option<S>,
}

impl<S> Level<S> {
    fn lora_layers<'a>(&'a mut self, prefix: &str, out: &mut LoraLayers<'a>) {
        for (j, attention) in self.attentions.iter_mut().enumerate() {
            attention.lora_layers(&join(prefix, &format!("attentions.{j}")), out);
        }
    }
}

/// SDXL's extra conditioning: the pooled text embedding and the size/crop ids.
#[derive(Debug, Clone)]
pub struct AddedConditioning {
    /// `[batch, 1280]`: the second text encoder's projected pooled output.
    pub text_embeds: Tensor,
    /// `[batch, 6]`: original height, width, crop top, left, target height, width.
    pub time_ids: Tensor,
}

#[derive(Debug, Clone)]
pub struct UNet {
    conv_in: Conv2d,
    time_embedding: TimestepMlp,
    add_embedding: Option<TimestepMlp>,
    down_blocks: Vec<Level<Downsample>>,
    mid_resnets: [ResnetBlock; 2],
    mid_attention: SpatialTransformer,
    up_blocks: Vec<Level<Upsample>>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    pub config: UNetConfig,
    /// Recompute each ResNet and transformer block in backward instead of
    /// keeping its activations (`[train] gradient_checkpointing`).
    pub gradient_checkpointing: bool,
}

impl UNet {
    pub fn load(vb: VarBuilder, config: &UNetConfig) -> Result<Self> {
        config.check().map_err(candle_core::Error::msg)?;
        let channels = &config.block_out_channels;
        let levels = channels.len();
        let temb = config.time_embedding_width();
        let resnet = |in_channels, out_channels| ResnetShape {
            in_channels,
            out_channels,
            time_embedding: Some(temb),
            groups: config.norm_num_groups,
            eps: config.norm_eps,
        };
        let transformer = |channels, heads, depth| TransformerShape {
            channels,
            context_dim: config.cross_attention_dim,
            heads,
            depth,
            groups: config.norm_num_groups,
            linear_projection: config.use_linear_projection,
        };

        let mut down_blocks = Vec::with_capacity(levels);
        let mut out_channels = channels[0];
        for (i, kind) in config.down_block_types.iter().enumerate() {
            let vb = vb.pp(format!("down_blocks.{i}"));
            let in_channels = out_channels;
            out_channels = channels[i];
            let mut level = Level { resnets: vec![], attentions: vec![], sampler: None };
            for j in 0..config.layers_per_block {
                let from = if j == 0 { in_channels } else { out_channels };
                level.resnets.push(ResnetBlock::load(vb.pp(format!("resnets.{j}")), resnet(from, out_channels))?);
                if kind.starts_with("CrossAttn") {
                    let shape = transformer(out_channels, config.heads(i), config.transformer_layers_per_block.get(i));
                    level.attentions.push(SpatialTransformer::load(vb.pp(format!("attentions.{j}")), shape)?);
                }
            }
            if i + 1 < levels {
                level.sampler = Some(Downsample::load(vb.pp("downsamplers.0"), out_channels, false)?);
            }
            down_blocks.push(level);
        }

        let last = channels[levels - 1];
        let mid = vb.pp("mid_block");
        let mid_shape =
            transformer(last, config.heads(levels - 1), config.transformer_layers_per_block.get(levels - 1));
        let mid_resnets = [
            ResnetBlock::load(mid.pp("resnets.0"), resnet(last, last))?,
            ResnetBlock::load(mid.pp("resnets.1"), resnet(last, last))?,
        ];
        let mid_attention = SpatialTransformer::load(mid.pp("attentions.0"), mid_shape)?;

        let reversed: Vec<usize> = channels.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(levels);
        let mut out_channels = reversed[0];
        for (i, kind) in config.up_block_types.iter().enumerate() {
            let vb = vb.pp(format!("up_blocks.{i}"));
            let previous = out_channels;
            out_channels = reversed[i];
            let skip_from_below = reversed[(i + 1).min(levels - 1)];
            let mut level = Level { resnets: vec![], attentions: vec![], sampler: None };
            let layers = config.layers_per_block + 1;
            for j in 0..layers {
                let skip = if j + 1 == layers { skip_from_below } else { out_channels };
                let from = if j == 0 { previous } else { out_channels };
                level
                    .resnets
                    .push(ResnetBlock::load(vb.pp(format!("resnets.{j}")), resnet(from + skip, out_channels))?);
                if kind.starts_with("CrossAttn") {
                    let shape =
                        transformer(out_channels, config.heads(levels - 1 - i), config.up_transformer_layers(i));
                    level.attentions.push(SpatialTransformer::load(vb.pp(format!("attentions.{j}")), shape)?);
                }
            }
            if i + 1 < levels {
                level.sampler = Some(Upsample::load(vb.pp("upsamplers.0"), out_channels)?);
            }
            up_blocks.push(level);
        }

        let add_embedding = match (config.addition_time_embed_dim, config.projection_class_embeddings_input_dim) {
            (Some(_), Some(input)) if config.addition_embed_type.is_some() => {
                Some(TimestepMlp::load(vb.pp("add_embedding"), input, temb)?)
            }
            _ => None,
        };
        Ok(Self {
            conv_in: Conv2d::load(vb.pp("conv_in"), (config.in_channels, channels[0]), 3, 1, 1)?,
            time_embedding: TimestepMlp::load(vb.pp("time_embedding"), channels[0], temb)?,
            add_embedding,
            down_blocks,
            mid_resnets,
            mid_attention,
            up_blocks,
            conv_norm_out: GroupNorm::load(
                vb.pp("conv_norm_out"),
                config.norm_num_groups,
                channels[0],
                config.norm_eps,
            )?,
            conv_out: Conv2d::load(vb.pp("conv_out"), (channels[0], config.out_channels), 3, 1, 1)?,
            config: config.clone(),
            gradient_checkpointing: false,
        })
    }

    pub fn dtype(&self) -> DType {
        self.conv_in.weight.dtype()
    }

    /// Predicts noise (or v) for `sample` `[batch, 4, h, w]` at `timesteps`
    /// `[batch]`, attending to `context` `[batch, tokens, cross_attention_dim]`.
    pub fn forward(
        &self,
        sample: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        added: Option<&AddedConditioning>,
    ) -> Result<Tensor> {
        let (_, _, height, width) = sample.dims4()?;
        let factor = 1 << self.config.downsamplings();
        if !height.is_multiple_of(factor) || !width.is_multiple_of(factor) {
            candle_core::bail!("latent size {height}×{width} must be divisible by {factor} for this UNet");
        }
        let dtype = self.dtype();
        let config = &self.config;
        let sinusoid =
            timestep_embedding(timesteps, config.block_out_channels[0], config.flip_sin_to_cos, config.freq_shift)?;
        let mut embedding = self.time_embedding.forward(&sinusoid.to_dtype(dtype)?)?;
        match (&self.add_embedding, added) {
            (Some(add_embedding), Some(added)) => {
                let width = config.addition_time_embed_dim.unwrap_or(256);
                let batch = added.time_ids.dim(0)?;
                let ids = timestep_embedding(
                    &added.time_ids.flatten_all()?,
                    width,
                    config.flip_sin_to_cos,
                    config.freq_shift,
                )?
                .reshape((batch, ()))?;
                let input = Tensor::cat(&[added.text_embeds.to_dtype(DType::F32)?, ids], 1)?.to_dtype(dtype)?;
                embedding = (embedding + add_embedding.forward(&input)?)?;
            }
            (Some(_), None) => candle_core::bail!("this UNet (SDXL) needs pooled text embeddings and size ids"),
            (None, _) => {}
        }
        let context = context.to_dtype(dtype)?;

        let mut h = self.conv_in.forward(&sample.to_dtype(dtype)?)?;
        let mut skips = vec![h.clone()];
        for level in &self.down_blocks {
            for (j, resnet) in level.resnets.iter().enumerate() {
                h = self.resnet(resnet, &h, &embedding)?;
                if let Some(attention) = level.attentions.get(j) {
                    h = self.transformer(attention, &h, &context)?;
                }
                skips.push(h.clone());
            }
            if let Some(downsample) = &level.sampler {
                h = downsample.forward(&h)?;
                skips.push(h.clone());
            }
        }

        h = self.resnet(&self.mid_resnets[0], &h, &embedding)?;
        h = self.transformer(&self.mid_attention, &h, &context)?;
        h = self.resnet(&self.mid_resnets[1], &h, &embedding)?;

        for level in &self.up_blocks {
            for (j, resnet) in level.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip per down resnet and sampler");
                h = self.resnet(resnet, &Tensor::cat(&[&h, &skip], 1)?, &embedding)?;
                if let Some(attention) = level.attentions.get(j) {
                    h = self.transformer(attention, &h, &context)?;
                }
            }
            if let Some(upsample) = &level.sampler {
                h = upsample.forward(&h)?;
            }
        }
        self.conv_out.forward(&self.conv_norm_out.forward_silu(&h)?)
    }
}

impl UNet {
    fn resnet(&self, resnet: &ResnetBlock, h: &Tensor, embedding: &Tensor) -> Result<Tensor> {
        if !self.gradient_checkpointing {
            return resnet.forward(h, Some(embedding));
        }
        let block = resnet.clone();
        checkpoint::checkpointed(h, Some(embedding), vec![], Arc::new(move |x, embedding| block.forward(x, embedding)))
    }

    fn transformer(&self, transformer: &SpatialTransformer, h: &Tensor, context: &Tensor) -> Result<Tensor> {
        if !self.gradient_checkpointing {
            return transformer.forward(h, context);
        }
        let block = transformer.clone();
        let run = move |x: &Tensor, context: Option<&Tensor>| match context {
            Some(context) => block.forward(x, context),
            None => candle_core::bail!("a checkpointed transformer block lost its text context"),
        };
        checkpoint::checkpointed(h, Some(context), transformer.trainable_tensors(), Arc::new(run))
    }
}

impl LoraHost for UNet {
    fn lora_layers<'a>(&'a mut self, prefix: &str, out: &mut LoraLayers<'a>) {
        for (i, level) in self.down_blocks.iter_mut().enumerate() {
            level.lora_layers(&join(prefix, &format!("down_blocks.{i}")), out);
        }
        self.mid_attention.lora_layers(&join(prefix, "mid_block.attentions.0"), out);
        for (i, level) in self.up_blocks.iter_mut().enumerate() {
            level.lora_layers(&join(prefix, &format!("up_blocks.{i}")), out);
        }
    }
}
