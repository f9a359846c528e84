//! Train pane: the training settings of project.toml and the runs found.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row};

use super::{field, frame_pane, render_detail, render_empty, render_table};
use crate::project::ProjectConfig;
use crate::tui::app::App;
use crate::tui::theme::Theme;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let config = &app.project.config;
    let runs = &app.files.runs;
    let (summary, body) = frame_pane(frame, area, theme, "Train".to_string());
    let run_word = if runs.len() == 1 { "run" } else { "runs" };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!("{} {run_word}", runs.len()), theme.accent()),
            Span::raw(format!(
                " · {} steps of batch {} at {} px on {}",
                config.train.steps, config.train.batch_size, config.train.resolution, config.model.base
            )),
        ])),
        summary,
    );

    let (runs_area, settings_area) = if body.width >= 60 {
        let [runs_area, settings_area] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(body);
        (runs_area, Some(settings_area))
    } else {
        (body, None)
    };

    if app.loading {
        render_empty(frame, runs_area, theme, vec![Line::from("Looking for runs…")]);
    } else if runs.is_empty() {
        render_empty(
            frame,
            runs_area,
            theme,
            vec![
                Line::from("No runs yet in runs/."),
                Line::from("Each training run will appear here with its progress, checkpoints and samples."),
            ],
        );
    } else {
        let rows = runs
            .iter()
            .map(|run| {
                let step = run.last_step.map_or_else(|| "—".to_string(), |s| s.to_string());
                Row::new(vec![
                    Cell::from(run.id.clone()),
                    Cell::from(step),
                    Cell::from(run.checkpoints.to_string()),
                    Cell::from(run.sample_images.to_string()),
                ])
            })
            .collect();
        let widths = [Constraint::Min(10), Constraint::Length(6), Constraint::Length(5), Constraint::Length(7)];
        render_table(frame, runs_area, app, Row::new(["Run", "Step", "Ckpts", "Samples"]), rows, &widths);
    }
    if let Some(area) = settings_area {
        render_detail(frame, area, theme, "Settings (project.toml)", settings_lines(config, theme));
    }
}

fn settings_lines(config: &ProjectConfig, theme: &Theme) -> Vec<Line<'static>> {
    let (model, lora, train) = (&config.model, &config.lora, &config.train);
    let every = |n: u32| if n == 0 { "off".to_string() } else { format!("every {n}") };
    vec![
        field(theme, "base model", format!("{} ({})", model.base, model.family)),
        field(
            theme,
            "LoRA",
            format!(
                "rank {} alpha {} (scale {:.2}) on {}",
                lora.rank,
                lora.alpha,
                lora.alpha / f64::from(lora.rank),
                lora.targets
            ),
        ),
        field(theme, "text encoder", if lora.text_encoder { "trained too" } else { "frozen" }.to_string()),
        field(
            theme,
            "learning rate",
            format!("{:e}, {} after {} warm-up steps", train.learning_rate, train.schedule, train.warmup_steps),
        ),
        field(
            theme,
            "images",
            format!("{} px, {}", train.resolution, if train.bucketing { "aspect buckets" } else { "square crops" }),
        ),
        field(theme, "precision", train.precision.to_string()),
        field(theme, "seed", train.seed.to_string()),
        field(theme, "checkpoint", every(train.save_every)),
        field(theme, "samples", every(train.sample_every)),
        field(
            theme,
            "validation",
            format!("{}, {:.0}% held out", every(train.validate_every), train.validation_fraction * 100.0),
        ),
    ]
}
