//! Drawing a draft under review: the image above, the draft (and the model
//! that wrote it), what it changes in the caption, its lint findings and the
//! keys that decide it; and the prompt for the captioning model's folder.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui_textarea::TextArea;

use super::render::diff_spans;
use crate::captions::QueuedDraft;
use crate::project::HOW_TO_GET_A_MODEL;
use crate::tui::shared::Shared;
use crate::tui::widgets::draw_image;

pub(super) fn render_draft(queued: &QueuedDraft, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let draft = &queued.draft;
    let mut notes = match (&queued.caption, queued.diff.is_empty()) {
        (Some(_), false) => {
            let mut spans = vec![Span::styled("Caption → draft: ", theme.muted())];
            spans.extend(diff_spans(shared, &queued.diff));
            vec![Line::from(spans)]
        }
        _ => vec![Line::styled("No caption yet: accepting writes the draft.", theme.base().fg(theme.warning))],
    };
    notes.extend(
        queued
            .findings
            .iter()
            .map(|lint| Line::styled(format!("• {}", lint.describe()), theme.base().fg(theme.warning))),
    );
    if queued.findings.is_empty() {
        notes.push(Line::styled("No findings.", theme.base().fg(theme.ok)));
    }
    notes.push(Line::styled("a accepts · E edits · x rejects · ] next · u undoes", theme.muted()));
    let preview_height = if area.height >= 16 { area.height * 2 / 5 } else { 0 };
    // The draft's box fits its wrapped text (a word more per line, roughly); the notes get the rest.
    let text_width = usize::from(area.width.saturating_sub(2).max(1));
    let text_height = (draft.text.chars().count() * 6 / 5).div_ceil(text_width).max(1) as u16 + 2;
    let [preview, text, notes_area] =
        Layout::vertical([Constraint::Length(preview_height), Constraint::Length(text_height), Constraint::Min(0)])
            .areas(area);
    if preview.height > 0 {
        draw_image(shared, frame, preview, &shared.project.dataset_dir().join(&draft.image));
    }
    let title = format!(" draft by {} ", draft.model);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(true))
        .title(Span::styled(title, theme.accent()));
    frame.render_widget(Paragraph::new(draft.text.clone()).block(block).wrap(Wrap { trim: false }), text);
    frame.render_widget(Paragraph::new(notes).wrap(Wrap { trim: false }), notes_area);
}

/// The model folder being typed, with where a model comes from.
pub(super) fn render_model_prompt(prompt: &TextArea<'static>, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(true))
        .title(Span::styled(" Captioning model's folder (Enter starts, Esc cancels) ", theme.accent()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [input, hint] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    frame.render_widget(prompt, input);
    frame
        .render_widget(Paragraph::new(Line::styled(HOW_TO_GET_A_MODEL, theme.muted())).wrap(Wrap { trim: true }), hint);
}
