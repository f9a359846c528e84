//! The Train pane's checkpoints view, open over the run list: a run's
//! checkpoints with the validation loss at each, its evaluation scores and
//! its size; marks for comparing two, and the keys that export one or train
//! on from it in a new run.

use std::path::{Path, PathBuf};

use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Wrap};

use super::TrainPane;
use super::compare::{self, Comparison};
use super::export::{self, ExportPrompt};
use crate::evaluate::report::EvalReport;
use crate::train::run_dir::CheckpointFile;
use crate::train::{Resume, RunMetrics, RunSummary};
use crate::tui::action::Action;
use crate::tui::effect::{Effect, ExportRequest};
use crate::tui::keymap::{Binding, Key, ModeKeys};
use crate::tui::pane::{Selection, list_bindings};
use crate::tui::shared::Shared;
use crate::tui::widgets::{draw_image, frame_pane, render_empty, render_table};

/// The view's mode name in the keymap.
const CHECKPOINTS: &str = "checkpoints";

/// A run's checkpoints, and what is open over them.
pub(super) struct CheckpointsView {
    pub run: String,
    pub selection: Selection,
    /// Checkpoints marked for comparison, by step: A, then B.
    pub marks: Vec<u64>,
    pub open: Option<Opened>,
}

/// What is open over the checkpoints.
pub(super) enum Opened {
    /// Boxed: its two text fields are large beside the others.
    Export(Box<ExportPrompt>),
    /// The export's destination holds a file: replace it?
    Overwrite(ExportRequest),
    Compare(Comparison),
}

impl CheckpointsView {
    pub fn new(run: String) -> Self {
        Self { run, selection: Selection::default(), marks: Vec::new(), open: None }
    }

    /// Its mode in the keymap: the list's, or that of what is open over it.
    pub fn mode(&self) -> &'static str {
        match &self.open {
            None => CHECKPOINTS,
            Some(Opened::Export(_)) => export::EXPORT,
            Some(Opened::Overwrite(_)) => export::OVERWRITE,
            Some(Opened::Compare(_)) => compare::COMPARE,
        }
    }

    fn summary<'a>(&self, shared: &'a Shared) -> Option<&'a RunSummary> {
        shared.files.runs.iter().find(|run| run.id == self.run)
    }

    /// The run's checkpoints as listed with the files, ascending by step.
    pub fn files<'a>(&self, shared: &'a Shared) -> &'a [CheckpointFile] {
        self.summary(shared).map_or(&[], |run| run.checkpoints.as_slice())
    }

    /// The run's metrics and evaluation scores: the shown run's, which are
    /// this run's while the view is open (once read).
    fn read<'a>(
        &self,
        shared: &'a Shared,
        scores: Option<&'a CheckpointScores>,
    ) -> (Option<&'a RunMetrics>, Option<&'a CheckpointScores>) {
        let Some(dir) = self.summary(shared).map(|run| &run.dir) else { return (None, None) };
        let metrics = shared.files.metrics.as_ref().filter(|_| shared.files.metrics_of.0.as_ref() == Some(dir));
        (metrics, scores.filter(|scores| &scores.run_dir == dir))
    }

    /// Each checkpoint with its validation loss and scores.
    pub fn rows<'a>(&self, shared: &'a Shared, scores: Option<&'a CheckpointScores>) -> Vec<CheckpointRow<'a>> {
        let (metrics, scores) = self.read(shared, scores);
        self.files(shared)
            .iter()
            .map(|file| CheckpointRow {
                file,
                validation: metrics.and_then(|m| {
                    m.validation.iter().filter(|(step, _)| *step <= file.step).max_by_key(|(step, _)| *step).copied()
                }),
                scores: scores.and_then(|s| s.steps.iter().find(|at| at.step == file.step)),
                recommended: scores.is_some_and(|s| s.recommended == Some(file.step)),
            })
            .collect()
    }

    fn selected<'a>(&self, shared: &'a Shared) -> Option<&'a CheckpointFile> {
        let files = self.files(shared);
        self.selection.get(files.len()).map(|index| &files[index])
    }

    /// The label a marked checkpoint carries: A or B.
    fn mark(&self, step: u64) -> Option<&'static str> {
        self.marks.iter().position(|s| *s == step).map(|i| ["A", "B"][i])
    }
}

/// One checkpoint as the view lists it.
pub(super) struct CheckpointRow<'a> {
    pub file: &'a CheckpointFile,
    /// The nearest validation at or before the checkpoint: its step and loss.
    pub validation: Option<(u64, f64)>,
    pub scores: Option<&'a StepScores>,
    /// The evaluation recommends this checkpoint.
    pub recommended: bool,
}

/// An evaluation's summary scores per checkpoint, at its largest LoRA scale
/// (where a LoRA's effect, and its overfitting, show most).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CheckpointScores {
    pub run_dir: PathBuf,
    pub scale: f64,
    pub steps: Vec<StepScores>,
    /// The verdict's checkpoint, and the scale it recommends that at.
    pub recommended: Option<u64>,
    pub recommended_scale: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct StepScores {
    pub step: u64,
    pub dino: Option<f32>,
    pub clip_t: Option<f32>,
}

impl CheckpointScores {
    /// `None` when the report scores no checkpoint.
    pub fn new(run_dir: &Path, report: &EvalReport) -> Option<Self> {
        let summaries = report.summaries.iter().filter(|s| s.step.is_some());
        let scale = summaries.clone().map(|s| s.scale).reduce(f64::max)?;
        let steps = summaries
            .filter(|s| s.scale == scale)
            .filter_map(|s| {
                let score = |key: &str| s.scores.get(key).copied();
                Some(StepScores { step: s.step?, dino: score("dino_fidelity"), clip_t: score("clip_t") })
            })
            .collect();
        let verdict = report.verdict.as_ref();
        Some(Self {
            run_dir: run_dir.to_path_buf(),
            scale,
            steps,
            recommended: verdict.and_then(|verdict| verdict.recommended_step),
            recommended_scale: verdict.and_then(|verdict| verdict.recommended_scale),
        })
    }
}

/// The list's keys (F1 and Ctrl-c are added by `ModeKeys::new`).
pub(super) fn keys() -> ModeKeys {
    let mut bindings = list_bindings("checkpoint");
    bindings.extend([
        Binding::new(&[Key::char('e')], Action::ExportCheckpoint, "export it (kohya or PEFT) for other tools"),
        Binding::new(&[Key::char('b')], Action::RollBack, "roll back: train on from it in a new run"),
        Binding::new(
            &[Key::char('m'), Key::char(' ')],
            Action::MarkStep,
            "mark it to compare (A, then B; again: unmark)",
        ),
        Binding::new(&[Key::char('v')], Action::CompareSamples, "A's and B's samples side by side"),
        Binding::new(&[Key::plain(KeyCode::Esc)], Action::Close, "back to the runs"),
    ]);
    ModeKeys::new(CHECKPOINTS, "A run's checkpoints", false, bindings)
}

impl TrainPane {
    /// An action while the checkpoints view is open.
    pub(super) fn checkpoints_action(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        let Some(view) = self.checkpoints.as_mut() else { return Vec::new() };
        match &view.open {
            Some(Opened::Export(_)) => return self.export_action(action, shared),
            Some(Opened::Overwrite(_)) => return self.overwrite_action(action, shared),
            Some(Opened::Compare(_)) => return self.compare_action(action, shared),
            None => {}
        }
        if view.selection.apply(action, view.files(shared).len()) {
            return Vec::new();
        }
        let selected = view.selected(shared).cloned();
        match (action, selected) {
            (Action::Close, _) => self.checkpoints = None,
            (_, None) => return vec![Effect::info("This run has no checkpoints yet.")],
            (Action::MarkStep, Some(file)) => match view.marks.iter().position(|s| *s == file.step) {
                Some(index) => _ = view.marks.remove(index),
                None => {
                    view.marks.push(file.step);
                    // Two at most: a third mark replaces the older one.
                    if view.marks.len() > 2 {
                        view.marks.remove(0);
                    }
                }
            },
            (Action::CompareSamples, Some(file)) => {
                // With one mark, the selected checkpoint is B.
                let pair = match view.marks[..] {
                    [a, b] => Some((a, b)),
                    [a] if a != file.step => Some((a, file.step)),
                    _ => None,
                };
                let Some((a, b)) = pair else {
                    return vec![Effect::info("Mark a checkpoint with m, select (or mark) another, then v.")];
                };
                view.open = Some(Opened::Compare(Comparison::new(a, b)));
            }
            (Action::ExportCheckpoint, Some(file)) => {
                view.open = Some(Opened::Export(Box::new(ExportPrompt::new(&file, &shared.project))));
            }
            (Action::RollBack, Some(file)) if !file.resumable => {
                return vec![Effect::info(format!(
                    "Step {} has no trainer state beside its LoRA: training cannot continue from it.",
                    file.step
                ))];
            }
            (Action::RollBack, Some(file)) => {
                let run = view.run.clone();
                let starting = format!("Training on from {run} at step {} in a new run…", file.step);
                let resume = Some(Resume::Checkpoint { run, step: file.step });
                return self.start_training(resume, starting, shared);
            }
            _ => {}
        }
        Vec::new()
    }

    /// The shown run's report was read (`None`: it has none).
    pub(super) fn read_scores(&mut self, run_dir: &Path, report: Option<&EvalReport>, shared: &Shared) {
        if shared.run_dir(shared.shown_run.as_ref()).as_deref() == Some(run_dir) {
            self.scores = report.and_then(|report| CheckpointScores::new(run_dir, report));
        }
    }

    /// The run list was read again: the view follows its run's checkpoints,
    /// and closes when the run is gone.
    pub(super) fn checkpoints_reloaded(&mut self, shared: &Shared) -> Vec<Effect> {
        let Some(view) = self.checkpoints.as_mut() else { return Vec::new() };
        if !shared.files.runs.iter().any(|run| run.id == view.run) {
            let gone = format!("Run {} is no longer in runs/.", view.run);
            self.checkpoints = None;
            return vec![Effect::info(gone)];
        }
        let files = view.files(shared);
        view.selection.clamp(files.len());
        view.marks.retain(|step| files.iter().any(|file| file.step == *step));
        Vec::new()
    }
}

/// The view: the list on the left, the selected checkpoint's samples and
/// files on the right; the export prompt, its question, or the comparison over it.
pub(super) fn render(pane: &TrainPane, view: &CheckpointsView, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let (summary, body) = frame_pane(frame, area, theme, format!("Train › checkpoints of {}", view.run));
    frame.render_widget(Paragraph::new(summary_line(pane, view, shared)), summary);
    if let Some(Opened::Compare(comparison)) = &view.open {
        return compare::render(comparison, shared, frame, body);
    }
    let (body, prompt) = match &view.open {
        Some(Opened::Export(_)) if body.height >= 9 => {
            let [body, prompt] = Layout::vertical([Constraint::Min(0), Constraint::Length(6)]).areas(body);
            (body, Some(prompt))
        }
        Some(Opened::Export(_)) => (Rect::default(), Some(body)),
        _ => (body, None),
    };
    let (list, side) = if body.width >= 70 {
        let [list, side] = Layout::horizontal([Constraint::Min(50), Constraint::Percentage(35)]).areas(body);
        (list, Some(side))
    } else {
        (body, None)
    };
    render_list(pane, view, shared, frame, list);
    if let (Some(side), Some(file)) = (side, view.selected(shared)) {
        render_side(file, shared, frame, side);
    }
    match (&view.open, prompt) {
        (Some(Opened::Export(prompt)), Some(area)) => export::render_prompt(prompt, shared, frame, area),
        (Some(Opened::Overwrite(request)), _) => export::render_overwrite(request, shared, frame, area),
        _ => {}
    }
}

/// The run's origin, the evaluation's scale and verdict, the marks.
fn summary_line(pane: &TrainPane, view: &CheckpointsView, shared: &Shared) -> Line<'static> {
    let theme = &shared.theme;
    let count = view.files(shared).len();
    let mut spans = vec![Span::styled(
        format!("{count} {}", if count == 1 { "checkpoint" } else { "checkpoints" }),
        theme.accent(),
    )];
    let (metrics, scores) = view.read(shared, pane.scores.as_ref());
    if let Some((run, step)) = metrics.and_then(|m| m.resumed_from.as_ref()) {
        spans.push(Span::raw(format!(" · rolled back from {run} at step {step}")));
    }
    spans.push(Span::raw(match scores {
        Some(scores) => {
            let star = match (scores.recommended, scores.recommended_scale) {
                (None, _) => String::new(),
                (Some(_), Some(scale)) if scale != scores.scale => format!(" · ★ recommended, at scale {scale}"),
                (Some(_), _) => " · ★ recommended".to_string(),
            };
            format!(" · scores at LoRA scale {}{star}", scores.scale)
        }
        None => " · no evaluation (Evaluate pane, e)".to_string(),
    }));
    if !view.marks.is_empty() {
        let marks: Vec<String> =
            view.marks.iter().map(|step| format!("{} {step}", view.mark(*step).unwrap_or(""))).collect();
        spans.push(Span::styled(format!(" · {} (v compares)", marks.join(", ")), theme.muted()));
    }
    Line::from(spans)
}

fn render_list(pane: &TrainPane, view: &CheckpointsView, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let rows = view.rows(shared, pane.scores.as_ref());
    if rows.is_empty() {
        return render_empty(
            frame,
            area,
            theme,
            vec![
                Line::from("No checkpoints in this run yet."),
                Line::from("Training saves one every train.save_every steps and at the end (c saves one now)."),
            ],
        );
    }
    let score = |value: Option<f32>| value.map_or_else(|| "—".to_string(), |v| format!("{v:.3}"));
    let table = rows
        .iter()
        .map(|row| {
            let step = row.file.step;
            let validation = match row.validation {
                Some((at, loss)) if at == step => format!("{loss:.4}"),
                Some((at, loss)) => format!("{loss:.4} @{at}"),
                None => "—".to_string(),
            };
            Row::new(vec![
                Cell::from(format!("{}{}", view.mark(step).unwrap_or(" "), if row.recommended { "★" } else { " " })),
                Cell::from(step.to_string()),
                Cell::from(validation),
                Cell::from(score(row.scores.and_then(|s| s.dino))),
                Cell::from(score(row.scores.and_then(|s| s.clip_t))),
                Cell::from(size(row.file.bytes)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(2),
        Constraint::Length(7),
        Constraint::Length(13),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(9),
    ];
    let header = Row::new(["", "Step", "Val loss", "DINO", "CLIP-T", "Size"]);
    // The view's keys under the list, where there is room for them.
    let hint_height = u16::from(area.height >= rows.len() as u16 + 3);
    let [list, hint_area] = Layout::vertical([Constraint::Min(0), Constraint::Length(hint_height)]).areas(area);
    render_table(frame, list, theme, view.selection.get(rows.len()), (header, table), &widths);
    let hint = Paragraph::new(Span::styled("e export · b roll back · m/v compare · Esc back", theme.muted()));
    frame.render_widget(hint, hint_area);
}

/// The selected checkpoint's samples (the nearest sampling at or before
/// it), and its files.
fn render_side(file: &CheckpointFile, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let rule = Block::default().borders(Borders::LEFT).border_style(theme.border(false));
    let inner = rule.inner(area);
    frame.render_widget(rule, area);
    let state = if file.resumable { "b trains on from here" } else { "no trainer state: export only" };
    let name = file.lora.file_name().map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    let lines =
        vec![Line::from(name), Line::from(Span::styled(format!("{} · {state}", size(file.bytes)), theme.muted()))];
    let [images, details] = Layout::vertical([Constraint::Min(0), Constraint::Length(3)]).areas(inner);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), details);
    let Some(step) = compare::sample_step(shared, file.step) else { return };
    let block = Block::default()
        .borders(Borders::BOTTOM)
        .border_style(theme.border(false))
        .title(Span::styled(format!(" samples · step {step} "), theme.muted()));
    let images_inner = block.inner(images);
    frame.render_widget(block, images);
    let prompts = shared.project.config.samples.len().clamp(1, 4);
    let rows = Layout::vertical(vec![Constraint::Ratio(1, prompts as u32); prompts]).split(images_inner);
    for (prompt, row) in rows.iter().enumerate() {
        if let Some(path) = shared.sample_image(prompt, step) {
            draw_image(shared, frame, *row, &path);
        }
    }
}

/// A file size in words: 812 B, 40.0 KiB, 1.2 MiB, 2.1 GiB.
pub(super) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crossterm::event::KeyCode;

    use super::*;
    use crate::evaluate::report::{Summary, Verdict};
    use crate::model::lora_file::LoraFormat;
    use crate::project::{Project, ProjectConfig};
    use crate::train::{RunMetrics, RunSummary};
    use crate::tui::action::PaneId;
    use crate::tui::app::App;
    use crate::tui::jobs::{Done, ExportError};
    use crate::tui::shared::ProjectFiles;
    use crate::tui::theme::Theme;

    /// A workbench showing run `r1` (checkpoints at 100, and 200 without its trainer
    /// state; validations at 90 and 200) in the Train pane.
    fn app() -> App {
        let project = Project { root: "demo".into(), config: ProjectConfig::default(), source: String::new() };
        let mut app = App::new(project, Theme::resolve("dark", Path::new(".")).unwrap());
        let dir = PathBuf::from("demo/runs/r1");
        let checkpoint = |step: u64, resumable| CheckpointFile {
            step,
            lora: dir.join(format!("checkpoints/step-{step:06}.safetensors")),
            bytes: 3 << 20,
            resumable,
        };
        let run = RunSummary {
            id: "r1".into(),
            dir: dir.clone(),
            last_step: Some(200),
            checkpoints: vec![checkpoint(100, true), checkpoint(200, false)],
            sample_images: 0,
            training: false,
        };
        let metrics = RunMetrics { validation: vec![(90, 0.25), (200, 0.5)], ..RunMetrics::default() };
        let files = ProjectFiles {
            runs: vec![run],
            metrics: Some(metrics),
            metrics_of: (Some(dir), None),
            ..Default::default()
        };
        app.files_loaded(files);
        app.apply(Action::ShowPane(PaneId::Train));
        app
    }

    fn pane(app: &App) -> &TrainPane {
        app.pane::<TrainPane>()
    }

    fn report() -> EvalReport {
        let summary = |step, scale, dino| Summary {
            step,
            scale,
            cells: 1,
            scores: [("dino_fidelity".to_string(), dino), ("clip_t".to_string(), 0.25)].into(),
        };
        EvalReport {
            summaries: vec![summary(None, 0.0, 0.1), summary(Some(100), 0.5, 0.2), summary(Some(100), 1.0, 0.3)],
            verdict: Some(Verdict {
                recommended_step: Some(100),
                recommended_scale: Some(1.0),
                overfitting_began: None,
                words: String::new(),
            }),
            ..EvalReport::default()
        }
    }

    #[test]
    fn the_list_shows_validation_and_scores_and_marks_open_a_comparison() {
        let mut app = app();
        assert_eq!(app.handle_key(Key::plain(KeyCode::Enter)), [Effect::ReadEvaluation("demo/runs/r1".into())]);
        assert_eq!(app.help_sections()[0].0, "A run's checkpoints (now)");
        app.done(Done::Evaluation("demo/runs/r1".into(), Ok(Some(Box::new(report())))));
        let view = pane(&app).checkpoints.as_ref().unwrap();
        let rows = view.rows(&app.shared, pane(&app).scores.as_ref());
        let shown: Vec<_> = rows
            .iter()
            .map(|row| (row.file.step, row.validation, row.scores.and_then(|s| s.dino), row.recommended))
            .collect();
        // The scores are the largest scale's; 200 has none; 100's loss is the validation at 90.
        assert_eq!(shown, [(100, Some((90, 0.25)), Some(0.3), true), (200, Some((200, 0.5)), None, false)]);

        assert!(app.handle_key(Key::char('v')).is_empty());
        assert!(app.message.text.starts_with("Mark a checkpoint"), "{}", app.message.text);
        app.handle_key(Key::char('m'));
        app.handle_key(Key::char('j'));
        app.handle_key(Key::char('v'));
        assert_eq!(app.help_sections()[0].0, "Comparing two checkpoints' samples (now)");
        let comparison = |app: &App| match &pane(app).checkpoints.as_ref().unwrap().open {
            Some(Opened::Compare(comparison)) => (comparison.a, comparison.b),
            _ => panic!("not comparing"),
        };
        assert_eq!(comparison(&app), (100, 200), "one mark: the selected checkpoint is B");
        app.handle_key(Key::char('h'));
        assert_eq!(comparison(&app), (100, 100));
        app.handle_key(Key::plain(KeyCode::Esc));
        app.handle_key(Key::plain(KeyCode::Esc));
        assert_eq!(pane(&app).checkpoints.as_ref().map(|view| view.run.as_str()), None, "Esc twice: the runs");
    }

    #[test]
    fn rolling_back_asks_then_starts_a_new_run_from_a_checkpoint_with_its_trainer_state() {
        let mut app = app();
        app.handle_key(Key::plain(KeyCode::Enter));
        app.handle_key(Key::char('G'));
        assert!(app.handle_key(Key::char('b')).is_empty());
        assert!(app.message.text.contains("no trainer state"), "{}", app.message.text);
        app.handle_key(Key::char('g'));
        assert!(app.handle_key(Key::char('b')).is_empty(), "it asks first");
        assert_eq!(app.help_sections()[0].0, "Starting a run (now)");
        let screen = crate::tui::view::screen_text(&app, 80, 24);
        assert!(screen.contains("Roll back?") && screen.contains("y  start the run"), "{screen}");
        assert!(screen.contains("checkpoint at step 100, in a new run?"), "{screen}");
        assert!(app.handle_key(Key::char('n')).is_empty());
        assert!(pane(&app).checkpoints.is_some(), "no: still the checkpoints");
        app.handle_key(Key::char('b'));
        let resume = Some(Resume::Checkpoint { run: "r1".into(), step: 100 });
        assert_eq!(app.handle_key(Key::char('y')), [Effect::StartTraining { resume }]);
        assert!(pane(&app).checkpoints.is_none(), "back to the runs, where the new run shows up");
    }

    #[test]
    fn an_export_is_asked_for_and_a_file_in_the_way_is_replaced_only_when_confirmed() {
        let mut app = app();
        app.handle_key(Key::plain(KeyCode::Enter));
        app.handle_key(Key::char('e'));
        assert_eq!(app.help_sections()[0].0, "Exporting a checkpoint (other keys type) (now)");
        app.handle_key(Key::ctrl('f'));
        app.handle_key(Key::ctrl('d'));
        app.handle_key(Key::plain(KeyCode::Tab));
        for c in " final".chars() {
            app.handle_key(Key::char(c));
        }
        let effects = app.handle_key(Key::plain(KeyCode::Enter));
        let expected = ExportRequest {
            step: 100,
            source: "demo/runs/r1/checkpoints/step-000100.safetensors".into(),
            out: "demo/exports/demo-step-100.safetensors".into(),
            format: LoraFormat::Peft,
            title: Some("demo-step-100 final".into()),
            strip_metadata: true,
            overwrite: false,
        };
        assert_eq!(effects, [Effect::Export(expected.clone())]);
        assert!(app.quit_warning().is_some_and(|why| why.contains("being written")));

        app.done(Done::Exported(expected.clone(), Err(ExportError::Exists)));
        assert!(app.message.text.starts_with("y replaces it, n keeps it: "), "{}", app.message.text);
        // The question is a dialog with its keys, at the smallest size too.
        let screen = crate::tui::view::screen_text(&app, 80, 24);
        assert!(screen.contains("Replace the file?") && screen.contains("n  keep it, and choose another"), "{screen}");
        // n: back to the prompt as it was, to change the destination.
        app.handle_key(Key::char('n'));
        assert_eq!(app.handle_key(Key::plain(KeyCode::Enter)), [Effect::Export(expected.clone())]);
        app.done(Done::Exported(expected.clone(), Err(ExportError::Exists)));
        let replace = ExportRequest { overwrite: true, ..expected.clone() };
        assert_eq!(app.handle_key(Key::char('y')), [Effect::Export(replace.clone())]);
        app.done(Done::Exported(replace, Ok(())));
        let message = format!("Exported step 100 to {} (PEFT).", expected.out.display());
        assert_eq!(app.message.text, message);
        assert!(app.quit_warning().is_none(), "every write is done");
    }
}
