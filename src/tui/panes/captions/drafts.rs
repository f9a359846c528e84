//! The review queue: a model's drafts, each beside its image with its lint
//! findings and what it changes in the caption; accepted (written as the
//! caption, undoable), edited and then accepted, or rejected, one at a time
//! or every draft without findings at once. A draft decided here leaves the
//! list at once, before its write is done; a read of the files without it,
//! a failed write or an undo ends that.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crossterm::event::KeyCode;

use super::editor::Editor;
use super::modes::Mode;
use super::{CaptionFilter, CaptionsPane};
use crate::captions::QueuedDraft;
use crate::dataset::DatasetEntry;
use crate::tui::action::Action;
use crate::tui::effect::{CaptionJob, DraftAcceptance, Effect};
use crate::tui::keymap::{Binding, Key, ModeKeys};
use crate::tui::shared::{Level, Shared};

pub(super) const CONFIRM_ACCEPT: &str = "accept clean drafts";

/// The queue's keys while browsing.
pub(super) fn bindings() -> Vec<Binding> {
    vec![
        Binding::new(&[Key::char('D')], Action::ShowDrafts, "list the drafts to review (a model's captions)"),
        Binding::new(&[Key::char(']')], Action::NextDraft, "next draft to review"),
        Binding::new(&[Key::char('[')], Action::PreviousDraft, "previous draft to review"),
        Binding::new(&[Key::char('a')], Action::AcceptDraft, "accept the draft as the caption, then the next"),
        Binding::new(&[Key::char('E')], Action::EditDraft, "edit the draft; saving it accepts it"),
        Binding::new(&[Key::char('x')], Action::RejectDraft, "reject the draft, then the next (not proposed again)"),
        Binding::new(
            &[Key::char('Y')],
            Action::AcceptCleanDrafts,
            "accept every draft without findings (asks; one undo)",
        ),
    ]
}

/// The question before accepting every draft without findings.
pub(super) fn keys() -> ModeKeys {
    ModeKeys::new(
        CONFIRM_ACCEPT,
        "Accepting every draft without findings",
        false,
        vec![
            Binding::new(&[Key::char('y'), Key::plain(KeyCode::Enter)], Action::Confirm, "accept them (one undo)"),
            Binding::new(&[Key::char('n'), Key::plain(KeyCode::Esc)], Action::Close, "keep them waiting"),
        ],
    )
}

/// Accepting a queued draft as it stands.
fn acceptance(queued: &QueuedDraft) -> DraftAcceptance {
    DraftAcceptance {
        image: queued.draft.image.clone(),
        edited: None,
        reviewed_against: queued.caption.clone(),
        force: false,
    }
}

/// The images a draft write decides.
fn decided_by(job: &CaptionJob) -> Vec<&Path> {
    match job {
        CaptionJob::AcceptDrafts(accepted) => accepted.iter().map(|a| a.image.as_path()).collect(),
        CaptionJob::RejectDraft(image) => vec![image.as_path()],
        _ => Vec::new(),
    }
}

/// A row test: images with a draft awaiting review, leaving out those decided here.
fn awaiting(decided: HashSet<PathBuf>) -> impl Fn(&Shared, &DatasetEntry) -> bool {
    move |shared, entry| {
        !decided.contains(&entry.path)
            && shared.files.captions.as_ref().is_some_and(|r| r.drafts.contains_key(&entry.path))
    }
}

impl CaptionsPane {
    /// The image's draft awaiting review, unless decided here already.
    pub(super) fn queued<'a>(&self, shared: &'a Shared, image: &Path) -> Option<&'a QueuedDraft> {
        let queued = shared.files.captions.as_ref()?.drafts.get(image)?;
        (!self.decided.contains(image)).then_some(queued)
    }

    /// The draft the detail shows in place of the caption: in the drafts list, unless editing.
    pub(super) fn shows_draft<'a>(&self, shared: &'a Shared) -> Option<&'a QueuedDraft> {
        let shown = self.filter == CaptionFilter::Drafts && self.editing().is_none();
        shown.then(|| self.selected_draft(shared)).flatten()
    }

    pub(super) fn selected_draft<'a>(&self, shared: &'a Shared) -> Option<&'a QueuedDraft> {
        self.queued(shared, &self.entry(shared)?.path)
    }

    /// How many drafts await review, leaving out those decided here.
    pub(super) fn drafts_waiting(&self, shared: &Shared) -> usize {
        let queue = shared.files.captions.as_ref().map(|r| &r.drafts);
        queue.map_or(0, |q| q.keys().filter(|image| !self.decided.contains(*image)).count())
    }

    pub(super) fn drafts_action(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        let no_draft = || vec![Effect::info("No draft for this image (D lists the drafts to review).")];
        match action {
            Action::ShowDrafts => {
                self.filter = CaptionFilter::Drafts;
                self.selection.set(0);
                let count = self.drafts_waiting(shared);
                return vec![Effect::info(match count {
                    0 => "No drafts to review (c drafts captions with a model).".to_string(),
                    n => format!(
                        "{n} drafts to review: a accepts · E edits · x rejects · Y accepts those without findings."
                    ),
                })];
            }
            Action::NextDraft | Action::PreviousDraft => {
                let wanted = awaiting(self.decided.clone());
                if !self.move_selection(shared, action == Action::NextDraft, Some(&wanted)) {
                    return vec![Effect::info("No drafts to review in this list (D lists them all).")];
                }
            }
            Action::AcceptDraft => {
                let Some(queued) = self.selected_draft(shared) else { return no_draft() };
                return self.decide(shared, CaptionJob::AcceptDrafts(vec![acceptance(queued)]));
            }
            Action::RejectDraft => {
                let Some(queued) = self.selected_draft(shared) else { return no_draft() };
                return self.decide(shared, CaptionJob::RejectDraft(queued.draft.image.clone()));
            }
            Action::EditDraft => return self.open_draft_editor(shared),
            Action::AcceptCleanDrafts => {
                let queue = shared.files.captions.iter().flat_map(|r| r.drafts.values());
                let clean: Vec<DraftAcceptance> = queue
                    .filter(|q| q.findings.is_empty() && !self.decided.contains(&q.draft.image))
                    .map(acceptance)
                    .collect();
                if clean.is_empty() {
                    return vec![Effect::info("No draft without findings to accept (a accepts one at a time).")];
                }
                let question =
                    format!("Accept {} drafts without findings as captions? y accepts, n keeps them.", clean.len());
                self.mode = Mode::ConfirmAccept(clean);
                return vec![Effect::say(Level::Warning, question)];
            }
            _ => {}
        }
        Vec::new()
    }

    /// The answer to "accept every draft without findings?".
    pub(super) fn confirm_accept(&mut self, action: Action) -> Vec<Effect> {
        let Mode::ConfirmAccept(accepted) = &self.mode else { return Vec::new() };
        let accepted = accepted.clone();
        match action {
            Action::Confirm => {
                self.mode = Mode::Browse;
                vec![self.write(CaptionJob::AcceptDrafts(accepted))]
            }
            Action::Close => {
                self.mode = Mode::Browse;
                vec![Effect::info("Nothing accepted; the drafts still wait.")]
            }
            _ => Vec::new(),
        }
    }

    /// Opens the editor on the selected image's draft.
    pub(super) fn open_draft_editor(&mut self, shared: &Shared) -> Vec<Effect> {
        let Some(queued) = self.selected_draft(shared) else {
            return vec![Effect::info("No draft for this image (D lists the drafts to review).")];
        };
        let image = queued.draft.image.clone();
        let file = image.with_extension(&shared.project.config.caption_extension);
        self.mode = Mode::Edit(Editor::on_draft(image, file, queued.caption.clone(), queued.draft.text.clone()));
        vec![Effect::info("Editing the draft: Enter or Esc accepts it as edited · Ctrl-n/p next/previous image.")]
    }

    /// A draft decided on the selected image: its write, and the selection
    /// on the next draft (the decided one leaves the drafts list).
    fn decide(&mut self, shared: &Shared, job: CaptionJob) -> Vec<Effect> {
        let current = self.entry(shared).map(|e| e.path.clone());
        self.move_selection(shared, true, Some(&awaiting(self.decided.clone())));
        let next = self.entry(shared).map(|e| e.path.clone()).filter(|next| Some(next) != current.as_ref());
        let write = self.write(job);
        if let Some(next) = next {
            self.select_image(shared, &next);
        }
        vec![write]
    }

    /// A caption write; the drafts it decides leave the queue shown here.
    pub(super) fn write(&mut self, job: CaptionJob) -> Effect {
        self.decided.extend(decided_by(&job).into_iter().map(Path::to_path_buf));
        Effect::Caption(job)
    }

    /// A caption job ended: drafts whose write failed, and every draft after
    /// an undo or redo, are shown as the next read of the files has them.
    pub(super) fn forget_decisions(&mut self, job: &CaptionJob, failed: bool) {
        match job {
            CaptionJob::Undo | CaptionJob::Redo => self.decided.clear(),
            job if failed => decided_by(job).into_iter().for_each(|image| {
                self.decided.remove(image);
            }),
            _ => {}
        }
    }

    /// The files were read again: drafts no longer queued need no hiding.
    pub(super) fn drafts_reread(&mut self, shared: &Shared) {
        let queue = shared.files.captions.as_ref().map(|r| &r.drafts);
        self.decided.retain(|image| queue.is_some_and(|q| q.contains_key(image)));
    }
}
