//! Captions pane: every image's caption with its lint findings; the image
//! beside its caption, edited in place; the vocabulary panel (term
//! frequencies, suggested alias rules); the normalization review; tag edits
//! across the listed captions; a model's drafts to review (`drafts`) and the
//! captioning run that makes them (`auto`). Writes are `CaptionJob` effects,
//! carried out through the caption journal (each undoable, never over an
//! edit made elsewhere).

mod auto;
mod draft_view;
mod drafts;
mod editor;
mod modes;
mod render;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::Rect;

use crate::captions::journal::{Change, JournalError};
use crate::captions::text::TagEdit;
use crate::dataset::{CaptionState, DatasetEntry};
use crate::tui::action::{Action, PaneId};
use crate::tui::effect::{CaptionJob, DraftAcceptance, Effect};
use crate::tui::jobs::Done;
use crate::tui::keymap::{Binding, Key, ModeKeys};
use crate::tui::pane::{Pane, Selection, list_bindings};
use crate::tui::shared::{Level, Shared};
use editor::{Editor, prompt};
use modes::Mode;

/// Which images the list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptionFilter {
    #[default]
    All,
    /// Captions with a lint finding (missing and empty ones included).
    WithFindings,
    /// Missing, empty or unreadable captions.
    Uncaptioned,
    /// Images with a model's draft awaiting review.
    Drafts,
}

impl CaptionFilter {
    pub fn label(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::WithFindings => "with findings",
            Self::Uncaptioned => "uncaptioned",
            Self::Drafts => "drafts to review",
        }
    }

    pub fn next(self) -> Self {
        match self {
            Self::All => Self::WithFindings,
            Self::WithFindings => Self::Uncaptioned,
            Self::Uncaptioned => Self::Drafts,
            Self::Drafts => Self::All,
        }
    }
}

/// Whether a row is the one looked for.
type RowTest = dyn Fn(&Shared, &DatasetEntry) -> bool;

#[derive(Default)]
pub struct CaptionsPane {
    mode: Mode,
    filter: CaptionFilter,
    /// The vocabulary panel (terms and suggestions) in place of the preview.
    vocabulary_panel: bool,
    /// The selected suggestion in that panel.
    suggestion: usize,
    selection: Selection,
    /// Drafts accepted or rejected here whose write the queue does not show yet.
    decided: HashSet<PathBuf>,
    /// The captioning run started here.
    auto: Option<auto::AutoRun>,
    /// The captioning model's folder typed here (project.toml names none).
    model: Option<PathBuf>,
}

/// The caption text of an entry, when it has a readable one.
pub fn caption_text(entry: &DatasetEntry) -> Option<&str> {
    match &entry.caption {
        CaptionState::Text(text) => Some(text),
        _ => None,
    }
}

/// The changes a tag edit makes to `entries` (those with readable captions).
fn tag_changes<'a>(edit: &TagEdit, entries: impl Iterator<Item = &'a DatasetEntry>, extension: &str) -> Vec<Change> {
    entries
        .filter_map(|entry| {
            let text = caption_text(entry)?;
            let after = edit.apply(text);
            (after != text).then(|| Change {
                path: entry.path.with_extension(extension),
                before: Some(text.to_string()),
                after: Some(after),
            })
        })
        .collect()
}

fn save(editor: &Editor, force: bool) -> Effect {
    Effect::Caption(save_job(editor, force))
}

/// The editor's text written: as the caption, or as its draft accepted.
fn save_job(editor: &Editor, force: bool) -> CaptionJob {
    if editor.draft.is_some() {
        let accepted = DraftAcceptance {
            image: editor.image.clone(),
            edited: Some(editor.text()),
            reviewed_against: editor.loaded.clone(),
            force,
        };
        return CaptionJob::AcceptDrafts(vec![accepted]);
    }
    CaptionJob::Save {
        image: editor.image.clone(),
        file: editor.file.clone(),
        before: editor.loaded.clone(),
        after: editor.text(),
        force,
    }
}

impl CaptionsPane {
    fn editing(&self) -> Option<&Editor> {
        match &self.mode {
            Mode::Edit(editor) | Mode::Conflict(editor) => Some(editor),
            _ => None,
        }
    }

    /// Indices into the inventory of the images the list shows.
    fn rows(&self, shared: &Shared) -> Vec<usize> {
        let entries = &shared.files.inventory.entries;
        let findings = shared.files.captions.as_ref().map(|r| &r.findings);
        (0..entries.len())
            .filter(|&i| match self.filter {
                CaptionFilter::All => true,
                CaptionFilter::WithFindings => findings.is_some_and(|f| f.contains_key(&entries[i].path)),
                CaptionFilter::Uncaptioned => caption_text(&entries[i]).is_none_or(|t| t.trim().is_empty()),
                CaptionFilter::Drafts => self.queued(shared, &entries[i].path).is_some(),
            })
            .collect()
    }

    fn selected(&self, shared: &Shared) -> Option<usize> {
        self.selection.get(self.rows(shared).len())
    }

    /// The selected image's inventory entry.
    fn entry<'a>(&self, shared: &'a Shared) -> Option<&'a DatasetEntry> {
        let rows = self.rows(shared);
        rows.get(self.selected(shared)?).map(|&i| &shared.files.inventory.entries[i])
    }

    /// Selects the image's row, when the list shows it.
    fn select_image(&mut self, shared: &Shared, image: &Path) {
        let entries = &shared.files.inventory.entries;
        if let Some(row) = self.rows(shared).iter().position(|&i| entries[i].path == image) {
            self.selection.set(row);
        }
    }

    /// The editor on the selected image: its draft in the drafts list, else its caption.
    fn open_editor(&mut self, shared: &Shared) -> Vec<Effect> {
        if self.filter == CaptionFilter::Drafts {
            return self.open_draft_editor(shared);
        }
        let Some(entry) = self.entry(shared) else { return vec![Effect::info("No image selected.")] };
        if let CaptionState::Unreadable(why) = &entry.caption {
            return vec![Effect::say(Level::Error, format!("Not editable: {why}; fix the file first."))];
        }
        let file = entry.path.with_extension(&shared.project.config.caption_extension);
        self.mode = Mode::Edit(Editor::new(entry.path.clone(), file, caption_text(entry).map(String::from)));
        vec![Effect::info("Editing: Enter or Esc saves and closes · Ctrl-n/p next/previous image · Tab completes.")]
    }

    /// Closes the editor, returning its save when something changed.
    fn close_editor(&mut self) -> Option<Effect> {
        let Mode::Edit(editor) = std::mem::take(&mut self.mode) else { return None };
        editor.dirty().then(|| self.write(save_job(&editor, false)))
    }

    /// Moves the selection one row (or, with `wanted`, to the next row it
    /// accepts, wrapping around); false when it did not move.
    fn move_selection(&mut self, shared: &Shared, forward: bool, wanted: Option<&RowTest>) -> bool {
        let rows = self.rows(shared);
        let Some(current) = self.selection.get(rows.len()) else { return false };
        let count = rows.len();
        let next = (1..=count)
            .map(|offset| if forward { (current + offset) % count } else { (current + count - offset) % count })
            .find(|&i| wanted.is_none_or(|w| w(shared, &shared.files.inventory.entries[rows[i]])));
        match next {
            Some(i) if wanted.is_some() || (forward && i > current) || (!forward && i < current) => {
                self.selection.set(i);
                true
            }
            _ => false,
        }
    }

    /// Leaves the image being edited for the next (previous) one: its save, then the editor on the other.
    fn edit_next(&mut self, shared: &Shared, forward: bool) -> Vec<Effect> {
        if !self.move_selection(shared, forward, None) {
            return vec![Effect::info(format!("This is the {} image.", if forward { "last" } else { "first" }))];
        }
        // An accepted draft leaves the drafts list: the image moved to is found again after.
        let next = self.entry(shared).map(|e| e.path.clone());
        let mut effects: Vec<Effect> = self.close_editor().into_iter().collect();
        if let Some(next) = next {
            self.select_image(shared, &next);
        }
        effects.extend(self.open_editor(shared));
        effects
    }

    fn browse(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        if self.selection.apply(action, self.rows(shared).len()) {
            return Vec::new();
        }
        let report = shared.files.captions.clone().unwrap_or_default();
        match action {
            Action::EditCaption => return self.open_editor(shared),
            Action::NextImage | Action::PreviousImage => {
                self.move_selection(shared, action == Action::NextImage, None);
            }
            Action::NextUncaptioned => {
                let wanted = |_: &Shared, e: &DatasetEntry| caption_text(e).is_none_or(|t| t.trim().is_empty());
                if !self.move_selection(shared, true, Some(&wanted)) {
                    return vec![Effect::info("Every listed image has a caption.")];
                }
            }
            Action::NextWithFinding => {
                let wanted = |shared: &Shared, e: &DatasetEntry| {
                    shared.files.captions.as_ref().is_some_and(|r| r.findings.contains_key(&e.path))
                };
                if !self.move_selection(shared, true, Some(&wanted)) {
                    return vec![Effect::info("No lint findings in the listed captions.")];
                }
            }
            Action::CycleFilter => {
                self.filter = self.filter.next();
                self.selection.set(0);
                return vec![Effect::info(format!("Showing {} captions.", self.filter.label()))];
            }
            Action::ReviewNormalization if report.normalization.is_empty() => {
                return vec![Effect::info("Every caption is normalized already.")];
            }
            Action::ReviewNormalization => {
                self.mode = Mode::Review { selected: 0, dropped: Vec::new() };
                return vec![Effect::info("a applies all · Enter applies this one · x skips it · Esc closes.")];
            }
            Action::ToggleVocabulary => self.vocabulary_panel = !self.vocabulary_panel,
            Action::Close => self.vocabulary_panel = false,
            Action::NextSuggestion => {
                self.suggestion = (self.suggestion + 1).min(report.suggestions.len().saturating_sub(1));
            }
            Action::PreviousSuggestion => self.suggestion = self.suggestion.saturating_sub(1),
            Action::AcceptSuggestion => {
                return match report.suggestions.get(self.suggestion) {
                    Some(s) => vec![Effect::Caption(CaptionJob::AcceptRule {
                        canonical: s.canonical.clone(),
                        alias: s.alias.clone(),
                    })],
                    None => vec![Effect::info("No suggested rule to accept (V shows them).")],
                };
            }
            Action::EditTags => {
                self.mode = Mode::Prompt(prompt());
                let count = self.rows(shared).len();
                return vec![Effect::info(format!(
                    "Tag edit for the {count} listed captions; Enter applies, Esc cancels."
                ))];
            }
            Action::UndoCaption => return vec![Effect::Caption(CaptionJob::Undo)],
            Action::RedoCaption => return vec![Effect::Caption(CaptionJob::Redo)],
            Action::StartAutoCaptions | Action::StopAutoCaptions => return self.auto_action(action),
            Action::ShowDrafts
            | Action::NextDraft
            | Action::PreviousDraft
            | Action::AcceptDraft
            | Action::EditDraft
            | Action::RejectDraft
            | Action::AcceptCleanDrafts => return self.drafts_action(action, shared),
            _ => {}
        }
        Vec::new()
    }

    /// A caption job finished: an editor still open on the saved file now
    /// holds what is on disk; a failed save brings the editor back with the
    /// typed text (a conflict asks what to do).
    fn job_done(&mut self, job: &CaptionJob, result: &Result<String, JournalError>, shared: &Shared) -> Effect {
        self.forget_decisions(job, result.is_err());
        let saved = match job {
            CaptionJob::Save { image, file, before, after, .. } => {
                Some(Editor::with_text(image.clone(), file.clone(), before.clone(), after.clone()))
            }
            // A draft accepted from the editor: what was typed comes back if it failed.
            CaptionJob::AcceptDrafts(accepted) => match accepted.as_slice() {
                [DraftAcceptance { image, edited: Some(text), reviewed_against, .. }] => {
                    let queued = shared.files.captions.as_ref().and_then(|r| r.drafts.get(image));
                    Some(Editor::on_draft(
                        image.clone(),
                        image.with_extension(&shared.project.config.caption_extension),
                        reviewed_against.clone(),
                        queued.map_or_else(String::new, |q| q.draft.text.clone()),
                        text.clone(),
                    ))
                }
                _ => None,
            },
            _ => None,
        };
        match (result, saved) {
            (Ok(text), saved) => {
                if let (Some(saved), Mode::Edit(editor) | Mode::Conflict(editor)) = (saved, &mut self.mode)
                    && editor.file == saved.file
                {
                    // Written after all: nothing is left to decide; the file now holds the caption.
                    editor.loaded = Some(saved.text());
                    editor.draft = None;
                    self.mode = Mode::Edit(editor.clone());
                }
                Effect::say(Level::Success, text)
            }
            (Err(error), Some(editor)) => {
                let file = editor.file.clone();
                if matches!(error, JournalError::Conflict { .. }) {
                    self.mode = Mode::Conflict(editor);
                    Effect::say(
                        Level::Warning,
                        format!(
                            "{} changed on disk meanwhile: o overwrites it with yours, r keeps theirs.",
                            file.display()
                        ),
                    )
                } else {
                    self.mode = Mode::Edit(editor);
                    Effect::say(Level::Error, format!("Not saved: {error}"))
                }
            }
            (Err(JournalError::Conflict { path }), None) => Effect::say(
                Level::Error,
                format!("Refused: {} changed on disk since it was read; nothing was written.", path.display()),
            ),
            (Err(other), None) => Effect::say(Level::Error, format!("Not done: {other}")),
        }
    }
}

impl Pane for CaptionsPane {
    fn id(&self) -> PaneId {
        PaneId::Captions
    }

    fn bindings(&self) -> Vec<Binding> {
        let mut bindings = list_bindings("caption");
        bindings.extend([
            Binding::new(
                &[Key::plain(KeyCode::Enter), Key::char('e')],
                Action::EditCaption,
                "edit the caption, or in the drafts list the draft (Enter/Esc save and close, Tab completes)",
            ),
            Binding::new(&[Key::ctrl('n')], Action::NextImage, "next image (also while editing; saves first)"),
            Binding::new(&[Key::ctrl('p')], Action::PreviousImage, "previous image (also while editing)"),
            Binding::new(&[Key::char('m')], Action::NextUncaptioned, "next image without a caption"),
            Binding::new(&[Key::char('n')], Action::NextWithFinding, "next caption with a lint finding"),
            Binding::new(&[Key::char('f')], Action::CycleFilter, "list: all, with findings, uncaptioned, drafts"),
            Binding::new(&[Key::char('N')], Action::ReviewNormalization, "review what normalization changes, apply"),
            Binding::new(&[Key::char('T')], Action::EditTags, "add / remove / replace a tag in the listed captions"),
            Binding::new(&[Key::char('u')], Action::UndoCaption, "undo the last caption edit (kept across restarts)"),
            Binding::new(&[Key::char('U')], Action::RedoCaption, "redo"),
            Binding::new(&[Key::char('V')], Action::ToggleVocabulary, "vocabulary panel: terms and suggested rules"),
            Binding::new(&[Key::plain(KeyCode::Esc)], Action::Close, "close the vocabulary panel"),
            Binding::new(&[Key::char('>')], Action::NextSuggestion, "next suggested rule"),
            Binding::new(&[Key::char('<')], Action::PreviousSuggestion, "previous suggested rule"),
            Binding::new(&[Key::char('A')], Action::AcceptSuggestion, "accept the suggested rule into vocabulary.toml"),
        ]);
        bindings.extend(drafts::bindings());
        bindings.extend(auto::bindings());
        bindings
    }

    fn modes(&self) -> Vec<ModeKeys> {
        modes::keys()
    }

    fn mode(&self) -> Option<&'static str> {
        self.mode.name()
    }

    fn apply(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        match self.mode {
            Mode::Browse => self.browse(action, shared),
            Mode::Edit(_) => self.edit(action, shared),
            Mode::Review { .. } => self.review(action, shared),
            Mode::Prompt(_) => self.tag_prompt(action, shared),
            Mode::Conflict(_) => self.conflict(action),
            Mode::ConfirmAccept(_) => self.confirm_accept(action),
            Mode::AutoScope => self.scope_chosen(action, shared),
            Mode::ModelPrompt(..) => self.model_typed(action),
        }
    }

    fn type_key(&mut self, key: Key, _shared: &Shared) -> Vec<Effect> {
        match &mut self.mode {
            Mode::Edit(Editor { area, .. }) | Mode::Prompt(area) | Mode::ModelPrompt(area, _) => {
                area.input(KeyEvent::new(key.code, key.modifiers));
            }
            _ => {}
        }
        Vec::new()
    }

    fn done(&mut self, done: &Done, shared: &Shared) -> Vec<Effect> {
        match done {
            // The vocabulary, the journal or the drafts changed: the captions are linted again.
            Done::Caption(job, result) => vec![self.job_done(job, result, shared), Effect::Refresh { captions: true }],
            Done::AutoCaptionProgress(progress) => self.auto_progressed(progress),
            Done::AutoCaptionsEnded(result) => self.auto_ended(result),
            _ => Vec::new(),
        }
    }

    fn files_loaded(&mut self, _previous: &crate::tui::shared::ProjectFiles, shared: &Shared) -> Vec<Effect> {
        self.drafts_reread(shared);
        self.selection.clamp(self.rows(shared).len());
        Vec::new()
    }

    fn render(&self, shared: &Shared, frame: &mut Frame, area: Rect) {
        render::render(self, shared, frame, area);
    }

    fn unsaved(&self) -> Option<String> {
        let editor = self.editing().filter(|e| e.dirty())?;
        Some(match editor.draft.is_some() {
            true => format!("the draft for {} is edited and not accepted", editor.image.display()),
            false => format!("the caption {} has unsaved changes", editor.file.display()),
        })
    }

    fn save_unsaved(&self) -> Option<Effect> {
        Some(save(self.editing().filter(|e| e.dirty())?, false))
    }

    fn running(&self) -> Option<&'static str> {
        self.auto.is_some().then_some("captioning")
    }

    fn progress(&self) -> Option<String> {
        self.auto.as_ref().map(auto::AutoRun::describe)
    }

    fn wind_down(&mut self) -> Option<Effect> {
        let run = self.auto.as_mut().filter(|run| !run.stopping)?;
        run.stopping = true;
        Some(Effect::StopAutoCaptions)
    }

    fn quit_warning(&self) -> Option<String> {
        self.auto
            .is_some()
            .then(|| "a captioning run is going: quitting stops it (its drafts are kept; c continues)".into())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::tui::app::App;
    use crate::tui::shared::ProjectFiles;

    pub(super) fn app_with_captions() -> (tempfile::TempDir, App) {
        let dir = tempfile::tempdir().unwrap();
        let dataset = dir.path().join("dataset");
        std::fs::create_dir(&dataset).unwrap();
        for (name, caption) in [("a", Some("zeltmug, a mug")), ("b", None), ("c", Some("zeltmug, a cup"))] {
            image::RgbImage::new(4, 4).save(dataset.join(format!("{name}.png"))).unwrap();
            if let Some(text) = caption {
                std::fs::write(dataset.join(format!("{name}.txt")), text).unwrap();
            }
        }
        std::fs::write(dir.path().join(crate::project::PROJECT_FILE), "").unwrap();
        let project = crate::project::Project::open(dir.path()).unwrap();
        let mut app = App::new(project, crate::tui::theme::Theme::resolve("dark", std::path::Path::new(".")).unwrap());
        let files =
            ProjectFiles { inventory: crate::dataset::Inventory::read(&dataset, "txt", None), ..Default::default() };
        app.files_loaded(files);
        app.apply(Action::ShowPane(PaneId::Captions));
        (dir, app)
    }

    fn pane(app: &App) -> &CaptionsPane {
        app.pane()
    }

    #[test]
    fn quitting_with_an_edit_open_asks_and_saves_it() {
        let (_dir, mut app) = app_with_captions();
        app.apply(Action::EditCaption);
        app.handle_key(Key::char('!'));
        assert!(app.unsaved().is_some_and(|u| u.contains("a.txt")));
        assert_eq!(app.handle_key(Key::ctrl('c')), [], "asks first");
        let job = pane(&app).save_unsaved().expect("the edit is saved on the way out");
        assert!(matches!(job, Effect::Caption(CaptionJob::Save { after, .. }) if after == "zeltmug, a mug!"));
    }

    #[test]
    fn image_keys_work_while_editing_and_save_first() {
        let (_dir, mut app) = app_with_captions();
        app.apply(Action::NextUncaptioned);
        assert_eq!(pane(&app).entry(&app.shared).unwrap().path, PathBuf::from("b.png"));
        app.apply(Action::EditCaption);
        for c in "a red mug".chars() {
            app.handle_key(Key::char(c));
        }
        let effects = app.handle_key(Key::ctrl('n'));
        assert!(
            matches!(effects.as_slice(), [Effect::Caption(CaptionJob::Save { file, .. })] if file == &PathBuf::from("b.txt"))
        );
        assert_eq!(
            pane(&app).editing().map(|e| e.file.clone()),
            Some(PathBuf::from("c.txt")),
            "still editing, next image"
        );
        // A tag edit over the listed captions is one job.
        app.handle_key(Key::plain(KeyCode::Esc));
        app.apply(Action::EditTags);
        for c in "+studio".chars() {
            app.handle_key(Key::char(c));
        }
        let applied = app.handle_key(Key::plain(KeyCode::Enter));
        let [Effect::Caption(CaptionJob::Apply { changes, .. })] = applied.as_slice() else {
            panic!("a tag edit applies as one job");
        };
        assert_eq!(changes.len(), 2, "the two captions on disk");
    }

    #[test]
    fn the_last_image_keeps_its_editor_and_a_failed_save_keeps_the_text() {
        let (_dir, mut app) = app_with_captions();
        app.apply(Action::Last);
        app.apply(Action::EditCaption);
        app.handle_key(Key::char('!'));
        assert_eq!(app.handle_key(Key::ctrl('n')), [], "nothing after the last image");
        assert!(pane(&app).editing().is_some_and(|e| e.text() == "zeltmug, a cup!"));
        let saved = app.handle_key(Key::plain(KeyCode::Esc));
        let [Effect::Caption(job)] = saved.as_slice() else { panic!("Esc saves") };
        let job = job.clone();
        assert!(pane(&app).editing().is_none());
        let error = JournalError::Io("disk full".into());
        app.done(Done::Caption(job, Err(error)));
        assert!(pane(&app).editing().is_some_and(|e| e.text() == "zeltmug, a cup!" && e.dirty()), "text kept");
    }

    #[test]
    fn saving_on_the_way_out_from_the_conflict_question_ends_in_quitting() {
        let (_dir, mut app) = app_with_captions();
        app.apply(Action::EditCaption);
        app.handle_key(Key::char('!'));
        let saved = app.handle_key(Key::plain(KeyCode::Esc));
        let [Effect::Caption(job)] = saved.as_slice() else { panic!("Esc saves") };
        let conflict = JournalError::Conflict { path: "a.txt".into() };
        app.done(Done::Caption(job.clone(), Err(conflict)));
        assert_eq!(pane(&app).mode(), Some(modes::CONFLICT));
        app.handle_key(Key::ctrl('c'));
        let saved = app.handle_key(Key::char('s'));
        let [Effect::Caption(job)] = saved.as_slice() else { panic!("quitting saves the text: {saved:?}") };
        let effects = app.done(Done::Caption(job.clone(), Ok("Saved a.txt".into())));
        assert!(effects.contains(&Effect::Quit), "saved once, then leaves: {effects:?}");
    }

    #[test]
    fn saving_twice_in_a_row_replaces_what_the_first_save_wrote() {
        let (_dir, mut app) = app_with_captions();
        app.apply(Action::EditCaption);
        app.handle_key(Key::char('!'));
        app.handle_key(Key::ctrl('s'));
        app.handle_key(Key::char('?'));
        let saved = app.handle_key(Key::ctrl('s'));
        let [Effect::Caption(CaptionJob::Save { before, after, .. })] = saved.as_slice() else { panic!("{saved:?}") };
        assert_eq!((before.as_deref(), after.as_str()), (Some("zeltmug, a mug!"), "zeltmug, a mug!?"));
    }
}
