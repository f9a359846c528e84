//! The four panes. Each owns its key bindings and its rendering, a pure
//! function of the app state.

mod captions;
mod dataset;
mod samples;
mod train;

use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, TableState, Wrap};
use ratatui_image::Image;

use super::action::{Action, PaneId};
use super::app::App;
use super::keymap::{Binding, Key};
use super::theme::Theme;

/// The pane's own bindings, shown in its section of the help overlay.
pub fn bindings(pane: PaneId) -> Vec<Binding> {
    let mut bindings = list_bindings(match pane {
        PaneId::Dataset => "image",
        PaneId::Captions => "caption",
        PaneId::Train => "run",
        PaneId::Samples => "sample prompt",
    });
    match pane {
        PaneId::Train => bindings.extend(train::bindings()),
        PaneId::Samples => bindings.extend(samples::bindings()),
        PaneId::Dataset => bindings.extend(dataset::bindings()),
        PaneId::Captions => bindings.extend(captions::bindings()),
    }
    bindings
}

/// Moving through a pane's list; every pane has one.
fn list_bindings(item: &str) -> Vec<Binding> {
    let describe = |what: &str| format!("{what} {item}");
    vec![
        Binding::new(&[Key::plain(KeyCode::Up), Key::char('k')], Action::Up, describe("previous")),
        Binding::new(&[Key::plain(KeyCode::Down), Key::char('j')], Action::Down, describe("next")),
        Binding::new(&[Key::plain(KeyCode::PageUp)], Action::PageUp, "ten rows up"),
        Binding::new(&[Key::plain(KeyCode::PageDown)], Action::PageDown, "ten rows down"),
        Binding::new(&[Key::plain(KeyCode::Home), Key::char('g')], Action::First, describe("first")),
        Binding::new(&[Key::plain(KeyCode::End), Key::char('G')], Action::Last, describe("last")),
    ]
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    match app.pane {
        PaneId::Dataset => dataset::render(app, frame, area),
        PaneId::Captions => captions::render(app, frame, area),
        PaneId::Train => train::render(app, frame, area),
        PaneId::Samples => samples::render(app, frame, area),
    }
}

/// The bordered frame of a pane, and the area inside it split into a
/// one-line summary and the body.
fn frame_pane(frame: &mut Frame, area: Rect, theme: &Theme, title: String) -> (Rect, Rect) {
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(true))
        .title(Span::styled(format!(" {title} "), theme.accent()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [summary, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    (summary, body)
}

/// The body split into a list and, when there is room, a detail column.
fn list_and_detail(body: Rect) -> (Rect, Option<Rect>) {
    if body.width < 60 {
        return (body, None);
    }
    let [list, detail] = Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(body);
    (list, Some(detail))
}

/// A list of rows with the pane's selection highlighted and kept in view.
fn render_table(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    header: Row<'static>,
    rows: Vec<Row<'static>>,
    widths: &[Constraint],
) {
    let theme = &app.theme;
    let table = Table::new(rows, widths.to_vec())
        .header(header.style(theme.muted()))
        .row_highlight_style(theme.selection())
        .column_spacing(1);
    let mut state = TableState::default().with_selected(app.selection(app.pane));
    frame.render_stateful_widget(table, area, &mut state);
}

/// A titled side panel of wrapped text lines.
fn render_detail(frame: &mut Frame, area: Rect, theme: &Theme, title: &str, lines: Vec<Line<'static>>) {
    let block = Block::default()
        .borders(Borders::LEFT)
        .border_style(theme.border(false))
        .title(Span::styled(format!(" {title} "), theme.muted()));
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), area);
}

/// A message shown instead of an empty list.
fn render_empty(frame: &mut Frame, area: Rect, theme: &Theme, lines: Vec<Line<'static>>) {
    frame.render_widget(Paragraph::new(lines).style(theme.muted()).wrap(Wrap { trim: false }), area);
}

/// `label: value` as a styled line.
fn field(theme: &Theme, label: &str, value: String) -> Line<'static> {
    Line::from(vec![Span::styled(format!("{label}: "), theme.muted()), Span::raw(value)])
}

/// Draws an image file scaled to fit `area` (small samples are enlarged);
/// "loading" until the background decode has it.
fn draw_image(app: &App, frame: &mut Frame, area: Rect, path: &std::path::Path) {
    use crate::tui::preview::Shown;
    if area.width == 0 || area.height == 0 {
        return;
    }
    match app.previews.show(path, area.width, area.height, &app.picker) {
        Shown::Ready(mut protocol) => match protocol.as_mut() {
            Some(protocol) => frame.render_widget(Image::new(protocol), area),
            None => frame.render_widget(Paragraph::new(format!("cannot draw {}", path.display())), area),
        },
        Shown::Loading => frame.render_widget(Paragraph::new(Span::styled("loading…", app.theme.muted())), area),
        Shown::Failed(why) => frame.render_widget(Paragraph::new(why).wrap(Wrap { trim: false }), area),
    }
}
