//! The question before a run starts, when there is something to weigh: a
//! roll-back starts a new run from an old checkpoint, and images whose only
//! text is a draft awaiting review would be left out. `y` starts it.

use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::Rect;

use crate::train::Resume;
use crate::tui::action::Action;
use crate::tui::keymap::{Binding, Key, ModeKeys};
use crate::tui::shared::Shared;
use crate::tui::widgets::question;
use crate::words::counted;

/// The mode's name in the keymap.
pub(super) const CONFIRM_START: &str = "confirm a start";

/// A start waiting for a yes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StartQuestion {
    pub resume: Option<Resume>,
    /// What the status line says once it starts.
    pub starting: String,
    /// What to weigh, a line each.
    reasons: Vec<String>,
}

/// What the answer asks for.
pub(super) enum Answer {
    Start,
    Cancel,
    Nothing,
}

impl StartQuestion {
    /// The question for this start, or `None` when there is nothing to ask.
    pub fn about(resume: Option<Resume>, starting: String, shared: &Shared) -> Result<(Option<Resume>, String), Self> {
        let mut reasons = Vec::new();
        if let Some(Resume::Checkpoint { run, step }) = &resume {
            reasons.push(format!(
                "Train on from run {run}'s checkpoint at step {step}, in a new run? Run {run} and its later \
                 checkpoints stay as they are."
            ));
        }
        let drafted_only = shared.files.captions.as_ref().map_or(0, |r| r.uncaptioned_with_drafts());
        if drafted_only > 0 {
            let has = if drafted_only == 1 { "has" } else { "have" };
            reasons.push(format!(
                "{} {has} only an unreviewed draft and would be left out (the Captions pane's D reviews the drafts).",
                counted(drafted_only, "image")
            ));
        }
        if reasons.is_empty() { Ok((resume, starting)) } else { Err(Self { resume, starting, reasons }) }
    }

    pub fn answer(&self, action: Action) -> Answer {
        match action {
            Action::Confirm => Answer::Start,
            Action::Close => Answer::Cancel,
            _ => Answer::Nothing,
        }
    }

    pub fn render(&self, shared: &Shared, frame: &mut Frame, area: Rect) {
        let mut lines = self.reasons.clone();
        lines.extend([String::new(), "y  start the run".into(), "n  do not start it".into()]);
        let title =
            if matches!(self.resume, Some(Resume::Checkpoint { .. })) { "Roll back?" } else { "Start the run?" };
        question(frame, area, &shared.theme, title, &lines);
    }
}

pub(super) fn keys() -> ModeKeys {
    let bindings = vec![
        Binding::new(&[Key::char('y'), Key::plain(KeyCode::Enter)], Action::Confirm, "start the run"),
        Binding::new(&[Key::char('n'), Key::plain(KeyCode::Esc)], Action::Close, "do not start it"),
    ];
    ModeKeys::new(CONFIRM_START, "Starting a run", false, bindings)
}
