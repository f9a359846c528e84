//! Samples pane: the sample prompts, and for the run selected in the Train
//! pane each prompt's timeline (step → image), the newest followed as it
//! arrives, two steps side by side, and one image full size.

use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row};

use super::{draw_image, frame_pane, render_empty, render_table};
use crate::tui::action::{Action, PaneId};
use crate::tui::app::App;
use crate::tui::keymap::{Binding, Key};

pub fn bindings() -> Vec<Binding> {
    vec![
        Binding::new(&[Key::plain(KeyCode::Left), Key::char('h')], Action::EarlierStep, "earlier sampling step"),
        Binding::new(
            &[Key::plain(KeyCode::Right), Key::char('l')],
            Action::LaterStep,
            "later step (the newest follows new samples)",
        ),
        Binding::new(&[Key::char('m')], Action::MarkStep, "keep this step on the left, side by side (again: clear)"),
        Binding::new(
            &[Key::char('f'), Key::plain(KeyCode::Enter)],
            Action::ToggleFullView,
            "the image alone, full size",
        ),
    ]
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let prompts = &app.project.config.samples;
    let (summary, body) = frame_pane(frame, area, theme, "Samples".to_string());
    let run = app.shown_run().map(|run| run.id.clone());
    let steps = app.sample_steps();
    let found = match &run {
        None => " · no runs yet".to_string(),
        Some(id) if steps.is_empty() => format!(" · run {id} has no samples yet"),
        Some(id) => format!(" · run {id} · {} sampling steps", steps.len()),
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!("{} prompts", prompts.len()), theme.accent()),
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
    let prompt = app.selection(PaneId::Samples).unwrap_or(0);
    if app.samples.full {
        return render_images(app, frame, body, prompt, &steps);
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
    render_table(frame, list, app, Row::new(["#", "Seed", "Prompt"]), rows, &widths);
    let [timeline, images] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(rest);
    frame.render_widget(Paragraph::new(timeline_line(app, prompt, &steps)), timeline);
    render_images(app, frame, images, prompt, &steps);
}

/// `steps: 0 50 [100] 150 ◆200 new` — the shown step bracketed, the
/// compared one marked, the newest flagged.
fn timeline_line(app: &App, prompt: usize, steps: &[u64]) -> Line<'static> {
    let theme = &app.theme;
    let shown = app.shown_sample_step();
    let mut spans = vec![Span::styled("steps ", theme.muted())];
    for &step in steps {
        let exists = app.sample_image(prompt, step).is_some();
        let mut text = step.to_string();
        if app.samples.compare == Some(step) {
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
fn render_images(app: &App, frame: &mut Frame, area: Rect, prompt: usize, steps: &[u64]) {
    let theme = &app.theme;
    let Some(shown) = app.shown_sample_step() else {
        return render_empty(frame, area, theme, vec![Line::from("Sample images appear here as a run writes them.")]);
    };
    let mut panels = Vec::new();
    if let Some(compare) = app.samples.compare.filter(|c| *c != shown && steps.contains(c)) {
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
        match app.sample_image(prompt, step) {
            Some(path) => draw_image(app, frame, inner, &path),
            None => frame.render_widget(
                Paragraph::new(Span::styled("no image for this prompt at this step", theme.muted())),
                inner,
            ),
        }
    }
}
