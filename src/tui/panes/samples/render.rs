//! Drawing the Samples pane: the prompt list, the selected prompt's
//! timeline of steps, and its images (two steps side by side, or one alone).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row};

use super::SamplesPane;
use crate::tui::shared::Shared;
use crate::tui::widgets::{draw_image, frame_pane, render_empty, render_table};

pub(super) fn render(pane: &SamplesPane, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let prompts = &shared.project.config.samples;
    let (summary, body) = frame_pane(frame, area, theme, "Samples".to_string());
    let run = shared.shown_run.clone();
    let steps = shared.sample_steps();
    let found = match &run {
        None => " · no runs yet".to_string(),
        Some(id) if steps.is_empty() => format!(" · run {id} has no samples yet"),
        Some(id) => format!(" · run {id} · {}", crate::words::counted(steps.len(), "sampling step")),
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(crate::words::counted(prompts.len(), "prompt"), theme.accent()),
            Span::raw(found),
        ])),
        summary,
    );
    if prompts.is_empty() {
        return render_empty(
            frame,
            body,
            theme,
            vec![
                Line::from("No sample prompts. Add [[samples]] blocks to project.toml:"),
                Line::default(),
                Line::from("  [[samples]]"),
                Line::from("  prompt = \"a photo of <trigger> on a beach\""),
                Line::from("  seed = 1"),
            ],
        );
    }
    let prompt = pane.selection.get(prompts.len()).unwrap_or(0);
    if pane.full {
        return render_images(pane, shared, frame, body, prompt, &steps);
    }
    let [list, rest] =
        Layout::vertical([Constraint::Length((prompts.len() as u16 + 2).min(body.height / 3)), Constraint::Min(0)])
            .areas(body);
    let rows = prompts
        .iter()
        .enumerate()
        .map(|(i, sample)| {
            Row::new(vec![
                Cell::from(format!("{}", i + 1)),
                Cell::from(sample.seed.to_string()),
                Cell::from(sample.prompt.clone()),
            ])
        })
        .collect();
    let widths = [Constraint::Length(2), Constraint::Length(6), Constraint::Min(10)];
    render_table(
        frame,
        list,
        theme,
        pane.selection.get(prompts.len()),
        (Row::new(["#", "Seed", "Prompt"]), rows),
        &widths,
    );
    let [timeline, images] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(rest);
    frame.render_widget(Paragraph::new(timeline_line(pane, shared, prompt, &steps)), timeline);
    render_images(pane, shared, frame, images, prompt, &steps);
}

/// `steps: 0 50 [100] 150 ◆200 new` — the shown step bracketed, the
/// compared one marked, the newest flagged.
fn timeline_line(pane: &SamplesPane, shared: &Shared, prompt: usize, steps: &[u64]) -> Line<'static> {
    let theme = &shared.theme;
    let shown = pane.shown_step(shared);
    let mut spans = vec![Span::styled("steps ", theme.muted())];
    for &step in steps {
        let exists = shared.sample_image(prompt, step).is_some();
        let mut text = step.to_string();
        if pane.compare == Some(step) {
            text = format!("◆{text}");
        }
        let style = if Some(step) == shown {
            theme.selection()
        } else if exists {
            theme.base()
        } else {
            theme.muted()
        };
        spans.push(Span::styled(text, style));
        spans.push(Span::raw(" "));
    }
    if let Some(&newest) = steps.last() {
        spans.push(Span::styled(if Some(newest) == shown { "(newest)" } else { "→ newest" }, theme.accent()));
    }
    Line::from(spans)
}

/// The shown step's image, beside the compared step's when one is marked.
fn render_images(pane: &SamplesPane, shared: &Shared, frame: &mut Frame, area: Rect, prompt: usize, steps: &[u64]) {
    let theme = &shared.theme;
    let Some(shown) = pane.shown_step(shared) else {
        return render_empty(frame, area, theme, vec![Line::from("Sample images appear here as a run writes them.")]);
    };
    let mut panels = Vec::new();
    if let Some(compare) = pane.compare.filter(|c| *c != shown && steps.contains(c)) {
        panels.push(compare);
    }
    panels.push(shown);
    let areas = Layout::horizontal(vec![Constraint::Ratio(1, panels.len() as u32); panels.len()]).split(area);
    for (step, area) in panels.into_iter().zip(areas.iter()) {
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.border(false))
            .title(Span::styled(format!(" step {step} "), theme.accent()));
        let inner = block.inner(*area);
        frame.render_widget(block, *area);
        match shared.sample_image(prompt, step) {
            Some(path) => draw_image(shared, frame, inner, &path),
            None => frame.render_widget(
                Paragraph::new(Span::styled("no image for this prompt at this step", theme.muted())),
                inner,
            ),
        }
    }
}
