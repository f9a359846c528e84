//! Automatic captions: image-to-text models behind one interface, so the
//! drafts, the command line and the workbench do not depend on which model
//! writes them. BLIP for now ([`blip`]); a tagger or a VLM would be another
//! implementation chosen by [`open`].

pub mod blip;
mod wordpiece;

use std::path::Path;

use anyhow::bail;
use candle_core::Device;
use serde::Deserialize;

/// What to ask of a captioner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptionRequest {
    /// Text the caption starts with ("a photo of"); captions include it.
    pub prompt: Option<String>,
    /// At most this many new tokens per caption.
    pub max_tokens: usize,
    /// At least this many new tokens (the end is not allowed before):
    /// transformers' `min_new_tokens`; benchmarks use it to fix the work.
    pub min_tokens: usize,
}

impl Default for CaptionRequest {
    /// No prompt, up to 40 tokens: BLIP's captions are a sentence.
    fn default() -> Self {
        Self { prompt: None, max_tokens: 40, min_tokens: 0 }
    }
}

pub trait Captioner: Send {
    /// Names the model for drafts and progress, e.g. "BLIP (blip-image-captioning-base)".
    fn describe(&self) -> String;
    /// How many images one call should get for good throughput on this device.
    fn preferred_batch(&self) -> usize;
    /// One caption per image, in order.
    fn caption(&mut self, images: &[image::RgbImage], request: &CaptionRequest) -> anyhow::Result<Vec<String>>;
}

/// The fields of `config.json` that say which model a folder holds.
#[derive(Deserialize)]
struct ModelKind {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
}

/// Opens a local model folder, choosing the implementation from its
/// `config.json` (`model_type` / `architectures`): BLIP for now.
pub fn open(folder: &Path, device: &Device) -> anyhow::Result<Box<dyn Captioner>> {
    let config = folder.join("config.json");
    if !config.is_file() {
        // BLIP's loader names what is missing and how to get a model.
        return Ok(Box::new(blip::Blip::load(folder, device)?));
    }
    let kind: ModelKind = crate::model::read_json_config(&config)?;
    let is_blip = kind.model_type.as_deref() == Some("blip")
        || kind.architectures.iter().any(|a| a == "BlipForConditionalGeneration");
    if !is_blip {
        bail!(
            "{}: a {} model; Easel captions with BLIP (BlipForConditionalGeneration), e.g. \
             Salesforce/blip-image-captioning-base",
            config.display(),
            kind.architectures.first().or(kind.model_type.as_ref()).map_or("unnamed", String::as_str)
        );
    }
    Ok(Box::new(blip::Blip::load(folder, device)?))
}
