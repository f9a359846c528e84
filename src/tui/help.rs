//! The help overlay, generated from the keymap: the current mode's keys,
//! global keys, then the current pane's, then the other panes' (each with
//! its modes'). Lines are wrapped here (a description continues under
//! itself), so the scroll limit is exact at every size.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use unicode_width::UnicodeWidthStr;

use super::app::App;
use super::fit;
use super::keymap::Binding;
use super::theme::Theme;
use super::widgets::centered;

pub fn render(app: &App, frame: &mut Frame, area: Rect, scroll: u16) {
    let theme = &app.shared.theme;
    let popup = centered(area, 66, area.height);
    let width = usize::from(popup.width.saturating_sub(2));
    let mut lines = Vec::new();
    for (title, bindings) in app.help_sections() {
        section(&mut lines, theme, &title, bindings, width);
    }
    let visible = popup.height.saturating_sub(2);
    let limit = (lines.len() as u16).saturating_sub(visible);
    app.help_view.limit.set(limit);
    app.help_view.page.set(visible.max(1));
    let scroll = scroll.min(limit);
    let position = match (scroll, limit) {
        (_, 0) => "all shown".to_string(),
        (at, limit) if at == limit => "end".to_string(),
        (at, _) => format!("{}%", u32::from(at + visible) * 100 / lines.len().max(1) as u32),
    };
    let hint = fit::ellipsized(&format!(" ↑/↓ PgUp/PgDn scroll · {position} · Esc closes "), width);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(true))
        .title(Span::styled(" Keys ", theme.accent()))
        .title_bottom(Span::styled(hint, theme.muted()))
        .style(theme.base());
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), popup);
}

/// A section's heading and its bindings, each description wrapped beside its keys.
fn section(lines: &mut Vec<Line<'static>>, theme: &Theme, title: &str, bindings: &[Binding], width: usize) {
    if !lines.is_empty() {
        lines.push(Line::default());
    }
    for part in fit::wrapped(title, width) {
        lines.push(Line::styled(part, theme.accent()));
    }
    for binding in bindings {
        let keys = binding.keys_label();
        let indent = (keys.width() + 3).max(16).min(width / 2);
        let keys_column = format!("  {keys:<0$}", indent - 2);
        for (index, part) in fit::wrapped(&binding.description, width.saturating_sub(indent)).into_iter().enumerate() {
            let left = if index == 0 { keys_column.clone() } else { " ".repeat(indent) };
            lines.push(Line::from(vec![Span::styled(left, theme.base().fg(theme.accent)), Span::raw(part)]));
        }
    }
}
