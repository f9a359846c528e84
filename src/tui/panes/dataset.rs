//! Dataset pane: every image with its size, format and caption state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row};

use super::{field, frame_pane, list_and_detail, render_detail, render_empty, render_table};
use crate::dataset::{CaptionState, DatasetEntry, Inventory};
use crate::tui::action::PaneId;
use crate::tui::app::App;
use crate::tui::theme::Theme;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let inventory = &app.files.inventory;
    let folder = app.project.config.dataset.display().to_string();
    let (summary, body) = frame_pane(frame, area, theme, format!("Dataset · {folder}/"));
    frame.render_widget(Paragraph::new(summary_line(inventory, theme)), summary);

    if app.loading {
        return render_empty(frame, body, theme, vec![Line::from("Reading the dataset…")]);
    }
    if let Some(error) = &inventory.folder_error {
        return render_empty(
            frame,
            body,
            theme,
            vec![
                Line::styled(error.clone(), theme.base().fg(theme.error)),
                Line::from("Create it, or point `dataset` in project.toml at your images."),
            ],
        );
    }
    if inventory.entries.is_empty() {
        return render_empty(
            frame,
            body,
            theme,
            vec![Line::from(format!(
                "No images in {folder}/ yet. Copy your images there (png, jpg, webp, bmp, tiff), \
             each with a .txt caption of the same name."
            ))],
        );
    }

    let (list, detail) = list_and_detail(body);
    // Narrow lists keep the name and the caption state rather than show
    // numbers cut short (a clipped "96×9" would read as a different size).
    let compact = list.width < 44;
    let header =
        if compact { Row::new(["Image", "Caption"]) } else { Row::new(["Image", "Size", "Type", "KiB", "Caption"]) };
    let rows = inventory.entries.iter().map(|entry| row(entry, theme, compact)).collect();
    let widths: &[Constraint] = if compact {
        &[Constraint::Min(6), Constraint::Length(7)]
    } else {
        &[
            Constraint::Min(10),
            Constraint::Length(9),
            Constraint::Length(4),
            Constraint::Length(5),
            Constraint::Length(7),
        ]
    };
    render_table(frame, list, app, header, rows, widths);
    if let (Some(detail), Some(index)) = (detail, app.selection(PaneId::Dataset)) {
        render_detail(frame, detail, theme, "Image", detail_lines(&inventory.entries[index], theme));
    }
}

fn summary_line(inventory: &Inventory, theme: &Theme) -> Line<'static> {
    let unreadable = inventory.entries.iter().filter(|e| e.header_error.is_some()).count();
    let mut spans = vec![
        Span::styled(format!("{} images", inventory.image_count()), theme.accent()),
        Span::raw(format!(" · {} captioned", inventory.captioned_count())),
    ];
    let uncaptioned = inventory.uncaptioned_count();
    if uncaptioned > 0 {
        spans.push(Span::styled(format!(" · {uncaptioned} need a caption"), theme.base().fg(theme.warning)));
    }
    if unreadable > 0 {
        spans.push(Span::styled(format!(" · {unreadable} unreadable"), theme.base().fg(theme.error)));
    }
    if let Some((smallest, largest)) = side_range(inventory) {
        spans.push(Span::styled(format!(" · short side {smallest}–{largest} px"), theme.muted()));
    }
    Line::from(spans)
}

/// The smallest and largest short side among the readable images.
fn side_range(inventory: &Inventory) -> Option<(u32, u32)> {
    let sides = inventory.entries.iter().filter_map(|e| e.dimensions).map(|(w, h)| w.min(h));
    sides.fold(None, |range, side| match range {
        None => Some((side, side)),
        Some((lo, hi)) => Some((lo.min(side), hi.max(side))),
    })
}

fn caption_cell(caption: &CaptionState, theme: &Theme) -> Cell<'static> {
    match caption {
        CaptionState::Text(_) => Cell::from(Span::styled("yes", theme.base().fg(theme.ok))),
        CaptionState::Missing => Cell::from(Span::styled("missing", theme.base().fg(theme.warning))),
        CaptionState::Empty => Cell::from(Span::styled("empty", theme.base().fg(theme.warning))),
        CaptionState::Unreadable(_) => Cell::from(Span::styled("bad", theme.base().fg(theme.error))),
    }
}

fn row(entry: &DatasetEntry, theme: &Theme, compact: bool) -> Row<'static> {
    let name = Cell::from(entry.path.display().to_string());
    let caption = caption_cell(&entry.caption, theme);
    if compact {
        return Row::new(vec![name, caption]);
    }
    let size = match entry.dimensions {
        Some((w, h)) => Cell::from(format!("{w}×{h}")),
        None => Cell::from(Span::styled("unread", theme.base().fg(theme.error))),
    };
    let kib = Line::from(entry.bytes.div_ceil(1024).to_string()).right_aligned();
    Row::new(vec![name, size, Cell::from(entry.format.clone().unwrap_or_default()), Cell::from(kib), caption])
}

fn detail_lines(entry: &DatasetEntry, theme: &Theme) -> Vec<Line<'static>> {
    let mut lines = vec![Line::styled(entry.path.display().to_string(), theme.accent())];
    match (entry.dimensions, &entry.header_error) {
        (Some((w, h)), _) => {
            lines.push(field(theme, "size", format!("{w} × {h} px, aspect {:.2}", f64::from(w) / f64::from(h.max(1)))));
        }
        (None, Some(error)) => lines.push(Line::styled(format!("unreadable: {error}"), theme.base().fg(theme.error))),
        (None, None) => {}
    }
    lines.push(field(
        theme,
        "file",
        format!("{}, {} KiB", entry.format.as_deref().unwrap_or("?"), entry.bytes.div_ceil(1024)),
    ));
    lines.push(Line::default());
    lines.push(match &entry.caption {
        CaptionState::Text(text) => Line::from(text.clone()),
        CaptionState::Missing => Line::styled("No caption file.", theme.base().fg(theme.warning)),
        CaptionState::Empty => Line::styled("The caption file is empty.", theme.base().fg(theme.warning)),
        CaptionState::Unreadable(why) => {
            Line::styled(format!("Caption unreadable: {why}"), theme.base().fg(theme.error))
        }
    });
    lines
}
