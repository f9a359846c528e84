//! Samples pane: the project's sample prompts and the sample images the runs wrote.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row};

use super::{field, frame_pane, list_and_detail, render_detail, render_empty, render_table};
use crate::tui::action::PaneId;
use crate::tui::app::App;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let prompts = &app.project.config.samples;
    let runs = &app.files.runs;
    let (summary, body) = frame_pane(frame, area, theme, "Samples".to_string());
    let images: usize = runs.iter().map(|r| r.sample_images).sum();
    let with_images = runs.iter().filter(|r| r.sample_images > 0).count();
    let found = if runs.is_empty() {
        " · no runs yet".to_string()
    } else {
        format!(" · {images} sample images in {with_images} of {} runs", runs.len())
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!("{} sample prompts", prompts.len()), theme.accent()),
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
    let (list, detail) = list_and_detail(body);
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

    if let (Some(detail), Some(index)) = (detail, app.selection(PaneId::Samples)) {
        let sample = &prompts[index];
        let negative = if sample.negative.is_empty() { "(none)".to_string() } else { sample.negative.clone() };
        let lines = vec![
            Line::from(sample.prompt.clone()),
            Line::default(),
            field(theme, "negative", negative),
            field(theme, "seed", sample.seed.to_string()),
            field(theme, "steps", sample.steps.to_string()),
            field(theme, "guidance", format!("{}", sample.guidance)),
        ];
        render_detail(frame, detail, theme, &format!("Prompt {}", index + 1), lines);
    }
}
