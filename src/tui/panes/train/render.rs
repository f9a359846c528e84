//! Drawing the Train pane: the charts and gauge on the left; the runs, the
//! latest samples and the settings in a side column.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Cell, Chart, Dataset, Gauge, GraphType, Paragraph, Row};

use super::{ChartView, TrainPane};
use crate::project::ProjectConfig;
use crate::train::RunMetrics;
use crate::train::overfit::overfit_alarm;
use crate::train::smoothing::smooth;
use crate::tui::shared::Shared;
use crate::tui::theme::Theme;
use crate::tui::widgets::{
    axis_labels, chart_bounds as bounds, draw_image, field, frame_pane, render_detail, render_empty, render_table,
};

pub(super) fn render(pane: &TrainPane, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let config = &shared.project.config;
    let runs = &shared.files.runs;
    let (summary, body) = frame_pane(frame, area, theme, "Train".to_string());
    frame.render_widget(Paragraph::new(summary_line(pane, shared)), summary);

    let (left, right) = if body.width >= 70 {
        let [left, right] = Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(body);
        // A rule down the side column, so chart lines and sample images never run into each other.
        let rule = Block::default().borders(Borders::LEFT).border_style(theme.border(false));
        let side = rule.inner(right);
        frame.render_widget(rule, right);
        (left, Some(side))
    } else {
        (body, None)
    };

    let metrics = shared.files.metrics.as_ref().filter(|m| !m.loss.is_empty());
    match metrics {
        Some(metrics) => render_curves(pane, shared, frame, left, metrics),
        None if shared.loading => render_empty(frame, left, theme, vec![Line::from("Looking for runs…")]),
        None => render_empty(
            frame,
            left,
            theme,
            vec![
                Line::from(if runs.is_empty() { "No runs yet in runs/." } else { "This run has logged no steps yet." }),
                Line::from("Press s to start training, or run `easel train` in another window:"),
                Line::from("its curves appear here as it logs them."),
            ],
        ),
    }
    let Some(right) = right else { return };
    let samples_height = if right.height >= 14 && !shared.sample_steps().is_empty() { 8 } else { 0 };
    let settings_height = if right.height >= 26 + samples_height { 12 } else { 0 };
    let [runs_area, samples_area, settings_area] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(samples_height), Constraint::Length(settings_height)])
            .areas(right);
    if samples_height > 0 {
        render_latest_samples(shared, frame, samples_area);
    }
    if runs.is_empty() {
        render_empty(frame, runs_area, theme, vec![Line::from("Runs appear here.")]);
    } else {
        let rows = runs
            .iter()
            .map(|run| {
                let compared = pane.compare.as_ref() == Some(&run.id);
                let step = run.last_step.map_or_else(|| "—".to_string(), |s| s.to_string());
                Row::new(vec![
                    Cell::from(format!("{}{}", if compared { "◆ " } else { "" }, run.id)),
                    Cell::from(step),
                    Cell::from(run.checkpoints.len().to_string()),
                ])
            })
            .collect();
        let widths = [Constraint::Min(10), Constraint::Length(6), Constraint::Length(5)];
        render_table(
            frame,
            runs_area,
            theme,
            pane.selected(shared),
            (Row::new(["Run", "Step", "Ckpt"]), rows),
            &widths,
        );
    }
    if settings_height > 0 {
        render_detail(frame, settings_area, theme, "Settings (project.toml)", settings_lines(config, theme));
    }
}

/// The newest sampling step's images, one per prompt, side by side.
fn render_latest_samples(shared: &Shared, frame: &mut Frame, area: Rect) {
    let Some(step) = shared.sample_steps().last().copied() else { return };
    let block = Block::default()
        .borders(Borders::TOP)
        .border_style(shared.theme.border(false))
        .title(Span::styled(format!(" latest samples · step {step} "), shared.theme.muted()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let prompts = shared.project.config.samples.len().clamp(1, 4);
    let columns = Layout::horizontal(vec![Constraint::Ratio(1, prompts as u32); prompts]).split(inner);
    for (prompt, column) in columns.iter().enumerate() {
        if let Some(path) = shared.sample_image(prompt, step) {
            draw_image(shared, frame, *column, &path);
        }
    }
}

/// The first row: the live training state, the shown run's overfit alarm
/// (which takes the place of the live status: the gauge below still shows
/// the step), or the run count and settings.
fn summary_line(pane: &TrainPane, shared: &Shared) -> Line<'static> {
    let theme = &shared.theme;
    let alarm = shared.files.metrics.as_ref().and_then(|m| overfit_alarm(&m.loss, &m.validation, &m.checkpoints));
    let alarm =
        alarm.map(|alarm| Span::styled(alarm.short(), Style::new().fg(theme.warning).add_modifier(Modifier::BOLD)));
    if let Some(live) = pane.live.as_ref().filter(|live| live.running) {
        let state = if live.paused { "⏸ paused" } else { "● training" };
        let status = alarm.unwrap_or_else(|| Span::raw(live.status.clone()));
        return Line::from(vec![Span::styled(format!("{state} "), theme.accent()), status]);
    }
    if let Some(alarm) = alarm {
        return Line::from(alarm);
    }
    let config = &shared.project.config;
    let runs = shared.files.runs.len();
    Line::from(vec![
        Span::styled(format!("{runs} {}", if runs == 1 { "run" } else { "runs" }), theme.accent()),
        Span::raw(format!(
            " · {} of batch {} at {} px on {} · s: train",
            crate::words::counted(config.train.steps as usize, "step"),
            config.train.batch_size,
            config.train.resolution,
            config.model.base
        )),
    ])
}

/// The progress gauge, the loss chart and the learning-rate chart.
fn render_curves(pane: &TrainPane, shared: &Shared, frame: &mut Frame, area: Rect, metrics: &RunMetrics) {
    let theme = &shared.theme;
    let lr_height = if area.height >= 16 { 5 } else { 0 };
    let [gauge_area, loss_area, lr_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(5), Constraint::Length(lr_height)]).areas(area);
    frame.render_widget(gauge(metrics, pane.shown_run_training(shared), theme), gauge_area);
    let view = pane.chart;
    let window = |series: &[(u64, f64)]| -> Vec<(f64, f64)> {
        let last = metrics.loss.last().map_or(0, |(step, _)| *step);
        let from = view.zoom.map_or(0, |n| last.saturating_sub(n));
        series.iter().filter(|(step, _)| *step >= from).map(|&(step, value)| (step as f64, value)).collect()
    };
    let raw = window(&metrics.loss);
    let smoothed = smoothed_points(&raw, view);
    let validation = window(&metrics.validation);
    let compare = shared.files.compare_metrics.as_ref().map(|other| smoothed_points(&window(&other.loss), view));
    let scale = |points: &[(f64, f64)]| -> Vec<(f64, f64)> {
        points.iter().map(|&(x, y)| (x, if view.log_scale { y.max(1e-12).log10() } else { y })).collect()
    };
    let (raw, smoothed, validation) = (scale(&raw), scale(&smoothed), scale(&validation));
    let compare = compare.map(|c| scale(&c));

    let mut datasets = vec![
        Dataset::default()
            .name("raw")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.muted())
            .data(&raw),
        Dataset::default()
            .name(format!("EMA {:.2}", view.smoothing))
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.accent())
            .data(&smoothed),
    ];
    if let Some(compare) = &compare {
        let style = Style::new().fg(theme.warning);
        datasets.push(
            Dataset::default()
                .name("compared")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(style)
                .data(compare),
        );
    }
    if !validation.is_empty() {
        let style = Style::new().fg(theme.ok).add_modifier(Modifier::BOLD);
        datasets.push(
            Dataset::default()
                .name("validation")
                .marker(Marker::Dot)
                .graph_type(GraphType::Scatter)
                .style(style)
                .data(&validation),
        );
    }
    let all = raw.iter().chain(&validation).chain(compare.iter().flatten());
    let (x_bounds, y_bounds) = bounds(all);
    let y_label = |v: f64| if view.log_scale { format!("{:.3}", 10f64.powf(v)) } else { format!("{v:.3}") };
    let title = format!(
        "loss{}{}",
        if view.log_scale { " (log)" } else { "" },
        view.zoom.map_or(String::new(), |n| format!(", last {n} steps"))
    );
    let chart = Chart::new(datasets)
        .block(Block::default().title(Span::styled(title, theme.muted())))
        .x_axis(
            Axis::default().style(theme.muted()).bounds(x_bounds).labels(axis_labels(x_bounds, |v| format!("{v:.0}"))),
        )
        .y_axis(Axis::default().style(theme.muted()).bounds(y_bounds).labels(axis_labels(y_bounds, y_label)));
    frame.render_widget(chart, loss_area);

    if lr_height > 0 && !metrics.lr.is_empty() {
        let lr: Vec<(f64, f64)> = window(&metrics.lr);
        let (x, y) = bounds(lr.iter());
        let chart = Chart::new(vec![
            Dataset::default().marker(Marker::Braille).graph_type(GraphType::Line).style(theme.accent()).data(&lr),
        ])
        .block(Block::default().title(Span::styled("learning rate", theme.muted())))
        .x_axis(Axis::default().bounds(x))
        .y_axis(Axis::default().style(theme.muted()).bounds(y).labels(axis_labels(y, |v| format!("{v:.1e}"))));
        frame.render_widget(chart, lr_area);
    }
}

fn smoothed_points(points: &[(f64, f64)], view: ChartView) -> Vec<(f64, f64)> {
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    points.iter().zip(smooth(&values, view.smoothing)).map(|(&(x, _), y)| (x, y)).collect()
}

/// Step/total with throughput, ETA (while it trains) and memory, from the
/// last logged step; a run that trains no more says where it stopped.
fn gauge(metrics: &RunMetrics, training: bool, theme: &Theme) -> Gauge<'static> {
    let last = metrics.last.as_ref();
    let step = metrics.loss.last().map_or(0, |(s, _)| *s);
    let total = metrics.total.unwrap_or(step).max(step).max(1);
    let done = metrics.finished && !metrics.stopped && step >= total;
    let mut label = match (training, done) {
        (false, false) => format!("stopped at step {step}/{total} · R resumes"),
        _ => format!("step {step}/{total}"),
    };
    if let Some(rate) = metrics.steps_per_second() {
        label.push_str(&format!(" · {rate:.2} it/s"));
        if training && step < total && rate > 0.0 {
            label.push_str(&format!(" · ETA {}", crate::console::duration((total - step) as f64 / rate)));
        }
    }
    if let Some(memory) = last.and_then(|m| m.memory_mib) {
        label.push_str(&format!(" · {memory:.0} MiB"));
    }
    if done && !training {
        label.push_str(" · done");
    }
    Gauge::default()
        .gauge_style(Style::new().fg(theme.accent).bg(theme.background))
        .ratio((step as f64 / total as f64).clamp(0.0, 1.0))
        .label(Span::styled(label, Style::new().fg(theme.foreground)))
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
                "rank {} alpha {} on {}{}",
                lora.rank,
                lora.alpha,
                lora.targets,
                if lora.text_encoder { " + text encoder" } else { "" }
            ),
        ),
        field(
            theme,
            "learning rate",
            format!("{:e}, {} after {} warm-up", train.learning_rate, train.schedule, train.warmup_steps),
        ),
        field(
            theme,
            "images",
            format!("{} px, {}", train.resolution, if train.bucketing { "aspect buckets" } else { "square crops" }),
        ),
        field(theme, "precision", format!("{}, seed {}", train.precision, train.seed)),
        field(theme, "checkpoint", format!("{}, keep {}", every(train.save_every), train.keep_checkpoints)),
        field(theme, "samples", every(train.sample_every)),
        field(
            theme,
            "validation",
            format!("{}, {:.0}% held out", every(train.validate_every), train.validation_fraction * 100.0),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::super::LiveTraining;
    use super::*;

    fn summary_row(pane: &TrainPane, shared: &Shared) -> String {
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        terminal.draw(|frame| render(pane, shared, frame, frame.area())).unwrap();
        let buffer = terminal.backend().buffer();
        (0..buffer.area.width).map(|x| buffer[(x, 1)].symbol()).collect()
    }

    #[test]
    fn a_rising_validation_loss_shows_the_overfit_warning() {
        let mut shared = Shared::for_tests();
        let loss = (1..=700).map(|step| (step, 1.0 / step as f64)).collect();
        let validation = vec![(100, 0.3), (200, 0.2), (300, 0.15), (400, 0.12), (500, 0.13), (600, 0.14), (700, 0.16)];
        let metrics = RunMetrics { loss, validation, checkpoints: vec![200, 400, 600], ..RunMetrics::default() };
        shared.files.metrics = Some(metrics.clone());
        let mut pane = TrainPane::default();
        let warning = "⚠ overfitting since step 400: best checkpoint step 400 (val 0.1200)";
        assert!(summary_row(&pane, &shared).contains(warning), "{}", summary_row(&pane, &shared));

        // While training, beside the state.
        pane.live = Some(LiveTraining {
            run_id: None,
            running: true,
            paused: false,
            stopping: false,
            status: "step 700/1000".into(),
        });
        let row = summary_row(&pane, &shared);
        assert!(row.contains(&format!("● training {warning}")), "{row}");

        // Still falling: the usual line.
        shared.files.metrics = Some(RunMetrics { validation: metrics.validation[..4].to_vec(), ..metrics });
        let row = summary_row(&pane, &shared);
        assert!(row.contains("● training step 700/1000") && !row.contains("overfitting"), "{row}");
    }
}
