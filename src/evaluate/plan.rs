//! What an evaluation renders: the run's checkpoints chosen by the plan, and
//! one cell per prompt × seed × scale × checkpoint, each keyed by everything
//! that decides its pixels (so a rerun renders only what changed).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::model::lora::fnv1a;
use crate::model::sampling::SamplerKind;
use crate::project::{CheckpointSet, Checkpoints, EvalPrompt, Project, PromptKind};

/// A checkpoint of the run: its step and LoRA file.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub step: u64,
    pub file: PathBuf,
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub checkpoints: Option<Checkpoints>,
    pub scales: Option<Vec<f64>>,
    pub seeds: Option<Vec<u64>>,
}

/// The resolved plan for one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub run_dir: PathBuf,
    /// Where cells, sheets and eval.json go: `runs/<id>/eval/default/`.
    pub out_dir: PathBuf,
    pub checkpoints: Vec<Checkpoint>,
    /// With `{trigger}` and `{class}` filled in.
    pub prompts: Vec<EvalPrompt>,
    /// The class noun: configured, or taken from the captions (`None`: neither).
    pub class: Option<String>,
    pub seeds: Vec<u64>,
    pub scales: Vec<f64>,
    pub sampler: SamplerKind,
    pub steps: usize,
    pub guidance: f64,
    pub size: usize,
    /// What the base model is, for the cells' keys.
    pub base_model: String,
}

/// One image of the grid. Scale 0 is the base model, the same for every
/// checkpoint, so its cells have no checkpoint and are rendered once.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub prompt: usize,
    pub seed: u64,
    pub scale: f64,
    pub step: Option<u64>,
}

impl Plan {
    /// The plan of project.toml's `[evaluate]` for `run_dir`, with the command line's overrides.
    pub fn new(project: &Project, run_dir: &Path, overrides: &Overrides) -> Result<Self> {
        let config = &project.config.evaluate;
        let choice = overrides.checkpoints.as_ref().unwrap_or(&config.checkpoints);
        let checkpoints = choose_checkpoints(run_dir, choice)?;
        let trigger = &project.config.trigger;
        let class = match config.class.trim() {
            "" => derive_class(&captions(project), trigger),
            class => Some(class.to_string()),
        };
        // Without a class noun, the prompts that need one are left out.
        let prompts = config
            .prompts_or_default()
            .into_iter()
            .filter(|p| class.is_some() || !p.prompt.contains("{class}"))
            .map(|p| EvalPrompt {
                prompt: p.prompt.replace("{trigger}", trigger).replace("{class}", class.as_deref().unwrap_or("")),
                kind: p.kind,
            })
            .collect();
        let size = if config.size == 0 { project.config.train.resolution } else { config.size };
        Ok(Self {
            run_dir: run_dir.to_path_buf(),
            out_dir: crate::train::run_dir::evaluation_dir(run_dir),
            checkpoints,
            prompts,
            class,
            seeds: overrides.seeds.clone().unwrap_or_else(|| config.seeds.clone()),
            scales: overrides.scales.clone().unwrap_or_else(|| config.scales.clone()),
            sampler: config.sampler.parse()?,
            steps: config.steps as usize,
            guidance: config.guidance,
            size: size as usize,
            base_model: format!("{}", project.config.model.base),
        })
    }

    /// Every cell, grouped by checkpoint (base-model cells first), so the
    /// LoRA is attached once per checkpoint and scale.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        let grid = |scale: f64, step: Option<u64>, cells: &mut Vec<Cell>| {
            for prompt in 0..self.prompts.len() {
                for &seed in &self.seeds {
                    cells.push(Cell { prompt, seed, scale, step });
                }
            }
        };
        if self.scales.contains(&0.0) {
            grid(0.0, None, &mut cells);
        }
        for checkpoint in &self.checkpoints {
            for &scale in self.scales.iter().filter(|s| **s != 0.0) {
                grid(scale, Some(checkpoint.step), &mut cells);
            }
        }
        cells
    }

    pub fn checkpoint(&self, step: u64) -> Option<&Checkpoint> {
        self.checkpoints.iter().find(|c| c.step == step)
    }

    /// The cell's image, relative to `out_dir`.
    pub fn cell_file(&self, cell: &Cell) -> PathBuf {
        let name = format!("p{:02}-seed{}.png", cell.prompt, cell.seed);
        match cell.step {
            None => Path::new("cells").join("base").join(name),
            Some(step) => Path::new("cells").join(format!("step-{step:06}-scale-{}", cell.scale)).join(name),
        }
    }

    /// Everything that decides the cell's pixels, hashed: the base model, the
    /// LoRA file (path, size, modification time) and scale, the prompt, seed,
    /// sampler, steps, guidance and size.
    pub fn cell_key(&self, cell: &Cell) -> Result<String> {
        let lora = match cell.step.and_then(|step| self.checkpoint(step)) {
            Some(checkpoint) => {
                let meta = std::fs::metadata(&checkpoint.file)
                    .with_context(|| format!("cannot read {}", checkpoint.file.display()))?;
                let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                format!("{}|{}|{:?}", checkpoint.file.display(), meta.len(), modified)
            }
            None => "none".into(),
        };
        let text = format!(
            "{}|{lora}|{}|{}|{}|{}|{}|{}|{}",
            self.base_model,
            cell.scale,
            self.prompts[cell.prompt].prompt,
            cell.seed,
            self.sampler,
            self.steps,
            self.guidance,
            self.size
        );
        Ok(format!("{:016x}", fnv1a(text.as_bytes())))
    }
}

/// The run's checkpoints, oldest first.
pub fn list_checkpoints(run_dir: &Path) -> Vec<Checkpoint> {
    let folder = run_dir.join("checkpoints");
    let Ok(items) = std::fs::read_dir(&folder) else { return Vec::new() };
    let mut checkpoints: Vec<Checkpoint> = items
        .filter_map(|item| {
            let file = item.ok()?.path();
            let name = file.file_name()?.to_str()?;
            let step = name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok()?;
            Some(Checkpoint { step, file })
        })
        .collect();
    checkpoints.sort_by_key(|c| c.step);
    checkpoints
}

fn choose_checkpoints(run_dir: &Path, choice: &Checkpoints) -> Result<Vec<Checkpoint>> {
    let all = list_checkpoints(run_dir);
    if all.is_empty() {
        bail!("{} has no checkpoints yet (train with save_every > 0, or let the run finish)", run_dir.display());
    }
    Ok(match choice {
        Checkpoints::Named(CheckpointSet::All) => all,
        Checkpoints::Named(CheckpointSet::Last) => all.last().cloned().into_iter().collect(),
        Checkpoints::Named(CheckpointSet::Best) => {
            let validation = crate::train::read_metrics(run_dir).validation;
            let loss_at = |step: u64| validation.iter().find(|(s, _)| *s == step).map(|(_, loss)| *loss);
            let best = all.iter().filter_map(|c| Some((loss_at(c.step)?, c))).min_by(|a, b| a.0.total_cmp(&b.0));
            // No validation at any checkpoint: the last one stands in.
            vec![best.map_or_else(|| all[all.len() - 1].clone(), |(_, c)| c.clone())]
        }
        Checkpoints::Steps(steps) => {
            let mut chosen = Vec::new();
            for step in steps {
                match all.iter().find(|c| c.step == *step) {
                    Some(checkpoint) => chosen.push(checkpoint.clone()),
                    None => {
                        let have: Vec<String> = all.iter().map(|c| c.step.to_string()).collect();
                        bail!("{} has no checkpoint at step {step} (it has {})", run_dir.display(), have.join(", "));
                    }
                }
            }
            chosen
        }
    })
}

/// The row label of a prompt on the sheets.
pub fn prompt_label(prompt: &EvalPrompt) -> String {
    let kind = match prompt.kind {
        PromptKind::In => "",
        PromptKind::Out => " (new)",
        PromptKind::Prior => " (prior)",
    };
    format!("{}{kind}", prompt.prompt)
}

/// The readable captions of the dataset.
pub fn captions(project: &Project) -> Vec<String> {
    let inventory = crate::dataset::Inventory::read(&project.dataset_dir(), &project.config.caption_extension, None);
    inventory
        .entries
        .iter()
        .filter_map(|entry| match &entry.caption {
            crate::dataset::CaptionState::Text(text) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// The class noun the captions use most: in each caption, the first part
/// that starts with "a"/"an" names the thing, and its head noun is the word
/// before "with", "on", "in" or "and", or its last word ("a teal ceramic mug
/// with a star" → "mug").
pub fn derive_class(captions: &[String], trigger: &str) -> Option<String> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for caption in captions {
        let Some(part) = caption.split(',').map(str::trim).find(|part| {
            let lower = part.to_lowercase();
            (lower.starts_with("a ") || lower.starts_with("an ")) && !lower.contains(&trigger.to_lowercase())
        }) else {
            continue;
        };
        let words: Vec<String> = part.split_whitespace().map(|w| w.to_lowercase()).collect();
        let end = words.iter().position(|w| ["with", "on", "in", "and", "of"].contains(&w.as_str()));
        let Some(head) = words[..end.unwrap_or(words.len())].last() else { continue };
        let head: String = head.chars().filter(|c| c.is_alphanumeric() || *c == '-').collect();
        if head.len() < 2 || head == "a" || head == "an" {
            continue;
        }
        match counts.iter_mut().find(|(word, _)| *word == head) {
            Some((_, count)) => *count += 1,
            None => counts.push((head, 1)),
        }
    }
    // The commonest; among equals, the first seen.
    let most = counts.iter().map(|(_, count)| *count).max()?;
    counts.into_iter().find(|(_, count)| *count == most).map(|(word, _)| word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_is_the_head_noun_the_captions_use_most() {
        let captions = [
            "zeltmug, a teal ceramic mug with an orange star emblem, on a wooden table",
            "zeltmug, a mug on a marble counter",
            "a photo of zeltmug, a small cup",
            "zeltmug, studio light",
        ]
        .map(String::from);
        assert_eq!(derive_class(&captions, "zeltmug").as_deref(), Some("mug"));
        assert_eq!(derive_class(&["zeltmug, studio light".into()], "zeltmug"), None);
    }
}
