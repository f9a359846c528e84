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
mod start;

use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::Rect;

use checkpoints::{CheckpointScores, CheckpointsView};
use start::{Answer, StartQuestion};

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
    /// The run, once the trainer has said which.
    run_id: Option<String>,
    running: bool,
    paused: bool,
    /// Asked to stop with a checkpoint (quitting waits for it).
    stopping: bool,
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
    /// A start waiting for a yes (a roll-back, images left out).
    start_question: Option<StartQuestion>,
}

impl TrainPane {
    fn selected(&self, shared: &Shared) -> Option<usize> {
        self.selection.get(shared.files.runs.len())
    }

    /// Starts training, unless a run trains here already or the settings
    /// cannot be read. A roll-back, and images whose only text is a draft
    /// awaiting review (the trainer leaves them out), ask first.
    fn start_training(&mut self, resume: Option<Resume>, starting: String, shared: &Shared) -> Vec<Effect> {
        if let Some(refused) = self.refusal(shared) {
            return vec![refused];
        }
        match StartQuestion::about(resume, starting, shared) {
            Ok((resume, starting)) => self.start_now(resume, starting),
            Err(question) => {
                self.start_question = Some(question);
                Vec::new()
            }
        }
    }

    /// Why no run can start now.
    fn refusal(&self, shared: &Shared) -> Option<Effect> {
        if self.training() {
            return Some(Effect::info("A run is already training here."));
        }
        // A run freezes the settings it trains with: never ones the workbench could not read.
        let problem = shared.settings_problem()?;
        Some(Effect::say(Level::Error, format!("Not starting: {problem}")))
    }

    /// A start the user said yes to, checked again: the settings may have changed meanwhile.
    fn start_training_confirmed(&mut self, resume: Option<Resume>, starting: String, shared: &Shared) -> Vec<Effect> {
        match self.refusal(shared) {
            Some(refused) => vec![refused],
            None => self.start_now(resume, starting),
        }
    }

    fn start_now(&mut self, resume: Option<Resume>, starting: String) -> Vec<Effect> {
        if matches!(resume, Some(Resume::Checkpoint { .. })) {
            // Back to the runs, where the new one is selected as it starts.
            self.checkpoints = None;
        }
        self.live = None;
        vec![Effect::info(starting), Effect::StartTraining { resume }]
    }

    fn training(&self) -> bool {
        self.live.as_ref().is_some_and(|live| live.running)
    }

    /// Whether the run shown trains now: here, or held by a trainer elsewhere.
    fn shown_run_training(&self, shared: &Shared) -> bool {
        let shown = self.selected(shared).map(|index| &shared.files.runs[index]);
        let here = self.live.as_ref().filter(|live| live.running).and_then(|live| live.run_id.as_ref());
        shown.is_some_and(|run| run.training || here == Some(&run.id))
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
        let (command, what) = match action {
            Action::TogglePause if live.paused => (Command::Resume, "resume"),
            Action::TogglePause => (Command::Pause, "pause"),
            Action::StopTraining => (Command::Stop, "stop with a checkpoint"),
            Action::SampleNow => (Command::SampleNow, "render the samples now"),
            _ => (Command::SaveNow, "save a checkpoint now"),
        };
        vec![Effect::info(format!("Asked the trainer to {what}.")), Effect::Trainer(command)]
    }

    /// Applies what the trainer reported; the files or metrics it changed are read again.
    fn trainer_event(&mut self, event: &Event, shared: &Shared) -> Vec<Effect> {
        let live = self.live.get_or_insert(LiveTraining {
            run_id: None,
            running: true,
            paused: false,
            stopping: false,
            status: "starting".into(),
        });
        let mut effects = Vec::new();
        match event {
            Event::Started { run_id, skipped, .. } => {
                live.status = format!("run {run_id} started");
                live.run_id = Some(run_id.clone());
                effects.push(match skipped.first() {
                    None => Effect::info(format!("Training run {run_id} (x stops, p pauses).")),
                    Some((path, why)) => Effect::say(
                        Level::Warning,
                        format!(
                            "Training run {run_id}; {} left out (first: {}: {why}).",
                            crate::words::counted(skipped.len(), "image"),
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
            Event::Samples { step, paths } => {
                live.status = format!("step {step}: {} written", crate::words::counted(paths.len(), "sample"));
            }
            Event::Checkpoint { step, .. } => live.status = format!("step {step}: checkpoint saved"),
            Event::Pruned { steps, keep } => {
                effects.push(Effect::info(crate::train::headless::pruned_line(steps, *keep)));
            }
            Event::Paused { step } => {
                live.paused = true;
                // After "⏸ paused".
                live.status = format!("at step {step}");
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
        vec![checkpoints::keys(), export::keys(), export::overwrite_keys(), compare::keys(), start::keys()]
    }

    fn mode(&self) -> Option<&'static str> {
        if self.start_question.is_some() {
            return Some(start::CONFIRM_START);
        }
        self.checkpoints.as_ref().map(CheckpointsView::mode)
    }

    fn apply(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        if let Some(question) = &self.start_question {
            return match question.answer(action) {
                Answer::Start => {
                    let StartQuestion { resume, starting, .. } = self.start_question.take().expect("asked");
                    self.start_training_confirmed(resume, starting, shared)
                }
                Answer::Cancel => {
                    self.start_question = None;
                    vec![Effect::info("No run started.")]
                }
                Answer::Nothing => Vec::new(),
            };
        }
        if self.checkpoints.is_some() {
            return self.checkpoints_action(action, shared);
        }
        if self.selection.apply(action, shared.files.runs.len()) {
            return self.show(shared);
        }
        match action {
            Action::StartTraining => return self.start_training(None, "Starting a run…".into(), shared),
            Action::ResumeRun => {
                return match self.selected(shared) {
                    Some(index) if shared.files.runs[index].training => {
                        vec![Effect::info(
                            "That run is training (here or in another window): x stops it where it runs.",
                        )]
                    }
                    Some(index) => {
                        let id = shared.files.runs[index].id.clone();
                        self.start_training(Some(Resume::Run(id.clone())), format!("Resuming {id}…"), shared)
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
            Done::TrainerGone => {
                if let Some(live) = &mut self.live {
                    live.running = false;
                }
                vec![Effect::info("The trainer is no longer running.")]
            }
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
        if let Some(question) = &self.start_question {
            question.render(shared, frame, area);
        }
    }

    fn running(&self) -> Option<&'static str> {
        self.training().then_some("training")
    }

    fn wind_down(&mut self) -> Option<Effect> {
        let live = self.live.as_mut().filter(|live| live.running && !live.stopping)?;
        live.stopping = true;
        live.status = "stopping: saving a checkpoint at this step…".into();
        Some(Effect::Trainer(Command::Stop))
    }

    fn quit_warning(&self) -> Option<String> {
        self.training().then(|| {
            "a run is training: saving stops it with a checkpoint at this step first; quitting without saving \
             ends it, and it resumes from its last checkpoint"
                .into()
        })
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
