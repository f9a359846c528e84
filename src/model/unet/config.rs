//! The UNet's `config.json`, as diffusers writes it for `UNet2DConditionModel`.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A value given once for every block, or per block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    /// The value for block `i`; a short list repeats its last entry.
    pub fn get(&self, i: usize) -> usize {
        match self {
            Self::One(value) => *value,
            Self::Each(values) => values.get(i).or(values.last()).copied().unwrap_or(1),
        }
    }
}

/// The keys that shape the network; the others (kept by diffusers for
/// variants Easel does not run) are ignored, except the few checked in
/// [`UNetConfig::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub layers_per_block: usize,
    /// In SD configs this field holds the number of *heads*, not their width
    /// (a diffusers naming accident kept for compatibility).
    pub attention_head_dim: PerBlock,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    pub cross_attention_dim: usize,
    #[serde(default = "one_layer")]
    pub transformer_layers_per_block: PerBlock,
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<Vec<usize>>,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    /// `"text_time"` for SDXL: pooled text and image-size conditioning.
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default = "default_sample_size")]
    pub sample_size: usize,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default = "default_mid_block")]
    pub mid_block_type: Option<String>,
}

fn one_layer() -> PerBlock {
    PerBlock::One(1)
}
fn default_groups() -> usize {
    32
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_sample_size() -> usize {
    64
}
fn default_mid_block() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}

impl UNetConfig {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let config: Self = super::super::read_json_config(path)?;
        config.check().map_err(|message| format!("{}: {message}", path.display()))?;
        Ok(config)
    }

    /// Refuses variants the module code does not implement, rather than
    /// running them wrongly.
    pub fn check(&self) -> Result<(), String> {
        let levels = self.block_out_channels.len();
        if self.down_block_types.len() != levels || self.up_block_types.len() != levels {
            return Err(format!(
                "{levels} block_out_channels but {} down and {} up block types",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        for kind in self.down_block_types.iter().chain(&self.up_block_types) {
            if !["CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"].contains(&kind.as_str()) {
                return Err(format!("block type {kind} is not supported"));
            }
        }
        if let Some(kind) = &self.mid_block_type
            && kind != "UNetMidBlock2DCrossAttn"
        {
            return Err(format!("mid_block_type {kind} is not supported"));
        }
        if let Some(kind) = &self.class_embed_type {
            return Err(format!("class_embed_type {kind} is not supported"));
        }
        match self.addition_embed_type.as_deref() {
            None => Ok(()),
            Some("text_time")
                if self.addition_time_embed_dim.is_some() && self.projection_class_embeddings_input_dim.is_some() =>
            {
                Ok(())
            }
            Some(kind) => Err(format!("addition_embed_type {kind} is not supported (or its dimensions are missing)")),
        }
    }

    /// Attention heads in down block `i` (and the mid block for the last `i`).
    pub fn heads(&self, i: usize) -> usize {
        self.num_attention_heads.as_ref().unwrap_or(&self.attention_head_dim).get(i)
    }

    /// Transformer depth of up block `i`: the down depths reversed unless given.
    pub fn up_transformer_layers(&self, i: usize) -> usize {
        match &self.reverse_transformer_layers_per_block {
            Some(depths) => depths.get(i).copied().unwrap_or(1),
            None => self.transformer_layers_per_block.get(self.block_out_channels.len() - 1 - i),
        }
    }

    /// Width of the timestep embedding (4 × the first block's channels).
    pub fn time_embedding_width(&self) -> usize {
        self.block_out_channels[0] * 4
    }

    /// How many times the sample is halved: sizes must divide by 2^this.
    pub fn downsamplings(&self) -> usize {
        self.block_out_channels.len() - 1
    }
}
