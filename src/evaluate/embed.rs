//! Image and text embeddings for the evaluation scores, from models in local
//! Hugging Face folders: CLIP (`CLIPModel`: image and text towers with their
//! projections) and DINOv2 (`Dinov2Model`: the CLS token). Each embedding
//! comes back L2-normalised, as the scores expect.
//!
//! The numerics follow transformers (checked against it by
//! tests/eval_models.rs): the vision transformers are written here, sharing
//! one pre-norm block; CLIP's text tower is Easel's own `model::clip`, with
//! Easel's CLIP tokenizer. Images are prepared as the models' image
//! processors do, PIL's bicubic resize included (`resize_bicubic`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use serde::Deserialize;

use crate::model::clip::{Activation, ClipTextConfig, ClipTextModel};
use crate::model::fused::attention;
use crate::model::nn::{LayerNorm, Linear, quick_gelu};
use crate::model::tokenizer::{CONTEXT_LENGTH, ClipTokenizer, Padding};
use crate::model::weights::{WeightFiles, WeightSource};

/// CLIP's normalisation (transformers' OPENAI_CLIP_MEAN / STD).
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// ImageNet's, which DINOv2's processor uses.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
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

// --- the vision transformer ----------------------------------------------

struct VitConfig {
    hidden_size: usize,
    intermediate_size: usize,
    layers: usize,
    heads: usize,
    channels: usize,
    image_size: usize,
    patch_size: usize,
    activation: Activation,
    eps: f64,
}

/// Where CLIP's and DINOv2's checkpoints keep the same parts of a ViT.
struct Layout {
    class_token: &'static str,
    patch_conv: &'static str,
    patch_bias: bool,
    /// A `[positions, hidden]` embedding table (CLIP) or a `[1, positions, hidden]` parameter (DINOv2).
    positions: &'static str,
    /// CLIP normalises the embeddings before the blocks.
    pre_norm: Option<&'static str>,
    blocks: &'static str,
    final_norm: &'static str,
    block: BlockLayout,
}

struct BlockLayout {
    norm1: &'static str,
    query: &'static str,
    key: &'static str,
    value: &'static str,
    out: &'static str,
    norm2: &'static str,
    fc1: &'static str,
    fc2: &'static str,
    /// DINOv2 scales each residual branch per channel.
    layer_scales: Option<[&'static str; 2]>,
}

const CLIP_LAYOUT: Layout = Layout {
    class_token: "embeddings.class_embedding",
    patch_conv: "embeddings.patch_embedding",
    patch_bias: false,
    positions: "embeddings.position_embedding.weight",
    pre_norm: Some("pre_layrnorm"),
    blocks: "encoder.layers",
    final_norm: "post_layernorm",
    block: BlockLayout {
        norm1: "layer_norm1",
        query: "self_attn.q_proj",
        key: "self_attn.k_proj",
        value: "self_attn.v_proj",
        out: "self_attn.out_proj",
        norm2: "layer_norm2",
        fc1: "mlp.fc1",
        fc2: "mlp.fc2",
        layer_scales: None,
    },
};

const DINO_LAYOUT: Layout = Layout {
    class_token: "embeddings.cls_token",
    patch_conv: "embeddings.patch_embeddings.projection",
    patch_bias: true,
    positions: "embeddings.position_embeddings",
    pre_norm: None,
    blocks: "encoder.layer",
    final_norm: "layernorm",
    block: BlockLayout {
        norm1: "norm1",
        query: "attention.attention.query",
        key: "attention.attention.key",
        value: "attention.attention.value",
        out: "attention.output.dense",
        norm2: "norm2",
        fc1: "mlp.fc1",
        fc2: "mlp.fc2",
        layer_scales: Some(["layer_scale1.lambda1", "layer_scale2.lambda1"]),
    },
};

/// A pre-norm ViT up to its final-normed class token.
struct VisionTransformer {
    class_token: Tensor,
    patch_weight: Tensor,
    patch_bias: Option<Tensor>,
    /// `[1 + grid², hidden]`: the class token's position, then the patch grid's.
    positions: Tensor,
    pre_norm: Option<LayerNorm>,
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    patch_size: usize,
    image_size: usize,
}

impl VisionTransformer {
    fn load(vb: VarBuilder, config: &VitConfig, layout: &Layout) -> candle_core::Result<Self> {
        let (hidden, patch) = (config.hidden_size, config.patch_size);
        let positions = vb.get_unchecked(layout.positions)?;
        let positions = positions.reshape((positions.elem_count() / hidden, hidden))?;
        let conv = vb.pp(layout.patch_conv);
        let blocks = (0..config.layers)
            .map(|i| Block::load(vb.pp(format!("{}.{i}", layout.blocks)), config, &layout.block))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            class_token: vb.get_unchecked(layout.class_token)?.reshape((1, 1, hidden))?,
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
    fn forward(&self, pixels: &Tensor) -> anyhow::Result<Tensor> {
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
        Ok(self.final_norm.forward(&x.i((.., 0))?.contiguous()?)?)
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
    query: Linear,
    key: Linear,
    value: Linear,
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
            query: linear(layout.query, h, h)?,
            key: linear(layout.key, h, h)?,
            value: linear(layout.value, h, h)?,
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
            Activation::Gelu => hidden.gelu_erf()?,
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
        let heads = |t: Tensor| {
            t.reshape((batch, tokens, self.heads, head_dim))?.transpose(1, 2)?.reshape((
                batch * self.heads,
                tokens,
                head_dim,
            ))
        };
        let q = heads(self.query.forward(x)?)?;
        let k = heads(self.key.forward(x)?)?;
        let v = heads(self.value.forward(x)?)?;
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

// --- image preparation ---------------------------------------------------

/// How an image becomes model input, as transformers' image processors do
/// it: resize (bicubic), centre crop, ×1/255, (x − mean)/std per channel.
#[derive(Debug, Clone, PartialEq)]
struct Preprocess {
    resize: Resize,
    /// (height, width).
    crop: (usize, usize),
    mean: [f32; 3],
    std: [f32; 3],
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Resize {
    /// The short side to this length, the aspect ratio kept.
    ShortestEdge(usize),
    /// Exactly (height, width).
    Exact(usize, usize),
}

/// `size` / `crop_size` as processor configs write them.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeSpec {
    Edge { shortest_edge: usize },
    Box { height: usize, width: usize },
    Square(usize),
}

#[derive(Deserialize)]
struct ProcessorFile {
    size: Option<SizeSpec>,
    crop_size: Option<SizeSpec>,
    image_mean: Option<[f32; 3]>,
    image_std: Option<[f32; 3]>,
}

impl Preprocess {
    /// CLIP's processor for a model of `image_size`: short side and crop
    /// both `image_size` (224 for the OpenAI models).
    fn clip(image_size: usize) -> Self {
        Self {
            resize: Resize::ShortestEdge(image_size),
            crop: (image_size, image_size),
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }

    /// DINOv2's processor (facebook/dinov2-*): short side 256, crop 224.
    fn dino() -> Self {
        Self { resize: Resize::ShortestEdge(256), crop: (224, 224), mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }

    /// `preprocessor_config.json` in `folder` over `defaults`, key by key.
    fn read(folder: &Path, defaults: Self) -> anyhow::Result<Self> {
        let path = folder.join("preprocessor_config.json");
        if !path.is_file() {
            return Ok(defaults);
        }
        let file: ProcessorFile = crate::model::read_json_config(&path)?;
        let resize = match file.size {
            Some(SizeSpec::Edge { shortest_edge }) => Resize::ShortestEdge(shortest_edge),
            Some(SizeSpec::Box { height, width }) => Resize::Exact(height, width),
            Some(SizeSpec::Square(side)) => Resize::ShortestEdge(side),
            None => defaults.resize,
        };
        let crop = match file.crop_size {
            Some(SizeSpec::Box { height, width }) => (height, width),
            Some(SizeSpec::Square(side) | SizeSpec::Edge { shortest_edge: side }) => (side, side),
            None => defaults.crop,
        };
        if crop.0 == 0
            || crop.1 == 0
            || matches!(resize, Resize::ShortestEdge(0) | Resize::Exact(0, _) | Resize::Exact(_, 0))
        {
            bail!("{}: a zero size or crop size", path.display());
        }
        Ok(Self {
            resize,
            crop,
            mean: file.image_mean.unwrap_or(defaults.mean),
            std: file.image_std.unwrap_or(defaults.std),
        })
    }

    /// `images` prepared and stacked `[N, 3, crop height, crop width]`.
    fn pixel_values(&self, images: &[RgbImage], device: &Device) -> anyhow::Result<Tensor> {
        let planes = images.iter().map(|image| self.apply(image)).collect::<anyhow::Result<Vec<_>>>()?;
        let (height, width) = self.crop;
        Ok(Tensor::from_vec(planes.concat(), (images.len(), 3, height, width), device)?)
    }

    /// The image as normalised channel planes `[3 × crop height × crop width]`.
    fn apply(&self, image: &RgbImage) -> anyhow::Result<Vec<f32>> {
        let (width, height) = (image.width() as usize, image.height() as usize);
        if width == 0 || height == 0 {
            bail!("cannot embed an empty ({width}×{height}) image");
        }
        let (new_height, new_width) = self.resize.output((height, width));
        let resized = resize_bicubic(image.as_raw(), (height, width), (new_height, new_width));
        Ok(self.crop_and_normalize(&resized, (new_height, new_width)))
    }

    /// transformers' `center_crop`: top = ⌊(h − crop)/2⌋ (left alike), zeros
    /// where the crop reaches past the image, then rescale and normalise.
    fn crop_and_normalize(&self, pixels: &[u8], (height, width): (usize, usize)) -> Vec<f32> {
        let (crop_height, crop_width) = self.crop;
        let top = (height as isize - crop_height as isize).div_euclid(2);
        let left = (width as isize - crop_width as isize).div_euclid(2);
        let mut planes = vec![0.0f32; 3 * crop_height * crop_width];
        for channel in 0..3 {
            for y in 0..crop_height {
                for x in 0..crop_width {
                    let (source_y, source_x) = (y as isize + top, x as isize + left);
                    let inside = (0..height as isize).contains(&source_y) && (0..width as isize).contains(&source_x);
                    let value = if inside {
                        f32::from(pixels[(source_y as usize * width + source_x as usize) * 3 + channel]) / 255.0
                    } else {
                        0.0
                    };
                    planes[(channel * crop_height + y) * crop_width + x] =
                        (value - self.mean[channel]) / self.std[channel];
                }
            }
        }
        planes
    }
}

impl Resize {
    /// (height, width) after resizing an image of (height, width), as
    /// transformers' `get_resize_output_image_size` (default_to_square=False):
    /// the long side ⌊edge·long/short⌋.
    fn output(self, (height, width): (usize, usize)) -> (usize, usize) {
        match self {
            Resize::Exact(h, w) => (h, w),
            Resize::ShortestEdge(edge) => {
                let (short, long) = (height.min(width), height.max(width));
                let new_long = ((edge * long) as f64 / short as f64) as usize;
                if width <= height { (new_long, edge) } else { (edge, new_long) }
            }
        }
    }
}

/// PIL's `Image.resize(..., BICUBIC)` of an 8-bit RGB image: the separable
/// cubic with a = −0.5, its support widened by the scale when shrinking
/// (antialiasing), weights in PIL's 22-bit fixed point, the horizontal pass
/// first and each pass rounded to 8 bits, as PIL does. transformers' image
/// processors resize with PIL, so the pixels match theirs.
fn resize_bicubic(pixels: &[u8], from: (usize, usize), to: (usize, usize)) -> Vec<u8> {
    let (height, width) = from;
    let (new_height, new_width) = to;
    let horizontal = if new_width == width {
        pixels.to_vec()
    } else {
        let taps = pil_taps(width, new_width);
        let mut out = vec![0u8; height * new_width * 3];
        for y in 0..height {
            for (x, (start, weights)) in taps.iter().enumerate() {
                for c in 0..3 {
                    let sum = weights
                        .iter()
                        .enumerate()
                        .map(|(k, &w)| w * i64::from(pixels[(y * width + start + k) * 3 + c]))
                        .sum::<i64>();
                    out[(y * new_width + x) * 3 + c] = round_fixed(sum);
                }
            }
        }
        out
    };
    if new_height == height {
        return horizontal;
    }
    let taps = pil_taps(height, new_height);
    let mut out = vec![0u8; new_height * new_width * 3];
    for (y, (start, weights)) in taps.iter().enumerate() {
        for x in 0..new_width {
            for c in 0..3 {
                let sum = weights
                    .iter()
                    .enumerate()
                    .map(|(k, &w)| w * i64::from(horizontal[((start + k) * new_width + x) * 3 + c]))
                    .sum::<i64>();
                out[(y * new_width + x) * 3 + c] = round_fixed(sum);
            }
        }
    }
    out
}

/// PIL's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// A fixed-point sum back to 8 bits: + ½, shift, clamp (PIL's `clip8`).
fn round_fixed(sum: i64) -> u8 {
    ((sum + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's `precompute_coeffs` for the bicubic filter, then
/// `normalize_coeffs_8bpc`: for each output pixel, the first input pixel
/// and the fixed-point weights of the ones from there.
fn pil_taps(input: usize, output: usize) -> Vec<(usize, Vec<i64>)> {
    const SUPPORT: f64 = 2.0;
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = SUPPORT * filter_scale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero.
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let weights: Vec<f64> =
                (min..max).map(|x| bicubic_filter((x as f64 - center + 0.5) / filter_scale)).collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&w| {
                    let w = if total == 0.0 { w } else { w / total };
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    (if scaled < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i64
                })
                .collect();
            (min, fixed)
        })
        .collect()
}

/// PIL's bicubic kernel (a = −0.5).
fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_keeps_the_aspect_ratio_rounding_down() {
        let resize = Resize::ShortestEdge(32);
        // 40×29 (w×h): 32·40/29 = 44.1 → 44.
        assert_eq!(resize.output((29, 40)), (32, 44));
        assert_eq!(resize.output((57, 23)), (79, 32));
        assert_eq!(resize.output((32, 32)), (32, 32));
    }

    #[test]
    fn resize_to_the_same_size_is_the_identity() {
        let pixels: Vec<u8> = (0..5 * 4 * 3).map(|v| (v * 7 % 256) as u8).collect();
        assert_eq!(resize_bicubic(&pixels, (4, 5), (4, 5)), pixels);
        // A pass at scale 1 weighs only the pixel itself.
        let taps = pil_taps(5, 5);
        assert!(taps.iter().all(|(_, w)| w.iter().filter(|&&w| w != 0).count() == 1));
    }

    #[test]
    fn bicubic_positions_at_the_same_size_are_unchanged() {
        let cells: Vec<Vec<f32>> = (0..9).map(|i| vec![i as f32, -(i as f32)]).collect();
        let out = interpolate_bicubic(&cells, (3, 3), (3, 3));
        for (a, b) in out.iter().flatten().zip(cells.iter().flatten()) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn crop_centres_with_the_floor() {
        let preprocess = Preprocess { resize: Resize::Exact(3, 4), crop: (1, 1), mean: [0.0; 3], std: [1.0; 3] };
        // A 4×3 image whose red channel counts the pixels: the centre crop
        // starts at ⌊(4−1)/2⌋ = 1, ⌊(3−1)/2⌋ = 1 → pixel 5.
        let pixels: Vec<u8> = (0..12u8).flat_map(|i| [i, 0, 0]).collect();
        let planes = preprocess.crop_and_normalize(&pixels, (3, 4));
        assert_eq!(planes[0], 5.0 / 255.0);
    }
}
