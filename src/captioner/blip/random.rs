//! Random-weight BLIP folders in the Hugging Face layout, for tests and the
//! benchmark: the weights are what the module code asks for (recorded, so
//! the names always match), drawn deterministically from each name.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::DType;
use serde_json::json;

use super::config::BlipConfig;
use super::text::TextDecoder;
use crate::model::builtin::{weight_shapes, write_json, write_weights};
use crate::vision::vit::{BLIP_LAYOUT, VisionTransformer};

/// Real words for the synthetic vocabulary, so captions decode to text.
const WORDS: [&str; 32] = [
    "a", "photo", "of", "the", "dog", "cat", "man", "woman", "sitting", "on", "in", "with", "red", "blue", "green",
    "tree", "house", "car", "street", "beach", "field", "table", "wearing", "hat", "standing", "next", "to", "and",
    "white", "black", "large", "small",
];

/// BLIP-base's architecture (Salesforce/blip-image-captioning-base), as its
/// hub config gives it.
pub fn base_config() -> serde_json::Value {
    json!({
        "architectures": ["BlipForConditionalGeneration"],
        "model_type": "blip",
        "text_config": {
            "vocab_size": 30524, "hidden_size": 768, "encoder_hidden_size": 768, "intermediate_size": 3072,
            "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 512,
            "bos_token_id": 30522, "sep_token_id": 102, "pad_token_id": 0
        },
        "vision_config": {
            "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
            "image_size": 384, "patch_size": 16, "layer_norm_eps": 1e-5
        }
    })
}

/// A BLIP a few kilobytes big (hidden width 32, two layers each side, 32 px
/// images, 130 words): the shape tests caption with.
pub fn tiny_config() -> serde_json::Value {
    json!({
        "text_config": {
            "vocab_size": 130, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "max_position_embeddings": 64, "bos_token_id": 128
        },
        "vision_config": {
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "image_size": 32, "patch_size": 8
        }
    })
}

/// Writes a BLIP folder for `config` (a `config.json` value; missing fields
/// take transformers' defaults, `model_type` and `architectures` BLIP's
/// captioner): `config.json`, `model.safetensors` (f32,
/// the word embeddings tied to the output layer as transformers saves
/// them), `vocab.txt`, `tokenizer_config.json` (BERT's, [DEC] as BLIP's
/// added start token) and `preprocessor_config.json`: what transformers'
/// `from_pretrained` reads too.
pub fn write_random_blip(folder: &Path, config: &serde_json::Value) -> Result<()> {
    let mut config = config.clone();
    if let Some(fields) = config.as_object_mut() {
        fields.entry("model_type").or_insert_with(|| json!("blip"));
        fields.entry("architectures").or_insert_with(|| json!(["BlipForConditionalGeneration"]));
    }
    let parsed: BlipConfig = serde_json::from_value(config.clone()).context("a BLIP config.json")?;
    let shapes = weight_shapes(|vb| {
        VisionTransformer::load(vb.pp("vision_model"), &parsed.vit(), &BLIP_LAYOUT)?;
        TextDecoder::load(vb.pp("text_decoder"), &parsed.text_config, parsed.cross_width())?;
        Ok(())
    })?;
    write_weights(folder, "model", &config, shapes, DType::F32)?;
    std::fs::write(folder.join("vocab.txt"), vocabulary(parsed.text_config.vocab_size).join("\n") + "\n")
        .with_context(|| format!("cannot write {}", folder.join("vocab.txt").display()))?;
    let tokenizer = json!({
        "tokenizer_class": "BertTokenizer", "processor_class": "BlipProcessor", "do_lower_case": true,
        "bos_token": "[DEC]", "extra_special_tokens": ["[ENC]"], "model_max_length": 512
    });
    write_json(&folder.join("tokenizer_config.json"), &tokenizer)?;
    let size = parsed.vision_config.image_size;
    let processor = json!({
        "image_processor_type": "BlipImageProcessor", "processor_class": "BlipProcessor",
        "do_resize": true, "size": {"height": size, "width": size}, "resample": 3,
        "do_rescale": true, "rescale_factor": 1.0 / 255.0, "do_normalize": true,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]
    });
    write_json(&folder.join("preprocessor_config.json"), &processor)
}

/// BERT's special tokens at their ids ([PAD] 0, [UNK] 100, [CLS] 101, [SEP]
/// 102, [MASK] 103), real words cycling through the rest (with `##s`
/// plural after them), up to the last two ids: BLIP's [DEC] and [ENC] are
/// added tokens, outside vocab.txt, as in the real model's files.
fn vocabulary(size: usize) -> Vec<String> {
    let special = |id: usize| match id {
        0 => Some("[PAD]"),
        100 => Some("[UNK]"),
        101 => Some("[CLS]"),
        102 => Some("[SEP]"),
        103 => Some("[MASK]"),
        _ => None,
    };
    let mut words = WORDS.iter().map(|w| w.to_string()).chain(std::iter::once("##s".to_string()));
    let mut filler = 0;
    (0..size.saturating_sub(2))
        .map(|id| match special(id) {
            Some(token) => token.to_string(),
            None => words.next().unwrap_or_else(|| {
                filler += 1;
                format!("word{filler}")
            }),
        })
        .collect()
}
