//! The workbench state and how actions change it. Nothing here touches the
//! terminal or the disk: side effects are returned as `Effect`s for the event
//! loop to carry out, which keeps this testable and rendering pure.

use crate::captions::CaptionReport;
use crate::dataset::Inventory;
use crate::dataset::decisions::Decision;
use crate::project::Project;
use crate::train::{Command, Event, RunMetrics, RunSummary};

use super::action::{Action, PaneId};
use super::caption_editor::{CaptionJob, CaptionsView, Mode};
use super::keymap::{Key, Keymap, Scope};
use super::review::{DatasetReview, ReviewRow, ScanResult};
use super::theme::Theme;

/// What the workbench knows about the project's files, re-read in the background.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectFiles {
    pub inventory: Inventory,
    pub runs: Vec<RunSummary>,
    /// The selected (or followed) run's metrics, and the compared run's.
    pub metrics: Option<RunMetrics>,
    pub compare_metrics: Option<RunMetrics>,
    /// Lint, suggestions and normalization of the captions; `None` in a
    /// refresh that found nothing changed (the previous report stands).
    pub captions: Option<CaptionReport>,
    pub caption_context: Option<SharedContext>,
}

/// The caption rules and tokenizer, shared with the refresh that made them.
#[derive(Debug, Clone)]
pub struct SharedContext(pub std::sync::Arc<crate::captions::CaptionContext>);

impl PartialEq for SharedContext {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// How the loss chart is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartView {
    /// EMA weight of the past, 0 (raw) to 0.99.
    pub smoothing: f64,
    pub log_scale: bool,
    /// Only the last N steps, or all.
    pub zoom: Option<u64>,
}

impl Default for ChartView {
    fn default() -> Self {
        Self { smoothing: 0.6, log_scale: false, zoom: None }
    }
}

/// Which sample images the Samples pane shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleView {
    /// The sampling step shown; `None` follows the newest as they arrive.
    pub step: Option<u64>,
    /// A step kept on the left for a side-by-side comparison.
    pub compare: Option<u64>,
    pub full: bool,
}

const ZOOMS: [Option<u64>; 4] = [None, Some(1000), Some(200), Some(50)];

/// The run this workbench is training.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveTraining {
    pub run_id: Option<String>,
    pub running: bool,
    pub paused: bool,
    pub step: u64,
    pub total: u64,
    /// The latest event, in words.
    pub status: String,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Quit,
    /// Write the theme to project.toml, then call `theme_saved` or `save_failed`.
    SaveTheme,
    /// Re-read the project's files, then call `files_loaded`.
    Refresh,
    /// Save (as `SaveTheme`), and quit once that succeeded.
    SaveThenQuit,
    /// Start training: a new run, or continue the named one.
    StartTraining {
        resume: Option<String>,
    },
    /// Pass a command to the running trainer.
    Trainer(Command),
    /// Carry out a keep/reject/restore, then call `decision_done`.
    Decide(Decision),
    /// Write captions through the journal, then call `caption_job_done`.
    Caption(CaptionJob),
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
    pub chart: ChartView,
    pub live: Option<LiveTraining>,
    /// The run whose curve is overlaid on the selected one's.
    pub compare: Option<String>,
    /// A run to select as soon as the run list shows it.
    following: Option<String>,
    pub samples: SampleView,
    pub review: DatasetReview,
    /// A (re)scan of the dataset is due: the loop starts one when none runs.
    pub scan_wanted: bool,
    pub captions: CaptionsView,
    /// The caption report must be rebuilt at the next refresh (vocabulary or journal changed).
    pub captions_stale: bool,
    /// How images are drawn (Kitty, Sixel, iTerm2 or half-blocks).
    pub picker: ratatui_image::picker::Picker,
    /// Image previews, decoded in the background, encoded once per size.
    pub previews: super::preview::Previews,
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
            chart: ChartView::default(),
            live: None,
            compare: None,
            following: None,
            samples: SampleView::default(),
            review: DatasetReview::default(),
            scan_wanted: true,
            captions: CaptionsView::default(),
            captions_stale: true,
            picker: ratatui_image::picker::Picker::halfblocks(),
            previews: Default::default(),
        }
    }

    /// What is unsaved, in words, or `None` when everything is saved.
    pub fn unsaved(&self) -> Option<String> {
        if let Some(editor) = self.captions.editing().filter(|e| e.dirty()) {
            return Some(format!("the caption {} has unsaved changes", editor.file.display()));
        }
        (self.theme.name != self.saved_theme)
            .then(|| format!("the theme `{}` is not saved to project.toml", self.theme.name))
    }

    /// Why quitting needs a confirmation: unsaved changes or a run in progress.
    pub fn quit_warning(&self) -> Option<String> {
        if self.training_running() {
            return Some("a run is training: quitting ends it (it resumes from its last checkpoint)".into());
        }
        self.unsaved()
    }

    /// The run whose metrics the Train pane shows: the selected one (a run
    /// started here is selected when it appears).
    pub fn shown_run(&self) -> Option<&RunSummary> {
        self.selection(PaneId::Train).map(|i| &self.files.runs[i])
    }

    /// Run folders to read metrics from: (shown, compared).
    pub fn metrics_targets(&self) -> (Option<std::path::PathBuf>, Option<std::path::PathBuf>) {
        let shown = self.shown_run().map(|run| run.dir.clone());
        let compare = self
            .compare
            .as_ref()
            .and_then(|id| self.files.runs.iter().find(|run| &run.id == id))
            .map(|r| r.dir.clone());
        (shown, compare)
    }

    /// The sampling steps of the shown run, ascending.
    pub fn sample_steps(&self) -> Vec<u64> {
        let mut steps: Vec<u64> =
            self.files.metrics.iter().flat_map(|m| m.samples.iter().map(|(step, _)| *step)).collect();
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// The step the Samples pane shows: the chosen one, else the newest.
    pub fn shown_sample_step(&self) -> Option<u64> {
        self.samples.step.or_else(|| self.sample_steps().last().copied())
    }

    /// The image of sample prompt `prompt` at `step`, if the run wrote one.
    pub fn sample_image(&self, prompt: usize, step: u64) -> Option<std::path::PathBuf> {
        let metrics = self.files.metrics.as_ref()?;
        let prefix = format!("{prompt:02}-");
        metrics
            .samples
            .iter()
            .rev()
            .filter(|(s, _)| *s == step)
            .flat_map(|(_, paths)| paths)
            .find(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with(&prefix)))
            .cloned()
    }

    fn training_running(&self) -> bool {
        self.live.as_ref().is_some_and(|live| live.running)
    }

    /// Applies what the trainer reported.
    pub fn trainer_event(&mut self, event: &Event) {
        let live = self.live.get_or_insert(LiveTraining {
            run_id: None,
            running: true,
            paused: false,
            step: 0,
            total: 0,
            status: "starting".into(),
        });
        match event {
            Event::Started { run_id, start_step, total, skipped, .. } => {
                live.run_id = Some(run_id.clone());
                (live.step, live.total) = (*start_step, *total);
                live.status = format!("run {run_id} started");
                self.message = match skipped.first() {
                    None => StatusMessage {
                        text: format!("Training run {run_id} (x stops, p pauses)."),
                        level: Level::Info,
                    },
                    Some((path, why)) => StatusMessage {
                        text: format!(
                            "Training run {run_id}; {} images left out (first: {}: {why}).",
                            skipped.len(),
                            path.file_name().unwrap_or_default().to_string_lossy()
                        ),
                        level: Level::Warning,
                    },
                };
                self.follow(run_id.clone());
            }
            Event::Preparing { what, done, total } => live.status = format!("{what} {done}/{total}"),
            Event::Step(m) => {
                (live.step, live.total) = (m.step, m.total);
                live.status = format!("step {}/{} loss {:.4}", m.step, m.total, m.loss);
            }
            Event::Validation { step, loss } => live.status = format!("step {step}: validation loss {loss:.4}"),
            Event::Samples { step, paths } => live.status = format!("step {step}: {} samples written", paths.len()),
            Event::Checkpoint { step, .. } => live.status = format!("step {step}: checkpoint saved"),
            Event::Paused { step } => {
                live.paused = true;
                live.status = format!("paused at step {step}");
            }
            Event::Resumed { step } => {
                live.paused = false;
                live.status = format!("resumed at step {step}");
            }
            Event::Finished { step, lora, stopped } => {
                live.running = false;
                let how = if *stopped { "Stopped" } else { "Finished" };
                self.message =
                    StatusMessage { text: format!("{how} at step {step}: {}", lora.display()), level: Level::Success };
            }
            Event::Error(error) => {
                live.running = false;
                self.message = StatusMessage { text: format!("Training failed: {error}"), level: Level::Error };
            }
        }
    }

    /// Selects `run_id` in the Train pane once the run list has it.
    fn follow(&mut self, run_id: String) {
        if let Some(index) = self.files.runs.iter().position(|run| run.id == run_id) {
            self.selected[PaneId::Train.index()] = index;
        }
        self.following = Some(run_id);
    }

    fn scope(&self) -> Scope {
        match self.overlay {
            Some(Overlay::Help { .. }) => Scope::Help,
            Some(Overlay::ConfirmQuit) => Scope::QuitDialog,
            None => Scope::Pane(self.pane),
        }
    }

    pub fn handle_key(&mut self, key: Key) -> Option<Effect> {
        let caption_mode = !matches!(self.captions.mode, Mode::Browse);
        if self.overlay.is_none() && self.pane == PaneId::Captions && caption_mode && key != Key::ctrl('c') {
            return self.caption_key(key);
        }
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
                self.scan_wanted = true;
                return Some(Effect::Refresh);
            }
            Action::Up => return self.move_selection(|i, _| i.saturating_sub(1)),
            Action::Down => return self.move_selection(|i, _| i + 1),
            Action::PageUp => return self.move_selection(|i, _| i.saturating_sub(PAGE)),
            Action::PageDown => return self.move_selection(|i, _| i + PAGE),
            Action::First => return self.move_selection(|_, _| 0),
            Action::Last => return self.move_selection(|_, len| len.saturating_sub(1)),
            Action::StartTraining | Action::ResumeRun if self.training_running() => {
                self.info("A run is already training here.".into());
            }
            Action::StartTraining => {
                self.info("Starting a run…".into());
                self.live = None;
                return Some(Effect::StartTraining { resume: None });
            }
            Action::ResumeRun => match self.selection(PaneId::Train) {
                Some(index) => {
                    let id = self.files.runs[index].id.clone();
                    self.info(format!("Resuming {id}…"));
                    self.live = None;
                    return Some(Effect::StartTraining { resume: Some(id) });
                }
                None => self.info("No run to resume.".into()),
            },
            Action::TogglePause | Action::StopTraining | Action::SampleNow | Action::SaveNow => {
                let Some(live) = self.live.as_ref().filter(|live| live.running) else {
                    self.info("No run is training here (s starts one).".into());
                    return None;
                };
                let command = match action {
                    Action::TogglePause if live.paused => Command::Resume,
                    Action::TogglePause => Command::Pause,
                    Action::StopTraining => Command::Stop,
                    Action::SampleNow => Command::SampleNow,
                    _ => Command::SaveNow,
                };
                self.info(format!("Asked the trainer to {}.", format!("{command:?}").to_lowercase()));
                return Some(Effect::Trainer(command));
            }
            Action::SmoothMore => self.chart.smoothing = (self.chart.smoothing + 0.1).min(0.99),
            Action::SmoothLess => self.chart.smoothing = (self.chart.smoothing - 0.1).max(0.0),
            Action::ToggleLogScale => self.chart.log_scale = !self.chart.log_scale,
            Action::CycleZoom => {
                let next = ZOOMS.iter().position(|z| *z == self.chart.zoom).map_or(0, |i| (i + 1) % ZOOMS.len());
                self.chart.zoom = ZOOMS[next];
            }
            Action::EarlierStep | Action::LaterStep => {
                let steps = self.sample_steps();
                let current = self.shown_sample_step();
                let position = current.and_then(|c| steps.iter().position(|s| *s == c));
                let next = match (action, position) {
                    (_, None) => steps.last().copied(),
                    (Action::EarlierStep, Some(i)) => steps.get(i.saturating_sub(1)).copied(),
                    (_, Some(i)) => steps.get(i + 1).copied(),
                };
                // Stepping onto the newest follows new samples again.
                self.samples.step = next.filter(|s| Some(s) != steps.last());
            }
            Action::MarkStep => {
                self.samples.compare = match self.samples.compare {
                    Some(_) => None,
                    None => self.shown_sample_step(),
                };
            }
            Action::ToggleFullView if self.pane == PaneId::Dataset => self.review.full = !self.review.full,
            Action::ToggleFullView => self.samples.full = !self.samples.full,
            Action::KeepImage
            | Action::RejectImage
            | Action::RestoreImage
            | Action::RejectDuplicates
            | Action::NextToReview
            | Action::PreviousToReview => return self.review_action(action),
            Action::CycleFilter if self.pane == PaneId::Captions => {
                self.captions.filter = self.captions.filter.next();
                self.selected[PaneId::Captions.index()] = 0;
                self.info(format!("Showing {} captions.", self.captions.filter.label()));
            }
            Action::CycleFilter => self.reorder(DatasetReview::cycle_filter),
            Action::EditCaption
            | Action::NextImage
            | Action::PreviousImage
            | Action::NextUncaptioned
            | Action::NextWithFinding
            | Action::ReviewNormalization
            | Action::ToggleVocabulary
            | Action::AcceptSuggestion
            | Action::NextSuggestion
            | Action::PreviousSuggestion
            | Action::EditTags
            | Action::UndoCaption
            | Action::RedoCaption => return self.caption_action(action),
            Action::CycleSort => self.reorder(DatasetReview::cycle_sort),
            Action::ToggleCompare => {
                if self.compare.take().is_none() {
                    self.compare = self.shown_run().map(|run| run.id.clone());
                    if let Some(id) = &self.compare {
                        self.info(format!("Comparing with {id}: select another run."));
                    }
                }
                return Some(Effect::Refresh);
            }
        }
        None
    }

    /// The Dataset pane's selected row, once a scan has arrived.
    pub fn review_row(&self) -> Option<ReviewRow> {
        self.review.scan.as_ref()?;
        self.selection(PaneId::Dataset).map(|i| self.review.rows()[i])
    }

    fn review_action(&mut self, action: Action) -> Option<Effect> {
        if self.review.scan.is_none() {
            self.info("The scan has not finished yet.".into());
            return None;
        }
        let rows = self.review.rows();
        let Some(index) = self.selection(PaneId::Dataset) else {
            self.info("No image here (f changes the filter).".into());
            return None;
        };
        let row = rows[index];
        let decision = match (action, row) {
            (Action::NextToReview | Action::PreviousToReview, _) => {
                match self.review.next_to_review(&rows, index, action == Action::NextToReview) {
                    Some(next) => self.selected[PaneId::Dataset.index()] = next,
                    None => self.info("Nothing left to review in this list.".into()),
                }
                return None;
            }
            (Action::RestoreImage, ReviewRow::Rejected(i)) => {
                self.review.scan.as_ref().map(|scan| Decision::Restore(scan.rejected[i].clone()))
            }
            (Action::RestoreImage, _) => {
                self.info("Only rejected images can be restored (f shows them).".into());
                return None;
            }
            (_, ReviewRow::Rejected(_)) => {
                self.info("This image is rejected: u restores it.".into());
                return None;
            }
            (Action::KeepImage, _) => self.review.keep_decision(row),
            (Action::RejectImage, _) => self.review.finding(row).map(|f| Decision::Reject(vec![f.record.path.clone()])),
            (_, _) => {
                let decision = self.review.reject_group_decision(row);
                if decision.is_none() {
                    self.info("This image is in no duplicate group.".into());
                }
                decision
            }
        };
        decision.map(Effect::Decide)
    }

    /// Changes the list's filter or order, keeping the selected image selected when it is still listed.
    fn reorder(&mut self, change: impl FnOnce(&mut DatasetReview)) {
        let before = self.review_row();
        change(&mut self.review);
        let rows = self.review.rows();
        self.selected[PaneId::Dataset.index()] =
            before.and_then(|row| rows.iter().position(|r| *r == row)).unwrap_or(0);
        self.info(format!(
            "Showing {}, by {} ({} images).",
            self.review.filter.label(),
            self.review.sort.label(),
            rows.len()
        ));
    }

    pub fn scan_progress(&mut self, done: usize, total: usize) {
        self.review.progress = Some((done, total));
    }

    pub fn scan_loaded(&mut self, result: ScanResult) {
        self.review.progress = None;
        // The selected image stays selected if it is still listed; when it
        // left the list (rejected, kept under "to review"), the row that took
        // its place is selected: the next one.
        let before = self.review_row().and_then(|row| self.review.row_path(row));
        self.review.loaded(result);
        let rows = self.review.rows();
        let found =
            before.and_then(|path| rows.iter().position(|&row| self.review.row_path(row).as_ref() == Some(&path)));
        let selected = &mut self.selected[PaneId::Dataset.index()];
        *selected = found.unwrap_or(*selected).min(rows.len().saturating_sub(1));
    }

    /// A decision was carried out (or failed). Moved files mean a rescan;
    /// a keep only changes the kept list, given here as read back.
    pub fn decision_done(&mut self, result: Result<String, String>, kept: Option<crate::dataset::decisions::Kept>) {
        self.message = match result {
            Ok(text) => StatusMessage { text, level: Level::Success },
            Err(error) => StatusMessage { text: format!("Not done: {error}"), level: Level::Error },
        };
        match (kept, self.review.scan.as_mut()) {
            (Some(kept), Some(scan)) => scan.kept = kept,
            _ => self.scan_wanted = true,
        }
    }

    fn request_quit(&mut self) -> Option<Effect> {
        if self.quit_warning().is_some() {
            self.overlay = Some(Overlay::ConfirmQuit);
            None
        } else {
            Some(Effect::Quit)
        }
    }

    /// Moves the current pane's selection, clamped to its list; in the Train pane the newly
    /// selected run's metrics are read.
    fn move_selection(&mut self, step: impl Fn(usize, usize) -> usize) -> Option<Effect> {
        let len = self.list_len(self.pane);
        let selected = &mut self.selected[self.pane.index()];
        *selected = if len == 0 { 0 } else { step(*selected, len).min(len - 1) };
        (self.pane == PaneId::Train).then_some(Effect::Refresh)
    }

    /// How many rows the pane's list has.
    pub fn list_len(&self, pane: PaneId) -> usize {
        match pane {
            PaneId::Dataset if self.review.scan.is_some() => self.review.rows().len(),
            PaneId::Captions => self.caption_rows().len(),
            PaneId::Dataset => self.files.inventory.entries.len(),
            PaneId::Train => self.files.runs.len(),
            PaneId::Samples => self.project.config.samples.len(),
        }
    }

    /// The selected row of `pane`, or `None` when its list is empty.
    pub fn selection(&self, pane: PaneId) -> Option<usize> {
        let len = self.list_len(pane);
        (len > 0).then(|| self.selected[pane.index()].min(len - 1))
    }

    pub fn files_loaded(&mut self, mut files: ProjectFiles) {
        // New, changed or removed images or captions: the scan's findings are stale.
        self.scan_wanted |= files.inventory != self.files.inventory;
        // An image replaced under the same name is decoded again; the rest stay.
        let dataset = self.project.dataset_dir();
        for old in &self.files.inventory.entries {
            let now = files.inventory.entries.iter().find(|e| e.path == old.path);
            if now.is_none_or(|e| (e.bytes, e.modified) != (old.bytes, old.modified)) {
                self.previews.forget(&dataset.join(&old.path));
            }
        }
        if files.captions.is_none() {
            files.captions = self.files.captions.take();
            files.caption_context = self.files.caption_context.take();
        }
        self.files = files;
        self.loading = false;
        if let Some(id) = &self.following
            && let Some(index) = self.files.runs.iter().position(|run| &run.id == id)
        {
            self.selected[PaneId::Train.index()] = index;
            self.following = None;
        }
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

    #[test]
    fn train_pane_keys_become_trainer_commands_only_while_training() {
        let mut app = app();
        app.apply(Action::ShowPane(PaneId::Train));
        assert_eq!(app.handle_key(Key::char('p')), None, "nothing runs yet");
        assert!(app.message.text.contains("s starts one"));
        assert_eq!(app.handle_key(Key::char('s')), Some(Effect::StartTraining { resume: None }));
        app.trainer_event(&Event::Started {
            run_id: "r1".into(),
            dir: "runs/r1".into(),
            start_step: 0,
            total: 10,
            train_images: 4,
            validation_images: 1,
            skipped: Vec::new(),
        });
        assert_eq!(app.handle_key(Key::char('s')), None, "one run at a time");
        assert_eq!(app.handle_key(Key::char('p')), Some(Effect::Trainer(Command::Pause)));
        app.trainer_event(&Event::Paused { step: 3 });
        assert_eq!(app.handle_key(Key::char(' ')), Some(Effect::Trainer(Command::Resume)));
        assert_eq!(app.handle_key(Key::char('n')), Some(Effect::Trainer(Command::SampleNow)));
        assert_eq!(app.handle_key(Key::char('c')), Some(Effect::Trainer(Command::SaveNow)));
        assert_eq!(app.handle_key(Key::char('x')), Some(Effect::Trainer(Command::Stop)));
        assert!(app.quit_warning().is_some(), "quitting asks while a run trains");
        app.trainer_event(&Event::Finished { step: 4, lora: "runs/r1/demo.safetensors".into(), stopped: true });
        assert!(app.quit_warning().is_none());
        assert!(app.message.text.starts_with("Stopped at step 4"));
    }

    #[test]
    fn chart_keys_change_smoothing_scale_and_zoom() {
        let mut app = app();
        app.apply(Action::ShowPane(PaneId::Train));
        let smoothing = app.chart.smoothing;
        app.handle_key(Key::char('+'));
        assert!(app.chart.smoothing > smoothing);
        app.handle_key(Key::char('l'));
        assert!(app.chart.log_scale);
        app.handle_key(Key::char('z'));
        assert_eq!(app.chart.zoom, Some(1000));
    }
}
