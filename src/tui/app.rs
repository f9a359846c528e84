//! The workbench state and how actions change it. Nothing here touches the
//! terminal or the disk: side effects are returned as `Effect`s for the event
//! loop to carry out, which keeps this testable and rendering pure.

use crate::dataset::Inventory;
use crate::project::Project;
use crate::train::RunSummary;

use super::action::{Action, PaneId};
use super::keymap::{Key, Keymap, Scope};
use super::theme::Theme;

/// What the workbench knows about the project's files, re-read in the background.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectFiles {
    pub inventory: Inventory,
    pub runs: Vec<RunSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    Help { scroll: u16 },
    ConfirmQuit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Success,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    pub text: String,
    pub level: Level,
}

/// Work the event loop does on the state's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Quit,
    /// Write the theme to project.toml, then call `theme_saved` or `save_failed`.
    SaveTheme,
    /// Re-read the project's files, then call `files_loaded`.
    Refresh,
    /// Save (as `SaveTheme`), and quit once that succeeded.
    SaveThenQuit,
}

/// Rows a page key moves by; the real page height is only known when drawing.
const PAGE: usize = 10;

pub struct App {
    pub project: Project,
    pub files: ProjectFiles,
    /// True until the first background read of the project's files arrives.
    pub loading: bool,
    pub pane: PaneId,
    /// The selected row of each pane's list, indexed by `PaneId::index`.
    pub selected: [usize; 4],
    pub overlay: Option<Overlay>,
    pub theme: Theme,
    /// The theme name that project.toml (or `--theme`) set; differs from
    /// `theme.name` after the user tried another theme without saving it.
    pub saved_theme: String,
    pub message: StatusMessage,
    pub keymap: Keymap,
}

impl App {
    pub fn new(project: Project, theme: Theme) -> Self {
        let message =
            StatusMessage { text: format!("Opened {}. Press ? for keys.", project.name()), level: Level::Info };
        Self {
            saved_theme: theme.name.clone(),
            project,
            files: ProjectFiles::default(),
            loading: true,
            pane: PaneId::Dataset,
            selected: [0; 4],
            overlay: None,
            theme,
            message,
            keymap: Keymap::default(),
        }
    }

    /// What is unsaved, in words, or `None` when everything is saved.
    pub fn unsaved(&self) -> Option<String> {
        (self.theme.name != self.saved_theme)
            .then(|| format!("the theme `{}` is not saved to project.toml", self.theme.name))
    }

    fn scope(&self) -> Scope {
        match self.overlay {
            Some(Overlay::Help { .. }) => Scope::Help,
            Some(Overlay::ConfirmQuit) => Scope::QuitDialog,
            None => Scope::Pane(self.pane),
        }
    }

    pub fn handle_key(&mut self, key: Key) -> Option<Effect> {
        let action = self.keymap.lookup(self.scope(), key)?;
        self.apply(action)
    }

    pub fn apply(&mut self, action: Action) -> Option<Effect> {
        if let Some(Overlay::Help { scroll }) = &mut self.overlay {
            match action {
                Action::Up => *scroll = scroll.saturating_sub(1),
                Action::Down => {
                    let sections = self.keymap.help_sections(self.pane);
                    let lines: usize = sections.iter().map(|(_, bindings)| bindings.len() + 2).sum();
                    *scroll = (*scroll + 1).min(lines as u16);
                }
                Action::Close | Action::ToggleHelp => self.overlay = None,
                Action::Quit => return self.request_quit(),
                _ => {}
            }
            return None;
        }
        match action {
            Action::Quit => return self.request_quit(),
            Action::SaveAndQuit => return Some(Effect::SaveThenQuit),
            Action::DiscardAndQuit => return Some(Effect::Quit),
            Action::Close => self.overlay = None,
            Action::ToggleHelp => self.overlay = Some(Overlay::Help { scroll: 0 }),
            Action::NextPane => self.pane = self.pane.next(),
            Action::PreviousPane => self.pane = self.pane.previous(),
            Action::ShowPane(pane) => self.pane = pane,
            Action::CycleTheme => {
                self.theme = self.theme.next_builtin();
                let hint = if self.unsaved().is_some() { " (Ctrl-s keeps it)" } else { "" };
                self.info(format!("Theme: {}{hint}", self.theme.name));
            }
            Action::Save => {
                if self.unsaved().is_some() {
                    return Some(Effect::SaveTheme);
                }
                self.info("Nothing to save.".to_string());
            }
            Action::Refresh => {
                self.info("Re-reading the project…".to_string());
                return Some(Effect::Refresh);
            }
            Action::Up => self.move_selection(|i, _| i.saturating_sub(1)),
            Action::Down => self.move_selection(|i, _| i + 1),
            Action::PageUp => self.move_selection(|i, _| i.saturating_sub(PAGE)),
            Action::PageDown => self.move_selection(|i, _| i + PAGE),
            Action::First => self.move_selection(|_, _| 0),
            Action::Last => self.move_selection(|_, len| len.saturating_sub(1)),
        }
        None
    }

    fn request_quit(&mut self) -> Option<Effect> {
        if self.unsaved().is_some() {
            self.overlay = Some(Overlay::ConfirmQuit);
            None
        } else {
            Some(Effect::Quit)
        }
    }

    /// Moves the current pane's selection, clamped to its list.
    fn move_selection(&mut self, step: impl Fn(usize, usize) -> usize) {
        let len = self.list_len(self.pane);
        let selected = &mut self.selected[self.pane.index()];
        *selected = if len == 0 { 0 } else { step(*selected, len).min(len - 1) };
    }

    /// How many rows the pane's list has.
    pub fn list_len(&self, pane: PaneId) -> usize {
        match pane {
            PaneId::Dataset | PaneId::Captions => self.files.inventory.entries.len(),
            PaneId::Train => self.files.runs.len(),
            PaneId::Samples => self.project.config.samples.len(),
        }
    }

    /// The selected row of `pane`, or `None` when its list is empty.
    pub fn selection(&self, pane: PaneId) -> Option<usize> {
        let len = self.list_len(pane);
        (len > 0).then(|| self.selected[pane.index()].min(len - 1))
    }

    pub fn files_loaded(&mut self, files: ProjectFiles) {
        self.files = files;
        self.loading = false;
        for pane in PaneId::ALL {
            let len = self.list_len(pane);
            let selected = &mut self.selected[pane.index()];
            *selected = (*selected).min(len.saturating_sub(1));
        }
    }

    pub fn theme_saved(&mut self) {
        self.saved_theme = self.theme.name.clone();
        self.message = StatusMessage {
            text: format!("Saved theme `{}` to project.toml.", self.theme.name),
            level: Level::Success,
        };
    }

    pub fn save_failed(&mut self, error: String) {
        self.overlay = None;
        self.message = StatusMessage { text: format!("Not saved: {error}"), level: Level::Error };
    }

    pub fn info(&mut self, text: String) {
        self.message = StatusMessage { text, level: Level::Info };
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::project::ProjectConfig;

    fn app() -> App {
        let project = Project { root: "demo".into(), config: ProjectConfig::default(), source: String::new() };
        App::new(project, Theme::resolve("dark", Path::new(".")).unwrap())
    }

    #[test]
    fn quitting_with_nothing_unsaved_needs_no_confirmation() {
        let mut app = app();
        assert_eq!(app.handle_key(Key::char('q')), Some(Effect::Quit));
    }

    #[test]
    fn an_unsaved_theme_asks_before_quitting() {
        let mut app = app();
        app.apply(Action::CycleTheme);
        assert!(app.unsaved().is_some());
        assert_eq!(app.handle_key(Key::char('q')), None);
        assert_eq!(app.overlay, Some(Overlay::ConfirmQuit));
        // Keys of the panes do nothing while the dialog is open.
        assert_eq!(app.handle_key(Key::char('2')), None);
        assert_eq!(app.pane, PaneId::Dataset);
        assert_eq!(app.handle_key(Key::plain(crossterm::event::KeyCode::Esc)), None);
        assert_eq!(app.overlay, None);
        app.handle_key(Key::char('q'));
        assert_eq!(app.handle_key(Key::char('s')), Some(Effect::SaveThenQuit));
        app.handle_key(Key::char('q'));
        assert_eq!(app.handle_key(Key::char('d')), Some(Effect::Quit));
    }

    #[test]
    fn cycling_back_to_the_saved_theme_is_not_a_change() {
        let mut app = app();
        let count = Theme::builtin_names().count();
        for _ in 0..count {
            app.apply(Action::CycleTheme);
        }
        assert_eq!(app.unsaved(), None);
        assert_eq!(app.apply(Action::Save), None);
    }

    #[test]
    fn selection_stays_inside_the_list() {
        let mut app = app();
        app.apply(Action::Down);
        assert_eq!(app.selection(PaneId::Dataset), None);
        app.project.config.samples = vec![
            crate::project::SamplePrompt {
                prompt: "a".into(),
                negative: String::new(),
                seed: 0,
                steps: 1,
                guidance: 1.0,
            };
            3
        ];
        app.apply(Action::ShowPane(PaneId::Samples));
        app.apply(Action::PageDown);
        assert_eq!(app.selection(PaneId::Samples), Some(2));
        app.apply(Action::Up);
        assert_eq!(app.selection(PaneId::Samples), Some(1));
        app.apply(Action::First);
        assert_eq!(app.selection(PaneId::Samples), Some(0));
    }

    #[test]
    fn panes_cycle_both_ways() {
        let mut app = app();
        app.apply(Action::PreviousPane);
        assert_eq!(app.pane, PaneId::Samples);
        app.apply(Action::NextPane);
        app.apply(Action::NextPane);
        assert_eq!(app.pane, PaneId::Captions);
    }
}
