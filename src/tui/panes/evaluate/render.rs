//! Drawing the Evaluate pane: the summary (or the running evaluation's
//! gauge), the grid of the shown checkpoint × scale, and the score table.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Cell, Chart, Dataset, GraphType, LineGauge, Paragraph, Row};

use super::EvaluatePane;
use crate::evaluate::report::EvalReport;
use crate::tui::shared::Shared;
use crate::tui::widgets::{axis_labels, chart_bounds, draw_image, frame_pane, render_empty, render_table};
use crate::words::counted;

pub(super) fn render(pane: &EvaluatePane, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let (summary, body) = frame_pane(frame, area, theme, "Evaluate".to_string());
    match pane.running {
        Some(progress) if progress.total > 0 => {
            let ratio = progress.done as f64 / progress.total as f64;
            let gauge = LineGauge::default()
                .ratio(ratio.clamp(0.0, 1.0))
                .label(format!("Evaluating {}/{} cells (x stops) ", progress.done, progress.total))
                .filled_style(theme.accent())
                .unfilled_style(theme.muted());
            frame.render_widget(gauge, summary);
        }
        _ => frame.render_widget(Paragraph::new(summary_line(pane, shared)), summary),
    }
    let Some(report) = pane.report() else {
        let first = match shared.shown_run.as_deref() {
            Some(run) => format!("No evaluation of {run} yet."),
            None => "No run to evaluate yet: train one in the Train pane (s).".to_string(),
        };
        return render_empty(
            frame,
            body,
            theme,
            vec![
                Line::from(first),
                Line::from(
                    "e renders its grid of prompts × seeds × LoRA scales × checkpoints (easel eval does the same).",
                ),
                Line::from(
                    "[evaluate] in project.toml says which; the run shown is the one selected in the Train pane.",
                ),
            ],
        );
    };
    if pane.full
        && let (Some(cell), Some(out)) = (pane.selected_cell(), pane.out_dir())
    {
        return draw_image(shared, frame, body, &out.join(&cell.file));
    }
    let (grid, table) = if body.width >= 90 {
        let [grid, table] = Layout::horizontal([Constraint::Min(40), Constraint::Length(46)]).areas(body);
        (grid, Some(table))
    } else {
        (body, None)
    };
    render_grid(pane, shared, frame, grid);
    let Some(side) = table else { return };
    let charts = if side.height >= 24 { report.summaries.len() as u16 + 2 } else { side.height };
    let [table, chart] = Layout::vertical([Constraint::Length(charts), Constraint::Min(0)]).areas(side);
    render_scores(pane, report, shared, frame, table);
    if chart.height >= 10 {
        render_charts(pane, report, shared, frame, chart);
    }
}

/// A named, coloured line of (step, value) points.
type Series<'a> = (&'a str, ratatui::style::Color, Vec<(f64, f64)>);

/// The scores per checkpoint at the shown scale, and the validation loss
/// below, on the same steps; the recommended checkpoint as a vertical line.
fn render_charts(pane: &EvaluatePane, report: &EvalReport, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let block = Block::default().borders(Borders::LEFT).border_style(theme.border(false));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let scale = match pane.shown_group() {
        Some((_, scale)) if scale > 0.0 => scale,
        _ => report.summaries.iter().map(|s| s.scale).fold(0.0, f64::max),
    };
    let series = |key: &str| -> Vec<(f64, f64)> {
        let at = report.summaries.iter().filter(|s| s.scale == scale);
        at.filter_map(|s| Some((s.step? as f64, f64::from(*s.scores.get(key)?)))).collect()
    };
    // Every score of the summary that is a level (the gaps are differences of these).
    let lines = [
        ("dino", "dino_fidelity", theme.accent),
        ("clip-i", "clip_i", theme.border_focused),
        ("clip-t", "clip_t", theme.ok),
        ("memo", "memorisation", theme.warning),
        ("div", "diversity", theme.error),
        ("prior", "prior_drift", theme.muted),
    ];
    let points: Vec<Series> = lines.iter().map(|(name, key, colour)| (*name, *colour, series(key))).collect();
    let validation: Vec<(f64, f64)> = shared
        .files
        .metrics
        .iter()
        .flat_map(|m| m.validation.iter().map(|&(step, loss)| (step as f64, loss)))
        .collect();
    // One step axis for both charts: the checkpoints and the validations.
    let (x, _) = chart_bounds(points.iter().flat_map(|(_, _, p)| p.iter()).chain(&validation));
    let y = chart_bounds(points.iter().flat_map(|(_, _, p)| p.iter())).1;
    let recommended = report.verdict.as_ref().and_then(|v| v.recommended_step).map(|s| s as f64);
    let [scores_area, loss_area] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(inner);
    let marker = recommended.map(|step| vec![(step, y[0]), (step, y[1])]).unwrap_or_default();
    let mut datasets: Vec<Dataset> = points
        .iter()
        .map(|(name, colour, p)| {
            Dataset::default()
                .name(*name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(*colour))
                .data(p)
        })
        .collect();
    datasets.push(
        Dataset::default()
            .name("★")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.muted())
            .data(&marker),
    );
    let title = format!("scores at scale {scale} per checkpoint");
    let chart = Chart::new(datasets)
        .block(Block::default().title(Span::styled(title, theme.muted())))
        .x_axis(Axis::default().bounds(x))
        .y_axis(Axis::default().style(theme.muted()).bounds(y).labels(axis_labels(y, |v| format!("{v:.2}"))));
    frame.render_widget(chart, scores_area);
    let loss_y = chart_bounds(validation.iter()).1;
    let loss_marker = recommended.map(|step| vec![(step, loss_y[0]), (step, loss_y[1])]).unwrap_or_default();
    let chart = Chart::new(vec![
        Dataset::default().marker(Marker::Braille).graph_type(GraphType::Line).style(theme.accent()).data(&validation),
        Dataset::default().marker(Marker::Braille).graph_type(GraphType::Line).style(theme.muted()).data(&loss_marker),
    ])
    .block(Block::default().title(Span::styled("validation loss", theme.muted())))
    .x_axis(Axis::default().style(theme.muted()).bounds(x).labels(axis_labels(x, |v| format!("{v:.0}"))))
    .y_axis(Axis::default().style(theme.muted()).bounds(loss_y).labels(axis_labels(loss_y, |v| format!("{v:.3}"))));
    frame.render_widget(chart, loss_area);
}

fn summary_line(pane: &EvaluatePane, shared: &Shared) -> Line<'static> {
    let theme = &shared.theme;
    let Some(report) = pane.report() else { return Line::from(Span::styled("e: evaluate", theme.muted())) };
    let shown = match pane.shown_group() {
        Some((None, _)) => "base model".to_string(),
        Some((Some(step), scale)) => format!("step {step} · scale {scale}"),
        None => "—".to_string(),
    };
    let cells = match report.unfinished() {
        true => format!("{} of {} cells (stopped: e continues)", report.cells.len(), report.planned),
        false => counted(report.cells.len(), "cell"),
    };
    let mut spans =
        vec![Span::styled(shown, theme.accent()), Span::raw(format!(" · {cells} · ←/→ checkpoint or scale"))];
    if let Some(verdict) = &report.verdict {
        spans.push(Span::styled(format!(" · {}", verdict.words), theme.base().fg(theme.warning)));
    }
    Line::from(spans)
}

/// The shown checkpoint × scale: a row per prompt (its label on top), a column per seed.
fn render_grid(pane: &EvaluatePane, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let (prompts, seeds, cells) = pane.grid();
    let (Some(out), false) = (pane.out_dir(), prompts.is_empty()) else {
        return render_empty(
            frame,
            area,
            theme,
            vec![Line::from("No cells rendered for this checkpoint and scale yet.")],
        );
    };
    let selected = pane.selection.get(prompts.len() * seeds.len());
    let rows = Layout::vertical(vec![Constraint::Ratio(1, prompts.len() as u32); prompts.len()]).split(area);
    for (r, (prompt, row)) in prompts.iter().zip(rows.iter()).enumerate() {
        let columns = Layout::horizontal(vec![Constraint::Ratio(1, seeds.len() as u32); seeds.len()]).split(*row);
        for (c, (seed, column)) in seeds.iter().zip(columns.iter()).enumerate() {
            let style = if selected == Some(r * seeds.len() + c) { theme.selection() } else { theme.muted() };
            // The seed first, so that a narrow column cuts the prompt, not the seed.
            let title = if c == 0 { format!(" seed {seed} · {prompt} ") } else { format!(" seed {seed} ") };
            let title = crate::tui::fit::ellipsized(&title, usize::from(column.width));
            let block = Block::default()
                .borders(Borders::TOP)
                .border_style(theme.border(false))
                .title(Span::styled(title, style));
            let inner = block.inner(*column);
            frame.render_widget(block, *column);
            match cells.iter().find(|cell| &cell.prompt == prompt && cell.seed == *seed) {
                Some(cell) => draw_image(shared, frame, inner, &out.join(&cell.file)),
                // A cell the evaluation has not reached (it was stopped).
                None => frame.render_widget(Paragraph::new(Span::styled("not rendered (e)", theme.muted())), inner),
            }
        }
    }
}

/// One row per checkpoint × scale, the shown one selected, the recommended one starred.
fn render_scores(pane: &EvaluatePane, report: &EvalReport, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let block = Block::default().borders(Borders::LEFT).border_style(theme.border(false));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let recommended = report.verdict.as_ref().map(|v| (v.recommended_step, v.recommended_scale));
    let score = |s: &crate::evaluate::report::Summary, key: &str| {
        s.scores.get(key).map_or_else(|| "—".to_string(), |v| format!("{v:.3}"))
    };
    let rows = report
        .summaries
        .iter()
        .map(|s| {
            let star = if recommended == Some((s.step, Some(s.scale))) { "★" } else { " " };
            let step = s.step.map_or_else(|| "base".to_string(), |step| step.to_string());
            Row::new(vec![
                Cell::from(format!("{star}{step}")),
                Cell::from(s.scale.to_string()),
                Cell::from(score(s, "dino_fidelity")),
                Cell::from(score(s, "clip_t")),
                Cell::from(score(s, "memorisation")),
                Cell::from(score(s, "diversity")),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
    ];
    let header = Row::new(["step", "scale", "dino", "clip-t", "memo", "div"]);
    let shown = pane.shown_group();
    let selected = report.summaries.iter().position(|s| Some((s.step, s.scale)) == shown);
    render_table(frame, inner, theme, selected, (header, rows), &widths);
}
