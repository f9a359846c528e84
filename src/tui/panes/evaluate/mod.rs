//! Evaluate pane: the shown run's evaluation grid for one checkpoint and
//! scale (rows prompts, columns seeds), stepped through checkpoints and
//! scales, one cell full size; the scores per checkpoint × scale with the
//! recommended one marked; an evaluation started, followed and stopped here.

mod render;

use std::path::PathBuf;

use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::Rect;

use crate::evaluate::render::Progress;
use crate::evaluate::report::{CellRecord, EvalReport};
use crate::tui::action::{Action, PaneId};
use crate::tui::effect::Effect;
use crate::tui::jobs::Done;
use crate::tui::keymap::{Binding, Key};
use crate::tui::pane::{Pane, Selection, list_bindings};
use crate::tui::shared::{Level, ProjectFiles, Shared};
use crate::words::counted;

#[derive(Default)]
pub struct EvaluatePane {
    /// The report of the run it was read for.
    report: Option<(PathBuf, EvalReport)>,
    /// The checkpoint × scale shown: an index into the report's groups.
    group: usize,
    /// The selected cell of the grid, row by row.
    selection: Selection,
    full: bool,
    /// The evaluation running from here, as last reported.
    running: Option<Progress>,
    /// It was asked to stop after the cell in hand.
    stopping: bool,
}

impl EvaluatePane {
    fn report(&self) -> Option<&EvalReport> {
        self.report.as_ref().map(|(_, report)| report)
    }

    /// The shown group's (step, scale).
    fn shown_group(&self) -> Option<(Option<u64>, f64)> {
        self.report()?.groups().get(self.group).copied()
    }

    /// The shown group's cells as a grid: the evaluation's prompts (rows) and
    /// seeds (columns), whichever of them this group has rendered; a cell a
    /// stopped evaluation did not reach is missing from `cells`.
    fn grid(&self) -> (Vec<String>, Vec<u64>, Vec<&CellRecord>) {
        let (Some(report), Some((step, scale))) = (self.report(), self.shown_group()) else {
            return Default::default();
        };
        let cells: Vec<&CellRecord> = report.cells.iter().filter(|c| c.step == step && c.scale == scale).collect();
        let mut prompts: Vec<String> = Vec::new();
        let mut seeds: Vec<u64> = Vec::new();
        for cell in &report.cells {
            if !prompts.contains(&cell.prompt) {
                prompts.push(cell.prompt.clone());
            }
            if !seeds.contains(&cell.seed) {
                seeds.push(cell.seed);
            }
        }
        seeds.sort_unstable();
        (prompts, seeds, cells)
    }

    /// The selected cell's record.
    fn selected_cell(&self) -> Option<&CellRecord> {
        let (prompts, seeds, cells) = self.grid();
        let index = self.selection.get(prompts.len() * seeds.len())?;
        let (prompt, seed) = (&prompts[index / seeds.len()], seeds[index % seeds.len()]);
        cells.into_iter().find(|c| &c.prompt == prompt && c.seed == seed)
    }

    fn run_dir(shared: &Shared) -> Option<PathBuf> {
        shared.run_dir(shared.shown_run.as_ref())
    }

    fn out_dir(&self) -> Option<PathBuf> {
        self.report.as_ref().map(|(run, _)| crate::train::run_dir::evaluation_dir(run))
    }
}

impl Pane for EvaluatePane {
    fn id(&self) -> PaneId {
        PaneId::Evaluate
    }

    fn bindings(&self) -> Vec<Binding> {
        let mut bindings = list_bindings("cell");
        bindings.extend([
            Binding::new(
                &[Key::plain(KeyCode::Left), Key::char('h')],
                Action::EarlierStep,
                "previous checkpoint or scale",
            ),
            Binding::new(&[Key::plain(KeyCode::Right), Key::char('l')], Action::LaterStep, "next checkpoint or scale"),
            Binding::new(
                &[Key::char('f'), Key::plain(KeyCode::Enter)],
                Action::ToggleFullView,
                "the cell alone, full size",
            ),
            Binding::new(&[Key::plain(KeyCode::Esc)], Action::Close, "close the full view"),
            Binding::new(
                &[Key::char('e')],
                Action::StartEvaluation,
                "evaluate the run shown in the Train pane (easel eval)",
            ),
            Binding::new(&[Key::char('x')], Action::StopEvaluation, "stop the evaluation after the cell in hand"),
        ]);
        bindings
    }

    fn apply(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        let (prompts, seeds, _) = self.grid();
        if self.selection.apply(action, prompts.len() * seeds.len()) {
            return Vec::new();
        }
        let groups = self.report().map_or(0, |r| r.groups().len());
        match action {
            Action::EarlierStep => self.group = self.group.saturating_sub(1),
            Action::LaterStep => self.group = (self.group + 1).min(groups.saturating_sub(1)),
            Action::ToggleFullView => self.full = !self.full,
            Action::Close => self.full = false,
            Action::StartEvaluation if self.running.is_some() => {
                return vec![Effect::info("An evaluation is running (x stops it).")];
            }
            Action::StartEvaluation => {
                let Some(run) = Self::run_dir(shared) else {
                    return vec![Effect::info("No run to evaluate: train one first (Train pane, s).")];
                };
                self.running = Some(Progress { done: 0, total: 0, rendered: 0, seconds: 0.0 });
                return vec![Effect::info(format!("Evaluating {}…", run.display())), Effect::StartEvaluation(run)];
            }
            Action::StopEvaluation if self.running.is_some() => {
                self.stopping = true;
                return vec![Effect::info("Stopping the evaluation after this cell…"), Effect::StopEvaluation];
            }
            Action::StopEvaluation => return vec![Effect::info("No evaluation is running here (e starts one).")],
            _ => {}
        }
        Vec::new()
    }

    fn done(&mut self, done: &Done, shared: &Shared) -> Vec<Effect> {
        match done {
            Done::Evaluation(run, Ok(report)) if Self::run_dir(shared).as_ref() == Some(run) => {
                self.report = report.as_ref().map(|r| (run.clone(), (**r).clone()));
                self.group = self.group.min(self.report().map_or(0, |r| r.groups().len().saturating_sub(1)));
            }
            Done::Evaluation(_, Err(error)) => return vec![Effect::say(Level::Error, error.clone())],
            Done::EvaluationProgress(progress) => self.running = Some(*progress),
            Done::EvaluationEnded(run, result) => {
                (self.running, self.stopping) = (None, false);
                return match result {
                    Ok((report, notes)) => {
                        self.report = Some((run.clone(), (**report).clone()));
                        let mut text = match report.unfinished() {
                            true => format!(
                                "Stopped at {} of {} cells (e continues; the grid shows what was rendered).",
                                report.cells.len(),
                                report.planned
                            ),
                            false => format!(
                                "Evaluated: {} and {}.",
                                counted(report.cells.len(), "cell"),
                                counted(report.sheets.len(), "sheet")
                            ),
                        };
                        if let Some(verdict) = &report.verdict {
                            text.push_str(&format!(" {}", verdict.words));
                        } else if let Some(note) = notes.first() {
                            text.push_str(&format!(" {note}"));
                        }
                        vec![Effect::say(Level::Success, text)]
                    }
                    Err(error) => vec![Effect::say(Level::Error, format!("Evaluation failed: {error}"))],
                };
            }
            _ => {}
        }
        Vec::new()
    }

    fn files_loaded(&mut self, _previous: &ProjectFiles, shared: &Shared) -> Vec<Effect> {
        // The report is read again with the files (a run evaluated in another window shows up).
        Self::run_dir(shared).map(Effect::ReadEvaluation).into_iter().collect()
    }

    fn shown_runs_changed(&mut self, shared: &Shared) -> Vec<Effect> {
        // Another run's grid: none until its report is read.
        self.report = None;
        Self::run_dir(shared).map(Effect::ReadEvaluation).into_iter().collect()
    }

    fn render(&self, shared: &Shared, frame: &mut Frame, area: Rect) {
        render::render(self, shared, frame, area);
    }

    fn running(&self) -> Option<&'static str> {
        self.running.is_some().then_some("evaluating")
    }

    fn wind_down(&mut self) -> Option<Effect> {
        if self.running.is_none() || std::mem::replace(&mut self.stopping, true) {
            return None;
        }
        Some(Effect::StopEvaluation)
    }

    fn quit_warning(&self) -> Option<String> {
        self.running.is_some().then(|| "an evaluation is running: quitting stops it (e continues it later)".into())
    }
}
