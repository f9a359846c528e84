//! Key bindings. Each scope (global, each pane, each pane's modes, each
//! dialog) owns a list of bindings with their descriptions; the help overlay
//! is generated from the same lists, so it cannot drift from what the keys
//! really do.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::action::{Action, PaneId};

/// A key with its modifiers, as written in bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

impl Key {
    pub const fn plain(code: KeyCode) -> Self {
        Self { code, modifiers: KeyModifiers::NONE }
    }

    pub const fn char(c: char) -> Self {
        Self::plain(KeyCode::Char(c))
    }

    pub const fn ctrl(c: char) -> Self {
        Self { code: KeyCode::Char(c), modifiers: KeyModifiers::CONTROL }
    }

    /// The key a terminal event stands for. Shift is part of the character
    /// for printable keys (`?`, `G`) and of BackTab, and terminals differ in
    /// whether they also report it, so it is dropped there.
    pub fn from_event(event: &KeyEvent) -> Option<Self> {
        if event.kind == KeyEventKind::Release {
            return None;
        }
        let mut modifiers = event.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        if matches!(event.code, KeyCode::Char(_) | KeyCode::BackTab) {
            modifiers.remove(KeyModifiers::SHIFT);
        }
        let code = match event.code {
            // Ctrl+letter may arrive upper-case when Caps Lock or Shift is on.
            KeyCode::Char(c) if modifiers.contains(KeyModifiers::CONTROL) => KeyCode::Char(c.to_ascii_lowercase()),
            code => code,
        };
        Some(Self { code, modifiers })
    }

    /// How the key is written in help: `q`, `Ctrl-s`, `Tab`, `↑`.
    pub fn label(&self) -> String {
        let name = match self.code {
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "Shift-Tab".into(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::F(n) => format!("F{n}"),
            other => format!("{other:?}"),
        };
        let mut label = String::new();
        if self.modifiers.contains(KeyModifiers::CONTROL) {
            label.push_str("Ctrl-");
        }
        if self.modifiers.contains(KeyModifiers::ALT) {
            label.push_str("Alt-");
        }
        label + &name
    }
}

/// Keys that trigger one action, with the line the help overlay shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub keys: Vec<Key>,
    pub action: Action,
    pub description: String,
}

impl Binding {
    pub fn new(keys: &[Key], action: Action, description: impl Into<String>) -> Self {
        Self { keys: keys.to_vec(), action, description: description.into() }
    }

    pub fn keys_label(&self) -> String {
        self.keys.iter().map(Key::label).collect::<Vec<_>>().join(" ")
    }
}

/// A pane's mode (an editor, a review, a dialog) and its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeKeys {
    /// What the pane's `mode()` returns while in it.
    pub name: &'static str,
    /// The help overlay's heading.
    pub title: &'static str,
    pub bindings: Vec<Binding>,
    /// Keys it does not bind are typed into its text field.
    pub takes_text: bool,
}

impl ModeKeys {
    /// A mode's keys, with the two that work in every mode added: help (F1,
    /// and `?` where it is not text) and quit.
    pub fn new(name: &'static str, title: &'static str, takes_text: bool, mut bindings: Vec<Binding>) -> Self {
        let help: &[Key] =
            if takes_text { &[Key::plain(KeyCode::F(1))] } else { &[Key::char('?'), Key::plain(KeyCode::F(1))] };
        bindings.extend([
            Binding::new(help, Action::ToggleHelp, "show or hide this help"),
            Binding::new(&[Key::ctrl('c')], Action::Quit, "quit (asks if something is unsaved)"),
        ]);
        Self { name, title, bindings, takes_text }
    }
}

/// A pane's keys: while browsing, and in each of its modes.
#[derive(Debug, Clone)]
pub struct PaneKeys {
    pub pane: PaneId,
    pub bindings: Vec<Binding>,
    pub modes: Vec<ModeKeys>,
}

/// Where a key press is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Pane(PaneId),
    /// A pane's mode, by name.
    Mode(&'static str),
    Help,
    QuitDialog,
}

/// All bindings of the workbench, by scope.
#[derive(Debug, Clone)]
pub struct Keymap {
    pub global: Vec<Binding>,
    pub panes: Vec<PaneKeys>,
    pub help: Vec<Binding>,
    pub quit_dialog: Vec<Binding>,
}

impl Keymap {
    /// The global and dialog keys, with each pane's own (in tab order).
    pub fn new(panes: Vec<PaneKeys>) -> Self {
        let mut global = vec![
            Binding::new(&[Key::char('q'), Key::ctrl('c')], Action::Quit, "quit (asks if something is unsaved)"),
            Binding::new(&[Key::char('?'), Key::plain(KeyCode::F(1))], Action::ToggleHelp, "show or hide this help"),
            Binding::new(&[Key::plain(KeyCode::Tab)], Action::NextPane, "next pane"),
            Binding::new(&[Key::plain(KeyCode::BackTab)], Action::PreviousPane, "previous pane"),
        ];
        for (keys, digit) in panes.iter().zip('1'..='9') {
            let description = format!("{} pane: {}", keys.pane.title(), keys.pane.description());
            global.push(Binding::new(&[Key::char(digit)], Action::ShowPane(keys.pane), description));
        }
        global.extend([
            Binding::new(&[Key::char('t')], Action::CycleTheme, "try the next colour theme"),
            Binding::new(&[Key::ctrl('s')], Action::Save, "save changes (the theme) to project.toml"),
            Binding::new(&[Key::char('r'), Key::ctrl('r')], Action::Refresh, "re-read dataset and runs now"),
        ]);
        Self {
            global,
            panes,
            help: vec![
                Binding::new(
                    &[Key::plain(KeyCode::Esc), Key::plain(KeyCode::F(1)), Key::char('?'), Key::char('q')],
                    Action::Close,
                    "close help",
                ),
                Binding::new(&[Key::plain(KeyCode::Up), Key::char('k')], Action::Up, "scroll up"),
                Binding::new(&[Key::plain(KeyCode::Down), Key::char('j')], Action::Down, "scroll down"),
                Binding::new(&[Key::plain(KeyCode::PageUp)], Action::PageUp, "a page up"),
                Binding::new(&[Key::plain(KeyCode::PageDown), Key::char(' ')], Action::PageDown, "a page down"),
                Binding::new(&[Key::plain(KeyCode::Home), Key::char('g')], Action::First, "to the top"),
                Binding::new(&[Key::plain(KeyCode::End), Key::char('G')], Action::Last, "to the end"),
            ],
            quit_dialog: vec![
                Binding::new(
                    &[Key::char('s'), Key::char('y')],
                    Action::SaveAndQuit,
                    "save, then quit (running work stops at a safe point first: a run with a checkpoint)",
                ),
                Binding::new(&[Key::char('d'), Key::char('n')], Action::DiscardAndQuit, "quit without saving"),
                Binding::new(&[Key::plain(KeyCode::Esc)], Action::Close, "keep working"),
                // A second Ctrl-C is an emphatic "get me out", not a choice to save.
                Binding::new(&[Key::ctrl('c')], Action::DiscardAndQuit, "quit without saving"),
            ],
        }
    }

    pub fn pane(&self, pane: PaneId) -> &[Binding] {
        self.panes.iter().find(|keys| keys.pane == pane).map_or(&[], |keys| keys.bindings.as_slice())
    }

    pub fn mode(&self, name: &str) -> Option<&ModeKeys> {
        self.panes.iter().flat_map(|keys| &keys.modes).find(|mode| mode.name == name)
    }

    /// The help overlay's sections: the current mode's keys, global keys,
    /// the current pane's (then its modes'), then the other panes' (each
    /// followed by its modes'), then the overlay's own.
    pub fn help_sections(&self, current: PaneId, mode: Option<&str>) -> Vec<(String, &[Binding])> {
        let mut sections = Vec::new();
        if let Some(mode) = mode.and_then(|name| self.mode(name)) {
            sections.push((format!("{} (now)", mode.title), mode.bindings.as_slice()));
        }
        sections.push(("Everywhere".to_string(), self.global.as_slice()));
        let this = self.panes.iter().filter(|keys| keys.pane == current);
        for keys in this.chain(self.panes.iter().filter(|keys| keys.pane != current)) {
            let marker = if keys.pane == current { " (this pane)" } else { "" };
            sections.push((format!("{} pane{marker}", keys.pane.title()), keys.bindings.as_slice()));
            for other in keys.modes.iter().filter(|m| Some(m.name) != mode) {
                sections.push((format!("{} pane, {}", keys.pane.title(), other.title), other.bindings.as_slice()));
            }
        }
        sections.push(("This help".to_string(), self.help.as_slice()));
        sections
    }

    /// The action `key` triggers in `scope`. Pane bindings shadow global ones;
    /// modes, dialogs and the help overlay are modal.
    pub fn lookup(&self, scope: Scope, key: Key) -> Option<Action> {
        let find = |bindings: &[Binding]| bindings.iter().find(|b| b.keys.contains(&key)).map(|b| b.action);
        match scope {
            Scope::Pane(pane) => find(self.pane(pane)).or_else(|| find(&self.global)),
            Scope::Mode(name) => self.mode(name).and_then(|mode| find(&mode.bindings)),
            Scope::Help => find(&self.help).or_else(|| (key == Key::ctrl('c')).then_some(Action::Quit)),
            Scope::QuitDialog => find(&self.quit_dialog),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_can_be_named_in_keymap_files() {
        let action: Action = serde_json::from_str(r#"{"show_pane":"captions"}"#).unwrap();
        assert_eq!(action, Action::ShowPane(PaneId::Captions));
        assert_eq!(serde_json::from_str::<Action>(r#""cycle_theme""#).unwrap(), Action::CycleTheme);
    }

    #[test]
    fn labels_read_like_help_text() {
        assert_eq!(Key::ctrl('s').label(), "Ctrl-s");
        assert_eq!(Binding::new(&[Key::plain(KeyCode::Up), Key::char('k')], Action::Up, "").keys_label(), "↑ k");
    }
}
