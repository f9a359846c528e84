//! The CLIP text encoder (Hugging Face `CLIPTextModel` layout), written with
//! differentiable ops so that text-encoder LoRA can be trained through it.

use std::path::Path;

use candle_core::{DType, IndexOp, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::fused::attention;
use super::lora::{LoraHost, LoraLayers, LoraLinear, join};
use super::nn::{LayerNorm, Linear, quick_gelu};

/// The keys of a text encoder's `config.json` that shape the network.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_activation")]
    pub hidden_act: Activation,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn default_activation() -> Activation {
    Activation::QuickGelu
}

fn default_eps() -> f64 {
    1e-5
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// SD1's OpenAI CLIP.
    QuickGelu,
    /// SD2's and SDXL's OpenCLIP (exact GELU).
    Gelu,
}

impl ClipTextConfig {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        super::read_json_config(path)
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: LoraLinear,
    k_proj: LoraLinear,
    v_proj: LoraLinear,
    out_proj: LoraLinear,
    heads: usize,
}

impl Attention {
    fn load(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            q_proj: LoraLinear::load(vb.pp("q_proj"), h, h, true)?,
            k_proj: LoraLinear::load(vb.pp("k_proj"), h, h, true)?,
            v_proj: LoraLinear::load(vb.pp("v_proj"), h, h, true)?,
            out_proj: LoraLinear::load(vb.pp("out_proj"), h, h, true)?,
            heads: config.num_attention_heads,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, tokens, hidden) = x.dims3()?;
        let head_dim = hidden / self.heads;
        let split = |t: Tensor| t.reshape((batch, tokens, self.heads, head_dim))?.transpose(1, 2)?.contiguous();
        let q = split(self.q_proj.forward(x)?)?;
        let k = split(self.k_proj.forward(x)?)?;
        let v = split(self.v_proj.forward(x)?)?;
        let flat = |t: Tensor| t.reshape((batch * self.heads, tokens, head_dim));
        let attended = attention(&flat(q)?, &flat(k)?, &flat(v)?, true)?;
        let merged = attended
            .reshape((batch, self.heads, tokens, head_dim))?
            .transpose(1, 2)?
            .reshape((batch, tokens, hidden))?;
        self.out_proj.forward(&merged)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: Attention,
    layer_norm2: LayerNorm,
    fc1: LoraLinear,
    fc2: LoraLinear,
    activation: Activation,
}

impl EncoderLayer {
    fn load(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        let (h, i, eps) = (config.hidden_size, config.intermediate_size, config.layer_norm_eps);
        Ok(Self {
            layer_norm1: LayerNorm::load(vb.pp("layer_norm1"), h, eps)?,
            self_attn: Attention::load(vb.pp("self_attn"), config)?,
            layer_norm2: LayerNorm::load(vb.pp("layer_norm2"), h, eps)?,
            fc1: LoraLinear::load(vb.pp("mlp.fc1"), h, i, true)?,
            fc2: LoraLinear::load(vb.pp("mlp.fc2"), i, h, true)?,
            activation: config.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.self_attn.forward(&self.layer_norm1.forward(x)?)?)?;
        let hidden = self.fc1.forward(&self.layer_norm2.forward(&x)?)?;
        let hidden = match self.activation {
            Activation::QuickGelu => quick_gelu(&hidden)?,
            Activation::Gelu => hidden.gelu_erf()?,
        };
        x + self.fc2.forward(&hidden)?
    }
}

/// What the text encoder gives the UNet.
#[derive(Debug, Clone)]
pub struct TextEncoding {
    /// The last layer's output after the final layer norm (what SD1 uses).
    pub last_hidden_state: Tensor,
    /// The second-to-last layer's output, before any final norm ("clip skip 2";
    /// SDXL conditions on this).
    pub penultimate: Tensor,
    /// The final-normed state at each prompt's first end token, through
    /// `text_projection` when the model has one (SDXL's pooled embedding).
    pub pooled: Tensor,
}

#[derive(Debug, Clone)]
pub struct ClipTextModel {
    token_embedding: Tensor,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    text_projection: Option<Linear>,
    pub config: ClipTextConfig,
}

impl ClipTextModel {
    /// Loads from weights named as in `CLIPTextModel`, with or without the
    /// classic `text_model.` prefix (transformers 5 saves without it).
    pub fn load(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        // `CLIPTextModelWithProjection` (SDXL's second encoder) adds this.
        let text_projection = match vb.contains_tensor("text_projection.weight") {
            true => {
                let projection = vb.get_unchecked("text_projection.weight")?;
                let (out, input) = projection.dims2()?;
                Some(Linear::load(vb.pp("text_projection"), input, out, false)?)
            }
            false => None,
        };
        let vb =
            if vb.contains_tensor("text_model.embeddings.token_embedding.weight") { vb.pp("text_model") } else { vb };
        let h = config.hidden_size;
        let embeddings = vb.pp("embeddings");
        let layers = (0..config.num_hidden_layers)
            .map(|i| EncoderLayer::load(vb.pp(format!("encoder.layers.{i}")), config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            token_embedding: embeddings.get((config.vocab_size, h), "token_embedding.weight")?,
            position_embedding: embeddings.get((config.max_position_embeddings, h), "position_embedding.weight")?,
            layers,
            final_layer_norm: LayerNorm::load(vb.pp("final_layer_norm"), h, config.layer_norm_eps)?,
            text_projection,
            config: config.clone(),
        })
    }

    /// Width of the pooled output: the projection's when there is one.
    pub fn pooled_width(&self) -> usize {
        self.text_projection.as_ref().map_or(self.config.hidden_size, |projection| projection.weight.dims()[0])
    }

    /// Encodes token ids of shape `[batch, tokens]`.
    pub fn forward(&self, ids: &Tensor) -> Result<TextEncoding> {
        let (batch, tokens) = ids.dims2()?;
        let hidden = self.token_embedding.dim(1)?;
        let embedded = self.token_embedding.index_select(&ids.flatten_all()?, 0)?.reshape((batch, tokens, hidden))?;
        let mut x = embedded.broadcast_add(&self.position_embedding.i(..tokens)?)?;
        let mut penultimate = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i + 2 == self.layers.len() {
                penultimate = x.clone();
            }
        }
        let last_hidden_state = self.final_layer_norm.forward(&x)?;
        let pooled = pool_at_end_token(&last_hidden_state, ids)?;
        let pooled = match &self.text_projection {
            Some(projection) => projection.forward(&pooled)?,
            None => pooled,
        };
        Ok(TextEncoding { last_hidden_state, penultimate, pooled })
    }
}

impl LoraHost for ClipTextModel {
    fn lora_layers<'a>(&'a mut self, prefix: &str, out: &mut LoraLayers<'a>) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let path = join(prefix, &format!("text_model.encoder.layers.{i}"));
            let attention = &mut layer.self_attn;
            out.push((join(&path, "self_attn.q_proj"), &mut attention.q_proj));
            out.push((join(&path, "self_attn.k_proj"), &mut attention.k_proj));
            out.push((join(&path, "self_attn.v_proj"), &mut attention.v_proj));
            out.push((join(&path, "self_attn.out_proj"), &mut attention.out_proj));
            out.push((join(&path, "mlp.fc1"), &mut layer.fc1));
            out.push((join(&path, "mlp.fc2"), &mut layer.fc2));
        }
    }
}

/// Row `[b, first end token of prompt b]` of `hidden` `[batch, tokens, width]`.
/// The end token has the highest id in CLIP's vocabulary, so its first
/// occurrence is the first maximum, as transformers finds it.
fn pool_at_end_token(hidden: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let rows = ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
    let pooled = rows
        .iter()
        .enumerate()
        .map(|(b, row)| {
            let highest = row.iter().copied().max().unwrap_or(0);
            let position = row.iter().position(|&id| id == highest).unwrap_or(0);
            hidden.i((b, position))?.unsqueeze(0)
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&pooled, 0)
}
