//! Scoring a rendered grid with CLIP and DINO (`scores.rs` has the
//! formulas): each cell against the training images and its prompt, each
//! checkpoint × scale as a whole, and the verdict over checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;
use image::RgbImage;

use super::embed::{Clip, Dino};
use super::plan::{Cell, Plan};
use super::report::{EvalReport, Verdict};
use super::scores;
use crate::project::{Project, PromptKind};

/// The scoring models the project names; either may be missing.
pub struct Scorers {
    pub clip: Option<Clip>,
    pub dino: Option<Dino>,
}

impl Scorers {
    /// Loads `evaluate.clip_model` and `evaluate.dino_model`. One that is not
    /// set, or cannot be loaded, is left out with a note naming the setting.
    pub fn load(project: &Project, device: &Device) -> (Self, Vec<String>) {
        let config = &project.config.evaluate;
        let mut notes = Vec::new();
        let mut folder = |setting: &str, path: &Path, example: &str| -> Option<PathBuf> {
            if path.as_os_str().is_empty() {
                notes.push(format!(
                    "no {setting} set in {}: give a transformers model folder ({example}) for its scores",
                    project.config_path().display()
                ));
                return None;
            }
            Some(if path.is_absolute() { path.to_path_buf() } else { project.root.join(path) })
        };
        let clip_folder = folder("evaluate.clip_model", &config.clip_model, "e.g. openai/clip-vit-base-patch32");
        let dino_folder = folder("evaluate.dino_model", &config.dino_model, "e.g. facebook/dinov2-small");
        let clip = loaded("evaluate.clip_model", clip_folder.map(|f| Clip::load(&f, device)), &mut notes);
        let dino = loaded("evaluate.dino_model", dino_folder.map(|f| Dino::load(&f, device)), &mut notes);
        (Self { clip, dino }, notes)
    }

    pub fn any(&self) -> bool {
        self.clip.is_some() || self.dino.is_some()
    }
}

/// The model, or a note naming the setting whose model could not be loaded.
fn loaded<T>(setting: &str, loaded: Option<Result<T>>, notes: &mut Vec<String>) -> Option<T> {
    match loaded? {
        Ok(model) => Some(model),
        Err(error) => {
            notes.push(format!("{setting}: {error:#}; its scores are left out"));
            None
        }
    }
}

/// One image's embeddings.
#[derive(Default, Clone)]
struct Embedded {
    clip: Option<Vec<f32>>,
    dino: Option<Vec<f32>>,
}

fn embed(scorers: &Scorers, images: &[RgbImage]) -> Result<Vec<Embedded>> {
    let clip = scorers.clip.as_ref().map(|m| m.image_embeddings(images)).transpose()?;
    let dino = scorers.dino.as_ref().map(|m| m.image_embeddings(images)).transpose()?;
    Ok((0..images.len())
        .map(|i| Embedded { clip: clip.as_ref().map(|e| e[i].clone()), dino: dino.as_ref().map(|e| e[i].clone()) })
        .collect())
}

/// The readable images of the dataset, the reference for fidelity and memorisation.
fn training_images(project: &Project) -> Vec<RgbImage> {
    let dataset = project.dataset_dir();
    let inventory = crate::dataset::Inventory::read(&dataset, &project.config.caption_extension, None);
    inventory
        .entries
        .iter()
        .filter_map(|entry| image::open(dataset.join(&entry.path)).ok())
        .map(|i| i.to_rgb8())
        .collect()
}

/// Scores the report and writes it when its grid is complete (a stopped
/// evaluation is scored when it is continued) and a scoring model is set;
/// the notes on the models left out.
pub fn score_finished(project: &Project, plan: &Plan, device: &Device, report: &mut EvalReport) -> Result<Vec<String>> {
    let (scorers, notes) = Scorers::load(project, device);
    if scorers.any() && report.cells.len() == plan.cells().len() {
        score(project, plan, &scorers, report)?;
        report.write(&plan.out_dir)?;
    }
    Ok(notes)
}

/// Fills in the report's cell and summary scores and its verdict.
pub fn score(project: &Project, plan: &Plan, scorers: &Scorers, report: &mut EvalReport) -> Result<()> {
    let training = embed(scorers, &training_images(project))?;
    let cells = plan.cells();
    let mut embedded: HashMap<PathBuf, Embedded> = HashMap::new();
    for chunk in cells.chunks(16) {
        let files: Vec<PathBuf> = chunk.iter().map(|cell| plan.cell_file(cell)).collect();
        let images = files
            .iter()
            .map(|file| {
                let path = plan.out_dir.join(file);
                Ok(image::open(&path).with_context(|| format!("cannot read {}", path.display()))?.to_rgb8())
            })
            .collect::<Result<Vec<_>>>()?;
        embedded.extend(files.into_iter().zip(embed(scorers, &images)?));
    }
    // CLIP-T reads each prompt with the class noun where the trigger was.
    let texts: Vec<String> = plan
        .prompts
        .iter()
        .map(|p| p.prompt.replace(&project.config.trigger, plan.class.as_deref().unwrap_or("")))
        .collect();
    let text_embeddings = scorers.clip.as_ref().map(|clip| clip.text_embeddings(&texts)).transpose()?;

    let pick = |e: &[Embedded], f: fn(&Embedded) -> Option<&Vec<f32>>| -> Vec<Vec<f32>> {
        e.iter().filter_map(|x| f(x).cloned()).collect()
    };
    let (train_clip, train_dino) = (pick(&training, |e| e.clip.as_ref()), pick(&training, |e| e.dino.as_ref()));
    for record in &mut report.cells {
        let Some(cell) = embedded.get(&record.file) else { continue };
        let prompt = plan.prompts.iter().position(|p| p.prompt == record.prompt);
        let mut put = |name: &str, value: Option<f32>| {
            if let Some(value) = value {
                record.scores.insert(name.to_string(), value);
            }
        };
        let one = |e: &Option<Vec<f32>>| e.iter().cloned().collect::<Vec<_>>();
        put("dino_fidelity", scores::mean_cross_cosine(&one(&cell.dino), &train_dino));
        put("clip_i", scores::mean_cross_cosine(&one(&cell.clip), &train_clip));
        put("memorisation", scores::memorisation(&one(&cell.dino), &train_dino));
        if let (Some(texts), Some(prompt)) = (&text_embeddings, prompt) {
            put("clip_t", scores::clip_t(&one(&cell.clip), std::slice::from_ref(&texts[prompt])));
        }
    }
    summarise(plan, report, &embedded, (&train_clip, &train_dino), text_embeddings.as_deref());
    report.verdict = Some(verdict(plan, report));
    Ok(())
}

type Group<'a> = Vec<(&'a Cell, &'a Embedded)>;

fn summarise(
    plan: &Plan,
    report: &mut EvalReport,
    embedded: &HashMap<PathBuf, Embedded>,
    (train_clip, train_dino): (&[Vec<f32>], &[Vec<f32>]),
    texts: Option<&[Vec<f32>]>,
) {
    let cells = plan.cells();
    let base_prior: BTreeMap<(usize, u64), &Embedded> = cells
        .iter()
        .filter(|c| c.step.is_none() && plan.prompts[c.prompt].kind == PromptKind::Prior)
        .filter_map(|c| Some(((c.prompt, c.seed), embedded.get(&plan.cell_file(c))?)))
        .collect();
    for summary in &mut report.summaries {
        let group: Group = cells
            .iter()
            .filter(|c| c.step == summary.step && c.scale == summary.scale)
            .filter_map(|c| Some((c, embedded.get(&plan.cell_file(c))?)))
            .collect();
        let of_kind = |kinds: &[PromptKind]| -> Group {
            group.iter().filter(|(c, _)| kinds.contains(&plan.prompts[c.prompt].kind)).cloned().collect()
        };
        let concept = of_kind(&[PromptKind::In, PromptKind::Out]);
        let dino = |g: &Group| g.iter().filter_map(|(_, e)| e.dino.clone()).collect::<Vec<_>>();
        let clip = |g: &Group| g.iter().filter_map(|(_, e)| e.clip.clone()).collect::<Vec<_>>();
        let clip_t = |g: &Group| -> Option<f32> {
            let texts = texts?;
            let pairs: Vec<(Vec<f32>, Vec<f32>)> =
                g.iter().filter_map(|(c, e)| Some((e.clip.clone()?, texts[c.prompt].clone()))).collect();
            let (images, texts): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
            scores::clip_t(&images, &texts)
        };
        let fidelity = |g: &Group| scores::mean_cross_cosine(&dino(g), train_dino);
        let (inside, outside) = (of_kind(&[PromptKind::In]), of_kind(&[PromptKind::Out]));
        let by_prompt: Vec<Vec<Vec<f32>>> = (0..plan.prompts.len())
            .map(|p| concept.iter().filter(|(c, _)| c.prompt == p).filter_map(|(_, e)| e.dino.clone()).collect())
            .collect();
        let prior: Vec<(Vec<f32>, Vec<f32>)> = of_kind(&[PromptKind::Prior])
            .iter()
            .filter_map(|(c, e)| {
                let base = base_prior.get(&(c.prompt, c.seed))?;
                Some((e.dino.clone().or(e.clip.clone())?, base.dino.clone().or(base.clip.clone())?))
            })
            .collect();
        let (at_scale, at_zero): (Vec<_>, Vec<_>) = prior.into_iter().unzip();
        let values = [
            ("dino_fidelity", fidelity(&concept)),
            ("clip_i", scores::mean_cross_cosine(&clip(&concept), train_clip)),
            ("clip_t", clip_t(&concept)),
            ("memorisation", scores::memorisation(&dino(&concept), train_dino)),
            ("diversity", scores::diversity(&by_prompt)),
            ("fidelity_gap", scores::gap(fidelity(&inside), fidelity(&outside))),
            ("clip_t_gap", scores::gap(clip_t(&inside), clip_t(&outside))),
            ("clip_t_out", clip_t(&outside)),
            ("prior_drift", if summary.step.is_some() { scores::prior_drift(&at_scale, &at_zero) } else { None }),
        ];
        summary.scores = values.into_iter().filter_map(|(name, v)| Some((name.to_string(), v?))).collect();
    }
}

/// Where overfitting began (out-of-distribution CLIP-T or diversity falling
/// while memorisation rises, at the largest scale), and the checkpoint and
/// scale to use: the best DINO fidelity + CLIP-T before that point.
fn verdict(plan: &Plan, report: &EvalReport) -> Verdict {
    let get = |step: u64, scale: f64, name: &str| {
        report.summaries.iter().find(|s| s.step == Some(step) && s.scale == scale)?.scores.get(name).copied()
    };
    let scale = plan.scales.iter().copied().fold(0.0, f64::max);
    let steps: Vec<u64> = plan.checkpoints.iter().map(|c| c.step).collect();
    let fell = |name: &str, a: u64, b: u64| get(b, scale, name).zip(get(a, scale, name)).is_some_and(|(b, a)| b < a);
    let rose = |name: &str, a: u64, b: u64| get(b, scale, name).zip(get(a, scale, name)).is_some_and(|(b, a)| b > a);
    let overfitting_began = steps
        .windows(2)
        .find(|w| (fell("clip_t_out", w[0], w[1]) || fell("diversity", w[0], w[1])) && rose("memorisation", w[0], w[1]))
        .map(|w| w[1]);
    let validation = crate::train::read_metrics(&plan.run_dir).validation;
    let loss_at = |step: u64| validation.iter().find(|(s, _)| *s == step).map(|(_, loss)| *loss);
    let candidates = report
        .summaries
        .iter()
        .filter(|s| s.step.is_some_and(|step| overfitting_began.is_none_or(|began| step < began)) && s.scale > 0.0);
    let quality = |s: &&super::report::Summary| {
        s.scores.get("dino_fidelity").copied().unwrap_or(0.0) + s.scores.get("clip_t").copied().unwrap_or(0.0)
    };
    let recommended =
        candidates.max_by(|a, b| quality(a).total_cmp(&quality(b))).and_then(|s| Some((s.step?, s.scale)));
    let mut words = match overfitting_began {
        Some(step) => format!(
            "overfitting began at step {step}: at scale {scale} new-context CLIP-T or diversity fell while memorisation rose"
        ),
        None => "no sign of overfitting across the checkpoints".to_string(),
    };
    if let Some(step) = overfitting_began
        && let Some(previous) = steps.iter().rev().find(|s| **s < step)
        && let (Some(before), Some(after)) = (loss_at(*previous), loss_at(step))
    {
        let trend = if after > before { "rose" } else { "did not rise" };
        words.push_str(&format!("; validation loss {trend} ({before:.4} → {after:.4})"));
    }
    Verdict {
        recommended_step: recommended.map(|r| r.0),
        recommended_scale: recommended.map(|r| r.1),
        overfitting_began,
        words,
    }
}
