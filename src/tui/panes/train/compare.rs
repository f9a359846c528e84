//! Two checkpoints' samples side by side, opened from the checkpoints view:
//! a row per sample prompt, checkpoint A on the left and B on the right,
//! drawn as the Samples pane draws them.

use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::TrainPane;
use super::checkpoints::Opened;
use crate::tui::action::Action;
use crate::tui::effect::Effect;
use crate::tui::keymap::{Binding, Key, ModeKeys};
use crate::tui::shared::Shared;
use crate::tui::widgets::{draw_image, render_empty};

/// The mode's name in the keymap.
pub(super) const COMPARE: &str = "compare checkpoints";
/// Rows a prompt needs for its images to be worth drawing.
const MIN_ROW: u16 = 5;

/// The checkpoints compared, by step, and the first prompt shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Comparison {
    pub a: u64,
    pub b: u64,
    first_prompt: usize,
}

impl Comparison {
    pub fn new(a: u64, b: u64) -> Self {
        Self { a, b, first_prompt: 0 }
    }
}

pub(super) fn keys() -> ModeKeys {
    let bindings = vec![
        Binding::new(&[Key::plain(KeyCode::Up), Key::char('k')], Action::Up, "the prompt before"),
        Binding::new(&[Key::plain(KeyCode::Down), Key::char('j')], Action::Down, "the prompt after"),
        Binding::new(&[Key::plain(KeyCode::Left), Key::char('h')], Action::EarlierStep, "B: the checkpoint before"),
        Binding::new(&[Key::plain(KeyCode::Right), Key::char('l')], Action::LaterStep, "B: the checkpoint after"),
        Binding::new(&[Key::plain(KeyCode::Esc)], Action::Close, "back to the checkpoints"),
    ];
    ModeKeys::new(COMPARE, "Comparing two checkpoints' samples", false, bindings)
}

/// The step whose samples show a checkpoint: the nearest sampling at or
/// before it (samples and checkpoints may be saved at different intervals).
/// The samples are the shown run's.
pub(super) fn sample_step(shared: &Shared, checkpoint: u64) -> Option<u64> {
    shared.sample_steps().into_iter().rfind(|step| *step <= checkpoint)
}

impl TrainPane {
    pub(super) fn compare_action(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        let Some(view) = self.checkpoints.as_mut() else { return Vec::new() };
        let steps: Vec<u64> = view.files(shared).iter().map(|file| file.step).collect();
        let Some(Opened::Compare(comparison)) = &mut view.open else { return Vec::new() };
        let prompts = shared.project.config.samples.len();
        match action {
            Action::Close => view.open = None,
            Action::Up => comparison.first_prompt = comparison.first_prompt.saturating_sub(1),
            Action::Down => comparison.first_prompt = (comparison.first_prompt + 1).min(prompts.saturating_sub(1)),
            Action::EarlierStep | Action::LaterStep => {
                let position = steps.iter().position(|step| *step == comparison.b);
                let next = match (action, position) {
                    (Action::EarlierStep, Some(i)) => i.checked_sub(1),
                    (_, Some(i)) => Some(i + 1),
                    (_, None) => None,
                };
                if let Some(&step) = next.and_then(|i| steps.get(i)) {
                    comparison.b = step;
                }
            }
            _ => {}
        }
        Vec::new()
    }
}

/// A row per prompt from the first shown, as many as fit: A left, B right.
pub(super) fn render(comparison: &Comparison, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let prompts = &shared.project.config.samples;
    let sides =
        [("A", comparison.a), ("B", comparison.b)].map(|(label, step)| (label, step, sample_step(shared, step)));
    if prompts.is_empty() || sides.iter().all(|(_, _, samples)| samples.is_none()) {
        return render_empty(
            frame,
            area,
            theme,
            vec![
                Line::from(format!("No samples to compare for steps {} and {}.", comparison.a, comparison.b)),
                Line::from("Training renders the [[samples]] prompts of project.toml every train.sample_every steps."),
            ],
        );
    }
    let shown = (area.height / MIN_ROW).max(1) as usize;
    let first = comparison.first_prompt.min(prompts.len() - 1);
    let count = shown.min(prompts.len() - first);
    let rows = Layout::vertical(vec![Constraint::Ratio(1, count as u32); count]).split(area);
    for (prompt, row) in (first..first + count).zip(rows.iter()) {
        let columns = Layout::horizontal([Constraint::Ratio(1, 2); 2]).split(*row);
        for ((label, step, samples), column) in sides.iter().zip(columns.iter()) {
            let at = match samples {
                Some(samples) if samples == step => String::new(),
                Some(samples) => format!(" (samples of step {samples})"),
                None => " (no samples yet)".to_string(),
            };
            let mut title = format!(" {label} · step {step}{at} ");
            // The prompt once per row, after what tells the sides apart (a long one is cut).
            if *label == "A" {
                title.push_str(&format!("· {} ", prompts[prompt].prompt));
            }
            let block = Block::default()
                .borders(Borders::TOP)
                .border_style(theme.border(false))
                .title(Span::styled(title, theme.accent()));
            let inner = block.inner(*column);
            frame.render_widget(block, *column);
            match samples.and_then(|samples| shared.sample_image(prompt, samples)) {
                Some(path) => draw_image(shared, frame, inner, &path),
                None => frame.render_widget(Paragraph::new(Span::styled("no image", theme.muted())), inner),
            }
        }
    }
}
