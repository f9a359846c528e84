//! `easel captions PROJECT auto` (a model drafts captions, batch by batch,
//! stoppable) and `easel captions PROJECT drafts` (the review queue without
//! the workbench: list with findings and diffs, accept the clean ones or
//! named ones as one undoable edit, reject).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

use super::auto::{self, AutoOptions, AutoProgress, Scope};
use super::drafts::{self, Acceptance};
use super::journal::Journal;
use super::text::diff_text;
use super::{CaptionContext, QueuedDraft, review_queue};
use crate::captioner;
use crate::console::{ProgressLine, duration, on_stop_signal};
use crate::project::{HOW_TO_GET_A_MODEL, Project};

#[derive(Debug, clap::Args)]
pub struct AutoArgs {
    /// A Hugging Face captioning model folder, BLIP (default: project.toml's auto_captions.model).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Draft only for images with no caption and no draft yet (the default).
    #[arg(long, conflicts_with = "all")]
    only_missing: bool,
    /// Draft for captioned images too; each draft is then shown against its caption.
    #[arg(long)]
    all: bool,
    /// Images per model call (default: auto_captions.batch; 0: what the model finds best).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=256))]
    batch: Option<u32>,
    /// The most tokens a caption may have (default: auto_captions.max_tokens).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    max_tokens: Option<u32>,
    /// A text every caption starts with, like "a photo of" (default: auto_captions.prompt).
    #[arg(long)]
    prompt: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct DraftsArgs {
    /// Accept every draft without lint findings whose image has no caption, as one undoable edit.
    #[arg(long, conflicts_with_all = ["accept", "reject"])]
    accept_clean: bool,
    /// Accept these images' drafts (paths relative to the dataset folder), as one undoable edit.
    #[arg(long, value_name = "IMAGE", num_args = 1.., conflicts_with = "reject")]
    accept: Vec<PathBuf>,
    /// Reject these images' drafts (a rerun of `auto` does not propose them again).
    #[arg(long, value_name = "IMAGE", num_args = 1..)]
    reject: Vec<PathBuf>,
    /// List the queue as JSON, for scripts.
    #[arg(long, conflicts_with_all = ["accept_clean", "accept", "reject"])]
    json: bool,
}

/// `captions auto`: the model from `--model` or project.toml, drafts saved
/// batch by batch; a stop signal ends the run after the batch under way.
pub fn auto(project: &Project, context: &CaptionContext, dir: &Path, args: AutoArgs) -> Result<()> {
    let settings = &project.config.auto_captions;
    let model = match args.model {
        Some(model) => model,
        None if !settings.model.as_os_str().is_empty() => project.root.join(&settings.model),
        None => bail!(
            "no captioning model: pass --model DIR or set auto_captions.model in {} ({HOW_TO_GET_A_MODEL})",
            project.root.join("project.toml").display()
        ),
    };
    let scope = if args.all { Scope::All } else { Scope::OnlyMissing };
    let planned = auto::plan_now(context, scope)?;
    if planned.is_empty() {
        let hint = if scope == Scope::All { "" } else { " (--all drafts for captioned images too)" };
        println!("Nothing to draft: every image has a caption or a draft{hint}.");
        return Ok(());
    }
    let mut options = AutoOptions::from_settings(settings, scope);
    if let Some(prompt) = args.prompt {
        options.request.prompt = (!prompt.trim().is_empty()).then(|| prompt.trim().to_string());
    }
    if let Some(batch) = args.batch {
        options.batch = batch as usize;
    }
    if let Some(max_tokens) = args.max_tokens {
        options.request.max_tokens = max_tokens as usize;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop_asked = Arc::clone(&stop);
    on_stop_signal(move || stop_asked.store(true, Ordering::Relaxed));

    let device = crate::device::default_device();
    let mut progress = ProgressLine::new();
    let summary = crate::device::on_compute_threads(&device, || {
        let mut captioner = captioner::open(&model, &device)?;
        let on = if device.is_cpu() { "the CPU" } else { "the GPU" };
        println!(
            "Drafting captions for {} with {} on {on}.",
            crate::words::counted(planned.len(), "image"),
            captioner.describe()
        );
        auto::run(context, captioner.as_mut(), &planned, &options, &mut |p| {
            progress.show(&progress_text(p));
            !stop.load(Ordering::Relaxed)
        })
    });
    progress.finish();
    let summary = summary.with_context(|| format!("drafting captions with {}", model.display()))?;

    let planned: HashSet<&PathBuf> = planned.iter().collect();
    let flagged = review_queue(context)?
        .iter()
        .filter(|queued| planned.contains(&queued.draft.image) && !queued.findings.is_empty())
        .count();
    if summary.stopped {
        println!("Stopped after the batch under way; the same command continues where this run ended.");
    }
    println!("Made {} ({flagged} with lint findings).", drafts_count(summary.drafted));
    if !summary.unreadable.is_empty() {
        println!("Could not read {} (no draft made):", crate::words::counted(summary.unreadable.len(), "image"));
        for (image, why) in &summary.unreadable {
            println!("  {}: {why}", image.display());
        }
    }
    println!(
        "Drafts are not captions until accepted: review them with `easel captions {} drafts`, \
         or in the workbench's Captions pane (D lists them).",
        dir.display()
    );
    Ok(())
}

/// "1 draft", "3 drafts".
fn drafts_count(count: usize) -> String {
    format!("{count} draft{}", if count == 1 { "" } else { "s" })
}

/// "drafted 8/20 · 2.3 images/s · ETA 0:05"
fn progress_text(p: &AutoProgress) -> String {
    let rate = p.done as f64 / p.elapsed.as_secs_f64().max(1e-9);
    let eta = p.eta().map_or_else(|| "—".to_string(), |left| duration(left.as_secs_f64()));
    format!("drafted {}/{} · {rate:.1} images/s · ETA {eta}", p.done, p.total)
}

/// `captions drafts`: the queue, or one review action on it.
pub fn review(context: &CaptionContext, dir: &Path, args: DraftsArgs) -> Result<()> {
    let queue = review_queue(context)?;
    let chosen = |images: &[PathBuf]| -> Result<Vec<PathBuf>> {
        for image in images {
            if !queue.iter().any(|queued| &queued.draft.image == image) {
                bail!(
                    "{}: no draft awaits review for it (paths are relative to {}; `easel captions {} drafts` lists them)",
                    image.display(),
                    context.dataset.display(),
                    dir.display()
                );
            }
        }
        Ok(images.to_vec())
    };
    if !args.reject.is_empty() {
        let images = chosen(&args.reject)?;
        let rejected = drafts::update(&context.dataset, |drafts| Ok(drafts.reject(&images)))?;
        println!("Rejected {}; the caption files are as they were.", drafts_count(rejected));
        return Ok(());
    }
    let accepted: Vec<PathBuf> = if args.accept_clean {
        queue.iter().filter(|queued| queued.is_clean()).map(|queued| queued.draft.image.clone()).collect()
    } else if !args.accept.is_empty() {
        chosen(&args.accept)?
    } else {
        return list(&queue, dir, args.json);
    };
    if accepted.is_empty() {
        println!("No draft for an uncaptioned image is free of lint findings; nothing accepted.");
        return Ok(());
    }
    let acceptances: Vec<Acceptance> = accepted.into_iter().map(|image| Acceptance { image, edited: None }).collect();
    let mut journal = Journal::open(&context.dataset);
    drafts::accept(&context.dataset, &context.extension, &acceptances, &mut journal)?;
    let accepted = drafts_count(acceptances.len());
    println!("Accepted {accepted}, written as captions (`easel captions {} undo` reverts this).", dir.display());
    Ok(())
}

fn list(queue: &[QueuedDraft], dir: &Path, json: bool) -> Result<()> {
    if json {
        let report: Vec<_> = queue
            .iter()
            .map(|queued| {
                serde_json::json!({
                    "image": queued.draft.image, "text": queued.draft.text, "raw": queued.draft.raw,
                    "model": queued.draft.model, "caption": queued.caption_text(), "findings": queued.findings,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if queue.is_empty() {
        println!("No drafts await review.");
        return Ok(());
    }
    for queued in queue {
        println!("{}  ({})", queued.draft.image.display(), queued.draft.model);
        match queued.caption_text() {
            // What accepting would change, word by word.
            Some(caption) => println!("    {}", diff_text(caption, &queued.draft.text)),
            None => println!("    {}", queued.draft.text),
        }
        for lint in &queued.findings {
            println!("      • {}", lint.describe());
        }
    }
    let clean = queue.iter().filter(|queued| queued.is_clean()).count();
    let replacing = queue.iter().filter(|queued| !queued.is_only_text()).count();
    println!(
        "\n{} awaiting review: {clean} clean (no findings, no caption to replace), {replacing} would replace a caption (shown as a diff).",
        drafts_count(queue.len())
    );
    println!(
        "`easel captions {0} drafts --accept-clean` accepts the clean ones; --accept IMAGE… or --reject IMAGE… \
         choose; `easel captions {0} undo` reverts an accept.",
        dir.display()
    );
    Ok(())
}
