//! What a pane is: a component that owns its state and its keys, turns
//! actions and finished jobs into changes of that state plus effects, and
//! draws itself. The app holds the panes in a list (`panes::all`) and knows
//! none of them by type.

use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::Rect;

use super::action::{Action, PaneId};
use super::effect::Effect;
use super::jobs::Done;
use super::keymap::{Binding, Key, ModeKeys};
use super::shared::{ProjectFiles, Shared};

pub trait Pane: std::any::Any {
    fn id(&self) -> PaneId;

    /// Its keys while browsing its list.
    fn bindings(&self) -> Vec<Binding>;

    /// Its modes (an editor, a dialog) with their own keys.
    fn modes(&self) -> Vec<ModeKeys> {
        Vec::new()
    }

    /// The mode it is in, by `ModeKeys::name`; `None` while browsing.
    fn mode(&self) -> Option<&'static str> {
        None
    }

    fn apply(&mut self, action: Action, shared: &Shared) -> Vec<Effect>;

    /// A key the current mode does not bind, in a mode that takes text.
    fn type_key(&mut self, _key: Key, _shared: &Shared) -> Vec<Effect> {
        Vec::new()
    }

    /// A background job finished (every pane hears of every job).
    fn done(&mut self, _done: &Done, _shared: &Shared) -> Vec<Effect> {
        Vec::new()
    }

    /// The project's files were read again (`previous`: what they were).
    fn files_loaded(&mut self, _previous: &ProjectFiles, _shared: &Shared) -> Vec<Effect> {
        Vec::new()
    }

    /// The runs shown (`Shared::shown_run`, `compare_run`) changed.
    fn shown_runs_changed(&mut self, _shared: &Shared) -> Vec<Effect> {
        Vec::new()
    }

    fn render(&self, shared: &Shared, frame: &mut Frame, area: Rect);

    /// What it holds unsaved, in words.
    fn unsaved(&self) -> Option<String> {
        None
    }

    /// The write that saves what it holds unsaved (quitting asks for it).
    fn save_unsaved(&self) -> Option<Effect> {
        None
    }

    /// Work it runs that quitting would end, in a word for the tab bar ("training").
    fn running(&self) -> Option<&'static str> {
        None
    }

    /// Asks that work to end at its next safe point with what it has done
    /// saved (a training run stops with a checkpoint, an evaluation after the
    /// cell in hand): the effect that asks, the first time only. Quitting with
    /// "save" asks, then waits until `running` is `None`.
    fn wind_down(&mut self) -> Option<Effect> {
        None
    }

    /// Where that work stands, in words for the status bar ("drafting 12/40, 1:05 left").
    fn progress(&self) -> Option<String> {
        None
    }

    /// Why quitting needs a confirmation, beyond unsaved work.
    fn quit_warning(&self) -> Option<String> {
        None
    }
}

/// Rows a page key moves by; the real page height is only known when drawing.
const PAGE: usize = 10;

/// The selected row of a pane's list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selection(usize);

impl Selection {
    /// The selected row of a list of `len` rows; `None` when it is empty.
    pub fn get(self, len: usize) -> Option<usize> {
        (len > 0).then(|| self.0.min(len - 1))
    }

    pub fn set(&mut self, row: usize) {
        self.0 = row;
    }

    /// Kept inside a list that shrank.
    pub fn clamp(&mut self, len: usize) {
        self.0 = self.0.min(len.saturating_sub(1));
    }

    /// Moves by a list action; false when `action` is not one.
    pub fn apply(&mut self, action: Action, len: usize) -> bool {
        let step: fn(usize, usize) -> usize = match action {
            Action::Up => |i, _| i.saturating_sub(1),
            Action::Down => |i, _| i + 1,
            Action::PageUp => |i, _| i.saturating_sub(PAGE),
            Action::PageDown => |i, _| i + PAGE,
            Action::First => |_, _| 0,
            Action::Last => |_, len| len.saturating_sub(1),
            _ => return false,
        };
        self.0 = if len == 0 { 0 } else { step(self.0, len).min(len - 1) };
        true
    }
}

/// Moving through a pane's list; every pane has one.
pub fn list_bindings(item: &str) -> Vec<Binding> {
    let describe = |what: &str| format!("{what} {item}");
    vec![
        Binding::new(&[Key::plain(KeyCode::Up), Key::char('k')], Action::Up, describe("previous")),
        Binding::new(&[Key::plain(KeyCode::Down), Key::char('j')], Action::Down, describe("next")),
        Binding::new(&[Key::plain(KeyCode::PageUp)], Action::PageUp, "ten rows up"),
        Binding::new(&[Key::plain(KeyCode::PageDown)], Action::PageDown, "ten rows down"),
        Binding::new(&[Key::plain(KeyCode::Home), Key::char('g')], Action::First, describe("first")),
        Binding::new(&[Key::plain(KeyCode::End), Key::char('G')], Action::Last, describe("last")),
    ]
}
