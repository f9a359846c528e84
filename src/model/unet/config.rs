//! The UNet's `config.json`, as diffusers writes it for `UNet2DConditionModel`.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

/// A value given once for every block, or per block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    /// The value for block `i` (lists are checked to cover every block).
    pub fn get(&self, i: usize) -> usize {
        match self {
            Self::One(value) => *value,
            Self::Each(values) => values[i],
        }
    }

    fn covers(&self, blocks: usize) -> bool {
        match self {
            Self::One(_) => true,
            Self::Each(values) => values.len() == blocks,
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
    /// Variants that change the numbers; only the defaults are implemented,
    /// so anything else is refused rather than run wrongly.
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default)]
    pub resnet_time_scale_shift: Option<String>,
    #[serde(default)]
    pub only_cross_attention: Option<serde_json::Value>,
    #[serde(default)]
    pub time_embedding_type: Option<String>,
    #[serde(default)]
    pub conv_in_kernel: Option<usize>,
    #[serde(default)]
    pub conv_out_kernel: Option<usize>,
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
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let config: Self = super::super::read_json_config(path)?;
        config.check().with_context(|| path.display().to_string())?;
        Ok(config)
    }

    /// Refuses variants the module code does not implement, rather than
    /// running them wrongly.
    pub fn check(&self) -> anyhow::Result<()> {
        let levels = self.block_out_channels.len();
        if self.down_block_types.len() != levels || self.up_block_types.len() != levels {
            bail!(
                "{levels} block_out_channels but {} down and {} up block types",
                self.down_block_types.len(),
                self.up_block_types.len()
            );
        }
        for kind in self.down_block_types.iter().chain(&self.up_block_types) {
            if !["CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"].contains(&kind.as_str()) {
                bail!("block type {kind} is not supported");
            }
        }
        if let Some(kind) = &self.mid_block_type
            && kind != "UNetMidBlock2DCrossAttn"
        {
            bail!("mid_block_type {kind} is not supported");
        }
        if let Some(kind) = &self.class_embed_type {
            bail!("class_embed_type {kind} is not supported");
        }
        let heads = self.num_attention_heads.as_ref().unwrap_or(&self.attention_head_dim);
        for (name, value) in [
            ("attention_head_dim / num_attention_heads", heads),
            ("transformer_layers_per_block", &self.transformer_layers_per_block),
        ] {
            if !value.covers(levels) {
                bail!("{name} must give one value or one per block ({levels})");
            }
        }
        if let Some(reverse) = &self.reverse_transformer_layers_per_block
            && reverse.len() != levels
        {
            bail!("reverse_transformer_layers_per_block must give one value per block ({levels})");
        }
        let unsupported = [
            ("time_cond_proj_dim", self.time_cond_proj_dim.is_some()),
            ("resnet_time_scale_shift", self.resnet_time_scale_shift.as_deref().is_some_and(|v| v != "default")),
            (
                "only_cross_attention",
                self.only_cross_attention.as_ref().is_some_and(|v| v != &serde_json::Value::Bool(false)),
            ),
            ("time_embedding_type", self.time_embedding_type.as_deref().is_some_and(|v| v != "positional")),
            ("conv_in_kernel", self.conv_in_kernel.is_some_and(|k| k != 3)),
            ("conv_out_kernel", self.conv_out_kernel.is_some_and(|k| k != 3)),
        ];
        if let Some((key, _)) = unsupported.iter().find(|(_, differs)| *differs) {
            bail!("{key} other than the Stable Diffusion default is not supported");
        }
        match self.addition_embed_type.as_deref() {
            None => Ok(()),
            Some("text_time")
                if self.addition_time_embed_dim.is_some() && self.projection_class_embeddings_input_dim.is_some() =>
            {
                Ok(())
            }
            Some(kind) => Err(anyhow!("addition_embed_type {kind} is not supported (or its dimensions are missing)")),
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

#[cfg(test)]
mod tests {
    use super::UNetConfig;

    fn config(extra: serde_json::Value) -> anyhow::Result<()> {
        let mut json = serde_json::json!({"in_channels": 4, "out_channels": 4, "block_out_channels": [32, 64],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "layers_per_block": 2, "attention_head_dim": 2, "cross_attention_dim": 32});
        for (key, value) in extra.as_object().unwrap() {
            json[key] = value.clone();
        }
        serde_json::from_value::<UNetConfig>(json).unwrap().check()
    }

    #[test]
    fn variants_that_would_run_wrongly_are_refused() {
        config(serde_json::json!({})).unwrap();
        config(serde_json::json!({"resnet_time_scale_shift": "default", "only_cross_attention": false})).unwrap();
        for (extra, key) in [
            (serde_json::json!({"time_cond_proj_dim": 256}), "time_cond_proj_dim"),
            (serde_json::json!({"resnet_time_scale_shift": "scale_shift"}), "resnet_time_scale_shift"),
            (serde_json::json!({"attention_head_dim": [2, 4, 8]}), "attention_head_dim"),
            (serde_json::json!({"transformer_layers_per_block": [1]}), "transformer_layers_per_block"),
            (
                serde_json::json!({"down_block_types": ["SimpleCrossAttnDownBlock2D", "DownBlock2D"]}),
                "SimpleCrossAttnDownBlock2D",
            ),
            (serde_json::json!({"addition_embed_type": "text_image"}), "text_image"),
        ] {
            let error = config(extra).unwrap_err().to_string();
            assert!(error.contains(key), "{error}");
        }
    }
}
