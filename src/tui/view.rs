//! Drawing the whole workbench: a pure function of the app state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Tabs, Wrap};

use super::action::PaneId;
use super::app::{App, Overlay};
use super::help;
use super::shared::Level;
use super::widgets::centered;

/// Below this size only a short notice is drawn; above it, every part adapts.
pub const MIN_WIDTH: u16 = 20;
pub const MIN_HEIGHT: u16 = 5;

pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let theme = &app.shared.theme;
    frame.render_widget(Block::default().style(theme.base()), area);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let notice = format!("Easel needs {MIN_WIDTH}×{MIN_HEIGHT}; this is {}×{}. q quits.", area.width, area.height);
        frame.render_widget(Paragraph::new(notice).style(theme.base()).wrap(Wrap { trim: true }), area);
        return;
    }
    let [tabs, body, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(area);
    render_tabs(app, frame, tabs);
    app.render_pane(frame, body);
    render_status(app, frame, status);
    match app.overlay {
        Some(Overlay::Help { scroll }) => help::render(app, frame, body, scroll),
        Some(Overlay::ConfirmQuit) => render_quit_dialog(app, frame, body),
        None => {}
    }
}

fn render_tabs(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.shared.theme;
    let titles = PaneId::ALL.iter().enumerate().map(|(i, pane)| format!("{} {}", i + 1, pane.title()));
    let tabs = Tabs::new(titles)
        .select(app.pane.index())
        .style(theme.muted())
        .highlight_style(theme.accent().add_modifier(Modifier::REVERSED))
        .divider("│")
        .padding(" ", " ");
    // The right end holds what must not be missed: unsaved work, then the way to help.
    let mut notes = Vec::new();
    if app.unsaved().is_some() {
        notes.push(Span::styled("● unsaved ", theme.base().fg(theme.warning).add_modifier(Modifier::BOLD)));
    }
    for work in app.running() {
        notes.push(Span::styled(format!("● {work} "), theme.base().fg(theme.ok).add_modifier(Modifier::BOLD)));
    }
    notes.push(Span::styled("? help ", theme.muted()));
    let notes = Line::from(notes).right_aligned();
    let notes_width = if area.width >= 70 { notes.width() as u16 } else { 0 };
    // The name gives way before the tabs do.
    let tabs_width: usize =
        PaneId::ALL.iter().enumerate().map(|(i, p)| format!("{} {}", i + 1, p.title()).len() + 3).sum();
    let name_width = if 7 + tabs_width as u16 + notes_width <= area.width { 7 } else { 0 };
    let [name, tab_area, notes_area] =
        Layout::horizontal([Constraint::Length(name_width), Constraint::Min(0), Constraint::Length(notes_width)])
            .areas(area);
    frame.render_widget(Paragraph::new(Span::styled(" Easel ", theme.accent())), name);
    frame.render_widget(tabs, tab_area);
    frame.render_widget(Paragraph::new(notes), notes_area);
}

fn render_status(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.shared.theme;
    let inventory = &app.shared.files.inventory;
    let counts = if app.shared.loading {
        "reading…".to_string()
    } else {
        let runs = app.shared.files.runs.len();
        let mut counts = format!(
            "{} img · {} cap · {runs} run{}",
            inventory.image_count(),
            inventory.captioned_count(),
            if runs == 1 { "" } else { "s" }
        );
        // Drafts are not captions: until someone reviews them, they say so everywhere.
        match app.shared.files.captions.as_ref().map_or(0, |r| r.drafts.len()) {
            0 => {}
            1 => counts.push_str(" · 1 draft to review"),
            n => counts.push_str(&format!(" · {n} drafts to review")),
        }
        for progress in app.progress() {
            counts.push_str(&format!(" · {progress}"));
        }
        counts
    };
    let message_style = match app.message.level {
        Level::Info => theme.status(),
        Level::Success => theme.status().fg(theme.ok),
        Level::Warning => theme.status().fg(theme.warning),
        Level::Error => theme.status().fg(theme.error).add_modifier(Modifier::BOLD),
    };
    let line = Line::from(vec![
        Span::styled(format!(" {} ", app.shared.project.name()), theme.status().add_modifier(Modifier::BOLD)),
        Span::styled(format!("│ {} │ {counts} │ ", app.shared.project.config.model.base), theme.status()),
        Span::styled(app.message.text.clone(), message_style),
    ]);
    frame.render_widget(Paragraph::new(line).style(theme.status()), area);
}

fn render_quit_dialog(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.shared.theme;
    let what = app.quit_warning().unwrap_or_default();
    let mut lines = vec![Line::from(format!("Unsaved: {what}.")), Line::default()];
    for binding in &app.keymap.quit_dialog {
        lines.push(Line::from(vec![
            Span::styled(format!("{:>8}  ", binding.keys_label()), theme.accent()),
            Span::raw(binding.description.clone()),
        ]));
    }
    let popup = centered(area, 66, lines.len() as u16 + 2);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(true))
        .title(Span::styled(" Quit? ", theme.accent()))
        .style(theme.base());
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), popup);
}
