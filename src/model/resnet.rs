//! The residual block shared by the UNet and the VAE (diffusers'
//! `ResnetBlock2D`), and the strided convolutions between resolutions.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::nn::{Conv2d, GroupNorm, Linear, upsample_nearest_2x};

/// GroupNorm → SiLU → 3×3 conv, twice, with the timestep embedding added
/// in between (UNet only) and a 1×1 shortcut when the channel count changes.
#[derive(Debug, Clone)]
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

/// Shapes of a residual block.
#[derive(Debug, Clone, Copy)]
pub struct ResnetShape {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Width of the timestep embedding; `None` in the VAE.
    pub time_embedding: Option<usize>,
    pub groups: usize,
    pub eps: f64,
}

impl ResnetBlock {
    pub fn load(vb: VarBuilder, shape: ResnetShape) -> Result<Self> {
        let ResnetShape { in_channels, out_channels, time_embedding, groups, eps } = shape;
        let time_emb_proj = match time_embedding {
            Some(width) => Some(Linear::load(vb.pp("time_emb_proj"), width, out_channels, true)?),
            None => None,
        };
        let conv_shortcut = if in_channels == out_channels {
            None
        } else {
            Some(Conv2d::load(vb.pp("conv_shortcut"), (in_channels, out_channels), 1, 1, 0)?)
        };
        Ok(Self {
            norm1: GroupNorm::load(vb.pp("norm1"), groups, in_channels, eps)?,
            conv1: Conv2d::load(vb.pp("conv1"), (in_channels, out_channels), 3, 1, 1)?,
            time_emb_proj,
            norm2: GroupNorm::load(vb.pp("norm2"), groups, out_channels, eps)?,
            conv2: Conv2d::load(vb.pp("conv2"), (out_channels, out_channels), 3, 1, 1)?,
            conv_shortcut,
        })
    }

    pub fn forward(&self, x: &Tensor, time_embedding: Option<&Tensor>) -> Result<Tensor> {
        let mut h = self.conv1.forward(&self.norm1.forward_silu(x)?)?;
        if let (Some(projection), Some(embedding)) = (&self.time_emb_proj, time_embedding) {
            let t = projection.forward(&embedding.silu()?)?;
            h = h.broadcast_add(&t.unsqueeze(2)?.unsqueeze(3)?)?;
        }
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        match &self.conv_shortcut {
            Some(shortcut) => shortcut.forward(x)? + h,
            None => x + h,
        }
    }
}

/// Halves the resolution with a stride-2 3×3 convolution. The VAE's encoder
/// pads only the bottom and right by one first (diffusers' `padding=0`).
#[derive(Debug, Clone)]
pub struct Downsample {
    conv: Conv2d,
    pad_bottom_right: bool,
}

impl Downsample {
    pub fn load(vb: VarBuilder, channels: usize, pad_bottom_right: bool) -> Result<Self> {
        let padding = if pad_bottom_right { 0 } else { 1 };
        Ok(Self::from_conv(Conv2d::load(vb.pp("conv"), (channels, channels), 3, 2, padding)?, pad_bottom_right))
    }

    pub fn from_conv(conv: Conv2d, pad_bottom_right: bool) -> Self {
        Self { conv, pad_bottom_right }
    }
}

impl Module for Downsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.pad_bottom_right {
            self.conv.forward(&x.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?)
        } else {
            self.conv.forward(x)
        }
    }
}

/// Doubles the resolution (nearest neighbour) and smooths with a 3×3 conv.
#[derive(Debug, Clone)]
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub fn load(vb: VarBuilder, channels: usize) -> Result<Self> {
        Ok(Self { conv: Conv2d::load(vb.pp("conv"), (channels, channels), 3, 1, 1)? })
    }
}

impl Module for Upsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(&upsample_nearest_2x(x)?)
    }
}
