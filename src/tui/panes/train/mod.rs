//! Train pane: the selected run's loss chart (raw, EMA-smoothed, validation
//! points, another run overlaid), its learning rate, a progress gauge, the
//! run list, and the keys that start, pause, stop and resume training. Over
//! the run list, a run's checkpoints (`checkpoints`), and from there a
//! checkpoint's export (`export`) and two checkpoints' samples side by side
//! (`compare`), each a mode with its own keys.

mod checkpoints;
mod compare;
mod export;
mod render;

use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::Rect;

use checkpoints::{CheckpointScores, CheckpointsView};

use crate::train::{Command, Event, Resume};
use crate::tui::action::{Action, PaneId};
use crate::tui::effect::Effect;
use crate::tui::jobs::Done;
use crate::tui::keymap::{Binding, Key, ModeKeys};
use crate::tui::pane::{Pane, Selection, list_bindings};
use crate::tui::shared::{Level, ProjectFiles, Shared};

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

const ZOOMS: [Option<u64>; 4] = [None, Some(1000), Some(200), Some(50)];

/// The run this workbench is training.
#[derive(Debug, Clone, PartialEq)]
struct LiveTraining {
    running: bool,
    paused: bool,
    /// The latest event, in words.
    status: String,
}

#[derive(Default)]
pub struct TrainPane {
    selection: Selection,
    chart: ChartView,
    live: Option<LiveTraining>,
    /// The run whose curve is overlaid on the selected one's.
    compare: Option<String>,
    /// A run to select as soon as the run list shows it.
    following: Option<String>,
    /// A run's checkpoints, open over the run list.
    checkpoints: Option<CheckpointsView>,
    /// The shown run's evaluation scores per checkpoint, from its report.
    scores: Option<CheckpointScores>,
    /// The start asked for while images had only a draft: the same key again starts it.
    warned_start: Option<Action>,
}

impl TrainPane {
    fn selected(&self, shared: &Shared) -> Option<usize> {
        self.selection.get(shared.files.runs.len())
    }

    /// Starts training, unless a run trains here already. Images whose only
    /// text is a draft awaiting review are left out by the trainer: the
    /// first press says how many, the same key again starts anyway.
    fn start_training(
        &mut self,
        action: Action,
        resume: Option<Resume>,
        starting: String,
        shared: &Shared,
    ) -> Vec<Effect> {
        if self.training() {
            return vec![Effect::info("A run is already training here.")];
        }
        let drafted_only = shared.files.captions.as_ref().map_or(0, |r| r.uncaptioned_with_drafts());
        if drafted_only > 0 && self.warned_start.take() != Some(action) {
            self.warned_start = Some(action);
            let images = if drafted_only == 1 { "1 image has".into() } else { format!("{drafted_only} images have") };
            return vec![Effect::say(
                Level::Warning,
                format!(
                    "{images} only an unreviewed draft and would be left out: the same key again starts \
                     anyway; the Captions pane's D reviews the drafts."
                ),
            )];
        }
        self.live = None;
        vec![Effect::info(starting), Effect::StartTraining { resume }]
    }

    fn training(&self) -> bool {
        self.live.as_ref().is_some_and(|live| live.running)
    }

    /// Tells the app which runs to read metrics of, when that changed.
    fn show(&self, shared: &Shared) -> Vec<Effect> {
        let shown = self.selected(shared).map(|i| shared.files.runs[i].id.clone());
        if (&shown, &self.compare) == (&shared.shown_run, &shared.compare_run) {
            return Vec::new();
        }
        vec![Effect::ShowRuns { shown, compare: self.compare.clone() }]
    }

    /// Selects the run once the run list has it.
    fn follow(&mut self, shared: &Shared) {
        let Some(id) = &self.following else { return };
        if let Some(index) = shared.files.runs.iter().position(|run| &run.id == id) {
            self.selection.set(index);
            self.following = None;
        }
    }

    fn command(&self, action: Action) -> Vec<Effect> {
        let Some(live) = self.live.as_ref().filter(|live| live.running) else {
            return vec![Effect::info("No run is training here (s starts one).")];
        };
        let command = match action {
            Action::TogglePause if live.paused => Command::Resume,
            Action::TogglePause => Command::Pause,
            Action::StopTraining => Command::Stop,
            Action::SampleNow => Command::SampleNow,
            _ => Command::SaveNow,
        };
        let asked = format!("Asked the trainer to {}.", format!("{command:?}").to_lowercase());
        vec![Effect::info(asked), Effect::Trainer(command)]
    }

    /// Applies what the trainer reported; the files or metrics it changed are read again.
    fn trainer_event(&mut self, event: &Event, shared: &Shared) -> Vec<Effect> {
        let live = self.live.get_or_insert(LiveTraining { running: true, paused: false, status: "starting".into() });
        let mut effects = Vec::new();
        match event {
            Event::Started { run_id, skipped, .. } => {
                live.status = format!("run {run_id} started");
                effects.push(match skipped.first() {
                    None => Effect::info(format!("Training run {run_id} (x stops, p pauses).")),
                    Some((path, why)) => Effect::say(
                        Level::Warning,
                        format!(
                            "Training run {run_id}; {} images left out (first: {}: {why}).",
                            skipped.len(),
                            path.file_name().unwrap_or_default().to_string_lossy()
                        ),
                    ),
                });
                self.following = Some(run_id.clone());
                self.follow(shared);
            }
            Event::Preparing { what, done, total } => live.status = format!("{what} {done}/{total}"),
            Event::Step(m) => live.status = format!("step {}/{} loss {:.4}", m.step, m.total, m.loss),
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
                effects.push(Effect::say(Level::Success, format!("{how} at step {step}: {}", lora.display())));
            }
            Event::Error(error) => {
                live.running = false;
                effects.push(Effect::say(Level::Error, format!("Training failed: {error}")));
            }
        }
        // A new run, a checkpoint or the end change the run list; steps only the metrics.
        effects.push(match event {
            Event::Step(_) | Event::Validation { .. } | Event::Samples { .. } => Effect::ReadMetrics,
            Event::Preparing { .. } | Event::Paused { .. } | Event::Resumed { .. } => return effects,
            _ => Effect::Refresh { captions: false },
        });
        effects.extend(self.show(shared));
        effects
    }
}

impl Pane for TrainPane {
    fn id(&self) -> PaneId {
        PaneId::Train
    }

    fn bindings(&self) -> Vec<Binding> {
        let mut bindings = list_bindings("run");
        bindings.extend([
            Binding::new(&[Key::char('s')], Action::StartTraining, "start a run with project.toml's settings"),
            Binding::new(&[Key::char('R')], Action::ResumeRun, "resume the selected run from its last checkpoint"),
            Binding::new(&[Key::char('p'), Key::char(' ')], Action::TogglePause, "pause or resume training"),
            Binding::new(&[Key::char('x')], Action::StopTraining, "stop: save a checkpoint and end the run"),
            Binding::new(&[Key::char('n')], Action::SampleNow, "render the sample prompts now"),
            Binding::new(&[Key::char('c')], Action::SaveNow, "save a checkpoint now"),
            Binding::new(&[Key::char('+'), Key::char('=')], Action::SmoothMore, "smooth the loss curve more"),
            Binding::new(&[Key::char('-')], Action::SmoothLess, "smooth the loss curve less"),
            Binding::new(&[Key::char('l')], Action::ToggleLogScale, "log-scale loss axis on or off"),
            Binding::new(&[Key::char('z')], Action::CycleZoom, "zoom: all steps, last 1000, 200, 50"),
            Binding::new(
                &[Key::char('o')],
                Action::ToggleCompare,
                "overlay: keep this run's curve, then pick another (again: clear)",
            ),
            Binding::new(
                &[Key::plain(KeyCode::Enter)],
                Action::OpenCheckpoints,
                "the run's checkpoints: scores, export, roll back, compare samples",
            ),
        ]);
        bindings
    }

    fn modes(&self) -> Vec<ModeKeys> {
        vec![checkpoints::keys(), export::keys(), export::overwrite_keys(), compare::keys()]
    }

    fn mode(&self) -> Option<&'static str> {
        self.checkpoints.as_ref().map(CheckpointsView::mode)
    }

    fn apply(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        // Only a start asked for twice in a row goes past the drafts warning.
        if !matches!(action, Action::StartTraining | Action::ResumeRun | Action::RollBack) {
            self.warned_start = None;
        }
        if self.checkpoints.is_some() {
            return self.checkpoints_action(action, shared);
        }
        if self.selection.apply(action, shared.files.runs.len()) {
            return self.show(shared);
        }
        match action {
            Action::StartTraining => return self.start_training(action, None, "Starting a run…".into(), shared),
            Action::ResumeRun => {
                return match self.selected(shared) {
                    Some(index) => {
                        let id = shared.files.runs[index].id.clone();
                        self.start_training(action, Some(Resume::Run(id.clone())), format!("Resuming {id}…"), shared)
                    }
                    None => vec![Effect::info("No run to resume.")],
                };
            }
            Action::OpenCheckpoints => {
                let Some(index) = self.selected(shared) else { return vec![Effect::info("No run yet.")] };
                let run = &shared.files.runs[index];
                self.checkpoints = Some(CheckpointsView::new(run.id.clone()));
                // Its scores, read now rather than whenever the Evaluate pane next asks.
                return vec![Effect::ReadEvaluation(run.dir.clone())];
            }
            Action::TogglePause | Action::StopTraining | Action::SampleNow | Action::SaveNow => {
                return self.command(action);
            }
            Action::SmoothMore => self.chart.smoothing = (self.chart.smoothing + 0.1).min(0.99),
            Action::SmoothLess => self.chart.smoothing = (self.chart.smoothing - 0.1).max(0.0),
            Action::ToggleLogScale => self.chart.log_scale = !self.chart.log_scale,
            Action::CycleZoom => {
                let next = ZOOMS.iter().position(|z| *z == self.chart.zoom).map_or(0, |i| (i + 1) % ZOOMS.len());
                self.chart.zoom = ZOOMS[next];
            }
            Action::ToggleCompare => {
                let mut effects = Vec::new();
                if self.compare.take().is_none() {
                    self.compare = self.selected(shared).map(|i| shared.files.runs[i].id.clone());
                    if let Some(id) = &self.compare {
                        effects.push(Effect::info(format!("Comparing with {id}: select another run.")));
                    }
                }
                effects.extend(self.show(shared));
                return effects;
            }
            _ => {}
        }
        Vec::new()
    }

    fn type_key(&mut self, key: Key, _shared: &Shared) -> Vec<Effect> {
        self.type_into_export(key);
        Vec::new()
    }

    fn done(&mut self, done: &Done, shared: &Shared) -> Vec<Effect> {
        match done {
            Done::Trainer(event) => self.trainer_event(event, shared),
            Done::TrainerGone => vec![Effect::info("The trainer is no longer running.")],
            Done::Exported(request, result) => self.exported(request, result, shared),
            Done::Evaluation(run, Ok(report)) => {
                self.read_scores(run, report.as_deref(), shared);
                Vec::new()
            }
            Done::EvaluationEnded(run, Ok((report, _))) => {
                self.read_scores(run, Some(report), shared);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn files_loaded(&mut self, _previous: &ProjectFiles, shared: &Shared) -> Vec<Effect> {
        self.follow(shared);
        self.selection.clamp(shared.files.runs.len());
        let mut effects = self.checkpoints_reloaded(shared);
        effects.extend(self.show(shared));
        effects
    }

    fn shown_runs_changed(&mut self, _shared: &Shared) -> Vec<Effect> {
        // Another run's scores: none until its report is read.
        self.scores = None;
        Vec::new()
    }

    fn render(&self, shared: &Shared, frame: &mut Frame, area: Rect) {
        match &self.checkpoints {
            Some(view) => checkpoints::render(self, view, shared, frame, area),
            None => render::render(self, shared, frame, area),
        }
    }

    fn running(&self) -> Option<&'static str> {
        self.training().then_some("training")
    }

    fn quit_warning(&self) -> Option<String> {
        self.training().then(|| "a run is training: quitting ends it (it resumes from its last checkpoint)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_keys_change_smoothing_scale_and_zoom() {
        let shared = Shared::for_tests();
        let mut pane = TrainPane::default();
        let smoothing = pane.chart.smoothing;
        pane.apply(Action::SmoothMore, &shared);
        assert!(pane.chart.smoothing > smoothing);
        pane.apply(Action::ToggleLogScale, &shared);
        assert!(pane.chart.log_scale);
        pane.apply(Action::CycleZoom, &shared);
        assert_eq!(pane.chart.zoom, Some(1000));
    }
}
