//! The `[auto_captions]` section of project.toml: the captioning model
//! `easel captions auto` and the Captions pane use, and how they ask it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::config::Invalid;

/// Where a captioning model comes from, for whoever has none yet.
pub const HOW_TO_GET_A_MODEL: &str = "BLIP: `huggingface-cli download Salesforce/blip-image-captioning-base \
     --local-dir models/blip`, then model = \"models/blip\" under [auto_captions] in project.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoCaptionConfig {
    /// A Hugging Face captioning model folder (BLIP base or large); empty:
    /// `--model` must say, and the pane asks.
    pub model: PathBuf,
    /// A text every caption starts with ("a photo of"); empty: none.
    pub prompt: String,
    /// The most tokens a caption may have, the prompt's not counted.
    pub max_tokens: u32,
    /// Images per model call; 0: what the model finds best on the device.
    pub batch: u32,
}

impl Default for AutoCaptionConfig {
    fn default() -> Self {
        Self { model: PathBuf::new(), prompt: String::new(), max_tokens: 40, batch: 0 }
    }
}

impl AutoCaptionConfig {
    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        let fail = |key: &str, message: String| Err(Invalid { key: format!("auto_captions.{key}"), message });
        if !(1..=256).contains(&self.max_tokens) {
            return fail("max_tokens", format!("{} is outside 1..=256", self.max_tokens));
        }
        if self.batch > 256 {
            return fail("batch", format!("{} is over 256", self.batch));
        }
        Ok(())
    }
}
