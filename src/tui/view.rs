//! Drawing the whole workbench: a pure function of the app state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Tabs, Wrap};
use unicode_width::UnicodeWidthStr;

use super::action::PaneId;
use super::app::{App, Overlay};
use super::fit;
use super::help;
use super::shared::Level;
use super::widgets::question;

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
    if app.shared.settings_problem().is_some() {
        notes.push(Span::styled("⚠ settings ", theme.base().fg(theme.error).add_modifier(Modifier::BOLD)));
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
    // The message is what must be read: the model's name gives way to it, and
    // a message still too long is cut (see below), the counts staying.
    let name = format!(" {} ", app.shared.project.name());
    let width = usize::from(area.width);
    let room = |facts: &str| width.saturating_sub(name.width() + facts.width());
    let with_model = format!("│ {} │ {counts} │ ", app.shared.project.config.model.base);
    let facts = match room(&with_model) >= app.message.text.width() {
        true => with_model,
        false => format!("│ {counts} │ "),
    };
    // An error says what is wrong first; other messages end with what matters too
    // (the file it concerns, the keys that answer).
    let message = match app.message.level {
        Level::Error => fit::ellipsized(&app.message.text, room(&facts)),
        _ => fit::ellipsized_middle(&app.message.text, room(&facts)),
    };
    let line = Line::from(vec![
        Span::styled(name, theme.status().add_modifier(Modifier::BOLD)),
        Span::styled(facts, theme.status()),
        Span::styled(message, message_style),
    ]);
    frame.render_widget(Paragraph::new(line).style(theme.status()), area);
}

fn render_quit_dialog(app: &App, frame: &mut Frame, area: Rect) {
    let what = app.quit_warning().unwrap_or_default();
    let mut lines = vec![format!("Before quitting: {what}."), String::new()];
    for binding in &app.keymap.quit_dialog {
        lines.push(format!("{:>8}  {}", binding.keys_label(), binding.description));
    }
    question(frame, area, &app.shared.theme, "Quit?", &lines);
}

/// The workbench drawn at `width` × `height`, as text (a line each), for tests.
#[cfg(test)]
pub fn screen_text(app: &App, width: u16, height: u16) -> String {
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render(app, frame)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height).map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect::<String>() + "\n").collect()
}
