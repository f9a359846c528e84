//! Key bindings. Each scope (global, each pane, each dialog) owns a list of
//! bindings with their descriptions; the help overlay is generated from the
//! same lists, so it cannot drift from what the keys really do.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::action::{Action, PaneId};
use super::panes;

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

/// Where a key press is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Pane(PaneId),
    Help,
    QuitDialog,
}

/// All bindings of the workbench, by scope.
#[derive(Debug, Clone)]
pub struct Keymap {
    pub global: Vec<Binding>,
    pub panes: Vec<(PaneId, Vec<Binding>)>,
    pub help: Vec<Binding>,
    pub quit_dialog: Vec<Binding>,
}

impl Default for Keymap {
    fn default() -> Self {
        let mut global = vec![
            Binding::new(&[Key::char('q'), Key::ctrl('c')], Action::Quit, "quit (asks if something is unsaved)"),
            Binding::new(&[Key::char('?'), Key::plain(KeyCode::F(1))], Action::ToggleHelp, "show or hide this help"),
            Binding::new(&[Key::plain(KeyCode::Tab)], Action::NextPane, "next pane"),
            Binding::new(&[Key::plain(KeyCode::BackTab)], Action::PreviousPane, "previous pane"),
        ];
        for (pane, digit) in PaneId::ALL.into_iter().zip(['1', '2', '3', '4']) {
            global.push(Binding::new(&[Key::char(digit)], Action::ShowPane(pane), pane_description(pane)));
        }
        global.extend([
            Binding::new(&[Key::char('t')], Action::CycleTheme, "try the next colour theme"),
            Binding::new(&[Key::ctrl('s')], Action::Save, "save changes (the theme) to project.toml"),
            Binding::new(&[Key::char('r'), Key::ctrl('r')], Action::Refresh, "re-read dataset and runs now"),
        ]);
        Self {
            global,
            panes: PaneId::ALL.into_iter().map(|pane| (pane, panes::bindings(pane))).collect(),
            help: vec![
                Binding::new(&[Key::plain(KeyCode::Esc), Key::char('?'), Key::char('q')], Action::Close, "close help"),
                Binding::new(&[Key::plain(KeyCode::Up), Key::char('k')], Action::Up, "scroll up"),
                Binding::new(&[Key::plain(KeyCode::Down), Key::char('j')], Action::Down, "scroll down"),
            ],
            quit_dialog: vec![
                Binding::new(&[Key::char('s'), Key::char('y')], Action::SaveAndQuit, "save, then quit"),
                Binding::new(&[Key::char('d'), Key::char('n')], Action::DiscardAndQuit, "quit without saving"),
                Binding::new(&[Key::plain(KeyCode::Esc)], Action::Close, "keep working"),
                // A second Ctrl-C is an emphatic "get me out", not a choice to save.
                Binding::new(&[Key::ctrl('c')], Action::DiscardAndQuit, "quit without saving"),
            ],
        }
    }
}

fn pane_description(pane: PaneId) -> &'static str {
    match pane {
        PaneId::Dataset => "Dataset pane: images and their state",
        PaneId::Captions => "Captions pane: the caption of each image",
        PaneId::Train => "Train pane: settings and runs",
        PaneId::Samples => "Samples pane: sample prompts and images",
    }
}

impl Keymap {
    pub fn pane(&self, pane: PaneId) -> &[Binding] {
        self.panes.iter().find(|(p, _)| *p == pane).map_or(&[], |(_, b)| b.as_slice())
    }

    /// The help overlay's sections: global keys, then the current pane's,
    /// then the other panes', then the overlay's own.
    pub fn help_sections(&self, current: PaneId) -> Vec<(String, &[Binding])> {
        let mut sections = vec![("Everywhere".to_string(), self.global.as_slice())];
        let others = PaneId::ALL.into_iter().filter(|p| *p != current);
        for pane in std::iter::once(current).chain(others) {
            let marker = if pane == current { " (this pane)" } else { "" };
            sections.push((format!("{} pane{marker}", pane.title()), self.pane(pane)));
        }
        sections.push(("This help".to_string(), self.help.as_slice()));
        sections
    }

    /// The action `key` triggers in `scope`. Pane bindings shadow global ones;
    /// dialogs and the help overlay are modal.
    pub fn lookup(&self, scope: Scope, key: Key) -> Option<Action> {
        let find = |bindings: &[Binding]| bindings.iter().find(|b| b.keys.contains(&key)).map(|b| b.action);
        match scope {
            Scope::Global => find(&self.global),
            Scope::Pane(pane) => find(self.pane(pane)).or_else(|| find(&self.global)),
            Scope::Help => find(&self.help).or_else(|| (key == Key::ctrl('c')).then_some(Action::Quit)),
            Scope::QuitDialog => find(&self.quit_dialog),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> Key {
        Key::from_event(&KeyEvent::new(code, modifiers)).unwrap()
    }

    #[test]
    fn shifted_characters_match_their_plain_binding() {
        let keymap = Keymap::default();
        let scope = Scope::Pane(PaneId::Dataset);
        assert_eq!(keymap.lookup(scope, press(KeyCode::Char('?'), KeyModifiers::SHIFT)), Some(Action::ToggleHelp));
        assert_eq!(keymap.lookup(scope, press(KeyCode::BackTab, KeyModifiers::SHIFT)), Some(Action::PreviousPane));
        assert_eq!(keymap.lookup(scope, press(KeyCode::Char('C'), KeyModifiers::CONTROL)), Some(Action::Quit));
        assert_eq!(
            keymap.lookup(scope, press(KeyCode::Char('3'), KeyModifiers::NONE)),
            Some(Action::ShowPane(PaneId::Train))
        );
        assert_eq!(keymap.lookup(scope, press(KeyCode::Char('x'), KeyModifiers::ALT)), None);
    }

    #[test]
    fn no_key_is_bound_twice_in_one_scope() {
        let keymap = Keymap::default();
        let mut scopes = vec![keymap.help.clone(), keymap.quit_dialog.clone()];
        for pane in PaneId::ALL {
            // A pane's keys are looked up before the global ones, so together they must be unique.
            scopes.push(keymap.pane(pane).iter().chain(&keymap.global).cloned().collect());
        }
        for bindings in scopes {
            let mut keys: Vec<String> = bindings.iter().flat_map(|b| b.keys.iter().map(Key::label)).collect();
            let count = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), count, "a key is bound twice: {bindings:?}");
        }
    }

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
