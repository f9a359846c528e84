//! The vision transformer CLIP's, DINOv2's and BLIP's image towers share
//! (pre-norm blocks, fused attention), with where each checkpoint keeps its
//! parts, and DINOv2's bicubic interpolation of position embeddings to
//! another grid.

use anyhow::bail;
use candle_core::{DType, IndexOp, Module, Tensor};
use candle_nn::VarBuilder;

use crate::model::clip::Activation;
use crate::model::fused::attention;
use crate::model::nn::{LayerNorm, Linear, quick_gelu, split_heads};

pub struct VitConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub activation: Activation,
    pub eps: f64,
}

/// Where CLIP's, DINOv2's and BLIP's checkpoints keep the same parts of a ViT.
pub struct Layout {
    class_token: &'static str,
    patch_conv: &'static str,
    patch_bias: bool,
    positions: &'static str,
    /// Class token and positions stored as `[1, 1, hidden]` and `[1,
    /// positions, hidden]` parameters (DINOv2, BLIP), not as a vector and an
    /// embedding table `[positions, hidden]` (CLIP).
    batched_parameters: bool,
    /// CLIP normalises the embeddings before the blocks.
    pre_norm: Option<&'static str>,
    blocks: &'static str,
    final_norm: &'static str,
    block: BlockLayout,
}

struct BlockLayout {
    norm1: &'static str,
    projections: Projections,
    out: &'static str,
    norm2: &'static str,
    fc1: &'static str,
    fc2: &'static str,
    /// DINOv2 scales each residual branch per channel.
    layer_scales: Option<[&'static str; 2]>,
}

pub const CLIP_LAYOUT: Layout = Layout {
    class_token: "embeddings.class_embedding",
    patch_conv: "embeddings.patch_embedding",
    patch_bias: false,
    positions: "embeddings.position_embedding.weight",
    batched_parameters: false,
    pre_norm: Some("pre_layrnorm"),
    blocks: "encoder.layers",
    final_norm: "post_layernorm",
    block: BlockLayout {
        norm1: "layer_norm1",
        projections: Projections::Separate {
            query: "self_attn.q_proj",
            key: "self_attn.k_proj",
            value: "self_attn.v_proj",
        },
        out: "self_attn.out_proj",
        norm2: "layer_norm2",
        fc1: "mlp.fc1",
        fc2: "mlp.fc2",
        layer_scales: None,
    },
};

pub const DINO_LAYOUT: Layout = Layout {
    class_token: "embeddings.cls_token",
    patch_conv: "embeddings.patch_embeddings.projection",
    patch_bias: true,
    positions: "embeddings.position_embeddings",
    batched_parameters: true,
    pre_norm: None,
    blocks: "encoder.layer",
    final_norm: "layernorm",
    block: BlockLayout {
        norm1: "norm1",
        projections: Projections::Separate {
            query: "attention.attention.query",
            key: "attention.attention.key",
            value: "attention.attention.value",
        },
        out: "attention.output.dense",
        norm2: "norm2",
        fc1: "mlp.fc1",
        fc2: "mlp.fc2",
        layer_scales: Some(["layer_scale1.lambda1", "layer_scale2.lambda1"]),
    },
};

/// How a checkpoint stores the query, key and value projections.
enum Projections {
    Separate {
        query: &'static str,
        key: &'static str,
        value: &'static str,
    },
    /// One `[3·hidden, hidden]` layer, rows q, k, v stacked (BLIP's `qkv`).
    Fused(&'static str),
}

/// BLIP's vision model (`vision_model.` in `BlipForConditionalGeneration`):
/// CLIP's parts without the pre-norm, a biased patch conv, positions as a
/// `[1, positions, hidden]` parameter and a fused q/k/v layer.
pub const BLIP_LAYOUT: Layout = Layout {
    class_token: "embeddings.class_embedding",
    patch_conv: "embeddings.patch_embedding",
    patch_bias: true,
    positions: "embeddings.position_embedding",
    batched_parameters: true,
    pre_norm: None,
    blocks: "encoder.layers",
    final_norm: "post_layernorm",
    block: BlockLayout {
        norm1: "layer_norm1",
        projections: Projections::Fused("self_attn.qkv"),
        out: "self_attn.projection",
        norm2: "layer_norm2",
        fc1: "mlp.fc1",
        fc2: "mlp.fc2",
        layer_scales: None,
    },
};

/// A pre-norm ViT up to its final-normed tokens.
pub struct VisionTransformer {
    class_token: Tensor,
    patch_weight: Tensor,
    patch_bias: Option<Tensor>,
    /// `[1 + grid², hidden]`: the class token's position, then the patch grid's.
    positions: Tensor,
    pre_norm: Option<LayerNorm>,
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    patch_size: usize,
    pub image_size: usize,
}

impl VisionTransformer {
    pub fn load(vb: VarBuilder, config: &VitConfig, layout: &Layout) -> candle_core::Result<Self> {
        let (hidden, patch) = (config.hidden_size, config.patch_size);
        let count = (config.image_size / patch).pow(2) + 1;
        let (class_token, positions) = if layout.batched_parameters {
            (vb.get((1, 1, hidden), layout.class_token)?, vb.get((1, count, hidden), layout.positions)?.squeeze(0)?)
        } else {
            (vb.get(hidden, layout.class_token)?.reshape((1, 1, hidden))?, vb.get((count, hidden), layout.positions)?)
        };
        let conv = vb.pp(layout.patch_conv);
        let blocks = (0..config.layers)
            .map(|i| Block::load(vb.pp(format!("{}.{i}", layout.blocks)), config, &layout.block))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            class_token,
            patch_weight: conv.get((hidden, config.channels, patch, patch), "weight")?,
            patch_bias: if layout.patch_bias { Some(conv.get(hidden, "bias")?) } else { None },
            positions,
            pre_norm: layout.pre_norm.map(|name| LayerNorm::load(vb.pp(name), hidden, config.eps)).transpose()?,
            blocks,
            final_norm: LayerNorm::load(vb.pp(layout.final_norm), hidden, config.eps)?,
            patch_size: patch,
            image_size: config.image_size,
        })
    }

    /// `[N, C, H, W]` → the final-normed class token `[N, hidden]`.
    pub fn forward(&self, pixels: &Tensor) -> anyhow::Result<Tensor> {
        Ok(self.tokens(pixels)?.i((.., 0))?.contiguous()?)
    }

    /// `[N, C, H, W]` → every final-normed token `[N, 1 + patches, hidden]`,
    /// the class token first (BLIP's text decoder attends to all of them).
    pub fn tokens(&self, pixels: &Tensor) -> anyhow::Result<Tensor> {
        let (batch, _, height, width) = pixels.dims4()?;
        if height < self.patch_size || width < self.patch_size {
            bail!("{width}×{height} pixels are smaller than one {0}×{0} patch", self.patch_size);
        }
        let mut patches = pixels.conv2d(&self.patch_weight, 0, self.patch_size, 1, 1)?;
        if let Some(bias) = &self.patch_bias {
            patches = patches.broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
        }
        let grid = (patches.dim(2)?, patches.dim(3)?);
        let patches = patches.flatten_from(2)?.transpose(1, 2)?;
        let hidden = self.class_token.dim(2)?;
        let class = self.class_token.broadcast_as((batch, 1, hidden))?;
        let mut x = Tensor::cat(&[&class, &patches], 1)?.broadcast_add(&self.positions_for(grid)?)?;
        if let Some(norm) = &self.pre_norm {
            x = norm.forward(&x)?;
        }
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        Ok(self.final_norm.forward(&x)?)
    }

    /// The position embeddings for a `grid` of patches: as stored when the
    /// grid is the stored square, else the patch positions resized by
    /// bicubic interpolation, as transformers' DINOv2 does (CLIP's caller
    /// refuses other sizes, as transformers does without
    /// `interpolate_pos_encoding`).
    fn positions_for(&self, grid: (usize, usize)) -> anyhow::Result<Tensor> {
        let (count, hidden) = self.positions.dims2()?;
        let side = (count - 1).isqrt();
        if side * side != count - 1 {
            bail!("{} position embeddings do not form a square grid after the class token", count - 1);
        }
        if grid == (side, side) {
            return Ok(self.positions.clone());
        }
        let patch = self.positions.i(1..)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let resized = interpolate_bicubic(&patch, (side, side), grid);
        let resized = Tensor::from_vec(resized.concat(), (grid.0 * grid.1, hidden), self.positions.device())?;
        Ok(Tensor::cat(&[&self.positions.i(..1)?, &resized.to_dtype(self.positions.dtype())?], 0)?)
    }
}

/// One pre-norm block: x + attention(norm1 x), then x + mlp(norm2 x), each
/// branch scaled per channel where the model has layer scales.
struct Block {
    norm1: LayerNorm,
    /// Query, key and value as one `[3·hidden, hidden]` layer (stored fused
    /// or concatenated at load): one product instead of three.
    qkv: Linear,
    out: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    layer_scales: Option<[Tensor; 2]>,
    activation: Activation,
    heads: usize,
}

impl Block {
    fn load(vb: VarBuilder, config: &VitConfig, layout: &BlockLayout) -> candle_core::Result<Self> {
        let (h, i, eps) = (config.hidden_size, config.intermediate_size, config.eps);
        let linear = |name: &str, input, output| Linear::load(vb.pp(name), input, output, true);
        let layer_scales = match layout.layer_scales {
            Some([first, second]) => Some([vb.get(h, first)?, vb.get(h, second)?]),
            None => None,
        };
        Ok(Self {
            norm1: LayerNorm::load(vb.pp(layout.norm1), h, eps)?,
            qkv: match layout.projections {
                Projections::Fused(name) => linear(name, h, 3 * h)?,
                Projections::Separate { query, key, value } => {
                    Linear::stacked(&[linear(query, h, h)?, linear(key, h, h)?, linear(value, h, h)?])?
                }
            },
            out: linear(layout.out, h, h)?,
            norm2: LayerNorm::load(vb.pp(layout.norm2), h, eps)?,
            fc1: linear(layout.fc1, h, i)?,
            fc2: linear(layout.fc2, i, h)?,
            layer_scales,
            activation: config.activation,
            heads: config.heads,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let attended = self.attention(&self.norm1.forward(x)?)?;
        let x = (x + self.scaled(attended, 0)?)?;
        let hidden = self.fc1.forward(&self.norm2.forward(&x)?)?;
        let hidden = match self.activation {
            Activation::QuickGelu => quick_gelu(&hidden)?,
            Activation::Gelu => crate::model::fused::gelu(&hidden)?,
        };
        let mlp = self.fc2.forward(&hidden)?;
        x + self.scaled(mlp, 1)?
    }

    fn scaled(&self, branch: Tensor, which: usize) -> candle_core::Result<Tensor> {
        match &self.layer_scales {
            Some(scales) => branch.broadcast_mul(&scales[which]),
            None => Ok(branch),
        }
    }

    /// Full (non-causal) multi-head self-attention.
    fn attention(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, tokens, hidden) = x.dims3()?;
        let head_dim = hidden / self.heads;
        let [q, k, v] = split_heads(&self.qkv.forward(x)?, self.heads)?;
        let attended = attention(&q, &k, &v, false)?
            .reshape((batch, self.heads, tokens, head_dim))?
            .transpose(1, 2)?
            .reshape((batch, tokens, hidden))?;
        self.out.forward(&attended)
    }
}

/// Resizes a `from` grid of rows (row-major, one vector per cell) to `to`,
/// as torch's `interpolate(mode="bicubic", align_corners=False)` does:
/// Keys' cubic with a = −0.75, source coordinate (i + 0.5)·in/out − 0.5,
/// edge cells repeated.
fn interpolate_bicubic(cells: &[Vec<f32>], from: (usize, usize), to: (usize, usize)) -> Vec<Vec<f32>> {
    let rows = cubic_taps(from.0, to.0);
    let columns = cubic_taps(from.1, to.1);
    let width = cells.first().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(to.0 * to.1);
    for (row_index, row_weights) in &rows {
        for (column_index, column_weights) in &columns {
            let mut value = vec![0.0f32; width];
            for (&r, &wr) in row_index.iter().zip(row_weights) {
                for (&c, &wc) in column_index.iter().zip(column_weights) {
                    for (v, &cell) in value.iter_mut().zip(&cells[r * from.1 + c]) {
                        *v += wr * wc * cell;
                    }
                }
            }
            out.push(value);
        }
    }
    out
}

/// The four source indices and weights of each output position (torch's
/// `upsample_bicubic2d`, align_corners=False).
fn cubic_taps(input: usize, output: usize) -> Vec<([usize; 4], [f32; 4])> {
    const A: f32 = -0.75;
    let near = |t: f32| ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
    let far = |t: f32| ((A * t - 5.0 * A) * t + 8.0 * A) * t - 4.0 * A;
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            let source = (i as f32 + 0.5) * scale - 0.5;
            let floor = source.floor();
            let t = source - floor;
            let index = |offset: isize| (floor as isize + offset).clamp(0, input as isize - 1) as usize;
            ([index(-1), index(0), index(1), index(2)], [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_positions_at_the_same_size_are_unchanged() {
        let cells: Vec<Vec<f32>> = (0..9).map(|i| vec![i as f32, -(i as f32)]).collect();
        let out = interpolate_bicubic(&cells, (3, 3), (3, 3));
        for (a, b) in out.iter().flatten().zip(cells.iter().flatten()) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
