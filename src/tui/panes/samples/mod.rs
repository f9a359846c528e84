//! Samples pane: the sample prompts, and for the run shown in the Train
//! pane each prompt's timeline (step → image), the newest followed as it
//! arrives, two steps side by side, and one image full size.

mod render;

use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::Rect;

use crate::tui::action::{Action, PaneId};
use crate::tui::effect::Effect;
use crate::tui::keymap::{Binding, Key};
use crate::tui::pane::{Pane, Selection, list_bindings};
use crate::tui::shared::{ProjectFiles, Shared};

#[derive(Default)]
pub struct SamplesPane {
    selection: Selection,
    /// The sampling step shown; `None` follows the newest as they arrive.
    step: Option<u64>,
    /// A step kept on the left for a side-by-side comparison.
    compare: Option<u64>,
    full: bool,
}

impl SamplesPane {
    /// The step shown: the chosen one, else the newest.
    fn shown_step(&self, shared: &Shared) -> Option<u64> {
        self.step.or_else(|| shared.sample_steps().last().copied())
    }
}

impl Pane for SamplesPane {
    fn id(&self) -> PaneId {
        PaneId::Samples
    }

    fn bindings(&self) -> Vec<Binding> {
        let mut bindings = list_bindings("sample prompt");
        bindings.extend([
            Binding::new(&[Key::plain(KeyCode::Left), Key::char('h')], Action::EarlierStep, "earlier sampling step"),
            Binding::new(
                &[Key::plain(KeyCode::Right), Key::char('l')],
                Action::LaterStep,
                "later step (the newest follows new samples)",
            ),
            Binding::new(
                &[Key::char('m')],
                Action::MarkStep,
                "keep this step on the left, side by side (again: clear)",
            ),
            Binding::new(
                &[Key::char('f'), Key::plain(KeyCode::Enter)],
                Action::ToggleFullView,
                "the image alone, full size",
            ),
            Binding::new(&[Key::plain(KeyCode::Esc)], Action::Close, "close the full view, then the side by side"),
        ]);
        bindings
    }

    fn apply(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        if self.selection.apply(action, shared.project.config.samples.len()) {
            return Vec::new();
        }
        match action {
            Action::EarlierStep | Action::LaterStep => {
                let steps = shared.sample_steps();
                let position = self.shown_step(shared).and_then(|c| steps.iter().position(|s| *s == c));
                let next = match (action, position) {
                    (_, None) => steps.last().copied(),
                    (Action::EarlierStep, Some(i)) => steps.get(i.saturating_sub(1)).copied(),
                    (_, Some(i)) => steps.get(i + 1).copied(),
                };
                // Stepping onto the newest follows new samples again.
                self.step = next.filter(|s| Some(s) != steps.last());
            }
            Action::MarkStep => {
                self.compare = match self.compare {
                    Some(_) => None,
                    None => self.shown_step(shared),
                };
            }
            Action::ToggleFullView => self.full = !self.full,
            Action::Close if self.full => self.full = false,
            Action::Close => self.compare = None,
            _ => {}
        }
        Vec::new()
    }

    fn files_loaded(&mut self, _previous: &ProjectFiles, shared: &Shared) -> Vec<Effect> {
        self.selection.clamp(shared.project.config.samples.len());
        Vec::new()
    }

    fn render(&self, shared: &Shared, frame: &mut Frame, area: Rect) {
        render::render(self, shared, frame, area);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_stays_inside_the_list() {
        let mut shared = Shared::for_tests();
        let mut pane = SamplesPane::default();
        pane.apply(Action::Down, &shared);
        assert_eq!(pane.selection.get(shared.project.config.samples.len()), None);
        shared.project.config.samples = vec![
            crate::project::SamplePrompt {
                prompt: "a".into(),
                negative: String::new(),
                seed: 0,
                steps: 1,
                guidance: 1.0,
            };
            3
        ];
        let selected = |pane: &SamplesPane| pane.selection.get(3);
        pane.apply(Action::PageDown, &shared);
        assert_eq!(selected(&pane), Some(2));
        pane.apply(Action::Up, &shared);
        assert_eq!(selected(&pane), Some(1));
        pane.apply(Action::First, &shared);
        assert_eq!(selected(&pane), Some(0));
    }
}
