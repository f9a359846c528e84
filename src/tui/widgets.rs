//! Drawing pieces the panes share: the pane frame, the list-and-detail
//! split, tables, side panels, images.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui_image::Image;

use super::fit;
use super::preview::Shown;
use super::shared::Shared;
use super::theme::Theme;

/// The bordered frame of a pane, and the area inside it split into a
/// one-line summary and the body.
pub fn frame_pane(frame: &mut Frame, area: Rect, theme: &Theme, title: String) -> (Rect, Rect) {
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
pub fn list_and_detail(body: Rect) -> (Rect, Option<Rect>) {
    if body.width < 60 {
        return (body, None);
    }
    let [list, detail] = Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(body);
    (list, Some(detail))
}

/// A list of rows with `selected` highlighted and kept in view.
pub fn render_table(
    frame: &mut Frame,
    area: Rect,
    theme: &Theme,
    selected: Option<usize>,
    (header, rows): (Row<'static>, Vec<Row<'static>>),
    widths: &[Constraint],
) {
    let table = Table::new(rows, widths.to_vec())
        .header(header.style(theme.muted()))
        .row_highlight_style(theme.selection())
        .column_spacing(1);
    let mut state = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut state);
}

/// A titled side panel of wrapped text lines.
pub fn render_detail(frame: &mut Frame, area: Rect, theme: &Theme, title: &str, lines: Vec<Line<'static>>) {
    let block = Block::default()
        .borders(Borders::LEFT)
        .border_style(theme.border(false))
        .title(Span::styled(format!(" {title} "), theme.muted()));
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), area);
}

/// A message shown instead of an empty list.
pub fn render_empty(frame: &mut Frame, area: Rect, theme: &Theme, lines: Vec<Line<'static>>) {
    frame.render_widget(Paragraph::new(lines).style(theme.muted()).wrap(Wrap { trim: false }), area);
}

/// `label: value` as a styled line.
pub fn field(theme: &Theme, label: &str, value: String) -> Line<'static> {
    Line::from(vec![Span::styled(format!("{label}: "), theme.muted()), Span::raw(value)])
}

/// Draws an image file scaled to fit `area` (small samples are enlarged);
/// "loading" until the background decode has it.
pub fn draw_image(shared: &Shared, frame: &mut Frame, area: Rect, path: &std::path::Path) {
    if area.width == 0 || area.height == 0 {
        return;
    }
    match shared.previews.show(path, area.width, area.height, &shared.picker) {
        Shown::Ready(mut protocol) => match protocol.as_mut() {
            Some(protocol) => frame.render_widget(Image::new(protocol), area),
            None => frame.render_widget(Paragraph::new(format!("cannot draw {}", path.display())), area),
        },
        Shown::Loading => frame.render_widget(Paragraph::new(Span::styled("loading…", shared.theme.muted())), area),
        Shown::Failed(why) => frame.render_widget(Paragraph::new(why).wrap(Wrap { trim: false }), area),
    }
}

/// A question that needs an answer, over `area` and framed in the warning
/// colour. Its lines are wrapped to the box, which grows to hold them; on a
/// terminal too short for all of them the last ones show, since the keys
/// that answer come last.
pub fn question(frame: &mut Frame, area: Rect, theme: &Theme, title: &str, lines: &[String]) {
    let width = area.width.min(66);
    let inner = usize::from(width.saturating_sub(2));
    let text: Vec<Line> =
        lines.iter().flat_map(|line| fit::wrapped_under_description(line, inner)).map(Line::from).collect();
    let height = (text.len() as u16).saturating_add(2).min(area.height);
    let scroll = (text.len() as u16).saturating_sub(height.saturating_sub(2));
    let popup = centered(area, width, height);
    let warning = theme.base().fg(theme.warning);
    let title = fit::ellipsized(&format!(" {title} "), inner);
    let block = Block::default().borders(Borders::ALL).border_style(warning).title(Span::styled(title, warning));
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(text).block(block).style(theme.base()).scroll((scroll, 0)), popup);
}

/// A centred box of at most `width` × `height` inside `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    use ratatui::layout::Flex;
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))]).flex(Flex::Center).areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))]).flex(Flex::Center).areas(row);
    cell
}

/// Chart bounds with a little headroom; a flat series still gets a span.
/// The headroom never crosses zero: a series that is never negative (a
/// learning rate, a loss) gets no negative axis label.
pub fn chart_bounds<'a>(points: impl Iterator<Item = &'a (f64, f64)>) -> ([f64; 2], [f64; 2]) {
    let (mut x, mut y) = ([f64::MAX, f64::MIN], [f64::MAX, f64::MIN]);
    for &(px, py) in points.filter(|(_, v)| v.is_finite()) {
        (x[0], x[1]) = (x[0].min(px), x[1].max(px));
        (y[0], y[1]) = (y[0].min(py), y[1].max(py));
    }
    if x[0] > x[1] {
        return ([0.0, 1.0], [0.0, 1.0]);
    }
    let pad = ((y[1] - y[0]) * 0.05).max(1e-6);
    let low = if y[0] >= 0.0 { (y[0] - pad).max(0.0) } else { y[0] - pad };
    ([x[0], x[1].max(x[0] + 1.0)], [low, y[1] + pad])
}

pub fn axis_labels(bounds: [f64; 2], format: impl Fn(f64) -> String) -> Vec<Span<'static>> {
    vec![Span::raw(format(bounds[0])), Span::raw(format((bounds[0] + bounds[1]) / 2.0)), Span::raw(format(bounds[1]))]
}
