//! The workbench state: what the panes share, the panes themselves (known
//! only as `Pane`s), the active pane, the overlay and the status line. Keys
//! and finished jobs come in, effects go out; nothing here touches the
//! terminal or the disk, which keeps it testable and drawing pure.

use ratatui::Frame;
use ratatui::layout::Rect;

use crate::project::Project;
use crate::train::Event;

use super::action::{Action, PaneId};
use super::effect::Effect;
use super::jobs::Done;
use super::keymap::{Binding, Key, Keymap, PaneKeys, Scope};
use super::pane::Pane;
use super::panes;
use super::shared::{Level, ProjectFiles, Shared, StatusMessage};
use super::theme::Theme;

/// How far the help overlay as last drawn can scroll, and its page: drawing
/// knows the size, the keys that scroll read it.
#[derive(Debug, Default)]
pub struct HelpView {
    pub limit: std::cell::Cell<u16>,
    pub page: std::cell::Cell<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    Help { scroll: u16 },
    ConfirmQuit,
}

pub struct App {
    pub shared: Shared,
    panes: Vec<Box<dyn Pane>>,
    pub pane: PaneId,
    pub overlay: Option<Overlay>,
    pub message: StatusMessage,
    pub keymap: Keymap,
    /// The theme name that project.toml (or `--theme`) set; differs from
    /// `theme.name` after the user tried another theme without saving it.
    saved_theme: String,
    /// Saving on the way out: each write that succeeds moves the quit on.
    quitting: bool,
    /// The last save the quit asked a pane for: asked again, it did not take.
    quit_save: Option<Effect>,
    /// Writes to the project (captions, decisions, the theme, exports) started and not yet done.
    writes: usize,
    /// The user asked to re-read the project: the read's verdict on the settings is said.
    reread_asked: bool,
    /// How far the help overlay as last drawn can scroll.
    pub help_view: HelpView,
}

impl App {
    pub fn new(project: Project, theme: Theme) -> Self {
        let message = StatusMessage::new(Level::Info, format!("Opened {}. Press ? for keys.", project.name()));
        let panes = panes::all();
        let keymap = Keymap::new(
            panes.iter().map(|p| PaneKeys { pane: p.id(), bindings: p.bindings(), modes: p.modes() }).collect(),
        );
        Self {
            saved_theme: theme.name.clone(),
            shared: Shared::new(project, theme),
            panes,
            pane: PaneId::Dataset,
            overlay: None,
            message,
            keymap,
            quitting: false,
            quit_save: None,
            writes: 0,
            reread_asked: false,
            help_view: HelpView::default(),
        }
    }

    /// The jobs that open the workbench: read the files (captions linted) and scan.
    pub fn start(&self) -> Vec<Effect> {
        vec![Effect::Refresh { captions: true }, Effect::Scan]
    }

    fn current(&self) -> &dyn Pane {
        self.panes.iter().find(|p| p.id() == self.pane).expect("every pane is in the list").as_ref()
    }

    /// Draws the active pane.
    pub fn render_pane(&self, frame: &mut Frame, area: Rect) {
        self.current().render(&self.shared, frame, area);
    }

    /// What is unsaved, in words, or `None` when everything is saved.
    pub fn unsaved(&self) -> Option<String> {
        self.panes.iter().find_map(|p| p.unsaved()).or_else(|| {
            (self.shared.theme.name != self.saved_theme)
                .then(|| format!("the theme `{}` is not saved to project.toml", self.shared.theme.name))
        })
    }

    /// Why quitting needs a confirmation: work quitting would end, a write
    /// still running, or unsaved changes.
    pub fn quit_warning(&self) -> Option<String> {
        self.panes
            .iter()
            .find_map(|p| p.quit_warning())
            .or_else(|| (self.writes > 0).then(|| "a change is still being written to the project".to_string()))
            .or_else(|| self.unsaved())
    }

    /// Work running in the panes, a word each ("training"), for the tab bar.
    pub fn running(&self) -> Vec<&'static str> {
        self.panes.iter().filter_map(|p| p.running()).collect()
    }

    /// Where the panes' running work stands, for the status bar.
    pub fn progress(&self) -> Vec<String> {
        self.panes.iter().filter_map(|p| p.progress()).collect()
    }

    /// The help overlay's sections for where the user is.
    pub fn help_sections(&self) -> Vec<(String, &[Binding])> {
        self.keymap.help_sections(self.pane, self.current().mode())
    }

    /// A pane by its type, for tests that look at its state.
    #[cfg(test)]
    pub fn pane<T: Pane>(&self) -> &T {
        self.panes.iter().find_map(|p| (p.as_ref() as &dyn std::any::Any).downcast_ref()).expect("a listed pane")
    }

    fn scope(&self) -> Scope {
        match (self.overlay, self.current().mode()) {
            (Some(Overlay::Help { .. }), _) => Scope::Help,
            (Some(Overlay::ConfirmQuit), _) => Scope::QuitDialog,
            (None, Some(mode)) => Scope::Mode(mode),
            (None, None) => Scope::Pane(self.pane),
        }
    }

    pub fn handle_key(&mut self, key: Key) -> Vec<Effect> {
        let scope = self.scope();
        if let Some(action) = self.keymap.lookup(scope, key) {
            return self.apply(action);
        }
        match scope {
            Scope::Mode(name) if self.keymap.mode(name).is_some_and(|mode| mode.takes_text) => {
                let effects = self.on_current(|pane, shared| pane.type_key(key, shared));
                self.absorb(effects)
            }
            _ => Vec::new(),
        }
    }

    pub fn apply(&mut self, action: Action) -> Vec<Effect> {
        if let Some(Overlay::Help { mut scroll }) = self.overlay {
            let (limit, page) = (self.help_view.limit.get(), self.help_view.page.get());
            match action {
                Action::Up => scroll = scroll.saturating_sub(1),
                Action::Down => scroll = (scroll + 1).min(limit),
                Action::PageUp => scroll = scroll.saturating_sub(page),
                Action::PageDown => scroll = scroll.saturating_add(page).min(limit),
                Action::First => scroll = 0,
                Action::Last => scroll = limit,
                Action::Close | Action::ToggleHelp => {
                    self.overlay = None;
                    return Vec::new();
                }
                Action::Quit => return self.request_quit(),
                _ => {}
            }
            self.overlay = Some(Overlay::Help { scroll });
            return Vec::new();
        }
        match action {
            Action::Quit => return self.request_quit(),
            Action::SaveAndQuit => {
                (self.quitting, self.quit_save) = (true, None);
                let effects = self.continue_quit();
                return self.absorb(effects);
            }
            Action::DiscardAndQuit => return vec![Effect::Quit],
            Action::Close if self.overlay.is_some() => {
                self.overlay = None;
                self.quitting = false;
            }
            Action::ToggleHelp => self.overlay = Some(Overlay::Help { scroll: 0 }),
            Action::NextPane => self.pane = self.pane.next(),
            Action::PreviousPane => self.pane = self.pane.previous(),
            Action::ShowPane(pane) => self.pane = pane,
            Action::CycleTheme => {
                self.shared.theme = self.shared.theme.next_builtin();
                let hint = if self.unsaved().is_some() { " (Ctrl-s keeps it)" } else { "" };
                self.info(format!("Theme: {}{hint}", self.shared.theme.name));
            }
            Action::Save if self.shared.theme.name != self.saved_theme => {
                let save = vec![Effect::SaveTheme(self.shared.theme.name.clone())];
                return self.absorb(save);
            }
            Action::Save => self.info("Nothing to save.".to_string()),
            Action::Refresh => {
                self.reread_asked = true;
                self.info("Re-reading the project…".to_string());
                return vec![Effect::Refresh { captions: false }, Effect::Scan];
            }
            action => {
                let effects = self.on_current(|pane, shared| pane.apply(action, shared));
                return self.absorb(effects);
            }
        }
        Vec::new()
    }

    /// A background job finished.
    pub fn done(&mut self, done: Done) -> Vec<Effect> {
        match done {
            Done::Files(files) => self.files_loaded(*files),
            Done::Metrics(read) => {
                let (of, metrics, compare) = *read;
                // Read for runs no longer shown: the read for the shown ones follows it.
                if of == self.shared.metrics_wanted() {
                    (self.shared.files.metrics, self.shared.files.compare_metrics) = (metrics, compare);
                    self.shared.files.metrics_of = of;
                }
                Vec::new()
            }
            Done::Preview(path, result) => {
                self.shared.previews.loaded(path, result);
                Vec::new()
            }
            Done::PreviewSkipped(path) => {
                self.shared.previews.forget(&path);
                Vec::new()
            }
            Done::ThemeSaved(Ok(project)) => {
                self.writes = self.writes.saturating_sub(1);
                self.shared.project = *project;
                self.saved_theme = self.shared.theme.name.clone();
                self.message = StatusMessage::new(
                    Level::Success,
                    format!("Saved theme `{}` to project.toml.", self.shared.theme.name),
                );
                self.quit_on()
            }
            Done::ThemeSaved(Err(error)) => {
                self.writes = self.writes.saturating_sub(1);
                self.stop_quitting(format!("Not saved: {error}"));
                Vec::new()
            }
            done => {
                let shared = &self.shared;
                let effects: Vec<Effect> = self.panes.iter_mut().flat_map(|p| p.done(&done, shared)).collect();
                let mut effects = self.absorb(effects);
                let failed = match &done {
                    Done::Caption(_, result) => Some(result.is_err()),
                    Done::Decided { result, .. } => Some(result.is_err()),
                    Done::Exported(_, result) => Some(result.is_err()),
                    _ => None,
                };
                if failed.is_some() {
                    self.writes = self.writes.saturating_sub(1);
                }
                // Work that quitting waits for ended: an error keeps the workbench open too.
                let ended = match &done {
                    Done::Trainer(Event::Finished { .. }) | Done::TrainerGone => Some(false),
                    Done::Trainer(Event::Error(_)) => Some(true),
                    Done::EvaluationEnded(_, result) => Some(result.is_err()),
                    Done::AutoCaptionsEnded(result) => Some(result.is_err()),
                    _ => None,
                };
                match failed.or(ended) {
                    Some(false) => effects.extend(self.quit_on()),
                    // A failed write or work keeps the workbench open, with what the pane said about it.
                    Some(true) if self.quitting => (self.quitting, self.overlay) = (false, None),
                    _ => {}
                }
                effects
            }
        }
    }

    /// The project's files were read again.
    pub fn files_loaded(&mut self, mut files: ProjectFiles) -> Vec<Effect> {
        let problem_before = self.shared.settings_problem();
        // A valid project.toml changed elsewhere is what every pane shows (and trains) from now on.
        let reconfigured = files.project.take().map(|project| self.shared.project = *project).is_some();
        // An image replaced under the same name is decoded again; the rest stay.
        let dataset = self.shared.project.dataset_dir();
        for old in &self.shared.files.inventory.entries {
            let now = files.inventory.entries.iter().find(|e| e.path == old.path);
            if now.is_none_or(|e| (e.bytes, e.modified) != (old.bytes, old.modified)) {
                self.shared.previews.forget(&dataset.join(&old.path));
            }
        }
        if files.captions.is_none() {
            files.captions = self.shared.files.captions.take();
            files.caption_context = self.shared.files.caption_context.take();
        }
        let mut previous = std::mem::replace(&mut self.shared.files, files);
        self.shared.loading = false;
        let shared = &self.shared;
        let effects = self.panes.iter_mut().flat_map(|p| p.files_loaded(&previous, shared)).collect();
        let mut effects = self.absorb(effects);
        // Metrics of runs no longer shown (the selection moved while the files
        // were read): the ones shown stay until a read of the right runs.
        let wanted = self.shared.metrics_wanted();
        let files = &mut self.shared.files;
        if files.metrics_of != wanted {
            files.metrics = previous.metrics.take();
            files.compare_metrics = previous.compare_metrics.take();
            files.metrics_of = previous.metrics_of;
            effects.push(Effect::ReadMetrics);
        }
        self.say_settings(problem_before, reconfigured);
        if reconfigured {
            // Thresholds, the dataset folder or the caption extension may be new.
            effects.push(Effect::Scan);
        }
        effects
    }

    /// What a read of the files found in project.toml and vocabulary.toml, on
    /// the status line: a problem when it is new or the user asked, and the
    /// change of settings or the return to valid ones.
    fn say_settings(&mut self, before: Option<String>, reconfigured: bool) {
        let asked = std::mem::take(&mut self.reread_asked);
        match self.shared.settings_problem() {
            Some(problem) if asked || before.as_ref() != Some(&problem) => {
                self.message = StatusMessage::new(Level::Error, problem);
            }
            Some(_) => {}
            None if before.is_some() => {
                self.message = StatusMessage::new(Level::Success, "The settings are valid again.");
            }
            None if reconfigured => {
                self.info("project.toml changed: its settings are shown and trained with now.".into())
            }
            None if asked => self.info("Re-read the project.".into()),
            None => {}
        }
    }

    fn on_current(&mut self, f: impl FnOnce(&mut dyn Pane, &Shared) -> Vec<Effect>) -> Vec<Effect> {
        let pane = self.panes.iter_mut().find(|p| p.id() == self.pane).expect("every pane is in the list");
        f(pane.as_mut(), &self.shared)
    }

    /// Keeps the effects that are the app's own (messages, which runs are
    /// shown) and passes on the jobs, counting the writes among them.
    fn absorb(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        let mut jobs = Vec::new();
        for effect in effects {
            match effect {
                Effect::Say(message) => self.message = message,
                Effect::ShowRuns { shown, compare } => {
                    (self.shared.shown_run, self.shared.compare_run) = (shown, compare);
                    jobs.push(Effect::ReadMetrics);
                    let shared = &self.shared;
                    let told: Vec<Effect> = self.panes.iter_mut().flat_map(|p| p.shown_runs_changed(shared)).collect();
                    jobs.extend(self.absorb(told));
                }
                write @ (Effect::Caption(_) | Effect::Decide(_) | Effect::SaveTheme(_) | Effect::Export(_)) => {
                    self.writes += 1;
                    jobs.push(write);
                }
                job => jobs.push(job),
            }
        }
        jobs
    }

    fn request_quit(&mut self) -> Vec<Effect> {
        if self.quit_warning().is_some() {
            self.overlay = Some(Overlay::ConfirmQuit);
            Vec::new()
        } else {
            vec![Effect::Quit]
        }
    }

    /// A write finished: when quitting, the next step.
    fn quit_on(&mut self) -> Vec<Effect> {
        if !self.quitting {
            return Vec::new();
        }
        let effects = self.continue_quit();
        self.absorb(effects)
    }

    /// The next step of saving on the way out: writes still running finish
    /// (each one's `done` comes back here), running work stops at a safe
    /// point (a training run with a checkpoint at its step; its end comes back
    /// here), then a pane's unsaved work, then the theme, then leaving.
    fn continue_quit(&mut self) -> Vec<Effect> {
        if self.writes > 0 {
            return Vec::new();
        }
        let stops: Vec<Effect> = self.panes.iter_mut().filter_map(|p| p.wind_down()).collect();
        let running = self.running();
        if !running.is_empty() {
            // The answer is given: the workbench shows the work ending meanwhile.
            self.overlay = None;
            let (work, verb) = (running.join(" and "), if running.len() == 1 { "stops" } else { "stop" });
            self.info(format!(
                "Saving, then quitting once {work} {verb} at a safe point (a checkpoint, the cell or batch in hand)…"
            ));
            return stops;
        }
        if let Some(save) = self.panes.iter().find_map(|p| p.save_unsaved()) {
            // Saved, and still unsaved: asking again would not end.
            if self.quit_save.as_ref() == Some(&save) {
                let what = self.unsaved().unwrap_or_default();
                self.stop_quitting(format!("Not quitting: {what} after saving it."));
                return Vec::new();
            }
            self.quit_save = Some(save.clone());
            return vec![save];
        }
        if self.shared.theme.name != self.saved_theme {
            return vec![Effect::SaveTheme(self.shared.theme.name.clone())];
        }
        vec![Effect::Quit]
    }

    fn stop_quitting(&mut self, text: String) {
        self.overlay = None;
        self.quitting = false;
        self.message = StatusMessage::new(Level::Error, text);
    }

    pub fn info(&mut self, text: String) {
        self.message = StatusMessage::new(Level::Info, text);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crossterm::event::KeyCode;

    use super::*;
    use crate::project::ProjectConfig;
    use crate::train::{Command, Event};

    fn app() -> App {
        let project = Project { root: "demo".into(), config: ProjectConfig::default(), source: String::new() };
        App::new(project, Theme::resolve("dark", Path::new(".")).unwrap())
    }

    #[test]
    fn quitting_with_nothing_unsaved_needs_no_confirmation() {
        let mut app = app();
        assert_eq!(app.handle_key(Key::char('q')), [Effect::Quit]);
    }

    #[test]
    fn an_unsaved_theme_asks_before_quitting() {
        let mut app = app();
        app.apply(Action::CycleTheme);
        assert!(app.unsaved().is_some());
        assert_eq!(app.handle_key(Key::char('q')), []);
        assert_eq!(app.overlay, Some(Overlay::ConfirmQuit));
        // Keys of the panes do nothing while the dialog is open.
        assert_eq!(app.handle_key(Key::char('2')), []);
        assert_eq!(app.pane, PaneId::Dataset);
        assert_eq!(app.handle_key(Key::plain(KeyCode::Esc)), []);
        assert_eq!(app.overlay, None);
        app.handle_key(Key::char('q'));
        // Saving on the way out is a sequence: the theme, then (once saved) leaving.
        let theme = app.shared.theme.name.clone();
        assert_eq!(app.handle_key(Key::char('s')), [Effect::SaveTheme(theme)]);
        let project = Box::new(app.shared.project.clone());
        assert_eq!(app.done(Done::ThemeSaved(Ok(project))), [Effect::Quit]);
        let mut app = self::app();
        app.apply(Action::CycleTheme);
        app.handle_key(Key::char('q'));
        assert_eq!(app.handle_key(Key::char('d')), [Effect::Quit]);
    }

    #[test]
    fn a_failed_save_on_the_way_out_keeps_the_workbench_open() {
        let mut app = app();
        app.apply(Action::CycleTheme);
        app.handle_key(Key::char('q'));
        app.handle_key(Key::char('s'));
        assert_eq!(app.done(Done::ThemeSaved(Err("read-only".into()))), []);
        assert_eq!(app.overlay, None);
        assert!(app.message.text.contains("read-only"));
    }

    #[test]
    fn keeping_on_working_while_the_save_runs_cancels_the_quit() {
        let mut app = app();
        app.apply(Action::CycleTheme);
        app.handle_key(Key::char('q'));
        assert!(matches!(app.handle_key(Key::char('s')).as_slice(), [Effect::SaveTheme(_)]));
        app.handle_key(Key::plain(KeyCode::Esc));
        let project = Box::new(app.shared.project.clone());
        assert_eq!(app.done(Done::ThemeSaved(Ok(project))), [], "saved, and still open");
    }

    #[test]
    fn quitting_waits_for_a_write_still_running() {
        let mut app = app();
        app.apply(Action::CycleTheme);
        assert!(matches!(app.apply(Action::Save).as_slice(), [Effect::SaveTheme(_)]));
        assert_eq!(app.handle_key(Key::char('q')), [], "asks: the theme is being written");
        assert!(app.quit_warning().is_some_and(|why| why.contains("being written")));
        assert_eq!(app.handle_key(Key::char('s')), [], "waits for the write");
        let project = Box::new(app.shared.project.clone());
        assert_eq!(app.done(Done::ThemeSaved(Ok(project))), [Effect::Quit]);
    }

    #[test]
    fn metrics_of_a_run_no_longer_shown_are_not_drawn() {
        use crate::train::{RunMetrics, RunSummary};
        let mut app = app();
        let run = |id: &str| RunSummary {
            id: id.into(),
            dir: format!("runs/{id}").into(),
            last_step: None,
            checkpoints: Vec::new(),
            sample_images: 0,
            training: false,
        };
        let runs = vec![run("a"), run("b")];
        let metrics = |step: u64| Some(RunMetrics { loss: vec![(step, 1.0)], ..RunMetrics::default() });
        let files = ProjectFiles { runs: runs.clone(), metrics_of: (None, None), ..ProjectFiles::default() };
        app.files_loaded(files);
        assert_eq!(app.shared.shown_run.as_deref(), Some("a"), "the Train pane shows the first run");
        app.done(Done::Metrics(Box::new(((Some("runs/a".into()), None), metrics(1), None))));
        app.apply(Action::ShowPane(PaneId::Train));
        assert_eq!(app.apply(Action::Down), [Effect::ReadMetrics, Effect::ReadEvaluation("runs/b".into())]);
        // A read of the files started while `a` was shown lands after the move to `b`.
        let late = ProjectFiles {
            runs,
            metrics: metrics(2),
            metrics_of: (Some("runs/a".into()), None),
            ..ProjectFiles::default()
        };
        // (The Evaluate pane reads the shown run's report with every read of the files.)
        assert_eq!(app.files_loaded(late), [Effect::ReadEvaluation("runs/b".into()), Effect::ReadMetrics]);
        app.done(Done::Metrics(Box::new(((Some("runs/a".into()), None), metrics(3), None))));
        assert_eq!(app.shared.files.metrics, metrics(1), "neither late read of `a` replaced what was shown");
        app.done(Done::Metrics(Box::new(((Some("runs/b".into()), None), metrics(4), None))));
        assert_eq!(app.shared.files.metrics, metrics(4));
    }

    #[test]
    fn cycling_back_to_the_saved_theme_is_not_a_change() {
        let mut app = app();
        let count = Theme::builtin_names().count();
        for _ in 0..count {
            app.apply(Action::CycleTheme);
        }
        assert_eq!(app.unsaved(), None);
        assert_eq!(app.apply(Action::Save), []);
    }

    #[test]
    fn no_key_does_two_things_in_one_scope() {
        let app = app();
        let panes = app.keymap.panes.iter().map(|keys| (keys.pane.title(), keys.bindings.as_slice()));
        let modes = app.keymap.panes.iter().flat_map(|keys| &keys.modes).map(|m| (m.name, m.bindings.as_slice()));
        for (scope, bindings) in panes.chain(modes) {
            let mut seen = Vec::new();
            for key in bindings.iter().flat_map(|b| &b.keys) {
                assert!(!seen.contains(key), "{scope}: {} is bound twice", key.label());
                seen.push(*key);
            }
        }
    }

    #[test]
    fn panes_cycle_both_ways() {
        let mut app = app();
        app.apply(Action::PreviousPane);
        assert_eq!(app.pane, PaneId::Evaluate);
        app.apply(Action::NextPane);
        app.apply(Action::NextPane);
        assert_eq!(app.pane, PaneId::Captions);
    }

    #[test]
    fn train_pane_keys_become_trainer_commands_only_while_training() {
        let mut app = app();
        app.apply(Action::ShowPane(PaneId::Train));
        assert_eq!(app.handle_key(Key::char('p')), [], "nothing runs yet");
        assert!(app.message.text.contains("s starts one"));
        start_run(&mut app);
        assert_eq!(app.handle_key(Key::char('s')), [], "one run at a time");
        assert_eq!(app.handle_key(Key::char('p')), [Effect::Trainer(Command::Pause)]);
        app.done(Done::Trainer(Event::Paused { step: 3 }));
        assert_eq!(app.handle_key(Key::char(' ')), [Effect::Trainer(Command::Resume)]);
        assert_eq!(app.handle_key(Key::char('n')), [Effect::Trainer(Command::SampleNow)]);
        assert_eq!(app.handle_key(Key::char('c')), [Effect::Trainer(Command::SaveNow)]);
        assert_eq!(app.handle_key(Key::char('x')), [Effect::Trainer(Command::Stop)]);
        assert!(app.quit_warning().is_some(), "quitting asks while a run trains");
        app.done(Done::Trainer(Event::Finished { step: 4, lora: "runs/r1/demo.safetensors".into(), stopped: true }));
        assert!(app.quit_warning().is_none());
        assert!(app.message.text.starts_with("Stopped at step 4"));
    }

    /// `s` in the Train pane, and the trainer saying it started.
    fn start_run(app: &mut App) {
        assert_eq!(app.handle_key(Key::char('s')), [Effect::StartTraining { resume: None }]);
        app.done(Done::Trainer(Event::Started {
            run_id: "r1".into(),
            dir: "runs/r1".into(),
            start_step: 0,
            total: 3000,
            train_images: 4,
            validation_images: 1,
            skipped: Vec::new(),
        }));
    }

    fn training_app() -> App {
        let mut app = app();
        app.apply(Action::ShowPane(PaneId::Train));
        start_run(&mut app);
        app
    }

    #[test]
    fn save_then_quit_while_training_stops_the_run_with_a_checkpoint_and_quits_once_it_has() {
        let mut app = training_app();
        assert_eq!(app.handle_key(Key::char('q')), [], "it asks");
        let screen = super::super::view::screen_text(&app, 80, 24);
        assert!(screen.contains("Before quitting: a run is training"), "{screen}");
        assert!(screen.contains("s y  save, then quit") && screen.contains("d n  quit without saving"), "{screen}");
        // Saving asks the trainer to stop with a checkpoint, and waits for it.
        assert_eq!(app.handle_key(Key::char('s')), [Effect::Trainer(Command::Stop)]);
        assert!(app.message.text.starts_with("Saving, then quitting once training stops"), "{}", app.message.text);
        let checkpoint =
            Done::Trainer(Event::Checkpoint { step: 200, path: "runs/r1/checkpoints/step-000200.safetensors".into() });
        assert!(!app.done(checkpoint).contains(&Effect::Quit), "the run has not ended yet");
        let ended = app.done(Done::Trainer(Event::Finished {
            step: 200,
            lora: "runs/r1/demo.safetensors".into(),
            stopped: true,
        }));
        assert_eq!(ended.last(), Some(&Effect::Quit), "{ended:?}");
    }

    #[test]
    fn a_run_that_fails_to_stop_keeps_the_workbench_open() {
        let mut app = training_app();
        app.handle_key(Key::char('q'));
        assert_eq!(app.handle_key(Key::char('s')), [Effect::Trainer(Command::Stop)]);
        assert_eq!(app.overlay, None, "the dialog closes while the run stops");
        let failed = app.done(Done::Trainer(Event::Error("cannot write runs/r1/checkpoints: disk full".into())));
        assert!(!failed.contains(&Effect::Quit), "{failed:?}");
        assert!(app.message.text.contains("disk full"), "{}", app.message.text);
        assert_eq!(app.overlay, None);
    }
}
