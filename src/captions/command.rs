//! `easel captions PROJECT …`: lint, normalize (preview, then `--apply` as
//! one undoable edit), stats, suggestions, undo/redo, import and export;
//! drafting with a model and reviewing drafts live in `auto_command`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::auto_command::{self, AutoArgs, DraftsArgs};
use super::journal::Journal;
use super::text::diff_text;
use super::vocabulary::Vocabulary;
use super::{CaptionContext, exchange, normalization};
use crate::dataset::{check_folder, require_images};
use crate::project::Project;

#[derive(Debug, Subcommand)]
pub enum CaptionsCommand {
    /// Report what each caption gets wrong (missing, generic, too long, no trigger, unnormalized, …).
    Lint {
        #[arg(long)]
        json: bool,
    },
    /// Show what the vocabulary would change, caption by caption; `--apply` writes it as one undoable edit.
    Normalize {
        #[arg(long)]
        apply: bool,
    },
    /// Term frequencies, caption lengths in CLIP tokens, and proposed alias rules.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// List proposed alias rules; `--accept N` (or `all`) writes them into vocabulary.toml.
    Suggest {
        #[arg(long, value_name = "N|all")]
        accept: Option<String>,
    },
    /// Draft captions with a captioning model (BLIP); drafts wait for review and are not captions until accepted.
    Auto(AutoArgs),
    /// The drafts awaiting review, with lint findings and diffs; accept (undoable) or reject them.
    Drafts(DraftsArgs),
    /// Revert the last caption edit (a normalization, accepted drafts, an edit in the workbench).
    Undo,
    /// Apply the last undone caption edit again.
    Redo,
    /// Bring images and captions in from kohya `N_concept` folders or a metadata.jsonl.
    Import {
        /// A folder holding `N_concept` folders.
        #[arg(long, conflicts_with = "metadata", required_unless_present = "metadata")]
        kohya: Option<PathBuf>,
        /// A Hugging Face imagefolder metadata.jsonl (images relative to it).
        #[arg(long)]
        metadata: Option<PathBuf>,
    },
    /// Write the captioned images out as a kohya `N_concept` folder or an imagefolder with metadata.jsonl.
    Export {
        #[arg(long, conflicts_with = "metadata", required_unless_present = "metadata")]
        kohya: Option<PathBuf>,
        #[arg(long)]
        metadata: Option<PathBuf>,
        /// kohya's repeat count (the N of N_concept).
        #[arg(long, default_value_t = 10)]
        repeats: u32,
    },
}

pub fn run(dir: &Path, command: CaptionsCommand) -> Result<()> {
    let project = Project::open(dir)?;
    let context = CaptionContext::open(&project)?;
    match &command {
        // It fills the folder.
        CaptionsCommand::Import { .. } => {}
        // The journal and the drafts file, which an empty folder may still hold.
        CaptionsCommand::Undo | CaptionsCommand::Redo | CaptionsCommand::Drafts(_) => check_folder(&context.dataset)?,
        _ => require_images(&context.dataset, &context.extension)?,
    }
    match command {
        CaptionsCommand::Lint { json } => lint(&context, json),
        CaptionsCommand::Normalize { apply } => normalize(&context, apply),
        CaptionsCommand::Stats { json } => stats(&context, json),
        CaptionsCommand::Suggest { accept } => suggest(&project, &context, accept.as_deref()),
        CaptionsCommand::Auto(args) => auto_command::auto(&project, &context, dir, args),
        CaptionsCommand::Drafts(args) => auto_command::review(&context, dir, args),
        CaptionsCommand::Undo | CaptionsCommand::Redo => {
            let mut journal = Journal::open(&context.dataset);
            let undo = matches!(command, CaptionsCommand::Undo);
            let done = if undo { journal.undo()? } else { journal.redo()? };
            match (done, undo) {
                (Some(label), true) => println!("Undid: {label}."),
                (Some(label), false) => println!("Redid: {label}."),
                (None, true) => println!("Nothing to undo."),
                (None, false) => println!("Nothing to redo."),
            }
            Ok(())
        }
        CaptionsCommand::Import { kohya, metadata } => {
            let imported = match (kohya, metadata) {
                (Some(folder), _) => exchange::import_kohya(&folder, &context.dataset, &context.extension)?,
                (None, Some(file)) => exchange::import_metadata(&file, &context.dataset, &context.extension)?,
                (None, None) => bail!("say what to import: --kohya DIR or --metadata FILE"),
            };
            println!(
                "Imported {} and {}.",
                crate::words::counted(imported.images, "image"),
                crate::words::counted(imported.captions, "caption")
            );
            for (path, why) in &imported.skipped {
                println!("  skipped {}: {why}", path.display());
            }
            Ok(())
        }
        CaptionsCommand::Export { kohya, metadata, repeats } => {
            let captions = context.captions();
            let count = match (kohya, metadata) {
                (Some(out), _) => {
                    let concept = if context.trigger.is_empty() { project.name() } else { context.trigger.clone() };
                    exchange::export_kohya(&context.dataset, &captions, &out, repeats, &concept, &context.extension)?
                }
                (None, Some(out)) => exchange::export_metadata(&context.dataset, &captions, &out)?,
                (None, None) => bail!("say where to export: --kohya DIR or --metadata DIR"),
            };
            println!("Exported {count} captioned images.");
            Ok(())
        }
    }
}

fn lint(context: &CaptionContext, json: bool) -> Result<()> {
    let captions = context.captions();
    let findings = context.lint(&captions);
    if json {
        let report: Vec<_> = captions
            .iter()
            .zip(&findings)
            .filter(|(_, found)| !found.is_empty())
            .map(|(caption, found)| serde_json::json!({ "caption": caption.file, "findings": found }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for lint in findings.iter().flatten() {
        *counts.entry(lint.name()).or_default() += 1;
    }
    let flagged = findings.iter().filter(|f| !f.is_empty()).count();
    println!(
        "Linted {} in {}: {flagged} with findings.",
        crate::words::counted(captions.len(), "caption"),
        context.dataset.display()
    );
    if !counts.is_empty() {
        let list: Vec<String> = counts.iter().map(|(name, n)| format!("{name} {n}")).collect();
        println!("Findings: {}.", list.join(" · "));
    }
    for (caption, found) in captions.iter().zip(&findings).filter(|(_, found)| !found.is_empty()) {
        println!("  {}", caption.file.display());
        for lint in found {
            println!("      {}", lint.describe());
        }
    }
    Ok(())
}

fn normalize(context: &CaptionContext, apply: bool) -> Result<()> {
    let captions = context.captions();
    let changes = normalization(&captions, &context.rules);
    if changes.is_empty() {
        match captions.len() {
            1 => println!("The caption is normalized already."),
            n => println!("All {n} captions are normalized already."),
        }
        return Ok(());
    }
    for change in &changes {
        println!("{}", change.path.display());
        println!("    {}", diff_text(change.before.as_deref().unwrap_or(""), change.after.as_deref().unwrap_or("")));
    }
    if !apply {
        println!(
            "\n{} of {} would change; --apply writes them (undo reverts).",
            changes.len(),
            crate::words::counted(captions.len(), "caption")
        );
        return Ok(());
    }
    let count = changes.len();
    let mut journal = Journal::open(&context.dataset);
    let captions = crate::words::counted(count, "caption");
    journal.apply(&format!("normalize {captions}"), changes)?;
    println!("\nNormalized {captions} (easel captions … undo reverts them).");
    Ok(())
}

fn stats(context: &CaptionContext, json: bool) -> Result<()> {
    let captions = context.captions();
    let texts: Vec<&str> = captions.iter().filter_map(|c| c.text()).collect();
    let table = super::suggest::frequencies(texts.iter().copied(), &context.trigger);
    let mut tokens: Vec<usize> = texts.iter().map(|t| context.tokenizer.count(t)).collect();
    tokens.sort_unstable();
    let suggestions = context.suggestions(&captions);
    if json {
        let report = serde_json::json!({
            "images": captions.len(), "captioned": texts.len(), "tokens": tokens,
            "terms": table, "suggestions": suggestions,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("{}, {} captioned.", crate::words::counted(captions.len(), "image"), texts.len());
    if let (Some(first), Some(last)) = (tokens.first(), tokens.last()) {
        let over = tokens.iter().filter(|&&t| t > super::lint::TOKEN_WINDOW).count();
        println!(
            "CLIP tokens per caption: {first}–{last}, median {}; {over} over the {}-token window.",
            tokens[tokens.len() / 2],
            super::lint::TOKEN_WINDOW
        );
    }
    println!("\nTerms (captions using them):");
    for row in table.iter().take(30) {
        println!("  {:>5}  {}", row.captions, row.term);
    }
    if table.len() > 30 {
        println!("  … {} more", table.len() - 30);
    }
    print_suggestions(&suggestions);
    Ok(())
}

fn print_suggestions(suggestions: &[super::suggest::Suggestion]) {
    if suggestions.is_empty() {
        println!("\nNo alias rules to propose.");
        return;
    }
    println!("\nProposed alias rules (easel captions … suggest --accept N):");
    for (i, s) in suggestions.iter().enumerate() {
        println!(
            "  {:>2}. {} = [\"{}\"]   {} ({}) vs {} ({}); {}",
            i + 1,
            s.canonical,
            s.alias,
            s.alias,
            crate::words::counted(s.alias_captions, "caption"),
            s.canonical,
            s.canonical_captions,
            s.why
        );
    }
}

fn suggest(project: &Project, context: &CaptionContext, accept: Option<&str>) -> Result<()> {
    let suggestions = context.suggestions(&context.captions());
    let Some(accept) = accept else {
        print_suggestions(&suggestions);
        return Ok(());
    };
    let chosen: Vec<&super::suggest::Suggestion> = if accept == "all" {
        suggestions.iter().collect()
    } else {
        let n: usize = accept.parse().context("--accept takes a number from the list, or all")?;
        vec![
            suggestions
                .get(n.wrapping_sub(1))
                .with_context(|| format!("no suggestion {n} (there are {})", suggestions.len()))?,
        ]
    };
    for suggestion in chosen {
        Vocabulary::add_alias(&project.root, &suggestion.canonical, &suggestion.alias)?;
        println!("Added {} = [\"{}\"] to {}.", suggestion.canonical, suggestion.alias, super::vocabulary::FILE);
    }
    println!("`easel captions … normalize` shows what the rules change.");
    Ok(())
}
