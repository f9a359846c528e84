//! BLIP's text decoder (`text_decoder.` in `BlipForConditionalGeneration`:
//! transformers' `BlipTextLMHeadModel`): a post-norm BERT whose layers
//! attend causally to the text so far, then to every image token, and an LM
//! head over the vocabulary.
//!
//! Decoding is incremental: [`TextDecoder::start`] computes each layer's
//! cross-attention keys and values from the image tokens once per batch, and
//! [`TextDecoder::step`] runs only the new tokens, their self-attention
//! keys and values appended to a cache. Finished rows leave the batch
//! ([`DecoderState::keep`]).

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

use super::config::BlipTextConfig;
use crate::model::clip::Activation;
use crate::model::fused::attention;
use crate::model::nn::{LayerNorm, Linear, quick_gelu, split_heads};

pub struct TextDecoder {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<DecoderLayer>,
    head_transform: Linear,
    head_norm: LayerNorm,
    /// `cls.predictions.decoder`: the word embeddings (tied) unless stored.
    head_decoder: Linear,
    activation: Activation,
    heads: usize,
}

struct DecoderLayer {
    /// `attention.self.{query,key,value}` as one `[3·hidden, hidden]` layer.
    self_qkv: Linear,
    self_out: Linear,
    self_norm: LayerNorm,
    cross_query: Linear,
    /// `crossattention.self.{key,value}` as one `[2·hidden, image width]` layer.
    cross_kv: Linear,
    cross_out: Linear,
    cross_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// What a batch being decoded keeps between steps, per layer: the image
/// tokens' keys and values and the text's so far, `[rows·heads, tokens,
/// head_dim]` each.
pub struct DecoderState {
    cross: Vec<(Tensor, Tensor)>,
    past: Vec<Option<(Tensor, Tensor)>>,
    /// Text tokens decoded so far: the next one's position.
    length: usize,
    heads: usize,
}

impl DecoderLayer {
    fn load(vb: VarBuilder, config: &BlipTextConfig, image_width: usize) -> candle_core::Result<Self> {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let linear = |vb: VarBuilder, input, output| Linear::load(vb, input, output, true);
        // Layers that see one row per sequence at each step keep their
        // weights transposed; the image's key/value layer sees every token.
        let stepping = |vb: VarBuilder, input, output| linear(vb, input, output)?.with_transposed_storage();
        let (own, cross) = (vb.pp("attention"), vb.pp("crossattention"));
        Ok(Self {
            self_qkv: Linear::stacked(&[
                linear(own.pp("self.query"), h, h)?,
                linear(own.pp("self.key"), h, h)?,
                linear(own.pp("self.value"), h, h)?,
            ])?
            .with_transposed_storage()?,
            self_out: stepping(own.pp("output.dense"), h, h)?,
            self_norm: LayerNorm::load(own.pp("output.LayerNorm"), h, eps)?,
            cross_query: stepping(cross.pp("self.query"), h, h)?,
            cross_kv: Linear::stacked(&[
                linear(cross.pp("self.key"), image_width, h)?,
                linear(cross.pp("self.value"), image_width, h)?,
            ])?,
            cross_out: stepping(cross.pp("output.dense"), h, h)?,
            cross_norm: LayerNorm::load(cross.pp("output.LayerNorm"), h, eps)?,
            intermediate: stepping(vb.pp("intermediate.dense"), h, config.intermediate_size)?,
            output: stepping(vb.pp("output.dense"), config.intermediate_size, h)?,
            output_norm: LayerNorm::load(vb.pp("output.LayerNorm"), h, eps)?,
        })
    }
}

impl TextDecoder {
    /// `vb` at `text_decoder`; `image_width` the vision model's hidden size.
    pub fn load(vb: VarBuilder, config: &BlipTextConfig, image_width: usize) -> candle_core::Result<Self> {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        if config.num_attention_heads == 0 || h % config.num_attention_heads != 0 {
            candle_core::bail!("text hidden size {h} is not a multiple of {} heads", config.num_attention_heads);
        }
        let (bert, head) = (vb.pp("bert"), vb.pp("cls.predictions"));
        let embeddings = bert.pp("embeddings");
        let word_embeddings = embeddings.get((config.vocab_size, h), "word_embeddings.weight")?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| DecoderLayer::load(bert.pp(format!("encoder.layer.{i}")), config, image_width))
            .collect::<candle_core::Result<Vec<_>>>()?;
        // transformers ties the output layer to the word embeddings and its
        // bias to `cls.predictions.bias`; older saves also store the tied copies.
        let decoder = head.pp("decoder");
        let head_decoder = Linear {
            weight: if decoder.contains_tensor("weight") {
                decoder.get((config.vocab_size, h), "weight")?
            } else {
                word_embeddings.clone()
            },
            bias: Some(if decoder.contains_tensor("bias") {
                decoder.get(config.vocab_size, "bias")?
            } else {
                head.get(config.vocab_size, "bias")?
            }),
        }
        .with_transposed_storage()?;
        Ok(Self {
            position_embeddings: embeddings.get((config.max_position_embeddings, h), "position_embeddings.weight")?,
            embedding_norm: LayerNorm::load(embeddings.pp("LayerNorm"), h, eps)?,
            word_embeddings,
            layers,
            head_transform: Linear::load(head.pp("transform.dense"), h, h, true)?.with_transposed_storage()?,
            head_norm: LayerNorm::load(head.pp("transform.LayerNorm"), h, eps)?,
            head_decoder,
            activation: config.hidden_act,
            heads: config.num_attention_heads,
        })
    }

    /// The state for decoding against `image` `[rows, image tokens, width]`:
    /// every layer's cross-attention keys and values, computed once here.
    pub fn start(&self, image: &Tensor) -> candle_core::Result<DecoderState> {
        let (rows, tokens, width) = image.dims3()?;
        let image = image.reshape((rows * tokens, width))?;
        let cross = self
            .layers
            .iter()
            .map(|layer| {
                let [k, v] = self.split_heads(&layer.cross_kv.forward(&image)?, rows)?;
                Ok((k, v))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(DecoderState { past: vec![None; self.layers.len()], cross, length: 0, heads: self.heads })
    }

    /// Runs `ids` `[rows, new tokens]` after what `state` holds and returns
    /// the last hidden states `[rows, new tokens, hidden]`. The first step
    /// may take several tokens (the prompt, attended causally); later steps
    /// one token each.
    pub fn step(&self, ids: &Tensor, state: &mut DecoderState) -> candle_core::Result<Tensor> {
        let (rows, count) = ids.dims2()?;
        if state.length > 0 && count > 1 {
            candle_core::bail!("after the first step the decoder takes one token at a time, not {count}");
        }
        if state.length + count > self.position_embeddings.dim(0)? {
            candle_core::bail!("{} text tokens exceed the decoder's positions", state.length + count);
        }
        let words = self.word_embeddings.index_select(&ids.flatten_all()?, 0)?;
        let hidden = self.word_embeddings.dim(1)?;
        let positions = self.position_embeddings.narrow(0, state.length, count)?;
        // Rows × tokens as one matrix `[rows·tokens, hidden]`: a decoding
        // step is then one product per layer, not a vector product per row
        // (each reading the whole weight again).
        let x = words.reshape((rows, count, hidden))?.broadcast_add(&positions)?;
        let mut x = self.embedding_norm.forward(&x.reshape((rows * count, hidden))?)?;
        let causal = count > 1;
        for ((layer, past), (cross_k, cross_v)) in self.layers.iter().zip(&mut state.past).zip(&state.cross) {
            let [q, mut k, mut v] = self.split_heads(&layer.self_qkv.forward(&x)?, rows)?;
            if let Some((past_k, past_v)) = past.as_ref() {
                k = Tensor::cat(&[past_k, &k], 1)?;
                v = Tensor::cat(&[past_v, &v], 1)?;
            }
            let attended = self.merge_heads(&attention(&q, &k, &v, causal)?, rows)?;
            *past = Some((k, v));
            x = layer.self_norm.forward(&(layer.self_out.forward(&attended)? + &x)?)?;
            let [q] = self.split_heads(&layer.cross_query.forward(&x)?, rows)?;
            let attended = self.merge_heads(&attention(&q, cross_k, cross_v, false)?, rows)?;
            x = layer.cross_norm.forward(&(layer.cross_out.forward(&attended)? + &x)?)?;
            let inner = self.activate(&layer.intermediate.forward(&x)?)?;
            x = layer.output_norm.forward(&(layer.output.forward(&inner)? + &x)?)?;
        }
        state.length += count;
        x.reshape((rows, count, hidden))
    }

    /// The LM head: hidden states `[…, hidden]` → vocabulary logits `[…, vocab]`.
    pub fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.activate(&self.head_transform.forward(hidden)?)?;
        self.head_decoder.forward(&self.head_norm.forward(&x)?)
    }

    /// The logits of each row's last token, `[rows, vocab]` in f32.
    pub fn last_logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?.squeeze(1)?;
        self.logits(&last)?.to_dtype(DType::F32)
    }

    fn activate(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.activation {
            Activation::Gelu => crate::model::fused::gelu(x),
            Activation::QuickGelu => quick_gelu(x),
        }
    }

    /// `[rows·tokens, PARTS·hidden]` → each part `[rows·heads, tokens, head_dim]`.
    fn split_heads<const PARTS: usize>(&self, x: &Tensor, rows: usize) -> candle_core::Result<[Tensor; PARTS]> {
        let (rows_tokens, width) = x.dims2()?;
        split_heads(&x.reshape((rows, rows_tokens / rows, width))?, self.heads)
    }

    /// `[rows·heads, tokens, head_dim]` → `[rows·tokens, hidden]`.
    fn merge_heads(&self, x: &Tensor, rows: usize) -> candle_core::Result<Tensor> {
        let (_, tokens, head_dim) = x.dims3()?;
        x.reshape((rows, self.heads, tokens, head_dim))?
            .transpose(1, 2)?
            .reshape((rows * tokens, self.heads * head_dim))
    }
}

impl DecoderState {
    /// Keeps only `rows` (indices into the current batch, in order): the
    /// rows still decoding, so finished ones cost nothing more.
    pub fn keep(&mut self, rows: &[u32]) -> candle_core::Result<()> {
        let heads = self.heads;
        let Some((first, _)) = self.cross.first() else { return Ok(()) };
        let device = first.device().clone();
        let index = Tensor::new(rows, &device)?;
        let select = |t: &Tensor| -> candle_core::Result<Tensor> {
            let (batch_heads, tokens, head_dim) = t.dims3()?;
            t.reshape((batch_heads / heads, heads * tokens * head_dim))?.index_select(&index, 0)?.reshape((
                rows.len() * heads,
                tokens,
                head_dim,
            ))
        };
        for (k, v) in self.cross.iter_mut().chain(self.past.iter_mut().flatten()) {
            *k = select(k)?;
            *v = select(v)?;
        }
        Ok(())
    }
}
