//! The help overlay, generated from the keymap: the current mode's keys,
//! global keys, then the current pane's, then the other panes' (each with
//! its modes').

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::app::App;
use super::keymap::Binding;
use super::theme::Theme;
use super::widgets::centered;

pub fn render(app: &App, frame: &mut Frame, area: Rect, scroll: u16) {
    let theme = &app.shared.theme;
    let mut lines = Vec::new();
    for (title, bindings) in app.help_sections() {
        section(&mut lines, theme, &title, bindings);
    }

    let popup = centered(area, 64, area.height);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(true))
        .title(Span::styled(" Keys ", theme.accent()))
        .title_bottom(Span::styled(" ↑/↓ scroll · Esc closes ", theme.muted()))
        .style(theme.base());
    let visible = popup.height.saturating_sub(2);
    let scroll = scroll.min((lines.len() as u16).saturating_sub(visible));
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }).scroll((scroll, 0)), popup);
}

fn section(lines: &mut Vec<Line<'static>>, theme: &Theme, title: &str, bindings: &[Binding]) {
    if !lines.is_empty() {
        lines.push(Line::default());
    }
    lines.push(Line::styled(title.to_string(), theme.accent()));
    for binding in bindings {
        lines.push(Line::from(vec![
            Span::styled(format!("  {:<14}", binding.keys_label()), theme.base().fg(theme.accent)),
            Span::raw(binding.description.clone()),
        ]));
    }
}
