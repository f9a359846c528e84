//! The UNet's spatial transformer (diffusers' `Transformer2DModel` with
//! `BasicTransformerBlock`s): self-attention, cross-attention to the text,
//! and a GEGLU feed-forward, over the pixels of a feature map as tokens.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::fused::{attention, geglu};
use crate::model::lora::{LoraHost, LoraLayers, LoraLinear, join};
use crate::model::nn::{GroupNorm, LayerNorm};

/// Multi-head attention with LoRA-capable projections.
#[derive(Debug, Clone)]
pub struct Attention {
    to_q: LoraLinear,
    to_k: LoraLinear,
    to_v: LoraLinear,
    to_out: LoraLinear,
    heads: usize,
}

impl Attention {
    pub fn load(vb: VarBuilder, query_dim: usize, context_dim: usize, heads: usize, head_dim: usize) -> Result<Self> {
        let inner = heads * head_dim;
        Ok(Self {
            to_q: LoraLinear::load(vb.pp("to_q"), query_dim, inner, false)?,
            to_k: LoraLinear::load(vb.pp("to_k"), context_dim, inner, false)?,
            to_v: LoraLinear::load(vb.pp("to_v"), context_dim, inner, false)?,
            to_out: LoraLinear::load(vb.pp("to_out.0"), inner, query_dim, true)?,
            heads,
        })
    }

    /// `x` is `[batch, tokens, channels]`; `context` defaults to `x`.
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let context = context.unwrap_or(x);
        let heads = self.heads;
        let split = |t: Tensor| -> Result<Tensor> {
            let (batch, tokens, inner) = t.dims3()?;
            t.reshape((batch, tokens, heads, inner / heads))?.transpose(1, 2)?.reshape((
                batch * heads,
                tokens,
                inner / heads,
            ))
        };
        let q = split(self.to_q.forward(x)?)?;
        let k = split(self.to_k.forward(context)?)?;
        let v = split(self.to_v.forward(context)?)?;
        let attended = attention(&q, &k, &v, false)?;
        let (batch_heads, tokens, head_dim) = attended.dims3()?;
        let batch = batch_heads / heads;
        let merged = attended.reshape((batch, heads, tokens, head_dim))?.transpose(1, 2)?.reshape((
            batch,
            tokens,
            heads * head_dim,
        ))?;
        self.to_out.forward(&merged)
    }
}

impl LoraHost for Attention {
    fn lora_layers<'a>(&'a mut self, prefix: &str, out: &mut LoraLayers<'a>) {
        out.push((join(prefix, "to_q"), &mut self.to_q));
        out.push((join(prefix, "to_k"), &mut self.to_k));
        out.push((join(prefix, "to_v"), &mut self.to_v));
        out.push((join(prefix, "to_out.0"), &mut self.to_out));
    }
}

/// The GEGLU feed-forward: `proj` to twice 4× width, value × GELU(gate), back.
#[derive(Debug, Clone)]
struct FeedForward {
    proj: LoraLinear,
    out: LoraLinear,
}

impl FeedForward {
    fn load(vb: VarBuilder, dim: usize) -> Result<Self> {
        let inner = dim * 4;
        Ok(Self {
            proj: LoraLinear::load(vb.pp("net.0.proj"), dim, inner * 2, true)?,
            out: LoraLinear::load(vb.pp("net.2"), inner, dim, true)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.out.forward(&geglu(&self.proj.forward(x)?)?)
    }
}

#[derive(Debug, Clone)]
struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl TransformerBlock {
    fn load(vb: VarBuilder, dim: usize, context_dim: usize, heads: usize) -> Result<Self> {
        let head_dim = dim / heads;
        Ok(Self {
            norm1: LayerNorm::load(vb.pp("norm1"), dim, 1e-5)?,
            attn1: Attention::load(vb.pp("attn1"), dim, dim, heads, head_dim)?,
            norm2: LayerNorm::load(vb.pp("norm2"), dim, 1e-5)?,
            attn2: Attention::load(vb.pp("attn2"), dim, context_dim, heads, head_dim)?,
            norm3: LayerNorm::load(vb.pp("norm3"), dim, 1e-5)?,
            ff: FeedForward::load(vb.pp("ff"), dim)?,
        })
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let x = (self.attn1.forward(&self.norm1.forward(x)?, None)? + x)?;
        let x = (self.attn2.forward(&self.norm2.forward(&x)?, Some(context))? + x)?;
        self.ff.forward(&self.norm3.forward(&x)?)? + x
    }
}

/// What a spatial transformer is built from.
#[derive(Debug, Clone, Copy)]
pub struct TransformerShape {
    pub channels: usize,
    pub context_dim: usize,
    pub heads: usize,
    pub depth: usize,
    pub groups: usize,
    /// `proj_in`/`proj_out` stored as linear layers (SD2, SDXL) instead of 1×1 convs.
    pub linear_projection: bool,
}

#[derive(Debug, Clone)]
pub struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: LoraLinear,
    blocks: Vec<TransformerBlock>,
    proj_out: LoraLinear,
}

impl SpatialTransformer {
    pub fn load(vb: VarBuilder, shape: TransformerShape) -> Result<Self> {
        let c = shape.channels;
        let projection = |name: &str| {
            if shape.linear_projection {
                LoraLinear::load(vb.pp(name), c, c, true)
            } else {
                LoraLinear::load_conv1x1(vb.pp(name), c, c)
            }
        };
        let blocks = (0..shape.depth)
            .map(|i| {
                TransformerBlock::load(vb.pp(format!("transformer_blocks.{i}")), c, shape.context_dim, shape.heads)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            norm: GroupNorm::load(vb.pp("norm"), shape.groups, c, 1e-6)?,
            proj_in: projection("proj_in")?,
            blocks,
            proj_out: projection("proj_out")?,
        })
    }

    /// `x` is `[batch, channels, height, width]`, `context` `[batch, tokens, context_dim]`.
    /// A 1×1 convolution is the same linear map per pixel, so both projection
    /// kinds run as linear layers on the tokens.
    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (batch, channels, height, width) = x.dims4()?;
        let tokens = self.norm.forward(x)?.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        let mut h = self.proj_in.forward(&tokens)?;
        for block in &self.blocks {
            h = block.forward(&h, context)?;
        }
        let h = self.proj_out.forward(&h)?.transpose(1, 2)?.reshape((batch, channels, height, width))?;
        h + x
    }
}

impl SpatialTransformer {
    /// The trainable adapter tensors inside (what a checkpointed run must differentiate).
    pub fn trainable_tensors(&self) -> Vec<Tensor> {
        let mut out = Vec::new();
        self.proj_in.trainable_tensors(&mut out);
        for block in &self.blocks {
            for attention in [&block.attn1, &block.attn2] {
                for layer in [&attention.to_q, &attention.to_k, &attention.to_v, &attention.to_out] {
                    layer.trainable_tensors(&mut out);
                }
            }
            block.ff.proj.trainable_tensors(&mut out);
            block.ff.out.trainable_tensors(&mut out);
        }
        self.proj_out.trainable_tensors(&mut out);
        out
    }
}

impl LoraHost for SpatialTransformer {
    fn lora_layers<'a>(&'a mut self, prefix: &str, out: &mut LoraLayers<'a>) {
        out.push((join(prefix, "proj_in"), &mut self.proj_in));
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let path = join(prefix, &format!("transformer_blocks.{i}"));
            block.attn1.lora_layers(&join(&path, "attn1"), out);
            block.attn2.lora_layers(&join(&path, "attn2"), out);
            out.push((join(&path, "ff.net.0.proj"), &mut block.ff.proj));
            out.push((join(&path, "ff.net.2"), &mut block.ff.out));
        }
        out.push((join(prefix, "proj_out"), &mut self.proj_out));
    }
}
