//! Exporting a checkpoint from the checkpoints view: the prompt (where to,
//! the title written into the file, kohya or PEFT, whether to strip the
//! metadata), the question when a file is already there, and the result.

use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui_textarea::{CursorMove, TextArea};

use super::TrainPane;
use super::checkpoints::Opened;
use crate::model::lora_file::LoraFormat;
use crate::project::Project;
use crate::train::file_stem;
use crate::train::run_dir::CheckpointFile;
use crate::tui::action::Action;
use crate::tui::effect::{Effect, ExportRequest};
use crate::tui::jobs::ExportError;
use crate::tui::keymap::{Binding, Key, ModeKeys};
use crate::tui::shared::{Level, Shared};
use crate::tui::widgets::question;

/// The modes' names in the keymap.
pub(super) const EXPORT: &str = "export checkpoint";
pub(super) const OVERWRITE: &str = "export over a file";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Path,
    Title,
}

/// The export prompt of one checkpoint.
#[derive(Debug, Clone)]
pub(super) struct ExportPrompt {
    step: u64,
    source: PathBuf,
    path: TextArea<'static>,
    title: TextArea<'static>,
    focus: Field,
    format: LoraFormat,
    strip_metadata: bool,
}

impl ExportPrompt {
    /// Filled in with `exports/<project>-step-N.safetensors` in the project
    /// folder, and that name as the title.
    pub fn new(file: &CheckpointFile, project: &Project) -> Self {
        let name = format!("{}-step-{}", file_stem(&project.name()), file.step);
        let out = Path::new("exports").join(format!("{name}.safetensors"));
        Self::filled(file.step, file.lora.clone(), &out.display().to_string(), &name, LoraFormat::Kohya, false)
    }

    /// The prompt as it was sent, to change what did not work. A
    /// destination in the project folder is shown from there, as typed.
    fn again(request: &ExportRequest, root: &Path) -> Self {
        let out = request.out.strip_prefix(root).unwrap_or(&request.out).display().to_string();
        let title = request.title.as_deref().unwrap_or("");
        Self::filled(request.step, request.source.clone(), &out, title, request.format, request.strip_metadata)
    }

    fn filled(step: u64, source: PathBuf, out: &str, title: &str, format: LoraFormat, strip_metadata: bool) -> Self {
        let field = |text: &str| {
            let mut area = TextArea::from([text.to_string()]);
            area.set_cursor_line_style(Style::default());
            area.move_cursor(CursorMove::End);
            area
        };
        Self { step, source, path: field(out), title: field(title), focus: Field::Path, format, strip_metadata }
    }

    /// What it asks for; `None` without a destination. A relative one is
    /// taken from the project folder, `~/` from the home folder.
    fn request(&self, root: &Path) -> Option<ExportRequest> {
        let text = |area: &TextArea| area.lines().concat().trim().to_string();
        let out = text(&self.path);
        let out = match (out.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) => Path::new(&home).join(rest),
            _ if out.is_empty() => return None,
            _ => root.join(out),
        };
        let title = Some(text(&self.title)).filter(|title| !title.is_empty());
        Some(ExportRequest {
            step: self.step,
            source: self.source.clone(),
            out,
            format: self.format,
            title,
            strip_metadata: self.strip_metadata,
            overwrite: false,
        })
    }

    fn focused(&mut self) -> &mut TextArea<'static> {
        match self.focus {
            Field::Path => &mut self.path,
            Field::Title => &mut self.title,
        }
    }
}

fn format_name(format: LoraFormat) -> &'static str {
    match format {
        LoraFormat::Kohya => "kohya",
        LoraFormat::Peft => "PEFT",
    }
}

/// The prompt's keys: it takes text, so the toggles are Ctrl keys.
pub(super) fn keys() -> ModeKeys {
    let bindings = vec![
        Binding::new(&[Key::plain(KeyCode::Enter)], Action::ExportCheckpoint, "export"),
        Binding::new(&[Key::plain(KeyCode::Tab)], Action::NextField, "next field"),
        Binding::new(&[Key::plain(KeyCode::BackTab)], Action::PreviousField, "previous field"),
        Binding::new(&[Key::ctrl('f')], Action::ToggleFormat, "format: kohya or PEFT"),
        Binding::new(&[Key::ctrl('d')], Action::ToggleStripMetadata, "strip the training metadata, or keep it"),
        Binding::new(&[Key::plain(KeyCode::Esc)], Action::Close, "cancel"),
    ];
    ModeKeys::new(EXPORT, "Exporting a checkpoint (other keys type)", true, bindings)
}

pub(super) fn overwrite_keys() -> ModeKeys {
    let bindings = vec![
        Binding::new(&[Key::char('y')], Action::Overwrite, "replace the file with the export"),
        Binding::new(&[Key::char('n'), Key::plain(KeyCode::Esc)], Action::Close, "keep it: choose another destination"),
    ];
    ModeKeys::new(OVERWRITE, "The export's destination holds a file", false, bindings)
}

impl TrainPane {
    pub(super) fn export_action(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        let Some(view) = self.checkpoints.as_mut() else { return Vec::new() };
        let Some(Opened::Export(prompt)) = &mut view.open else { return Vec::new() };
        match action {
            Action::Close => {
                view.open = None;
                return vec![Effect::info("Export cancelled.")];
            }
            // Two fields: either key moves to the other.
            Action::NextField | Action::PreviousField => {
                prompt.focus = if prompt.focus == Field::Path { Field::Title } else { Field::Path };
            }
            Action::ToggleFormat => {
                prompt.format = if prompt.format == LoraFormat::Kohya { LoraFormat::Peft } else { LoraFormat::Kohya };
            }
            Action::ToggleStripMetadata => prompt.strip_metadata = !prompt.strip_metadata,
            Action::ExportCheckpoint => {
                let Some(request) = prompt.request(&shared.project.root) else {
                    return vec![Effect::info("Write where to export to.")];
                };
                view.open = None;
                let exporting = format!("Exporting step {} to {}…", request.step, request.out.display());
                return vec![Effect::info(exporting), Effect::Export(request)];
            }
            _ => {}
        }
        Vec::new()
    }

    pub(super) fn overwrite_action(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        let Some(view) = self.checkpoints.as_mut() else { return Vec::new() };
        let Some(Opened::Overwrite(request)) = &view.open else { return Vec::new() };
        let request = request.clone();
        match action {
            Action::Overwrite => {
                view.open = None;
                let exporting = format!("Exporting step {} over {}…", request.step, request.out.display());
                vec![Effect::info(exporting), Effect::Export(ExportRequest { overwrite: true, ..request })]
            }
            Action::Close => {
                view.open = Some(Opened::Export(Box::new(ExportPrompt::again(&request, &shared.project.root))));
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A key the export prompt does not bind: typed into its focused field.
    pub(super) fn type_into_export(&mut self, key: Key) {
        let Some(Opened::Export(prompt)) = self.checkpoints.as_mut().and_then(|view| view.open.as_mut()) else {
            return;
        };
        // The fields are one line each: Ctrl-m would start a second.
        if key != Key::ctrl('m') {
            prompt.focused().input(KeyEvent::new(key.code, key.modifiers));
        }
    }

    /// An export ended. When it wrote nothing and the checkpoints view is
    /// there with nothing open, the question or the prompt comes back.
    pub(super) fn exported(
        &mut self,
        request: &ExportRequest,
        result: &Result<(), ExportError>,
        shared: &Shared,
    ) -> Vec<Effect> {
        let out = request.out.display();
        let view = self.checkpoints.as_mut().filter(|view| view.open.is_none());
        match (result, view) {
            (Ok(()), _) => {
                let format = format_name(request.format);
                vec![Effect::say(Level::Success, format!("Exported step {} to {out} ({format}).", request.step))]
            }
            (Err(ExportError::Exists), Some(view)) => {
                view.open = Some(Opened::Overwrite(request.clone()));
                vec![Effect::say(Level::Warning, format!("y replaces it, n keeps it: {out} exists."))]
            }
            (Err(ExportError::Exists), None) => {
                vec![Effect::say(Level::Warning, format!("Not exported: {out} exists."))]
            }
            (Err(ExportError::Failed(error)), view) => {
                if let Some(view) = view {
                    view.open = Some(Opened::Export(Box::new(ExportPrompt::again(request, &shared.project.root))));
                }
                vec![Effect::say(Level::Error, format!("Export failed: {error}"))]
            }
        }
    }
}

/// The prompt: its two fields (the focused one with a cursor) and the toggles.
pub(super) fn render_prompt(prompt: &ExportPrompt, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let block = Block::default().borders(Borders::ALL).border_style(theme.border(true)).title(Span::styled(
        format!(" Export step {} (Enter exports, Tab next field, Esc cancels) ", prompt.step),
        theme.accent(),
    ));
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    let [path_row, title_row, toggles, note] = Layout::vertical([Constraint::Length(1); 4]).areas(inner);
    for (row, label, field) in [(path_row, "to     ", Field::Path), (title_row, "title  ", Field::Title)] {
        let [label_area, text_area] = Layout::horizontal([Constraint::Length(7), Constraint::Min(1)]).areas(row);
        frame.render_widget(Paragraph::new(Span::styled(label, theme.muted())), label_area);
        let mut text = if field == Field::Path { prompt.path.clone() } else { prompt.title.clone() };
        if prompt.focus != field {
            // One cursor: the focused field's.
            text.set_cursor_style(Style::default());
        }
        frame.render_widget(&text, text_area);
    }
    let yes_no = |on: bool| if on { "yes" } else { "no" };
    let line = Line::from(vec![
        Span::styled("format ", theme.muted()),
        Span::styled(format_name(prompt.format), theme.accent()),
        Span::styled(" (Ctrl-f)   strip metadata ", theme.muted()),
        Span::styled(yes_no(prompt.strip_metadata), theme.accent()),
        Span::styled(" (Ctrl-d)", theme.muted()),
    ]);
    frame.render_widget(Paragraph::new(line), toggles);
    let reminder = "Relative paths are in the project folder; no file is replaced unasked.";
    frame.render_widget(Paragraph::new(Span::styled(reminder, theme.muted())), note);
}

/// The question when the destination holds a file.
pub(super) fn render_overwrite(request: &ExportRequest, shared: &Shared, frame: &mut Frame, area: Rect) {
    let lines = [
        format!("{} already exists.", request.out.display()),
        String::new(),
        format!("y  replace it with step {}", request.step),
        "n  keep it, and choose another destination".into(),
    ];
    question(frame, area, &shared.theme, "Replace the file?", &lines);
}
