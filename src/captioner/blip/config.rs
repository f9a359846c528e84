//! `config.json` of a `BlipForConditionalGeneration` folder, with
//! transformers' defaults for every field (hub configs leave many out).

use serde::Deserialize;

use crate::model::clip::Activation;
use crate::vision::vit::VitConfig;

#[derive(Debug, Clone, Deserialize)]
pub struct BlipConfig {
    #[serde(default)]
    pub text_config: BlipTextConfig,
    #[serde(default)]
    pub vision_config: BlipVisionConfig,
}

/// transformers' `BlipTextConfig` defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BlipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// transformers sets it to the vision width whatever the file says
    /// (`BlipConfig.__post_init__`); [`BlipConfig::cross_width`] does too.
    pub encoder_hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub bos_token_id: u32,
    pub pad_token_id: u32,
    pub sep_token_id: u32,
}

impl Default for BlipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30524,
            hidden_size: 768,
            encoder_hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 512,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            bos_token_id: 30522,
            pad_token_id: 0,
            sep_token_id: 102,
        }
    }
}

/// transformers' `BlipVisionConfig` defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BlipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl Default for BlipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 384,
            patch_size: 16,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl BlipConfig {
    /// The width the text decoder's cross-attention reads: the vision model's.
    pub fn cross_width(&self) -> usize {
        self.vision_config.hidden_size
    }

    pub fn vit(&self) -> VitConfig {
        let vision = &self.vision_config;
        VitConfig {
            hidden_size: vision.hidden_size,
            intermediate_size: vision.intermediate_size,
            layers: vision.num_hidden_layers,
            heads: vision.num_attention_heads,
            channels: 3,
            image_size: vision.image_size,
            patch_size: vision.patch_size,
            activation: vision.hidden_act,
            eps: vision.layer_norm_eps,
        }
    }
}
