//! The panes, in tab order. Each is a folder: its state, keys and actions
//! in `mod.rs`, its drawing in `render.rs`.

mod captions;
mod dataset;
mod evaluate;
mod samples;
mod train;

use super::pane::Pane;

/// Every pane, in tab order (the order of `PaneId::ALL`).
pub fn all() -> Vec<Box<dyn Pane>> {
    vec![
        Box::<dataset::DatasetPane>::default(),
        Box::<captions::CaptionsPane>::default(),
        Box::<train::TrainPane>::default(),
        Box::<samples::SamplesPane>::default(),
        Box::<evaluate::EvaluatePane>::default(),
    ]
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::*;
    use crate::tui::action::{Action, PaneId};
    use crate::tui::keymap::{Key, Keymap, PaneKeys, Scope};

    fn keymap() -> Keymap {
        Keymap::new(all().iter().map(|p| PaneKeys { pane: p.id(), bindings: p.bindings(), modes: p.modes() }).collect())
    }

    fn press(code: KeyCode, modifiers: KeyModifiers) -> Key {
        Key::from_event(&KeyEvent::new(code, modifiers)).unwrap()
    }

    #[test]
    fn the_list_follows_the_tab_order() {
        assert_eq!(all().iter().map(|p| p.id()).collect::<Vec<_>>(), PaneId::ALL);
    }

    #[test]
    fn shifted_characters_match_their_plain_binding() {
        let keymap = keymap();
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
        let keymap = keymap();
        let mut scopes = vec![keymap.help.clone(), keymap.quit_dialog.clone()];
        for pane in PaneId::ALL {
            // A pane's keys are looked up before the global ones, so together they must be unique.
            scopes.push(keymap.pane(pane).iter().chain(&keymap.global).cloned().collect());
        }
        scopes.extend(keymap.panes.iter().flat_map(|keys| &keys.modes).map(|mode| mode.bindings.clone()));
        for bindings in scopes {
            let mut keys: Vec<String> = bindings.iter().flat_map(|b| b.keys.iter().map(Key::label)).collect();
            let count = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), count, "a key is bound twice: {bindings:?}");
        }
    }

    #[test]
    fn every_mode_has_help_and_quit() {
        let keymap = keymap();
        for mode in keymap.panes.iter().flat_map(|keys| &keys.modes) {
            assert_eq!(keymap.lookup(Scope::Mode(mode.name), Key::plain(KeyCode::F(1))), Some(Action::ToggleHelp));
            assert_eq!(keymap.lookup(Scope::Mode(mode.name), Key::ctrl('c')), Some(Action::Quit));
        }
    }
}
