//! The autoencoder (diffusers' `AutoencoderKL`): images to latents and back.
//! It is never trained, but shares the UNet's building blocks.

use std::path::Path;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::fused::attention;
use super::nn::{Conv2d, GroupNorm, Linear};
use super::resnet::{Downsample, ResnetBlock, ResnetShape, Upsample};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    /// Latents are multiplied by this before the UNet sees them.
    #[serde(default = "sd_scaling")]
    pub scaling_factor: f64,
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
    /// Run in f32 when the model is loaded in f16 (SDXL's VAE overflows f16).
    #[serde(default = "yes")]
    pub force_upcast: bool,
}

fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn thirty_two() -> usize {
    32
}
fn sd_scaling() -> f64 {
    0.18215
}
fn yes() -> bool {
    true
}

impl VaeConfig {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        super::read_json_config(path)
    }

    /// How many pixels one latent covers along each side.
    pub fn spatial_factor(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}

/// Single-head self-attention over the pixels, with a residual.
#[derive(Debug, Clone)]
struct PixelAttention {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl PixelAttention {
    fn load(vb: VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        Ok(Self {
            group_norm: GroupNorm::load(vb.pp("group_norm"), groups, channels, 1e-6)?,
            to_q: Linear::load(vb.pp("to_q"), channels, channels, true)?,
            to_k: Linear::load(vb.pp("to_k"), channels, channels, true)?,
            to_v: Linear::load(vb.pp("to_v"), channels, channels, true)?,
            to_out: Linear::load(vb.pp("to_out.0"), channels, channels, true)?,
        })
    }
}

impl Module for PixelAttention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, channels, height, width) = x.dims4()?;
        let tokens = self.group_norm.forward(x)?.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        let attended =
            attention(&self.to_q.forward(&tokens)?, &self.to_k.forward(&tokens)?, &self.to_v.forward(&tokens)?, false)?;
        let h = self.to_out.forward(&attended)?.transpose(1, 2)?.reshape((batch, channels, height, width))?;
        h + x
    }
}

#[derive(Debug, Clone)]
struct MidBlock {
    first: ResnetBlock,
    attention: Option<PixelAttention>,
    second: ResnetBlock,
}

impl MidBlock {
    fn load(vb: VarBuilder, config: &VaeConfig) -> Result<Self> {
        let channels = *config.block_out_channels.last().expect("checked non-empty");
        let shape = resnet_shape(config, channels, channels);
        let attention = if config.mid_block_add_attention {
            Some(PixelAttention::load(vb.pp("attentions.0"), channels, config.norm_num_groups)?)
        } else {
            None
        };
        Ok(Self {
            first: ResnetBlock::load(vb.pp("resnets.0"), shape)?,
            attention,
            second: ResnetBlock::load(vb.pp("resnets.1"), shape)?,
        })
    }
}

impl Module for MidBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.first.forward(x, None)?;
        if let Some(attention) = &self.attention {
            h = attention.forward(&h)?;
        }
        self.second.forward(&h, None)
    }
}

fn resnet_shape(config: &VaeConfig, in_channels: usize, out_channels: usize) -> ResnetShape {
    ResnetShape { in_channels, out_channels, time_embedding: None, groups: config.norm_num_groups, eps: 1e-6 }
}

/// The latent distribution of an image: a diagonal Gaussian.
#[derive(Debug, Clone)]
pub struct LatentDistribution {
    pub mean: Tensor,
    /// Clamped to [−30, 20] as diffusers does.
    pub logvar: Tensor,
}

impl LatentDistribution {
    /// mean + σ·ε for standard-normal `noise` of the mean's shape.
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        &self.mean + (self.logvar.clone() * 0.5)?.exp()?.mul(noise)?
    }
}

#[derive(Debug, Clone)]
pub struct Vae {
    encoder_conv_in: Conv2d,
    encoder_levels: Vec<(Vec<ResnetBlock>, Option<Downsample>)>,
    encoder_mid: MidBlock,
    encoder_norm_out: GroupNorm,
    encoder_conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    decoder_conv_in: Conv2d,
    decoder_mid: MidBlock,
    decoder_levels: Vec<(Vec<ResnetBlock>, Option<Upsample>)>,
    decoder_norm_out: GroupNorm,
    decoder_conv_out: Conv2d,
    pub config: VaeConfig,
}

impl Vae {
    pub fn load(vb: VarBuilder, config: &VaeConfig) -> Result<Self> {
        let channels = &config.block_out_channels;
        if channels.is_empty() {
            candle_core::bail!("the VAE config lists no block_out_channels");
        }
        let (levels, groups, latent) = (channels.len(), config.norm_num_groups, config.latent_channels);
        let last = channels[levels - 1];

        let encoder = vb.pp("encoder");
        let mut encoder_levels = Vec::with_capacity(levels);
        let mut out_channels = channels[0];
        for (i, &level_channels) in channels.iter().enumerate() {
            let vb = encoder.pp(format!("down_blocks.{i}"));
            let in_channels = out_channels;
            out_channels = level_channels;
            let resnets = (0..config.layers_per_block)
                .map(|j| {
                    let from = if j == 0 { in_channels } else { out_channels };
                    ResnetBlock::load(vb.pp(format!("resnets.{j}")), resnet_shape(config, from, out_channels))
                })
                .collect::<Result<Vec<_>>>()?;
            let downsample = if i + 1 < levels {
                Some(Downsample::load(vb.pp("downsamplers.0"), out_channels, true)?)
            } else {
                None
            };
            encoder_levels.push((resnets, downsample));
        }

        let decoder = vb.pp("decoder");
        let mut decoder_levels = Vec::with_capacity(levels);
        let mut out_channels = last;
        for (i, &level_channels) in channels.iter().rev().enumerate() {
            let vb = decoder.pp(format!("up_blocks.{i}"));
            let in_channels = out_channels;
            out_channels = level_channels;
            let resnets = (0..=config.layers_per_block)
                .map(|j| {
                    let from = if j == 0 { in_channels } else { out_channels };
                    ResnetBlock::load(vb.pp(format!("resnets.{j}")), resnet_shape(config, from, out_channels))
                })
                .collect::<Result<Vec<_>>>()?;
            let upsample =
                if i + 1 < levels { Some(Upsample::load(vb.pp("upsamplers.0"), out_channels)?) } else { None };
            decoder_levels.push((resnets, upsample));
        }

        let quant = |name: &str, size: usize, present: bool| -> Result<Option<Conv2d>> {
            if present { Ok(Some(Conv2d::load(vb.pp(name), (size, size), 1, 1, 0)?)) } else { Ok(None) }
        };
        Ok(Self {
            encoder_conv_in: Conv2d::load(encoder.pp("conv_in"), (config.in_channels, channels[0]), 3, 1, 1)?,
            encoder_levels,
            encoder_mid: MidBlock::load(encoder.pp("mid_block"), config)?,
            encoder_norm_out: GroupNorm::load(encoder.pp("conv_norm_out"), groups, last, 1e-6)?,
            encoder_conv_out: Conv2d::load(encoder.pp("conv_out"), (last, 2 * latent), 3, 1, 1)?,
            quant_conv: quant("quant_conv", 2 * latent, config.use_quant_conv)?,
            post_quant_conv: quant("post_quant_conv", latent, config.use_post_quant_conv)?,
            decoder_conv_in: Conv2d::load(decoder.pp("conv_in"), (latent, last), 3, 1, 1)?,
            decoder_mid: MidBlock::load(decoder.pp("mid_block"), config)?,
            decoder_levels,
            decoder_norm_out: GroupNorm::load(decoder.pp("conv_norm_out"), groups, channels[0], 1e-6)?,
            decoder_conv_out: Conv2d::load(decoder.pp("conv_out"), (channels[0], config.out_channels), 3, 1, 1)?,
            config: config.clone(),
        })
    }

    pub fn dtype(&self) -> DType {
        self.encoder_conv_in.weight.dtype()
    }

    /// Encodes images `[batch, 3, H, W]` in [−1, 1] (H, W divisible by the
    /// spatial factor); the result is unscaled.
    pub fn encode(&self, images: &Tensor) -> Result<LatentDistribution> {
        let mut h = self.encoder_conv_in.forward(&images.to_dtype(self.dtype())?)?;
        for (resnets, downsample) in &self.encoder_levels {
            for resnet in resnets {
                h = resnet.forward(&h, None)?;
            }
            if let Some(downsample) = downsample {
                h = downsample.forward(&h)?;
            }
        }
        h = self.encoder_mid.forward(&h)?;
        h = self.encoder_conv_out.forward(&self.encoder_norm_out.forward_silu(&h)?)?;
        if let Some(quant) = &self.quant_conv {
            h = quant.forward(&h)?;
        }
        let latent = self.config.latent_channels;
        Ok(LatentDistribution {
            mean: h.narrow(1, 0, latent)?,
            logvar: h.narrow(1, latent, latent)?.clamp(-30f32, 20f32)?,
        })
    }

    /// Decodes raw latents (already divided by the scaling factor) to images in about [−1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let mut h = latents.to_dtype(self.dtype())?;
        if let Some(post_quant) = &self.post_quant_conv {
            h = post_quant.forward(&h)?;
        }
        h = self.decoder_mid.forward(&self.decoder_conv_in.forward(&h)?)?;
        for (resnets, upsample) in &self.decoder_levels {
            for resnet in resnets {
                h = resnet.forward(&h, None)?;
            }
            if let Some(upsample) = upsample {
                h = upsample.forward(&h)?;
            }
        }
        self.decoder_conv_out.forward(&self.decoder_norm_out.forward_silu(&h)?)
    }
}
