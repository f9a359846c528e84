//! The Captions pane's modes: the editor, the normalization review, the tag
//! prompt and the conflict question; their keys and what their actions do.
//! (The review queue's question and the captioning run's prompts keep their
//! keys and actions in `drafts` and `auto`.)

use std::path::PathBuf;

use crossterm::event::KeyCode;
use ratatui_textarea::TextArea;

use super::editor::{Editor, completion};
use super::{CaptionsPane, auto, drafts, save, tag_changes};
use crate::captions::auto::Scope;
use crate::captions::journal::Change;
use crate::captions::text::TagEdit;
use crate::tui::action::Action;
use crate::tui::effect::{CaptionJob, DraftAcceptance, Effect};
use crate::tui::keymap::{Binding, Key, ModeKeys};
use crate::tui::shared::Shared;

/// The pane's modes, by the names the keymap knows them by.
const EDITING: &str = "caption editor";
const REVIEW: &str = "normalization review";
const TAG_PROMPT: &str = "tag edit";
pub(super) const CONFLICT: &str = "caption changed elsewhere";

/// What the pane is doing.
#[derive(Debug, Clone, Default)]
pub(super) enum Mode {
    #[default]
    Browse,
    Edit(Editor),
    /// The normalization's changes, one selected; dropped ones are not applied.
    Review {
        selected: usize,
        dropped: Vec<PathBuf>,
    },
    /// A tag edit for the listed captions: `+tag`, `-tag`, `old => new`.
    Prompt(TextArea<'static>),
    /// The caption changed on disk while it was edited here.
    Conflict(Editor),
    /// These drafts (every one without findings) are accepted on a yes.
    ConfirmAccept(Vec<DraftAcceptance>),
    /// Which images a captioning run drafts for.
    AutoScope,
    /// The captioning model's folder, being typed; the run drafts for `Scope`.
    ModelPrompt(TextArea<'static>, Scope),
}

impl Mode {
    /// Its name in the keymap; `None` while browsing.
    pub(super) fn name(&self) -> Option<&'static str> {
        match self {
            Mode::Browse => None,
            Mode::Edit(_) => Some(EDITING),
            Mode::Review { .. } => Some(REVIEW),
            Mode::Prompt(_) => Some(TAG_PROMPT),
            Mode::Conflict(_) => Some(CONFLICT),
            Mode::ConfirmAccept(_) => Some(drafts::CONFIRM_ACCEPT),
            Mode::AutoScope => Some(auto::SCOPE),
            Mode::ModelPrompt(..) => Some(auto::MODEL_PROMPT),
        }
    }
}

/// Each mode's keys (F1 and Ctrl-c are added by `ModeKeys::new`).
pub(super) fn keys() -> Vec<ModeKeys> {
    let esc = Key::plain(KeyCode::Esc);
    let enter = Key::plain(KeyCode::Enter);
    let mut keys = vec![
        ModeKeys::new(
            EDITING,
            "Editing a caption (other keys type; Ctrl-u undoes)",
            true,
            vec![
                Binding::new(&[esc, enter], Action::CloseEditor, "save if changed, and close"),
                Binding::new(&[Key::ctrl('s')], Action::SaveCaption, "save now, keep editing"),
                Binding::new(&[Key::ctrl('n')], Action::NextImage, "save, then edit the next image"),
                Binding::new(&[Key::ctrl('p')], Action::PreviousImage, "save, then edit the previous image"),
                Binding::new(&[Key::plain(KeyCode::Tab)], Action::CompleteWord, "complete the word (shown as Tab:)"),
            ],
        ),
        ModeKeys::new(
            REVIEW,
            "Reviewing normalization",
            false,
            vec![
                Binding::new(&[Key::plain(KeyCode::Up), Key::char('k')], Action::Up, "previous change"),
                Binding::new(&[Key::plain(KeyCode::Down), Key::char('j')], Action::Down, "next change"),
                Binding::new(&[enter], Action::ApplyChange, "apply this change"),
                Binding::new(&[Key::char('a')], Action::ApplyAll, "apply every listed change (one undo)"),
                Binding::new(&[Key::char('x')], Action::SkipChange, "leave this change out"),
                Binding::new(&[esc], Action::Close, "close the review"),
            ],
        ),
        ModeKeys::new(
            TAG_PROMPT,
            "Tag edit (type +tag, -tag or old => new)",
            true,
            vec![
                Binding::new(&[enter], Action::ApplyTagEdit, "apply to the listed captions (one undo)"),
                Binding::new(&[esc], Action::Close, "cancel"),
            ],
        ),
        ModeKeys::new(
            CONFLICT,
            "Caption changed on disk while edited",
            false,
            vec![
                Binding::new(
                    &[Key::char('o')],
                    Action::Overwrite,
                    "overwrite it with your text (undo brings theirs back)",
                ),
                Binding::new(&[Key::char('r')], Action::KeepTheirs, "keep the version on disk, drop yours"),
                Binding::new(&[esc], Action::Close, "keep editing"),
            ],
        ),
        drafts::keys(),
    ];
    keys.extend(auto::keys());
    keys
}

impl CaptionsPane {
    pub(super) fn edit(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        let Mode::Edit(editor) = &mut self.mode else { return Vec::new() };
        match action {
            Action::CloseEditor => match self.close_editor() {
                Some(save) => vec![save],
                None => vec![Effect::info("Closed; nothing changed.")],
            },
            // `loaded` follows once the save succeeded (see `done`).
            Action::SaveCaption if editor.dirty() => {
                let saving = save(editor, false);
                // What is being written is what the next save replaces (saves run in
                // order; a draft is accepted once, later saves edit the caption); a
                // failed one brings the editor back dirty (see `job_done`).
                editor.loaded = Some(editor.text());
                editor.draft = None;
                vec![saving]
            }
            Action::NextImage | Action::PreviousImage => self.edit_next(shared, action == Action::NextImage),
            Action::CompleteWord => {
                if let Some(word) = completion(editor, shared.files.captions.as_ref()) {
                    editor.complete(&word);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    pub(super) fn review(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        let Mode::Review { selected, dropped } = &mut self.mode else { return Vec::new() };
        let changes: Vec<Change> = shared
            .files
            .captions
            .as_ref()
            .map(|r| r.normalization.iter().filter(|c| !dropped.contains(&c.path)).cloned().collect())
            .unwrap_or_default();
        match action {
            Action::Close => self.mode = Mode::Browse,
            Action::Up => *selected = selected.saturating_sub(1),
            Action::Down => *selected = (*selected + 1).min(changes.len().saturating_sub(1)),
            Action::SkipChange => {
                if let Some(change) = changes.get(*selected) {
                    dropped.push(change.path.clone());
                    *selected = (*selected).min(changes.len().saturating_sub(2));
                }
            }
            Action::ApplyAll if !changes.is_empty() => {
                self.mode = Mode::Browse;
                let label = format!("normalize {}", crate::words::counted(changes.len(), "caption"));
                return vec![Effect::Caption(CaptionJob::Apply { label, changes })];
            }
            Action::ApplyChange => {
                if let Some(change) = changes.get(*selected).cloned() {
                    dropped.push(change.path.clone());
                    let label = format!("normalize {}", change.path.display());
                    return vec![Effect::Caption(CaptionJob::Apply { label, changes: vec![change] })];
                }
            }
            _ => {}
        }
        Vec::new()
    }

    pub(super) fn tag_prompt(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        let Mode::Prompt(area) = &self.mode else { return Vec::new() };
        match action {
            Action::Close => {
                self.mode = Mode::Browse;
                vec![Effect::info("Tag edit cancelled.")]
            }
            Action::ApplyTagEdit => {
                let command = area.lines().join(" ");
                let Some(edit) = TagEdit::parse(&command) else {
                    return vec![Effect::info("Write +tag, -tag or old => new (no commas in a tag).")];
                };
                self.mode = Mode::Browse;
                let rows = self.rows(shared);
                let entries = rows.iter().map(|&i| &shared.files.inventory.entries[i]);
                let changes = tag_changes(&edit, entries, &shared.project.config.caption_extension);
                if changes.is_empty() {
                    return vec![Effect::info(format!("No listed caption changes: {}.", edit.describe()))];
                }
                let label = format!("{} in {}", edit.describe(), crate::words::counted(changes.len(), "caption"));
                vec![Effect::Caption(CaptionJob::Apply { label, changes })]
            }
            _ => Vec::new(),
        }
    }

    pub(super) fn conflict(&mut self, action: Action) -> Vec<Effect> {
        let Mode::Conflict(editor) = &self.mode else { return Vec::new() };
        let editor = editor.clone();
        match action {
            Action::Overwrite => {
                self.mode = Mode::Browse;
                vec![save(&editor, true)]
            }
            Action::KeepTheirs => {
                self.mode = Mode::Browse;
                let kept = format!("Kept the version on disk of {}; yours is dropped.", editor.file.display());
                vec![Effect::info(kept), Effect::Refresh { captions: false }]
            }
            Action::Close => {
                self.mode = Mode::Edit(editor);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}
