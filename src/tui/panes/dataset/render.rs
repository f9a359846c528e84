//! Drawing the Dataset pane: the image list (the scan's rows once it
//! arrived), the selected image's details and preview, the scan's progress.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, LineGauge, Paragraph, Row};

use super::DatasetPane;
use super::review::ReviewRow;
use crate::dataset::scan::{Finding, Flag};
use crate::dataset::{CaptionState, DatasetEntry, Inventory};
use crate::tui::shared::Shared;
use crate::tui::theme::Theme;
use crate::tui::widgets::{draw_image, field, frame_pane, list_and_detail, render_detail, render_empty, render_table};

pub(super) fn render(pane: &DatasetPane, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let inventory = &shared.files.inventory;
    let folder = shared.project.config.dataset.display().to_string();
    let (summary, body) = frame_pane(frame, area, theme, format!("Dataset · {folder}/"));
    match pane.review.progress {
        Some((done, total)) => {
            let ratio = if total == 0 { 1.0 } else { done as f64 / total as f64 };
            let gauge = LineGauge::default()
                .ratio(ratio.clamp(0.0, 1.0))
                .label(format!("Scanning {done}/{total} "))
                .filled_style(theme.accent())
                .unfilled_style(theme.muted());
            frame.render_widget(gauge, summary);
        }
        None if pane.review.scan.is_some() => frame.render_widget(Paragraph::new(review_summary(pane, theme)), summary),
        None => frame.render_widget(Paragraph::new(summary_line(inventory, theme)), summary),
    }

    if shared.loading {
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
    if pane.review.scan.is_some() {
        return render_review(pane, shared, frame, body);
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
    render_table(frame, list, theme, pane.selected(shared), (header, rows), widths);
    if let (Some(detail), Some(index)) = (detail, pane.selected(shared)) {
        render_detail(frame, detail, theme, "Image", detail_lines(&inventory.entries[index], theme));
    }
}

fn summary_line(inventory: &Inventory, theme: &Theme) -> Line<'static> {
    let unreadable = inventory.entries.iter().filter(|e| e.header_error.is_some()).count();
    let mut spans = vec![
        Span::styled(crate::words::counted(inventory.image_count(), "image"), theme.accent()),
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

/// `12 images · 3 to review · 1 kept · 2 rejected · 4 buckets · all by name`
fn review_summary(pane: &DatasetPane, theme: &Theme) -> Line<'static> {
    let counts = pane.review.counts();
    let review_style = if counts.to_review > 0 { theme.base().fg(theme.warning) } else { theme.base().fg(theme.ok) };
    Line::from(vec![
        Span::styled(crate::words::counted(counts.images, "image"), theme.accent()),
        Span::raw(" · "),
        Span::styled(format!("{} to review", counts.to_review), review_style),
        Span::raw(format!(
            " · {} kept · {} rejected · {}",
            counts.kept,
            counts.rejected,
            crate::words::counted(counts.buckets, "bucket")
        )),
        Span::styled(format!(" · {} by {}", pane.review.filter.label(), pane.review.sort.label()), theme.muted()),
    ])
}

fn badges(pane: &DatasetPane, theme: &Theme, finding: &Finding) -> Cell<'static> {
    if finding.flags.is_empty() {
        return Cell::from(Span::styled("ok", theme.base().fg(theme.ok)));
    }
    let kept = pane.review.is_kept(finding);
    let spans: Vec<Span> = finding
        .flags
        .iter()
        .flat_map(|flag| {
            let style = match flag {
                _ if kept => theme.muted(),
                Flag::Unreadable { .. } | Flag::Huge { .. } => theme.base().fg(theme.error),
                _ => theme.base().fg(theme.warning),
            };
            [Span::styled(flag.badge(), style), Span::raw(" ")]
        })
        .collect();
    Cell::from(Line::from(spans))
}

fn review_row(pane: &DatasetPane, theme: &Theme, row: ReviewRow, compact: bool) -> Row<'static> {
    let Some(finding) = pane.review.finding(row) else {
        let name = pane.review.rejected_path(row).map(|p| p.display().to_string()).unwrap_or_default();
        let rejected = Cell::from(Span::styled("rejected", theme.muted()));
        return Row::new(vec![Cell::from(name), rejected]);
    };
    let record = &finding.record;
    let name = Cell::from(record.path.display().to_string());
    if compact {
        return Row::new(vec![name, badges(pane, theme, finding)]);
    }
    let sharpness = record.stats.map(|s| format!("{:.0}", s.sharpness)).unwrap_or_default();
    let size = if record.width > 0 { format!("{}×{}", record.width, record.height) } else { String::new() };
    Row::new(vec![
        name,
        badges(pane, theme, finding),
        Cell::from(Line::from(sharpness).right_aligned()),
        Cell::from(size),
    ])
}

fn render_review(pane: &DatasetPane, shared: &Shared, frame: &mut Frame, body: Rect) {
    let theme = &shared.theme;
    let rows = pane.review.rows();
    let selected = pane.review_row(shared);
    if pane.review.full
        && let Some(row) = selected
    {
        return render_preview(pane, shared, frame, body, row, false);
    }
    let (list, detail) = list_and_detail(body);
    if rows.is_empty() {
        let filter = pane.review.filter.label();
        render_empty(
            frame,
            list,
            theme,
            vec![Line::from(format!("No images under `{filter}` (f changes the filter)."))],
        );
    } else {
        let compact = list.width < 44;
        let header = if compact {
            Row::new(["Image", "Flags"])
        } else {
            Row::new(vec![
                Cell::from("Image"),
                Cell::from("Flags"),
                Cell::from(Line::from("Sharp").right_aligned()),
                Cell::from("Size"),
            ])
        };
        let widths: &[Constraint] = if compact {
            &[Constraint::Min(6), Constraint::Length(12)]
        } else {
            &[Constraint::Min(10), Constraint::Length(12), Constraint::Length(5), Constraint::Length(9)]
        };
        let table_rows = rows.iter().map(|&row| review_row(pane, theme, row, compact)).collect();
        render_table(frame, list, theme, pane.selected(shared), (header, table_rows), widths);
    }
    let (Some(detail), Some(row)) = (detail, selected) else { return };
    let block = Block::default().borders(Borders::LEFT).border_style(theme.border(false));
    let inner = block.inner(detail);
    frame.render_widget(block, detail);
    let [preview, text] = Layout::vertical([Constraint::Percentage(55), Constraint::Min(3)]).areas(inner);
    render_preview(pane, shared, frame, preview, row, true);
    let lines = match pane.review.finding(row) {
        Some(finding) => finding_lines(pane, theme, row, finding),
        None => vec![
            Line::styled("Rejected (in _rejected/, with its caption).", theme.muted()),
            Line::from("u restores it."),
        ],
    };
    frame.render_widget(Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: false }), text);
}

/// The row's image; with `groups`, its duplicate group side by side.
fn render_preview(pane: &DatasetPane, shared: &Shared, frame: &mut Frame, area: Rect, row: ReviewRow, groups: bool) {
    let theme = &shared.theme;
    let dataset = shared.project.dataset_dir();
    let Some(finding) = pane.review.finding(row) else {
        if let Some(path) = pane.review.rejected_path(row) {
            draw_image(shared, frame, area, &dataset.join(path));
        }
        return;
    };
    let record = &finding.record;
    if record.error.is_some() || record.huge {
        // Never decoded: unreadable, or too large to decode safely.
        let why = if record.huge { "too large to decode safely" } else { "unreadable" };
        return frame.render_widget(Paragraph::new(Span::styled(format!("no preview: {why}"), theme.muted())), area);
    }
    let ReviewRow::Image(index) = row else { return };
    let group = pane.review.group_of(index).filter(|_| groups);
    let Some(group) = group.filter(|_| area.width >= 24) else {
        return draw_image(shared, frame, area, &dataset.join(&record.path));
    };
    // As many members as fit at a useful width; the selected one always among them.
    let fit = usize::from(area.width / 12).clamp(2, 4);
    let mut shown: Vec<usize> = group.members.iter().copied().take(fit).collect();
    if !shown.contains(&index) {
        shown[fit - 1] = index;
    }
    let findings = &pane.review.report().map(|r| r.findings.as_slice()).unwrap_or_default();
    let areas = Layout::horizontal(vec![Constraint::Ratio(1, shown.len() as u32); shown.len()]).split(area);
    for (member, area) in shown.into_iter().zip(areas.iter()) {
        let finding = &findings[member];
        let sharpest = member == group.members[0];
        let title = format!(
            " {}{} ",
            if sharpest { "★ " } else { "" },
            finding.record.stats.map(|s| format!("{:.0}", s.sharpness)).unwrap_or_default()
        );
        let style = if member == index { theme.selection() } else { theme.muted() };
        let block =
            Block::default().borders(Borders::TOP).border_style(theme.border(false)).title(Span::styled(title, style));
        let inner = block.inner(*area);
        frame.render_widget(block, *area);
        draw_image(shared, frame, inner, &dataset.join(&finding.record.path));
    }
}

fn finding_lines(pane: &DatasetPane, theme: &Theme, row: ReviewRow, finding: &Finding) -> Vec<Line<'static>> {
    let record = &finding.record;
    let mut lines = vec![Line::styled(record.path.display().to_string(), theme.accent())];
    let format = record.format.clone().unwrap_or_else(|| "?".into());
    let mut file = format!("{format}, {} KiB", record.bytes.div_ceil(1024));
    if record.width > 0 {
        file = format!("{} × {} px, {file}", record.width, record.height);
    }
    lines.push(field(theme, "file", file));
    if let Some(bucket) = finding.bucket {
        lines.push(field(theme, "bucket", format!("{}×{}", bucket.width, bucket.height)));
    }
    if let (Some(stats), Some(report)) = (record.stats, pane.review.report()) {
        lines.push(field(
            theme,
            "sharpness",
            format!("{:.1} (median {:.1})", stats.sharpness, report.median_sharpness),
        ));
        lines.push(field(theme, "luminance", format!("{:.2}", stats.mean_luma)));
    }
    let kept = pane.review.is_kept(finding);
    let flag_style = if kept { theme.muted() } else { theme.base().fg(theme.warning) };
    lines.extend(finding.flags.iter().map(|flag| Line::styled(format!("• {}", flag.describe()), flag_style)));
    if let ReviewRow::Image(index) = row
        && let Some(group) = pane.review.group_of(index)
    {
        let kind = if group.exact { "exact copies" } else { "near duplicates" };
        let sharpest = pane.review.report().map(|r| r.findings[group.members[0]].record.path.display().to_string());
        lines.push(field(
            theme,
            "group",
            format!("{} {kind}; sharpest {} (X rejects the rest)", group.members.len(), sharpest.unwrap_or_default()),
        ));
    }
    lines.push(match (finding.flags.is_empty(), kept) {
        (true, _) => Line::styled("Nothing flagged.", theme.base().fg(theme.ok)),
        (false, true) => Line::styled("Kept (Space: review again).", theme.base().fg(theme.ok)),
        (false, false) => Line::styled("To review: Space keeps, x rejects, n next.", theme.muted()),
    });
    lines
}
