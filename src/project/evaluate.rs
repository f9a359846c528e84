//! The `[evaluate]` section of project.toml: what `easel eval` renders and scores.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::config::Invalid;

/// The evaluation plan: every prompt × seed × LoRA scale × checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluateConfig {
    /// The concept's class noun ("mug"): stands in for the trigger in text
    /// scores and in the prior check; empty: taken from the captions.
    pub class: String,
    pub seeds: Vec<u64>,
    /// LoRA strengths; 0 is the base model.
    pub scales: Vec<f64>,
    pub checkpoints: Checkpoints,
    pub sampler: String,
    pub steps: u32,
    pub guidance: f64,
    /// Image side in pixels; 0: `train.resolution`.
    pub size: u32,
    /// A transformers CLIPModel folder (ViT-B/32 or ViT-L/14); empty: no CLIP scores.
    pub clip_model: PathBuf,
    /// A transformers Dinov2Model folder (ViT-S/14); empty: no DINO scores.
    pub dino_model: PathBuf,
    /// The prompts, `{trigger}` standing for the trigger and `{class}` for
    /// the class noun; none: a default set.
    pub prompts: Vec<EvalPrompt>,
}

impl Default for EvaluateConfig {
    fn default() -> Self {
        Self {
            class: String::new(),
            seeds: vec![1, 2],
            scales: vec![0.0, 0.5, 0.75, 1.0],
            checkpoints: Checkpoints::Named(CheckpointSet::All),
            sampler: "ddim".into(),
            steps: 20,
            guidance: 7.5,
            size: 0,
            clip_model: PathBuf::new(),
            dino_model: PathBuf::new(),
            prompts: Vec::new(),
        }
    }
}

/// Which of a run's checkpoints are evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Checkpoints {
    Named(CheckpointSet),
    /// These training steps.
    Steps(Vec<u64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointSet {
    All,
    Last,
    /// The checkpoint with the lowest validation loss.
    Best,
}

/// One prompt of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalPrompt {
    pub prompt: String,
    /// Like the captions (`in`), or a new context, style or pose (`out`).
    #[serde(default)]
    pub kind: PromptKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptKind {
    #[default]
    In,
    Out,
    /// The class without the trigger ("a photo of a mug"): should stay an
    /// ordinary one at every scale (the prior check).
    Prior,
}

impl EvalPrompt {
    pub fn new(prompt: &str, kind: PromptKind) -> Self {
        Self { prompt: prompt.to_string(), kind }
    }
}

impl EvaluateConfig {
    /// The prompts to render: the configured ones, or one like the captions,
    /// four new contexts and styles, and the class alone.
    pub fn prompts_or_default(&self) -> Vec<EvalPrompt> {
        if !self.prompts.is_empty() {
            return self.prompts.clone();
        }
        vec![
            EvalPrompt::new("a photo of {trigger}", PromptKind::In),
            EvalPrompt::new("a photo of {trigger} on a beach", PromptKind::Out),
            EvalPrompt::new("{trigger} in the snow, seen from above", PromptKind::Out),
            EvalPrompt::new("a watercolor painting of {trigger}", PromptKind::Out),
            EvalPrompt::new("a pencil sketch of {trigger}", PromptKind::Out),
            EvalPrompt::new("a photo of a {class}", PromptKind::Prior),
        ]
    }

    /// Checks what the types cannot; the first problem in file order.
    pub fn validate(&self) -> Result<(), Invalid> {
        let fail = |key: &str, message: String| Err(Invalid { key: format!("evaluate.{key}"), message });
        if self.class.chars().any(|c| c == ',' || c.is_control()) {
            return fail("class", format!("`{}` may not contain commas or control characters", self.class));
        }
        if self.seeds.is_empty() {
            return fail("seeds", "give at least one seed".into());
        }
        if self.scales.is_empty() {
            return fail("scales", "give at least one LoRA scale".into());
        }
        if let Some(scale) = self.scales.iter().find(|s| !(s.is_finite() && (0.0..=4.0).contains(*s))) {
            return fail("scales", format!("scale {scale} is outside 0..=4"));
        }
        if let Checkpoints::Steps(steps) = &self.checkpoints
            && steps.is_empty()
        {
            return fail("checkpoints", "give \"all\", \"last\", \"best\" or at least one step".into());
        }
        if let Err(error) = self.sampler.parse::<crate::model::sampling::SamplerKind>() {
            return fail("sampler", error.to_string());
        }
        if self.steps == 0 || self.steps > 1000 {
            return fail("steps", format!("steps {} is outside 1..=1000", self.steps));
        }
        if !(self.guidance.is_finite() && (0.0..=50.0).contains(&self.guidance)) {
            return fail("guidance", format!("guidance {} is outside 0..=50", self.guidance));
        }
        if self.size != 0 && (!self.size.is_multiple_of(8) || !(64..=2048).contains(&self.size)) {
            return fail("size", format!("size {} must be 0 or a multiple of 8 in 64..=2048", self.size));
        }
        for (i, prompt) in self.prompts.iter().enumerate() {
            if prompt.prompt.trim().is_empty() {
                return fail(&format!("prompts[{i}].prompt"), "the prompt is empty".into());
            }
        }
        Ok(())
    }
}
