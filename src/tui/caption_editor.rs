//! The Captions pane's state: which captions the list shows, the editor
//! (ratatui-textarea, word-wrapped, with its own undo), the normalization
//! review, the tag-edit prompt and the conflict question. Writes are
//! returned as `CaptionJob`s for the event loop, which runs them through
//! the caption journal (so each is undoable and never overwrites an edit
//! made elsewhere).

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui_textarea::{TextArea, WrapMode};

use super::action::{Action, PaneId};
use super::app::{App, Effect, Level, StatusMessage};
use super::keymap::Key;

use crate::captions::journal::Change;
use crate::captions::text::TagEdit;
use crate::dataset::{CaptionState, DatasetEntry};

/// Which images the list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptionFilter {
    #[default]
    All,
    /// Captions with a lint finding (missing and empty ones included).
    WithFindings,
    /// Missing, empty or unreadable captions.
    Uncaptioned,
}

impl CaptionFilter {
    pub fn label(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::WithFindings => "with findings",
            Self::Uncaptioned => "uncaptioned",
        }
    }

    pub fn next(self) -> Self {
        match self {
            Self::All => Self::WithFindings,
            Self::WithFindings => Self::Uncaptioned,
            Self::Uncaptioned => Self::All,
        }
    }
}

/// One caption open for editing.
#[derive(Debug, Clone)]
pub struct Editor {
    pub image: PathBuf,
    /// The caption file, relative to the dataset.
    pub file: PathBuf,
    /// The text on disk when the editor opened (`None`: no file yet).
    pub loaded: Option<String>,
    pub area: TextArea<'static>,
}

impl Editor {
    pub fn new(image: PathBuf, file: PathBuf, loaded: Option<String>) -> Self {
        let mut area = TextArea::from(loaded.as_deref().unwrap_or("").lines().map(String::from).collect::<Vec<_>>());
        area.set_wrap_mode(WrapMode::Word);
        area.move_cursor(ratatui_textarea::CursorMove::Bottom);
        area.move_cursor(ratatui_textarea::CursorMove::End);
        Self { image, file, loaded, area }
    }

    /// The caption as typed: lines joined by spaces (a caption is one line).
    pub fn text(&self) -> String {
        self.area.lines().iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
    }

    pub fn dirty(&self) -> bool {
        let text = self.text();
        match &self.loaded {
            Some(loaded) => loaded.trim() != text,
            None => !text.is_empty(),
        }
    }

    /// The word being typed, before the cursor.
    pub fn word_at_cursor(&self) -> String {
        let ratatui_textarea::DataCursor(row, col) = self.area.cursor();
        let line = self.area.lines().get(row).map(String::as_str).unwrap_or("");
        let before: String = line.chars().take(col).collect();
        // Char-aware: the separator may be several bytes long (an em dash, say).
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !crate::captions::text::is_word_char(*c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        before[start..].to_string()
    }

    /// Replaces the word before the cursor by `word`.
    pub fn complete(&mut self, word: &str) {
        for _ in 0..self.word_at_cursor().chars().count() {
            self.area.delete_char();
        }
        self.area.insert_str(word);
    }
}

/// What the pane is doing.
#[derive(Debug, Clone, Default)]
pub enum Mode {
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
}

/// Whether a Captions row is the one looked for.
type RowTest = dyn Fn(&App, &DatasetEntry) -> bool;

/// Work for the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptionJob {
    /// Writes one caption; `force` takes whatever is on disk as the text replaced.
    Save {
        image: PathBuf,
        file: PathBuf,
        before: Option<String>,
        after: String,
        force: bool,
    },
    /// Writes several captions as one undoable edit.
    Apply {
        label: String,
        changes: Vec<Change>,
    },
    Undo,
    Redo,
    /// Adds `alias` to `canonical` in vocabulary.toml.
    AcceptRule {
        canonical: String,
        alias: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct CaptionsView {
    pub mode: Mode,
    pub filter: CaptionFilter,
    /// The vocabulary panel (terms and suggestions) in place of the preview.
    pub vocabulary_panel: bool,
    /// The selected suggestion in that panel.
    pub suggestion: usize,
}

impl CaptionsView {
    pub fn editing(&self) -> Option<&Editor> {
        match &self.mode {
            Mode::Edit(editor) | Mode::Conflict(editor) => Some(editor),
            _ => None,
        }
    }
}

/// The caption text of an entry, when it has a readable one.
pub fn caption_text(entry: &DatasetEntry) -> Option<&str> {
    match &entry.caption {
        CaptionState::Text(text) => Some(text),
        _ => None,
    }
}

/// A tag prompt, single line.
pub fn prompt() -> TextArea<'static> {
    let mut area = TextArea::default();
    area.set_placeholder_text("+tag · -tag · old => new");
    area
}

/// The changes a tag edit makes to `entries` (those with readable captions).
pub fn tag_changes<'a>(
    edit: &TagEdit,
    entries: impl Iterator<Item = &'a DatasetEntry>,
    extension: &str,
) -> Vec<Change> {
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

impl App {
    /// Indices into the inventory of the images the Captions list shows.
    pub fn caption_rows(&self) -> Vec<usize> {
        let entries = &self.files.inventory.entries;
        let findings = self.files.captions.as_ref().map(|r| &r.findings);
        (0..entries.len())
            .filter(|&i| match self.captions.filter {
                CaptionFilter::All => true,
                CaptionFilter::WithFindings => findings.is_some_and(|f| f.contains_key(&entries[i].path)),
                CaptionFilter::Uncaptioned => caption_text(&entries[i]).is_none_or(|t| t.trim().is_empty()),
            })
            .collect()
    }

    /// The inventory entry selected in the Captions pane.
    pub fn caption_entry(&self) -> Option<&DatasetEntry> {
        let rows = self.caption_rows();
        let index = self.selection(PaneId::Captions)?;
        rows.get(index).map(|&i| &self.files.inventory.entries[i])
    }

    /// The save an open, changed caption editor still needs (quitting asks for it).
    pub fn pending_caption_save(&self) -> Option<CaptionJob> {
        Some(save_job(self.captions.editing().filter(|e| e.dirty())?, false))
    }

    fn open_editor(&mut self) -> Option<Effect> {
        let Some(entry) = self.caption_entry() else {
            self.info("No image selected.".into());
            return None;
        };
        if let CaptionState::Unreadable(why) = &entry.caption {
            let why = why.clone();
            self.message =
                StatusMessage { text: format!("Not editable: {why}; fix the file first."), level: Level::Error };
            return None;
        }
        let file = entry.path.with_extension(&self.project.config.caption_extension);
        let editor = Editor::new(entry.path.clone(), file, caption_text(entry).map(String::from));
        self.captions.mode = Mode::Edit(editor);
        self.info("Editing: Enter or Esc saves and closes · Ctrl-n/p next/previous image · Tab completes.".into());
        None
    }

    /// Closes the editor, returning its save when something changed.
    fn close_editor(&mut self) -> Option<Effect> {
        let Mode::Edit(editor) = std::mem::take(&mut self.captions.mode) else { return None };
        editor.dirty().then(|| save(&editor, false))
    }

    /// Moves the Captions selection one row (or, with `wanted`, to the next
    /// row it accepts, wrapping around); false when it did not move.
    fn move_caption(&mut self, forward: bool, wanted: Option<&RowTest>) -> bool {
        let rows = self.caption_rows();
        let Some(current) = self.selection(PaneId::Captions) else { return false };
        let count = rows.len();
        let next = (1..=count)
            .map(|offset| if forward { (current + offset) % count } else { (current + count - offset) % count })
            .find(|&i| wanted.is_none_or(|w| w(self, &self.files.inventory.entries[rows[i]])));
        match next {
            Some(i) if wanted.is_some() || (forward && i > current) || (!forward && i < current) => {
                self.selected[PaneId::Captions.index()] = i;
                true
            }
            _ => false,
        }
    }

    pub(super) fn caption_action(&mut self, action: Action) -> Option<Effect> {
        let report = self.files.captions.clone().unwrap_or_default();
        match action {
            Action::EditCaption => return self.open_editor(),
            Action::NextImage | Action::PreviousImage => {
                self.move_caption(action == Action::NextImage, None);
            }
            Action::NextUncaptioned => {
                let wanted = |_: &App, e: &DatasetEntry| caption_text(e).is_none_or(|t| t.trim().is_empty());
                if !self.move_caption(true, Some(&wanted)) {
                    self.info("Every listed image has a caption.".into());
                }
            }
            Action::NextWithFinding => {
                let wanted = |app: &App, e: &DatasetEntry| {
                    app.files.captions.as_ref().is_some_and(|r| r.findings.contains_key(&e.path))
                };
                if !self.move_caption(true, Some(&wanted)) {
                    self.info("No lint findings in the listed captions.".into());
                }
            }
            Action::ReviewNormalization if report.normalization.is_empty() => {
                self.info("Every caption is normalized already.".into());
            }
            Action::ReviewNormalization => {
                self.captions.mode = Mode::Review { selected: 0, dropped: Vec::new() };
                self.info("a applies all · Enter applies this one · x skips it · Esc closes.".into());
            }
            Action::ToggleVocabulary => self.captions.vocabulary_panel = !self.captions.vocabulary_panel,
            Action::NextSuggestion => {
                self.captions.suggestion =
                    (self.captions.suggestion + 1).min(report.suggestions.len().saturating_sub(1));
            }
            Action::PreviousSuggestion => self.captions.suggestion = self.captions.suggestion.saturating_sub(1),
            Action::AcceptSuggestion => match report.suggestions.get(self.captions.suggestion) {
                Some(s) => {
                    return Some(Effect::Caption(CaptionJob::AcceptRule {
                        canonical: s.canonical.clone(),
                        alias: s.alias.clone(),
                    }));
                }
                None => self.info("No suggested rule to accept (V shows them).".into()),
            },
            Action::EditTags => {
                self.captions.mode = Mode::Prompt(prompt());
                self.info(format!(
                    "Tag edit for the {} listed captions; Enter applies, Esc cancels.",
                    self.caption_rows().len()
                ));
            }
            Action::UndoCaption => return Some(Effect::Caption(CaptionJob::Undo)),
            Action::RedoCaption => return Some(Effect::Caption(CaptionJob::Redo)),
            _ => {}
        }
        None
    }

    /// A key while the editor, the review, the prompt or the conflict question is open.
    pub(super) fn caption_key(&mut self, key: Key) -> Option<Effect> {
        let plain = |code: KeyCode| key == Key::plain(code);
        match &mut self.captions.mode {
            Mode::Browse => None,
            Mode::Edit(editor) => {
                if plain(KeyCode::Esc) || plain(KeyCode::Enter) {
                    let effect = self.close_editor();
                    if effect.is_none() {
                        self.info("Closed; nothing changed.".into());
                    }
                    return effect;
                }
                if key == Key::ctrl('s') {
                    // `loaded` follows once the save succeeded (caption_job_done).
                    return editor.dirty().then(|| save(editor, false));
                }
                if key == Key::ctrl('n') || key == Key::ctrl('p') {
                    let forward = key == Key::ctrl('n');
                    let current = self.selection(PaneId::Captions)?;
                    if !self.move_caption(forward, None) {
                        self.info(format!("This is the {} image.", if forward { "last" } else { "first" }));
                        return None;
                    }
                    // Leave the image: save it, then edit the next one.
                    let target = std::mem::replace(&mut self.selected[PaneId::Captions.index()], current);
                    let effect = self.close_editor();
                    self.selected[PaneId::Captions.index()] = target;
                    self.open_editor();
                    return effect;
                }
                if plain(KeyCode::Tab) {
                    if let Some(word) = completion(editor, self.files.captions.as_ref()) {
                        editor.complete(&word);
                    }
                    return None;
                }
                editor.area.input(KeyEvent::new(key.code, key.modifiers));
                None
            }
            Mode::Review { selected, dropped } => {
                let changes: Vec<Change> = self
                    .files
                    .captions
                    .as_ref()
                    .map(|r| r.normalization.iter().filter(|c| !dropped.contains(&c.path)).cloned().collect())
                    .unwrap_or_default();
                match key.code {
                    KeyCode::Esc => self.captions.mode = Mode::Browse,
                    KeyCode::Up | KeyCode::Char('k') => *selected = selected.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => {
                        *selected = (*selected + 1).min(changes.len().saturating_sub(1))
                    }
                    KeyCode::Char('x') => {
                        if let Some(change) = changes.get(*selected) {
                            dropped.push(change.path.clone());
                            *selected = (*selected).min(changes.len().saturating_sub(2));
                        }
                    }
                    KeyCode::Char('a') if !changes.is_empty() => {
                        self.captions.mode = Mode::Browse;
                        let label = format!("normalize {} captions", changes.len());
                        return Some(Effect::Caption(CaptionJob::Apply { label, changes }));
                    }
                    KeyCode::Enter => {
                        if let Some(change) = changes.get(*selected).cloned() {
                            dropped.push(change.path.clone());
                            let label = format!("normalize {}", change.path.display());
                            return Some(Effect::Caption(CaptionJob::Apply { label, changes: vec![change] }));
                        }
                    }
                    _ => {}
                }
                None
            }
            Mode::Prompt(area) => {
                if plain(KeyCode::Esc) {
                    self.captions.mode = Mode::Browse;
                    self.info("Tag edit cancelled.".into());
                    return None;
                }
                if !plain(KeyCode::Enter) {
                    area.input(KeyEvent::new(key.code, key.modifiers));
                    return None;
                }
                let command = area.lines().join(" ");
                let Some(edit) = TagEdit::parse(&command) else {
                    self.info("Write +tag, -tag or old => new (no commas in a tag).".into());
                    return None;
                };
                self.captions.mode = Mode::Browse;
                let rows = self.caption_rows();
                let entries = rows.iter().map(|&i| &self.files.inventory.entries[i]);
                let changes = tag_changes(&edit, entries, &self.project.config.caption_extension);
                if changes.is_empty() {
                    self.info(format!("No listed caption changes: {}.", edit.describe()));
                    return None;
                }
                let label = format!("{} in {} captions", edit.describe(), changes.len());
                Some(Effect::Caption(CaptionJob::Apply { label, changes }))
            }
            Mode::Conflict(editor) => {
                let editor = editor.clone();
                match key.code {
                    KeyCode::Char('o') => {
                        self.captions.mode = Mode::Browse;
                        Some(save(&editor, true))
                    }
                    KeyCode::Char('r') => {
                        self.captions.mode = Mode::Browse;
                        self.info(format!("Kept the version on disk of {}; yours is dropped.", editor.file.display()));
                        Some(Effect::Refresh)
                    }
                    KeyCode::Esc => {
                        self.captions.mode = Mode::Edit(editor);
                        None
                    }
                    _ => None,
                }
            }
        }
    }

    /// The loop carried out a caption job.
    pub fn caption_job_done(
        &mut self,
        job: &CaptionJob,
        result: Result<String, crate::captions::journal::JournalError>,
    ) {
        use crate::captions::journal::JournalError;
        self.captions_stale = true;
        let saved = match job {
            CaptionJob::Save { image, file, before, after, .. } => Some((image, file, before, after)),
            _ => None,
        };
        match (result, saved) {
            (Ok(text), saved) => {
                // An editor still open on the saved file now holds what is on disk.
                if let (Some((_, file, _, after)), Mode::Edit(editor)) = (saved, &mut self.captions.mode)
                    && &editor.file == file
                {
                    editor.loaded = Some(after.clone());
                }
                self.message = StatusMessage { text, level: Level::Success };
            }
            (Err(error), Some((image, file, before, after))) => {
                // The typed text is never dropped: the editor comes back with it.
                let mut editor = Editor::new(image.clone(), file.clone(), before.clone());
                editor.area = TextArea::from([after.clone()]);
                editor.area.set_wrap_mode(WrapMode::Word);
                let conflict = matches!(error, JournalError::Conflict { .. });
                self.captions.mode = if conflict { Mode::Conflict(editor) } else { Mode::Edit(editor) };
                self.message = if conflict {
                    StatusMessage {
                        text: format!(
                            "{} changed on disk meanwhile: o overwrites it with yours, r keeps theirs.",
                            file.display()
                        ),
                        level: Level::Warning,
                    }
                } else {
                    StatusMessage { text: format!("Not saved: {error}"), level: Level::Error }
                };
            }
            (Err(error), None) => {
                let text = match error {
                    JournalError::Conflict { path } => {
                        format!("Refused: {} changed on disk since it was read; nothing was written.", path.display())
                    }
                    other => format!("Not done: {other}"),
                };
                self.message = StatusMessage { text, level: Level::Error };
            }
        }
    }
}

fn save_job(editor: &Editor, force: bool) -> CaptionJob {
    CaptionJob::Save {
        image: editor.image.clone(),
        file: editor.file.clone(),
        before: editor.loaded.clone(),
        after: editor.text(),
        force,
    }
}

fn save(editor: &Editor, force: bool) -> Effect {
    Effect::Caption(save_job(editor, force))
}

/// The commonest vocabulary or dataset term starting with the word being typed.
pub fn completion(editor: &Editor, report: Option<&crate::captions::CaptionReport>) -> Option<String> {
    let prefix = editor.word_at_cursor().to_lowercase();
    if prefix.chars().count() < 2 {
        return None;
    }
    let report = report?;
    let vocabulary = report.vocabulary_terms.iter().filter(|t| !t.contains(' '));
    vocabulary
        .chain(report.terms.iter().map(|t| &t.term))
        .find(|term| term.starts_with(&prefix) && term.len() > prefix.len())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_editor_knows_what_changed_and_completes_words() {
        let mut editor = Editor::new("a.png".into(), "a.txt".into(), Some("zeltmug, a teal mu".into()));
        assert!(!editor.dirty());
        assert_eq!(editor.word_at_cursor(), "mu");
        editor.complete("mug");
        assert_eq!(editor.text(), "zeltmug, a teal mug");
        assert!(editor.dirty());
        let fresh = Editor::new("b.png".into(), "b.txt".into(), None);
        assert!(!fresh.dirty(), "an empty new caption is nothing to save");
    }

    #[test]
    fn completion_after_multibyte_punctuation_does_not_panic() {
        let editor = Editor::new("a.png".into(), "a.txt".into(), Some("a mug — te".into()));
        assert_eq!(editor.word_at_cursor(), "te");
        let editor = Editor::new("a.png".into(), "a.txt".into(), Some("a mug —".into()));
        assert_eq!(editor.word_at_cursor(), "");
    }

    fn app_with_captions() -> (tempfile::TempDir, App) {
        let dir = tempfile::tempdir().unwrap();
        let dataset = dir.path().join("dataset");
        std::fs::create_dir(&dataset).unwrap();
        for (name, caption) in [("a", Some("zeltmug, a mug")), ("b", None), ("c", Some("zeltmug, a cup"))] {
            image::RgbImage::new(4, 4).save(dataset.join(format!("{name}.png"))).unwrap();
            if let Some(text) = caption {
                std::fs::write(dataset.join(format!("{name}.txt")), text).unwrap();
            }
        }
        let project = crate::project::Project {
            root: dir.path().into(),
            config: crate::project::ProjectConfig::default(),
            source: String::new(),
        };
        let mut app = App::new(project, crate::tui::theme::Theme::resolve("dark", std::path::Path::new(".")).unwrap());
        let files = crate::tui::app::ProjectFiles {
            inventory: crate::dataset::Inventory::read(&dataset, "txt", None),
            ..Default::default()
        };
        app.files_loaded(files);
        app.apply(Action::ShowPane(PaneId::Captions));
        (dir, app)
    }

    #[test]
    fn quitting_with_an_edit_open_asks_and_saves_it() {
        let (_dir, mut app) = app_with_captions();
        app.apply(Action::EditCaption);
        app.handle_key(Key::char('!'));
        assert!(app.unsaved().is_some_and(|u| u.contains("a.txt")));
        assert_eq!(app.handle_key(Key::ctrl('c')), None, "asks first");
        let job = app.pending_caption_save().expect("the edit is saved on the way out");
        assert!(matches!(job, CaptionJob::Save { after, .. } if after == "zeltmug, a mug!"));
    }

    #[test]
    fn image_keys_work_while_editing_and_save_first() {
        let (_dir, mut app) = app_with_captions();
        app.apply(Action::NextUncaptioned);
        assert_eq!(app.caption_entry().unwrap().path, PathBuf::from("b.png"));
        app.apply(Action::EditCaption);
        for c in "a red mug".chars() {
            app.handle_key(Key::char(c));
        }
        let effect = app.handle_key(Key::ctrl('n'));
        assert!(
            matches!(effect, Some(Effect::Caption(CaptionJob::Save { ref file, .. })) if file == &PathBuf::from("b.txt"))
        );
        assert_eq!(
            app.captions.editing().map(|e| e.file.clone()),
            Some(PathBuf::from("c.txt")),
            "still editing, next image"
        );
        // A tag edit over the listed captions is one job.
        app.handle_key(Key::plain(KeyCode::Esc));
        app.apply(Action::EditTags);
        for c in "+studio".chars() {
            app.handle_key(Key::char(c));
        }
        let Some(Effect::Caption(CaptionJob::Apply { changes, .. })) = app.handle_key(Key::plain(KeyCode::Enter))
        else {
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
        assert_eq!(app.handle_key(Key::ctrl('n')), None, "nothing after the last image");
        assert!(app.captions.editing().is_some_and(|e| e.text() == "zeltmug, a cup!"));
        let Some(Effect::Caption(job)) = app.handle_key(Key::plain(KeyCode::Esc)) else { panic!("Esc saves") };
        assert!(app.captions.editing().is_none());
        let error = crate::captions::journal::JournalError::Io("disk full".into());
        app.caption_job_done(&job, Err(error));
        assert!(app.captions.editing().is_some_and(|e| e.text() == "zeltmug, a cup!" && e.dirty()), "text kept");
    }
}
