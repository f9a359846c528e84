//! Drafting captions with a model from the pane: which images (a question),
//! which model (project.toml's `[auto_captions] model`, or a folder typed
//! here), the run in the background with its progress, and stopping it.
//! Each batch's drafts join the review queue as they land.

use std::path::PathBuf;

use crossterm::event::KeyCode;
use ratatui_textarea::TextArea;

use super::CaptionsPane;
use super::modes::Mode;
use crate::captions::auto::{AutoProgress, AutoSummary, Scope};
use crate::console::duration;
use crate::project::HOW_TO_GET_A_MODEL;
use crate::tui::action::Action;
use crate::tui::effect::Effect;
use crate::tui::keymap::{Binding, Key, ModeKeys};
use crate::tui::shared::{Level, Shared};

pub(super) const SCOPE: &str = "captioning scope";
pub(super) const MODEL_PROMPT: &str = "captioning model";

/// The captioning run started here.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct AutoRun {
    /// As of the last batch; `None` until the model has drafted one.
    pub progress: Option<AutoProgress>,
    pub stopping: bool,
}

impl AutoRun {
    /// Where it stands, in words: "drafting 12/40, 1:05 left".
    pub fn describe(&self) -> String {
        match self.progress {
            _ if self.stopping => "stopping the captioning run…".into(),
            None => "loading the captioning model…".into(),
            Some(p) => {
                let left = p.eta().map_or_else(String::new, |eta| format!(", {} left", duration(eta.as_secs_f64())));
                format!("drafting {}/{}{left}", p.done, p.total)
            }
        }
    }
}

/// The run's keys while browsing.
pub(super) fn bindings() -> Vec<Binding> {
    vec![
        Binding::new(&[Key::char('c')], Action::StartAutoCaptions, "draft captions with a model, in the background"),
        Binding::new(&[Key::char('X')], Action::StopAutoCaptions, "stop the captioning run after this batch"),
    ]
}

/// The scope question's and the model prompt's keys.
pub(super) fn keys() -> Vec<ModeKeys> {
    let esc = Key::plain(KeyCode::Esc);
    vec![
        ModeKeys::new(
            SCOPE,
            "Which images to draft captions for",
            false,
            vec![
                Binding::new(
                    &[Key::char('m'), Key::plain(KeyCode::Enter)],
                    Action::DraftMissing,
                    "images without a caption or a draft",
                ),
                Binding::new(&[Key::char('a')], Action::DraftAll, "every image without a draft awaiting review"),
                Binding::new(&[esc], Action::Close, "cancel"),
            ],
        ),
        ModeKeys::new(
            MODEL_PROMPT,
            "The captioning model's folder (type a path)",
            true,
            vec![
                Binding::new(&[Key::plain(KeyCode::Enter)], Action::Confirm, "start drafting with it"),
                Binding::new(&[esc], Action::Close, "cancel"),
            ],
        ),
    ]
}

/// A single-line path prompt.
fn model_prompt() -> TextArea<'static> {
    let mut area = TextArea::default();
    area.set_placeholder_text("models/blip (relative to the project, or absolute)");
    area
}

impl CaptionsPane {
    /// Starting and stopping a run while browsing.
    pub(super) fn auto_action(&mut self, action: Action) -> Vec<Effect> {
        match (action, &mut self.auto) {
            (Action::StartAutoCaptions, Some(_)) => vec![Effect::info("A captioning run is going (X stops it).")],
            (Action::StartAutoCaptions, None) => {
                self.mode = Mode::AutoScope;
                vec![Effect::info("Draft captions for: m images without one · a all images · Esc cancels.")]
            }
            (Action::StopAutoCaptions, Some(run)) => {
                run.stopping = true;
                vec![Effect::info("Stopping after the batch in hand (c continues later)."), Effect::StopAutoCaptions]
            }
            (Action::StopAutoCaptions, None) => vec![Effect::info("No captioning run is going (c starts one).")],
            _ => Vec::new(),
        }
    }

    /// The scope chosen: the run starts with the model project.toml names
    /// (or the one typed earlier), or the model is asked for.
    pub(super) fn scope_chosen(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        let scope = match action {
            Action::DraftMissing => Scope::OnlyMissing,
            Action::DraftAll => Scope::All,
            Action::Close => {
                self.mode = Mode::Browse;
                return vec![Effect::info("No captioning run started.")];
            }
            _ => return Vec::new(),
        };
        let configured = &shared.project.config.auto_captions.model;
        match (configured.as_os_str().is_empty(), self.model.clone()) {
            (false, _) => self.start_auto(configured.clone(), scope),
            (true, Some(typed)) => self.start_auto(typed, scope),
            (true, None) => {
                self.mode = Mode::ModelPrompt(model_prompt(), scope);
                vec![Effect::info("No [auto_captions] model in project.toml: type the model's folder.")]
            }
        }
    }

    pub(super) fn model_typed(&mut self, action: Action) -> Vec<Effect> {
        let Mode::ModelPrompt(area, scope) = &self.mode else { return Vec::new() };
        match action {
            Action::Confirm => {
                let typed = area.lines().join("").trim().to_string();
                if typed.is_empty() {
                    return vec![Effect::info(format!("Type the model's folder. {HOW_TO_GET_A_MODEL}."))];
                }
                let scope = *scope;
                self.model = Some(PathBuf::from(&typed));
                self.start_auto(typed.into(), scope)
            }
            Action::Close => {
                self.mode = Mode::Browse;
                vec![Effect::info("No captioning run started.")]
            }
            _ => Vec::new(),
        }
    }

    fn start_auto(&mut self, model: PathBuf, scope: Scope) -> Vec<Effect> {
        self.mode = Mode::Browse;
        self.auto = Some(AutoRun::default());
        let started = format!("Drafting captions with {} (X stops; D lists the drafts)…", model.display());
        vec![Effect::info(started), Effect::StartAutoCaptions { model, scope }]
    }

    /// A batch landed: its drafts are read into the queue.
    pub(super) fn auto_progressed(&mut self, progress: &AutoProgress) -> Vec<Effect> {
        if let Some(run) = &mut self.auto {
            run.progress = Some(*progress);
        }
        vec![Effect::Refresh { captions: true }]
    }

    pub(super) fn auto_ended(&mut self, result: &Result<AutoSummary, String>) -> Vec<Effect> {
        self.auto = None;
        let said = match result {
            Ok(summary) => {
                let how = if summary.stopped { "Stopped" } else { "Done" };
                let mut text = format!(
                    "{how}: {} of {} drafted",
                    summary.drafted,
                    crate::words::counted(summary.planned, "image")
                );
                if let Some((image, why)) = summary.unreadable.first() {
                    let count = summary.unreadable.len();
                    text.push_str(&format!("; {count} unreadable (first: {}: {why})", image.display()));
                }
                text.push_str(if summary.stopped { " (c continues)." } else { " (D lists the drafts)." });
                Effect::say(if summary.unreadable.is_empty() { Level::Success } else { Level::Warning }, text)
            }
            Err(error) => Effect::say(Level::Error, format!("Captioning failed: {error}")),
        };
        vec![said, Effect::Refresh { captions: true }]
    }
}
