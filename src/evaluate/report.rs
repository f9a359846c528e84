//! `eval.json`: every cell's inputs, image and scores, and the summary per
//! checkpoint × scale. Rewritten atomically after each cell, so a killed
//! evaluation continues where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::project::PromptKind;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub cells: Vec<CellRecord>,
    /// Per checkpoint × scale (the base model as step `null`, scale 0).
    pub summaries: Vec<Summary>,
    /// The contact sheets, relative to the report's folder.
    pub sheets: Vec<PathBuf>,
    /// What the scores say, when there are scores.
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// The cells the evaluation's plan has (more than `cells` while a
    /// stopped evaluation is still to be continued); 0 in older reports.
    #[serde(default)]
    pub planned: usize,
    /// The plan's checkpoint × scale groups, in its order (the base model,
    /// then by step and scale), rendered or not; empty in older reports.
    #[serde(default)]
    pub planned_groups: Vec<(Option<u64>, f64)>,
}

/// The checkpoint and scale to use, and where overfitting began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub recommended_step: Option<u64>,
    pub recommended_scale: Option<f64>,
    pub overfitting_began: Option<u64>,
    /// The same, in words.
    pub words: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    pub prompt: String,
    pub kind: PromptKind,
    pub seed: u64,
    pub scale: f64,
    /// The checkpoint's step; `None` for the base model (scale 0).
    pub step: Option<u64>,
    /// The image, relative to the report's folder.
    pub file: PathBuf,
    /// The hash of everything that decided the pixels.
    pub key: String,
    pub seconds: f64,
    #[serde(default)]
    pub scores: BTreeMap<String, f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub step: Option<u64>,
    pub scale: f64,
    pub cells: usize,
    #[serde(default)]
    pub scores: BTreeMap<String, f32>,
}

impl EvalReport {
    /// The report in `folder`; none yet is an empty one, a broken one an error naming it.
    pub fn read(folder: &Path) -> Result<Self> {
        let path = folder.join("eval.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not an evaluation report (delete it to start over)", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn write(&self, folder: &Path) -> Result<()> {
        let path = folder.join("eval.json");
        let text = serde_json::to_string_pretty(self)?;
        crate::fsutil::atomic_write(&path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The record of the image at `file` when it was made from `key` and is still there.
    pub fn done(&self, folder: &Path, file: &Path, key: &str) -> bool {
        self.cells.iter().any(|c| c.file == file && c.key == key) && folder.join(file).is_file()
    }

    /// Every checkpoint × scale of the evaluation: the plan's, or in an older
    /// report those it has a summary or cells of (a stopped evaluation has
    /// no summaries yet), the base model first, then by step and scale.
    pub fn groups(&self) -> Vec<(Option<u64>, f64)> {
        if !self.planned_groups.is_empty() {
            return self.planned_groups.clone();
        }
        let mut groups: Vec<(Option<u64>, f64)> = self.summaries.iter().map(|s| (s.step, s.scale)).collect();
        let mut rendered: Vec<(Option<u64>, f64)> =
            self.cells.iter().map(|c| (c.step, c.scale)).filter(|group| !groups.contains(group)).collect();
        rendered.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        rendered.dedup();
        groups.extend(rendered);
        groups
    }

    /// Whether cells of the plan are still to render (a stopped evaluation).
    pub fn unfinished(&self) -> bool {
        self.cells.len() < self.planned
    }

    /// Adds a cell's record, replacing an older one of the same image.
    pub fn record(&mut self, record: CellRecord) {
        self.cells.retain(|c| c.file != record.file);
        self.cells.push(record);
    }
}
