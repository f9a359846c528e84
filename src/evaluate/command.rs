//! `easel eval`: the plan for a run, rendered with a progress line (a
//! terminal) or plain lines (a log), then where the sheets are.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};

use super::plan::{Overrides, Plan};
use super::render::{Progress, evaluate};
use crate::console::{ProgressLine, duration};
use crate::project::{CheckpointSet, Checkpoints, Project};

pub struct EvalArgs {
    pub project: PathBuf,
    /// The run's id; the newest when absent.
    pub run: Option<String>,
    pub overrides: Overrides,
}

/// `all`, `last`, `best`, or steps `200,400`.
pub fn parse_checkpoints(text: &str) -> Result<Checkpoints, String> {
    match text {
        "all" => Ok(Checkpoints::Named(CheckpointSet::All)),
        "last" => Ok(Checkpoints::Named(CheckpointSet::Last)),
        "best" => Ok(Checkpoints::Named(CheckpointSet::Best)),
        steps => steps
            .split(',')
            .map(|s| s.trim().parse().map_err(|_| format!("`{text}`: expected all, last, best or steps like 200,400")))
            .collect::<Result<Vec<u64>, String>>()
            .map(Checkpoints::Steps),
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
    let project = Project::open(&args.project)?;
    // The captions give the class noun, the images the scores' references.
    crate::dataset::check_folder(&project.dataset_dir())?;
    let runs = crate::train::list_runs(&project.runs_dir());
    let run = match &args.run {
        Some(id) => runs.iter().find(|run| &run.id == id).ok_or_else(|| {
            let have: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
            anyhow!("no run `{id}` in {} (runs: {})", project.runs_dir().display(), have.join(", "))
        })?,
        None => runs.last().ok_or_else(|| anyhow!("no runs in {} yet: train first", project.runs_dir().display()))?,
    };
    let plan = Plan::new(&project, &run.dir, &args.overrides)?;
    println!(
        "evaluating run {}: {} × {} × {} × {} → {}",
        run.id,
        crate::words::counted(plan.checkpoints.len(), "checkpoint"),
        crate::words::counted(plan.scales.len(), "scale"),
        crate::words::counted(plan.prompts.len(), "prompt"),
        crate::words::counted(plan.seeds.len(), "seed"),
        plan.out_dir.display()
    );
    if plan.class.is_none() {
        println!(
            "no class noun: set evaluate.class (e.g. \"mug\"); CLIP-T keeps the prompts without the trigger and the prior check is left out"
        );
    }
    let mut rendered = 0;
    let mut progress = ProgressLine::new();
    let mut report_progress = |p: Progress| {
        let per_cell = (p.rendered > 0).then(|| p.seconds / p.rendered as f64);
        let eta = per_cell.map_or_else(|| "—".to_string(), |s| duration(s * (p.total - p.done) as f64));
        let rate = per_cell.map_or_else(String::new, |s| format!(" · {s:.1} s/cell"));
        progress.show(&format!("cells {}/{}{rate} · ETA {eta}", p.done, p.total));
        rendered = p.rendered;
        true
    };
    let device = crate::device::default_device();
    let (report, notes) = crate::device::on_compute_threads(&device, || {
        let mut report = evaluate(&project, &plan, &device, &mut report_progress)?;
        let notes = crate::evaluate::scoring::score_finished(&project, &plan, &device, &mut report)?;
        anyhow::Ok((report, notes))
    })
    .with_context(|| format!("evaluating {}", run.dir.display()))?;
    progress.finish();
    for note in notes {
        println!("{note}");
    }
    if report.verdict.is_some() {
        print!("{}", summary_table(&report));
    }
    for sheet in &report.sheets {
        println!("sheet {}", plan.out_dir.join(sheet).display());
    }
    let seconds: f64 = report.cells.iter().map(|c| c.seconds).sum();
    println!(
        "{} ({rendered} rendered now, the rest unchanged); {:.1} s per cell to render; {}",
        crate::words::counted(report.cells.len(), "cell"),
        seconds / report.cells.len().max(1) as f64,
        plan.out_dir.join("eval.json").display()
    );
    Ok(())
}

/// The summary per checkpoint × scale, one row each, and the verdict.
pub fn summary_table(report: &super::report::EvalReport) -> String {
    let columns = [
        ("dino", "dino_fidelity"),
        ("clip-i", "clip_i"),
        ("clip-t", "clip_t"),
        ("memo", "memorisation"),
        ("divers", "diversity"),
        ("gap-t", "clip_t_gap"),
        ("prior", "prior_drift"),
    ];
    let mut text = format!("{:>6} {:>5}", "step", "scale");
    for (label, _) in columns {
        text.push_str(&format!(" {label:>7}"));
    }
    text.push('\n');
    for summary in &report.summaries {
        let step = summary.step.map_or_else(|| "base".to_string(), |s| s.to_string());
        text.push_str(&format!("{step:>6} {:>5}", summary.scale));
        for (_, key) in columns {
            let value = summary.scores.get(key).map_or_else(|| "—".to_string(), |v| format!("{v:.3}"));
            text.push_str(&format!(" {value:>7}"));
        }
        text.push('\n');
    }
    if let Some(verdict) = &report.verdict {
        if let (Some(step), Some(scale)) = (verdict.recommended_step, verdict.recommended_scale) {
            text.push_str(&format!("recommended: step {step} at scale {scale}\n"));
        }
        text.push_str(&format!("{}\n", verdict.words));
    }
    text
}
