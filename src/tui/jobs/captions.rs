//! The caption jobs' bodies: writes through the caption journal (edits,
//! undo and redo, drafts accepted or rejected, vocabulary rules) and the
//! background captioning run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use super::Done;
use crate::captions::auto::{AutoOptions, AutoProgress, AutoSummary, Scope};
use crate::captions::drafts;
use crate::captions::journal::JournalError;
use crate::project::Project;
use crate::tui::effect::{CaptionJob, DraftAcceptance};

/// Drafts captions with the model in `model` (relative to the project, or
/// absolute) on this thread, inside the compute pool, reporting each batch.
pub(super) fn auto_caption(
    project: &Project,
    model: &Path,
    scope: Scope,
    sender: &mpsc::UnboundedSender<Done>,
    stop: &AtomicBool,
) -> anyhow::Result<AutoSummary> {
    use crate::project::HOW_TO_GET_A_MODEL;
    let folder = project.root.join(model);
    if !folder.is_dir() {
        anyhow::bail!("no model folder at {} ({HOW_TO_GET_A_MODEL})", folder.display());
    }
    let options = AutoOptions::from_settings(&project.config.auto_captions, scope);
    let context = crate::captions::CaptionContext::open(project)?;
    let device = crate::device::default_device();
    let mut captioner = crate::captioner::open(&folder, &device)?;
    crate::device::on_compute_threads(&device, || {
        let mut progress = |p: &AutoProgress| {
            let _ = sender.send(Done::AutoCaptionProgress(*p));
            !stop.load(Ordering::Relaxed)
        };
        let images = crate::captions::auto::plan_now(&context, scope)?;
        crate::captions::auto::run(&context, captioner.as_mut(), &images, &options, &mut progress)
    })
}

/// Writes captions through the journal (or a rule into vocabulary.toml).
pub fn write_captions(project: &Project, job: &CaptionJob) -> Result<String, JournalError> {
    use crate::captions::journal::{Change, Journal, read_text, same_caption};
    let dataset = project.dataset_dir();
    let mut journal = Journal::open(&dataset);
    match job {
        CaptionJob::Save { file, before, after, force, .. } => {
            // The file's exact text (a trailing newline, say) is what undo brings back.
            let on_disk = read_text(&dataset.join(file))?;
            let unchanged = same_caption(on_disk.as_deref(), before.as_deref());
            let before = if *force || unchanged { on_disk } else { before.clone() };
            let change = Change { path: file.clone(), before, after: Some(after.clone()) };
            journal.apply(&format!("edit {}", file.display()), vec![change])?;
            Ok(format!("Saved {} (u undoes).", file.display()))
        }
        CaptionJob::Apply { label, changes } => {
            let count = journal.apply(label, changes.clone())?;
            Ok(format!("Applied: {label} ({}; u undoes).", crate::words::counted(count, "file")))
        }
        CaptionJob::Undo => Ok(match journal.undo()? {
            Some(label) => format!("Undid: {label} (U redoes)."),
            None => "Nothing to undo.".into(),
        }),
        CaptionJob::Redo => Ok(match journal.redo()? {
            Some(label) => format!("Redid: {label}."),
            None => "Nothing to redo.".into(),
        }),
        CaptionJob::AcceptRule { canonical, alias } => {
            crate::captions::vocabulary::Vocabulary::add_alias(&project.root, canonical, alias)
                .map_err(|e| JournalError::Io(format!("{e:#}")))?;
            Ok(format!("Added {canonical} = [\"{alias}\"] to vocabulary.toml (N reviews what it changes)."))
        }
        CaptionJob::AcceptDrafts(accepted) => accept_drafts(project, accepted, &mut journal),
        CaptionJob::RejectDraft(image) => {
            drafts::update(&dataset, |drafts| Ok(drafts.reject(std::slice::from_ref(image))))
                .map_err(|e| JournalError::Io(format!("{e:#}")))?;
            Ok(format!("Rejected the draft for {} (it is not proposed again).", image.display()))
        }
    }
}

/// Writes accepted drafts as captions (one undoable edit), refusing all of
/// them when a caption changed since its draft was shown against it (and
/// the person did not choose to write over it).
fn accept_drafts(
    project: &Project,
    accepted: &[DraftAcceptance],
    journal: &mut crate::captions::journal::Journal,
) -> Result<String, JournalError> {
    use crate::captions::journal::{read_text, same_caption};
    let (dataset, extension) = (project.dataset_dir(), &project.config.caption_extension);
    for acceptance in accepted.iter().filter(|a| !a.force) {
        let file = acceptance.image.with_extension(extension);
        let now = read_text(&dataset.join(&file))?;
        if !same_caption(now.as_deref(), acceptance.reviewed_against.as_deref()) {
            return Err(JournalError::Conflict { path: file });
        }
    }
    let acceptances: Vec<drafts::Acceptance> =
        accepted.iter().map(|a| drafts::Acceptance { image: a.image.clone(), edited: a.edited.clone() }).collect();
    let count = drafts::accept(&dataset, extension, &acceptances, journal)
        .map_err(|e| e.downcast::<JournalError>().unwrap_or_else(|e| JournalError::Io(format!("{e:#}"))))?;
    Ok(match accepted {
        [one] => format!("Accepted the draft for {} (u undoes).", one.image.display()),
        _ => format!("Accepted {count} drafts as captions (u undoes all of them)."),
    })
}
