//! What a run folder records, as types: [`MetricsRecord`], one line of
//! `metrics.jsonl`, and [`CheckpointState`], the metadata of a checkpoint's
//! trainer-state file. The trainer writes these and the readers (charts,
//! run list, resume) read them; no one builds or picks apart the JSON by hand.
//!
//! The bytes stay those of the first format, so older run folders still open
//! and resume: keys in alphabetical order (the order the lines had when they
//! were built as `serde_json::Value` maps, hence the field order below), an
//! `event` key on every line but an optimizer step's.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum MetricsRecord {
    /// The validation loss at `step`.
    Validation { step: u64, val_loss: f64 },
    /// Sample images rendered at `step`.
    Samples { paths: Vec<PathBuf>, step: u64 },
    /// A complete checkpoint; `path` is its LoRA file.
    Checkpoint { path: PathBuf, step: u64 },
    /// The run ended (`stopped`: by the operator); `lora` is the final adapter.
    Finished { lora: PathBuf, step: u64, stopped: bool },
    /// This run began as a copy of run `run` up to its checkpoint at `step`
    /// (the lines before it are that run's). Readers that predate it skip
    /// the line, as they skip any unknown event.
    #[serde(rename = "resumed_from")]
    ResumedFrom { run: String, step: u64 },
    /// A trainer began (or resumed) training at `step`: the steps logged
    /// after it count their elapsed time from here.
    Started { step: u64 },
    /// An optimizer step: the one kind without an `event` key.
    #[serde(untagged)]
    Step(StepMetrics),
}

/// One optimizer step's figures, as reported and logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// An unknown `event` must not pass for a step line.
#[serde(deny_unknown_fields)]
pub struct StepMetrics {
    #[serde(rename = "elapsed_s")]
    pub elapsed_seconds: f64,
    // Figures no reader needs default to zero, so hand-made logs (the
    // workbench's snapshot tests) read too.
    #[serde(default)]
    pub epoch: u64,
    #[serde(default)]
    pub grad_norm: f64,
    pub loss: f64,
    pub lr: f64,
    /// Resident memory; `null` where it cannot be measured.
    #[serde(default)]
    pub memory_mib: Option<f64>,
    #[serde(rename = "samples_per_s", default)]
    pub samples_per_second: f64,
    /// Steps completed (1-based).
    pub step: u64,
    /// The run's length; 0 in runs logged before it was recorded (readers
    /// then take `train.steps` from the frozen project.toml).
    #[serde(default)]
    pub total: u64,
}

impl StepMetrics {
    /// Optimizer steps per second of the trainer that logged this and began
    /// at step `started_at`: its elapsed time counts from there (a resumed
    /// run's earlier steps took another process's time).
    pub fn steps_per_second_since(&self, started_at: u64) -> f64 {
        self.step.saturating_sub(started_at) as f64 / self.elapsed_seconds.max(1e-9)
    }
}

impl MetricsRecord {
    /// The step every record is filed under.
    pub fn step(&self) -> u64 {
        match self {
            Self::Validation { step, .. }
            | Self::Samples { step, .. }
            | Self::Checkpoint { step, .. }
            | Self::Finished { step, .. }
            | Self::ResumedFrom { step, .. }
            | Self::Started { step } => *step,
            Self::Step(metrics) => metrics.step,
        }
    }

    /// A line of the log (no newline), or `None` if it is not a record.
    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str(line).ok()
    }

    pub fn to_line(&self) -> Result<Vec<u8>> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        Ok(line)
    }
}

/// The newline-terminated lines of a log's text: a torn last line (a writer
/// mid-line, or a kill) is left out.
pub fn complete_lines(text: &str) -> std::str::Lines<'_> {
    text.rfind('\n').map_or("", |end| &text[..end]).lines()
}

/// The trainer state a checkpoint carries beside the optimizer moments, in
/// the state file's safetensors metadata (string keys and values).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointState {
    pub step: u64,
    /// AdamW's step count (its bias correction); with accumulation it is
    /// still one per optimizer step.
    pub optimizer_steps: u64,
    /// Ties the state to the configuration that wrote it (steps left out).
    pub config_hash: String,
    /// Validation loss by step, so pruning keeps the best checkpoint after a resume.
    pub validation_losses: HashMap<u64, f64>,
}

const STEP: &str = "step";
const OPTIMIZER_STEPS: &str = "optimizer_steps";
const CONFIG_HASH: &str = "config_hash";
const VALIDATION_LOSSES: &str = "validation_losses";
/// Written for a reader of the file: the random draws are recomputed from the step.
const RNG: &str = "rng";

impl CheckpointState {
    pub fn to_metadata(&self) -> Result<HashMap<String, String>> {
        // Validation losses are a JSON object keyed by the step as a string.
        let losses: BTreeMap<String, f64> =
            self.validation_losses.iter().map(|(step, loss)| (step.to_string(), *loss)).collect();
        Ok(HashMap::from([
            (STEP.to_string(), self.step.to_string()),
            (OPTIMIZER_STEPS.to_string(), self.optimizer_steps.to_string()),
            (CONFIG_HASH.to_string(), self.config_hash.clone()),
            (VALIDATION_LOSSES.to_string(), serde_json::to_string(&losses)?),
            (RNG.to_string(), "derived from train.seed and the step; nothing to save".to_string()),
        ]))
    }

    /// Reads the metadata of the state file at `path` (named in errors).
    pub fn from_metadata(metadata: &HashMap<String, String>, path: &Path) -> Result<Self> {
        let get = |key: &str| {
            metadata.get(key).ok_or_else(|| anyhow!("{}: the trainer state has no `{key}`", path.display()))
        };
        let number = |key: &str| -> Result<u64> {
            get(key)?.parse().with_context(|| format!("{}: the trainer state's `{key}` is not a step", path.display()))
        };
        let losses: HashMap<String, f64> = serde_json::from_str(get(VALIDATION_LOSSES)?)
            .with_context(|| format!("{}: the trainer state's `{VALIDATION_LOSSES}`", path.display()))?;
        let validation_losses = losses
            .into_iter()
            .map(|(step, loss)| Ok((step.parse()?, loss)))
            .collect::<Result<_, std::num::ParseIntError>>()
            .with_context(|| format!("{}: the trainer state's `{VALIDATION_LOSSES}`", path.display()))?;
        Ok(Self {
            step: number(STEP)?,
            optimizer_steps: number(OPTIMIZER_STEPS)?,
            config_hash: get(CONFIG_HASH)?.clone(),
            validation_losses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u64) -> StepMetrics {
        StepMetrics {
            elapsed_seconds: 0.5,
            epoch: 0,
            grad_norm: 0.02,
            loss: 0.25,
            lr: 1e-3,
            memory_mib: None,
            samples_per_second: 4.0,
            step,
            total: 10,
        }
    }

    #[test]
    fn every_kind_round_trips_and_steps_have_no_event_key() {
        let records = [
            MetricsRecord::Step(step(3)),
            MetricsRecord::Validation { step: 3, val_loss: 0.5 },
            MetricsRecord::Samples { paths: vec!["s/0.png".into()], step: 3 },
            MetricsRecord::Checkpoint { path: "c.safetensors".into(), step: 3 },
            MetricsRecord::Finished { lora: "l.safetensors".into(), step: 3, stopped: true },
            MetricsRecord::ResumedFrom { run: "20261130-163154".into(), step: 3 },
        ];
        for record in records {
            let line = String::from_utf8(record.to_line().unwrap()).unwrap();
            assert_eq!(line.contains("\"event\""), !matches!(record, MetricsRecord::Step(_)), "{line}");
            assert_eq!(MetricsRecord::parse(line.trim_end()), Some(record.clone()), "{line}");
            assert_eq!(record.step(), 3);
        }
        assert!(
            String::from_utf8(MetricsRecord::Step(step(1)).to_line().unwrap()).unwrap().contains("\"memory_mib\":null")
        );
        let origin = MetricsRecord::ResumedFrom { run: "a".into(), step: 2 }.to_line().unwrap();
        assert_eq!(String::from_utf8(origin).unwrap(), "{\"event\":\"resumed_from\",\"run\":\"a\",\"step\":2}\n");
    }

    #[test]
    fn unknown_events_and_partial_lines_are_not_records() {
        assert_eq!(MetricsRecord::parse(r#"{"event":"other","step":3}"#), None);
        assert_eq!(MetricsRecord::parse(r#"{"elapsed_s":1.0,"event":"x","loss":1.0,"lr":1.0,"step":3}"#), None);
        let text = "{\"event\":\"validation\",\"step\":1,\"val_loss\":0.5}\n{\"st";
        assert_eq!(complete_lines(text).filter_map(MetricsRecord::parse).count(), 1);
    }

    #[test]
    fn checkpoint_state_round_trips_through_metadata() {
        let state = CheckpointState {
            step: 20,
            optimizer_steps: 20,
            config_hash: "0123456789abcdef".into(),
            validation_losses: HashMap::from([(10, 0.5), (20, 0.25)]),
        };
        let metadata = state.to_metadata().unwrap();
        assert_eq!(metadata["validation_losses"], r#"{"10":0.5,"20":0.25}"#);
        assert_eq!(CheckpointState::from_metadata(&metadata, Path::new("s")).unwrap(), state);
        let mut broken = metadata;
        broken.remove("optimizer_steps");
        let error = CheckpointState::from_metadata(&broken, Path::new("x.state.safetensors")).unwrap_err();
        assert!(format!("{error:#}").contains("x.state.safetensors: the trainer state has no `optimizer_steps`"));
    }
}
