//! Running an evaluation: the base model loaded once; per checkpoint its
//! LoRA read once and attached at each scale; every cell not already done
//! rendered (classifier-free guidance batches the two conditionings of a
//! cell), written, and recorded; then the contact sheets.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device};

use super::plan::{Cell, Plan};
use super::report::{CellRecord, EvalReport, Summary};
use super::sheet::{SheetRow, contact_sheet};
use crate::model::lora_file::LoraFile;
use crate::model::pipeline::{LoadOptions, StableDiffusion};
use crate::model::sampling::{self, SampleRequest};
use crate::project::Project;

const LABEL: &str = "eval";

/// Where an evaluation stands, for a progress line.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Cells done (rendered now or before) out of all.
    pub done: usize,
    pub total: usize,
    /// Cells rendered by this run, and the seconds they took.
    pub rendered: usize,
    pub seconds: f64,
}

/// Renders what is missing of `plan`, writes the sheets and eval.json, and
/// returns the report. `progress` hears of each cell; returning false stops
/// the evaluation there (what is rendered stays, and a rerun continues).
pub fn evaluate(
    project: &Project,
    plan: &Plan,
    device: &Device,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<EvalReport> {
    std::fs::create_dir_all(&plan.out_dir).with_context(|| format!("cannot create {}", plan.out_dir.display()))?;
    let mut report = EvalReport::read(&plan.out_dir)?;
    let cells = plan.cells();
    let mut todo = Vec::new();
    for cell in &cells {
        let key = plan.cell_key(cell)?;
        if !report.done(&plan.out_dir, &plan.cell_file(cell), &key) {
            todo.push((cell.clone(), key));
        }
    }
    report.planned = cells.len();
    report.planned_groups = Vec::new();
    for cell in &cells {
        if !report.planned_groups.contains(&(cell.step, cell.scale)) {
            report.planned_groups.push((cell.step, cell.scale));
        }
    }
    let mut state = Progress { done: cells.len() - todo.len(), total: cells.len(), rendered: 0, seconds: 0.0 };
    if !progress(state) {
        return Ok(report);
    }
    if !todo.is_empty() {
        let mut model = load_model(project, device)?;
        let mut attached: Option<(Option<u64>, f64)> = None;
        let mut loras: HashMap<u64, LoraFile> = HashMap::new();
        // The seeds of one prompt at one checkpoint and scale are one batch.
        for batch in todo.chunk_by(|(a, _), (b, _)| (a.step, a.scale, a.prompt) == (b.step, b.scale, b.prompt)) {
            let first = &batch[0].0;
            if attached != Some((first.step, first.scale)) {
                attach(plan, &mut model, &mut loras, first)?;
                attached = Some((first.step, first.scale));
            }
            let started = Instant::now();
            let seeds: Vec<u64> = batch.iter().map(|(cell, _)| cell.seed).collect();
            let images = render(plan, &model, first, &seeds)?;
            let seconds = started.elapsed().as_secs_f64() / batch.len() as f64;
            for ((cell, key), image) in batch.iter().zip(images) {
                let file = plan.cell_file(cell);
                write_png(&plan.out_dir.join(&file), &image)?;
                let prompt = &plan.prompts[cell.prompt];
                report.record(CellRecord {
                    prompt: prompt.prompt.clone(),
                    kind: prompt.kind,
                    seed: cell.seed,
                    scale: cell.scale,
                    step: cell.step,
                    file,
                    key: key.clone(),
                    seconds,
                    scores: Default::default(),
                });
                report.write(&plan.out_dir)?;
                state.done += 1;
                state.rendered += 1;
                state.seconds += seconds;
                if !progress(state) {
                    return Ok(report);
                }
            }
        }
    }
    write_sheets(plan, &mut report)?;
    report.write(&plan.out_dir)?;
    Ok(report)
}

fn load_model(project: &Project, device: &Device) -> Result<StableDiffusion> {
    let dtype = if device.is_cpu() { DType::F32 } else { DType::BF16 };
    let options = LoadOptions { dtype, device: device.clone(), ..LoadOptions::default() };
    StableDiffusion::load(&project.base_model_path(&project.config.model.base)?, &options)
}

/// The cell's LoRA at its scale, or none for the base model.
fn attach(plan: &Plan, model: &mut StableDiffusion, loras: &mut HashMap<u64, LoraFile>, cell: &Cell) -> Result<()> {
    model.unload_adapters(Some(LABEL));
    let Some(step) = cell.step else { return Ok(()) };
    let checkpoint = plan.checkpoint(step).expect("cells come from the plan's checkpoints");
    if let std::collections::hash_map::Entry::Vacant(entry) = loras.entry(step) {
        let file = LoraFile::read(&checkpoint.file, model)
            .with_context(|| format!("cannot read the checkpoint {}", checkpoint.file.display()))?;
        entry.insert(file);
    }
    loras[&step].apply(model, cell.scale, LABEL)
}

/// The cell's prompt at each of `seeds`, in one batch (classifier-free guidance doubles it).
fn render(plan: &Plan, model: &StableDiffusion, cell: &Cell, seeds: &[u64]) -> Result<Vec<image::RgbImage>> {
    let request = SampleRequest {
        prompt: plan.prompts[cell.prompt].prompt.clone(),
        negative: String::new(),
        width: plan.size,
        height: plan.size,
        steps: plan.steps,
        guidance: plan.guidance,
        sampler: plan.sampler,
        seed: cell.seed,
        initial_latents: None,
    };
    let latents = sampling::sample_seeds(model, &request, seeds)?;
    latents.iter().map(|latents| sampling::decode_image(model, latents)).collect()
}

fn write_png(path: &std::path::Path, image: &image::RgbImage) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    crate::fsutil::atomic_write(path, &png).with_context(|| format!("cannot write {}", path.display()))
}

/// One sheet per checkpoint × scale (one for the base model), and their summaries.
fn write_sheets(plan: &Plan, report: &mut EvalReport) -> Result<()> {
    let mut groups: Vec<(Option<u64>, f64)> = Vec::new();
    for cell in plan.cells() {
        if !groups.contains(&(cell.step, cell.scale)) {
            groups.push((cell.step, cell.scale));
        }
    }
    let columns: Vec<String> = plan.seeds.iter().map(|seed| format!("seed {seed}")).collect();
    report.sheets.clear();
    report.summaries.clear();
    for (step, scale) in groups {
        let images: Vec<Vec<Option<image::RgbImage>>> = (0..plan.prompts.len())
            .map(|prompt| {
                plan.seeds
                    .iter()
                    .map(|&seed| {
                        let file = plan.cell_file(&Cell { prompt, seed, scale, step });
                        image::open(plan.out_dir.join(file)).ok().map(|i| i.to_rgb8())
                    })
                    .collect()
            })
            .collect();
        let labels: Vec<String> = plan.prompts.iter().map(super::plan::prompt_label).collect();
        let rows: Vec<SheetRow> = labels
            .iter()
            .zip(&images)
            .map(|(label, row)| SheetRow { label, images: row.iter().map(Option::as_ref).collect() })
            .collect();
        let (title, name) = match step {
            None => ("base model (LoRA scale 0)".to_string(), PathBuf::from("sheet-base.png")),
            Some(step) => (
                format!("step {step} · LoRA scale {scale}"),
                PathBuf::from(format!("sheet-step-{step:06}-scale-{scale}.png")),
            ),
        };
        let sheet = contact_sheet(&title, &columns, &rows, plan.size.min(256) as u32);
        write_png(&plan.out_dir.join(&name), &sheet)?;
        report.sheets.push(name);
        let cells = images.iter().flatten().filter(|i| i.is_some()).count();
        report.summaries.push(Summary { step, scale, cells, scores: Default::default() });
    }
    Ok(())
}
