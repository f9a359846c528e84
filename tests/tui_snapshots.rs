//! What the workbench draws, as text snapshots at 80×24 (ratatui's
//! TestBackend + insta; some views at a larger size too), and a sweep of
//! small sizes that must not panic.

use std::fs;
use std::path::Path;

use crossterm::event::KeyCode;
use easel::tui::jobs;
use easel::tui::{Action, App, Done, Effect, Key, PaneId, render};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

mod common;

use common::workbench::loaded_app;

/// A copy of the demo project with one finished-looking run, so snapshots do
/// not depend on runs made in the checkout.
fn demo_copy() -> tempfile::TempDir {
    let dir = common::demo_copy();
    let run = dir.path().join("runs/20261126-101500");
    fs::create_dir_all(run.join("checkpoints")).unwrap();
    fs::create_dir_all(run.join("samples/step-000050")).unwrap();
    let mut sample_events = Vec::new();
    // A loss curve that falls with some noise, and a validation point every 10 steps.
    let mut metrics = String::new();
    for step in 1..=50u64 {
        let loss = 0.2 + 0.2 * (-(step as f64) / 15.0).exp() + 0.03 * ((step * 7) as f64).sin();
        let line = serde_json::json!({"step": step, "total": 100, "loss": loss, "lr": 1e-3 * (1.0 - step as f64 / 100.0),
            "elapsed_s": step as f64 * 0.5, "memory_mib": 512.0});
        metrics.push_str(&format!("{line}\n"));
        if step % 10 == 0 {
            metrics.push_str(&format!("{}\n", serde_json::json!({"step": step, "event": "validation", "val_loss": 0.25 + 0.1 * (-(step as f64) / 20.0).exp()})));
        }
    }

    fs::write(run.join("checkpoints/step-000050.safetensors"), b"").unwrap();
    // Sample images at steps 25 and 50: a disc on a dark ground, each prompt
    // its own colour, shaded top to bottom (so half-blocks show its outline
    // and its shading as text), growing with the step.
    for (step, radius) in [(25u64, 8.0f32), (50, 13.0)] {
        let folder = run.join(format!("samples/step-{step:06}"));
        fs::create_dir_all(&folder).unwrap();
        let mut paths = Vec::new();
        for (i, seed) in [1, 2, 3].into_iter().enumerate() {
            let path = folder.join(format!("{i:02}-seed{seed}.png"));
            image::RgbImage::from_fn(32, 32, |x, y| {
                let (dx, dy) = (x as f32 - 15.5, y as f32 - 15.5);
                if dx * dx + dy * dy > radius * radius {
                    return image::Rgb([20, 20, 20]);
                }
                let shade = 90 + (y * 5) as u8;
                image::Rgb([[shade, 40, 40], [40, shade, 40], [40, 40, shade]][i])
            })
            .save(&path)
            .unwrap();
            paths.push(path);
        }
        sample_events.push(serde_json::json!({"step": step, "event": "samples", "paths": paths}));
    }
    for event in sample_events {
        metrics.push_str(&format!("{event}\n"));
    }
    fs::write(run.join("metrics.jsonl"), metrics).unwrap();
    dir
}

/// The demo copy's run with checkpoints at steps 25 (with its trainer state)
/// and 50 (its LoRA only), and an evaluation report that recommends 25.
fn demo_with_checkpoints() -> tempfile::TempDir {
    let dir = demo_copy();
    let run = dir.path().join("runs/20261126-101500");
    for (step, bytes) in [(25u64, 1_572_864u64), (50, 3_145_728)] {
        // Sparse files: the sizes show, nothing is written.
        let lora = fs::File::create(run.join(format!("checkpoints/step-{step:06}.safetensors"))).unwrap();
        lora.set_len(bytes).unwrap();
    }
    fs::write(run.join("checkpoints/step-000025.state.safetensors"), b"").unwrap();
    let summary = |step: Option<u64>, scale: f64, dino: f64, clip_t: f64| {
        serde_json::json!({"step": step, "scale": scale, "cells": 6,
            "scores": {"dino_fidelity": dino, "clip_t": clip_t, "memorisation": 0.5, "diversity": 0.2}})
    };
    let report = serde_json::json!({
        "cells": [],
        "summaries": [summary(None, 0.0, 0.41, 0.262), summary(Some(25), 0.5, 0.52, 0.281),
            summary(Some(25), 1.0, 0.58, 0.274), summary(Some(50), 0.5, 0.6, 0.27), summary(Some(50), 1.0, 0.66, 0.239)],
        "sheets": [],
        "verdict": {"recommended_step": 25, "recommended_scale": 1.0, "overfitting_began": 50,
            "words": "step 25 at scale 1; overfitting from step 50"}
    });
    fs::create_dir_all(run.join("eval/default")).unwrap();
    fs::write(run.join("eval/default/eval.json"), report.to_string()).unwrap();
    dir
}

/// The demo copy with a model's drafts to review: one for 07, whose caption
/// is gone, and one over 11's generic caption (itself generic: a finding).
fn demo_with_drafts() -> tempfile::TempDir {
    use easel::captions::drafts::{Draft, Review, update};
    let dir = demo_copy();
    let dataset = dir.path().join("dataset");
    fs::remove_file(dataset.join("zeltmug_07.txt")).unwrap();
    let draft = |image: &str, text: &str| Draft {
        image: image.into(),
        text: text.into(),
        raw: text.into(),
        model: "BLIP (blip-image-captioning-base)".into(),
        made: 0,
        review: Review::Pending,
    };
    update(&dataset, |drafts| {
        drafts.insert(draft("zeltmug_07.png", "zeltmug, a teal ceramic mug with an orange star on a wooden table"));
        drafts.insert(draft("zeltmug_11.png", "zeltmug, a photo of a cup"));
        Ok(())
    })
    .unwrap();
    dir
}

/// The Train pane's checkpoints view of the shown run, its report read as the
/// workbench's job reads it.
fn checkpoints_open(root: &Path) -> App {
    let mut app = loaded_app(root, "dark");
    app.apply(Action::ShowPane(PaneId::Train));
    let effects = app.handle_key(Key::plain(KeyCode::Enter));
    let [Effect::ReadEvaluation(run)] = effects.as_slice() else { panic!("{effects:?}") };
    let report = easel::evaluate::report::EvalReport::read(&run.join("eval/default")).unwrap();
    app.done(Done::Evaluation(run.clone(), Ok(Some(Box::new(report)))));
    app
}

/// Scans the project as the workbench's background scan does, and hands it the result.
fn scanned(app: &mut App) {
    let result = jobs::scan(&app.shared.project, &|_, _| {});
    app.done(Done::Scanned(result));
}

/// Draws a frame, decodes the previews it asked for (the event loop does
/// that in the background), and draws again.
fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render(app, frame)).unwrap();
    app.shared.previews.load_wanted_now();
    terminal.draw(|frame| render(app, frame)).unwrap();
    terminal
}

#[test]
fn each_pane_at_80x24() {
    let dir = demo_copy();
    let mut app = loaded_app(dir.path(), "dark");
    for pane in PaneId::ALL {
        app.apply(Action::ShowPane(pane));
        let name = format!("pane_{}_80x24", pane.title().to_lowercase());
        insta::assert_snapshot!(name, draw(&app, 80, 24).backend());
    }
}

#[test]
fn the_dataset_pane_after_a_scan() {
    let dir = demo_copy();
    let mut app = loaded_app(dir.path(), "dark");
    app.done(Done::ScanProgress(7, 20));
    insta::assert_snapshot!("dataset_scanning_80x24", draw(&app, 80, 24).backend());
    scanned(&mut app);
    let screen = format!("{:?}", draw(&app, 80, 24).backend());
    assert!(screen.contains("20 images · 4 to review"), "{screen}");
    // The first image to review is the near duplicate 03: its group is previewed side by side.
    app.apply(Action::NextToReview);
    insta::assert_snapshot!("dataset_review_80x24", draw(&app, 80, 24).backend());
    app.apply(Action::CycleFilter);
    app.apply(Action::CycleSort);
    app.apply(Action::CycleSort);
    insta::assert_snapshot!("dataset_to_review_by_size_80x24", draw(&app, 80, 24).backend());
}

#[test]
fn the_captions_pane_edits_and_reviews() {
    let dir = demo_copy();
    let mut app = loaded_app(dir.path(), "dark");
    app.apply(Action::ShowPane(PaneId::Captions));
    // The second caption with a finding is the planted generic one, 11.
    app.apply(Action::NextWithFinding);
    app.apply(Action::NextWithFinding);
    app.apply(Action::EditCaption);
    for c in ", a teal ceramic mu".chars() {
        app.handle_key(Key::char(c));
    }
    let screen = format!("{:?}", draw(&app, 80, 24).backend());
    assert!(screen.contains("● unsaved") && screen.contains("Tab: mug"), "{screen}");
    insta::assert_snapshot!("captions_editing_80x24", draw(&app, 80, 24).backend());
    let saved = app.handle_key(Key::plain(KeyCode::Esc));
    assert!(matches!(saved.as_slice(), [Effect::Caption(_)]), "leaving the editor saves: {saved:?}");
    app.apply(Action::ReviewNormalization);
    insta::assert_snapshot!("captions_review_80x24", draw(&app, 80, 24).backend());
    app.handle_key(Key::plain(KeyCode::Esc));
    app.apply(Action::ToggleVocabulary);
    insta::assert_snapshot!("captions_vocabulary_80x24", draw(&app, 80, 24).backend());
}

#[test]
fn the_drafts_queue_shows_each_draft_with_its_findings_and_what_it_changes() {
    let dir = demo_with_drafts();
    let mut app = loaded_app(dir.path(), "dark");
    app.apply(Action::ShowPane(PaneId::Captions));
    app.handle_key(Key::char('D'));
    let screen = format!("{:?}", draw(&app, 80, 24).backend());
    assert!(screen.contains("2 drafts to review"), "the status bar counts them: {screen}");
    app.handle_key(Key::char(']'));
    insta::assert_snapshot!("captions_drafts_80x24", draw(&app, 80, 24).backend());
    insta::assert_snapshot!("captions_drafts_120x36", draw(&app, 120, 36).backend());
    app.handle_key(Key::char('E'));
    for c in " on a shelf".chars() {
        app.handle_key(Key::char(c));
    }
    insta::assert_snapshot!("captions_draft_editor_80x24", draw(&app, 80, 24).backend());
    app.handle_key(Key::ctrl('c'));
    let screen = format!("{:?}", draw(&app, 80, 24).backend());
    assert!(screen.contains("the draft for zeltmug_11.png is edited"), "quitting asks: {screen}");
    app.handle_key(Key::plain(KeyCode::Esc));
    for _ in " on a shelf".chars() {
        app.handle_key(Key::plain(KeyCode::Backspace));
    }
    assert_eq!(app.handle_key(Key::plain(KeyCode::Esc)), [], "the draft as proposed: nothing accepted");
    app.handle_key(Key::char('Y'));
    insta::assert_snapshot!("captions_drafts_accept_clean_80x24", draw(&app, 80, 24).backend());
    app.handle_key(Key::char('n'));
    app.handle_key(Key::char('c'));
    app.handle_key(Key::char('m'));
    insta::assert_snapshot!("captions_model_prompt_80x24", draw(&app, 80, 24).backend());
}

#[test]
fn selection_moves_the_detail_view() {
    let dir = demo_copy();
    let mut app = loaded_app(dir.path(), "dark");
    app.apply(Action::ShowPane(PaneId::Captions));
    for _ in 0..10 {
        app.apply(Action::Down);
    }
    insta::assert_snapshot!("captions_eleventh_selected_80x24", draw(&app, 80, 24).backend());
}

#[test]
fn help_overlay_at_80x24() {
    let dir = demo_copy();
    let mut app = loaded_app(dir.path(), "dark");
    app.apply(Action::ShowPane(PaneId::Train));
    app.apply(Action::ToggleHelp);
    insta::assert_snapshot!("help_train_80x24", draw(&app, 80, 24).backend());
}

#[test]
fn quit_dialog_after_an_unsaved_theme_change() {
    let dir = demo_copy();
    let mut app = loaded_app(dir.path(), "dark");
    app.apply(Action::CycleTheme);
    app.apply(Action::Quit);
    insta::assert_snapshot!("quit_dialog_80x24", draw(&app, 80, 24).backend());
}

#[test]
fn a_new_empty_project() {
    let dir = tempfile::tempdir().unwrap();
    easel::project::init(dir.path(), Some("fresh"), "").unwrap();
    let mut app = loaded_app(dir.path(), "ansi16");
    insta::assert_snapshot!("empty_dataset_80x24", draw(&app, 80, 24).backend());
    app.apply(Action::ShowPane(PaneId::Samples));
    insta::assert_snapshot!("empty_samples_80x24", draw(&app, 80, 24).backend());
}

#[test]
fn smallest_supported_and_too_small() {
    let dir = demo_copy();
    let app = loaded_app(dir.path(), "dark");
    insta::assert_snapshot!("dataset_20x5", draw(&app, 20, 5).backend());
    insta::assert_snapshot!("too_small_19x5", draw(&app, 19, 5).backend());
}

#[test]
fn every_view_draws_at_every_small_size_without_panicking() {
    let dir = demo_with_drafts();
    let mut app = loaded_app(dir.path(), "light");
    scanned(&mut app);
    let mut views: Vec<Vec<Action>> = PaneId::ALL.iter().map(|p| vec![Action::ShowPane(*p)]).collect();
    views.push(vec![Action::ShowPane(PaneId::Dataset), Action::NextToReview]);
    views.push(vec![Action::ToggleFullView]);
    views.push(vec![Action::ShowPane(PaneId::Captions), Action::EditCaption]);
    views.push(vec![Action::CloseEditor, Action::ToggleVocabulary]);
    views.push(vec![Action::ToggleVocabulary, Action::ShowDrafts, Action::NextDraft]);
    views.push(vec![Action::AcceptCleanDrafts]);
    views.push(vec![Action::Close, Action::StartAutoCaptions]);
    views.push(vec![Action::DraftMissing]);
    views.push(vec![Action::Close, Action::EditDraft]);
    views.push(vec![Action::ToggleHelp]);
    views.push(vec![Action::Close, Action::CycleTheme, Action::Quit]);
    for actions in views {
        for action in actions {
            app.apply(action);
        }
        // Every size where layouts switch (the small ones), then a coarser grid:
        // each new size re-encodes the previews, which is slow in a debug build.
        for width in (1..=40).chain((41..=90).step_by(7)) {
            for height in (1..=16).chain((17..=30).step_by(4)) {
                draw(&app, width, height);
            }
        }
    }
}

#[test]
fn the_train_pane_keeps_charts_and_samples_apart_at_every_size() {
    let dir = demo_copy();
    let mut app = loaded_app(dir.path(), "dark");
    app.apply(Action::ShowPane(PaneId::Train));
    insta::assert_snapshot!("pane_train_100x30", draw(&app, 100, 30).backend());
    let braille = |symbol: &str| symbol.chars().any(|c| ('\u{2800}'..='\u{28ff}').contains(&c));
    let half_block = |symbol: &str| symbol == "▀" || symbol == "▄";
    for width in (80..=200).step_by(7) {
        for height in (24..=60).step_by(3) {
            let terminal = draw(&app, width, height);
            let buffer = terminal.backend().buffer();
            let symbol = |x: u16, y: u16| buffer[(x, y)].symbol().to_string();
            // The body: inside the pane's border, below its summary and gauge rows.
            let rows = 4..height - 2;
            let rule = (2..width - 2)
                .find(|&x| rows.clone().all(|y| symbol(x, y) == "│"))
                .unwrap_or_else(|| panic!("{width}×{height}: no unbroken rule between the charts and the side column"));
            let mut drew_samples = false;
            for y in rows.clone() {
                let line: String = (0..width).map(|x| symbol(x, y)).collect();
                assert!(!line.contains("│-"), "{width}×{height}: a negative axis label: {line}");
                for x in 0..width {
                    let cell = symbol(x, y);
                    assert!(!braille(&cell) || x < rule, "{width}×{height}: a chart line at column {x}, past the rule");
                    assert!(
                        !half_block(&cell) || x > rule,
                        "{width}×{height}: an image at column {x}, left of the rule"
                    );
                    drew_samples |= half_block(&cell);
                }
            }
            assert!(drew_samples || height < 26, "{width}×{height}: the latest samples are not shown");
        }
    }
}

#[test]
fn the_checkpoints_of_a_run_with_validation_scores_export_and_comparison() {
    let dir = demo_with_checkpoints();
    let mut app = checkpoints_open(dir.path());
    let screen = format!("{:?}", draw(&app, 80, 24).backend());
    // Step 25's loss is the validation at 20, the nearest before it; its scores are scale 1's.
    assert!(screen.contains("0.2868 @20") && screen.contains("0.580") && screen.contains("★"), "{screen}");
    insta::assert_snapshot!("train_checkpoints_80x24", draw(&app, 80, 24).backend());
    app.handle_key(Key::char('e'));
    insta::assert_snapshot!("train_export_prompt_80x24", draw(&app, 80, 24).backend());
    app.handle_key(Key::plain(KeyCode::Esc));
    // A is step 25, B step 50.
    app.handle_key(Key::char('m'));
    app.handle_key(Key::char('j'));
    app.handle_key(Key::char('m'));
    app.handle_key(Key::char('v'));
    insta::assert_snapshot!("train_compare_80x24", draw(&app, 80, 24).backend());
    insta::assert_snapshot!("train_compare_120x36", draw(&app, 120, 36).backend());
    app.handle_key(Key::plain(KeyCode::Esc));
    app.handle_key(Key::plain(KeyCode::F(1)));
    let screen = format!("{:?}", draw(&app, 80, 200).backend());
    for heading in [
        "A run's checkpoints (now)",
        "Train pane, Exporting a checkpoint",
        "Train pane, The export's destination holds a file",
        "Train pane, Comparing two checkpoints' samples",
    ] {
        assert!(screen.contains(heading), "no section {heading:?}:\n{screen}");
    }
}

#[test]
fn the_checkpoint_views_draw_at_every_small_size_without_panicking() {
    let dir = demo_with_checkpoints();
    let mut app = checkpoints_open(dir.path());
    let views: [&[Key]; 4] = [
        &[],
        &[Key::char('e')],
        &[Key::plain(KeyCode::Esc), Key::char('m'), Key::char('j'), Key::char('v')],
        &[Key::plain(KeyCode::Esc), Key::char('G')],
    ];
    for keys in views {
        for key in keys {
            app.handle_key(*key);
        }
        for width in (1..=40).chain((41..=90).step_by(7)) {
            for height in (1..=16).chain((17..=30).step_by(4)) {
                draw(&app, width, height);
            }
        }
    }
}

#[test]
fn help_lists_the_keys_of_every_caption_mode() {
    let dir = demo_copy();
    let mut app = loaded_app(dir.path(), "dark");
    app.apply(Action::ShowPane(PaneId::Captions));
    app.apply(Action::EditCaption);
    // While typing, F1 is the key that opens help (other letters are text).
    app.handle_key(Key::plain(KeyCode::F(1)));
    insta::assert_snapshot!("help_caption_editor_80x24", draw(&app, 80, 24).backend());
    let screen = format!("{:?}", draw(&app, 80, 200).backend());
    for heading in [
        "Editing a caption (other keys type; Ctrl-u undoes) (now)",
        "Captions pane, Reviewing normalization",
        "Captions pane, Tag edit",
        "Captions pane, Caption changed on disk while edited",
        "Captions pane, Accepting every draft without findings",
        "Captions pane, Which images to draft captions for",
        "Captions pane, The captioning model's folder (type a path)",
    ] {
        assert!(screen.contains(heading), "no section {heading:?}:\n{screen}");
    }
    for key in [
        "Ctrl-s",
        "save now, keep editing",
        "leave this change out",
        "apply to the listed captions",
        "overwrite it",
        "accept the draft as the caption, then the next",
        "accept all drafts without findings",
        "stop the captioning run after this batch",
    ] {
        assert!(screen.contains(key), "{key:?} is not listed:\n{screen}");
    }
    // Esc closes the help and the editor is still open: typing goes on.
    app.handle_key(Key::plain(KeyCode::Esc));
    app.handle_key(Key::char('!'));
    assert!(app.unsaved().is_some_and(|what| what.contains("zeltmug_01.txt")), "{:?}", app.unsaved());
}

/// The screen as text, a line each.
fn screen(app: &App, width: u16, height: u16) -> String {
    let terminal = draw(app, width, height);
    let buffer = terminal.backend().buffer();
    (0..height).map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect::<String>() + "\n").collect()
}

#[test]
fn re_reading_the_project_shows_its_new_settings_and_a_broken_file_starts_no_run() {
    let dir = demo_copy();
    let mut app = loaded_app(dir.path(), "dark");
    app.apply(Action::ShowPane(PaneId::Train));
    let file = dir.path().join("project.toml");
    let text = fs::read_to_string(&file).unwrap();
    assert!(screen(&app, 100, 30).contains("200 steps of batch"));

    // Changed in another shell, then r: the pane shows (and would train) the new settings.
    fs::write(&file, text.replace("steps = 200", "steps = 300")).unwrap();
    assert_eq!(app.handle_key(Key::char('r')), [Effect::Refresh { captions: false }, Effect::Scan]);
    common::workbench::refresh(&mut app);
    assert_eq!(app.shared.project.config.train.steps, 300);
    assert!(screen(&app, 100, 30).contains("300 steps of batch"), "{}", screen(&app, 100, 30));
    assert!(app.message.text.starts_with("project.toml changed"), "{}", app.message.text);

    // A typo: r names the line and the key, and no run starts until it is fixed.
    fs::write(&file, text.replace("steps = 200", "stesp = 200")).unwrap();
    app.handle_key(Key::char('r'));
    common::workbench::refresh(&mut app);
    let line = text[..text.find("steps = 200").unwrap()].lines().count() + 1;
    let located = format!("project.toml:{line}:1: key `train.stesp`: unknown field `stesp`");
    assert!(app.message.text.starts_with(&located), "{}", app.message.text);
    let shown = screen(&app, 100, 30);
    assert!(shown.contains("⚠ settings") && shown.contains("300 steps of batch"), "{shown}");
    assert_eq!(app.handle_key(Key::char('s')), [], "no run starts");
    assert!(app.message.text.starts_with(&format!("Not starting: {located}")), "{}", app.message.text);
    app.apply(Action::Down);
    assert!(!app.handle_key(Key::char('R')).contains(&Effect::StartTraining { resume: None }));

    // Fixed: the next refresh (the 3 s tick) says so, and s starts the run.
    fs::write(&file, &text).unwrap();
    common::workbench::refresh(&mut app);
    assert_eq!(app.message.text, "The settings are valid again.");
    assert_eq!(app.handle_key(Key::char('s')), [Effect::StartTraining { resume: None }]);

    // vocabulary.toml is read again too, and a rule that cannot stand is named where it is.
    let vocabulary = dir.path().join("vocabulary.toml");
    fs::write(&vocabulary, "[terms]\nmug = [\"cup\"]\nglass = [\"cup\"]\n").unwrap();
    let mut app = loaded_app(dir.path(), "dark");
    app.apply(Action::ShowPane(PaneId::Train));
    assert_eq!(app.handle_key(Key::char('s')), []);
    let located =
        "Not starting: vocabulary.toml:2:1: key `terms.mug`: \"cup\" is an alias of both \"glass\" and \"mug\"";
    assert!(app.message.text.starts_with(located), "{}", app.message.text);
}

#[test]
fn the_help_overlay_reaches_its_last_line_at_every_size_and_f1_closes_it() {
    let dir = demo_copy();
    for (width, height) in [(80, 24), (100, 30), (66, 20), (120, 40)] {
        let mut app = loaded_app(dir.path(), "dark");
        app.apply(Action::ShowPane(PaneId::Evaluate));
        app.apply(Action::ToggleHelp);
        // Paging down shows every key of every section, the last one included.
        let mut seen = screen(&app, width, height);
        for _ in 0..60 {
            app.handle_key(Key::plain(KeyCode::PageDown));
            seen.push_str(&screen(&app, width, height));
        }
        let last = screen(&app, width, height);
        assert!(last.contains("to the end") && last.contains(" end · Esc closes"), "{width}×{height}:\n{last}");
        for (section, bindings) in app.help_sections() {
            for binding in bindings {
                let start: String = binding.description.chars().take(12).collect();
                assert!(seen.contains(&start), "{width}×{height}: {section}: {:?} never shown", binding.description);
            }
        }
        app.handle_key(Key::plain(KeyCode::Home));
        assert!(screen(&app, width, height).contains("Evaluate pane (this pane)"));
    }
    let mut app = loaded_app(dir.path(), "dark");
    app.apply(Action::ShowPane(PaneId::Captions));
    app.apply(Action::EditCaption);
    let editing = screen(&app, 80, 24);
    app.handle_key(Key::plain(KeyCode::F(1)));
    assert!(screen(&app, 80, 24).contains(" Keys "));
    app.handle_key(Key::plain(KeyCode::F(1)));
    assert_eq!(screen(&app, 80, 24), editing, "F1 again: back in the editor");
}

#[test]
fn the_caption_editor_shows_the_findings_the_list_shows() {
    let dir = demo_copy();
    let mut app = loaded_app(dir.path(), "dark");
    app.apply(Action::ShowPane(PaneId::Captions));
    for _ in 0..4 {
        app.apply(Action::Down);
    }
    let finding = "\"cup\" where the other captions say \"mug\"";
    let listed = screen(&app, 120, 36);
    assert!(listed.contains("zeltmug_05.txt") && listed.contains(finding), "{listed}");
    app.apply(Action::EditCaption);
    let editing = screen(&app, 120, 36);
    assert!(editing.contains(finding), "the editor lost the finding:\n{editing}");
}

#[test]
fn esc_closes_the_full_views_and_the_vocabulary_panel() {
    let dir = demo_copy();
    let mut app = loaded_app(dir.path(), "dark");
    scanned(&mut app);
    for (pane, open) in
        [(PaneId::Dataset, Key::char('v')), (PaneId::Samples, Key::char('f')), (PaneId::Captions, Key::char('V'))]
    {
        app.apply(Action::ShowPane(pane));
        let before = screen(&app, 80, 24);
        app.handle_key(open);
        assert_ne!(screen(&app, 80, 24), before, "{pane:?}: nothing opened");
        app.handle_key(Key::plain(KeyCode::Esc));
        assert_eq!(screen(&app, 80, 24), before, "{pane:?}: Esc did not close it");
    }
}

#[test]
fn a_stopped_evaluation_shows_what_it_rendered_and_marks_what_it_did_not() {
    use easel::evaluate::report::{CellRecord, EvalReport};
    let dir = demo_copy();
    let mut app = loaded_app(dir.path(), "dark");
    app.apply(Action::ShowPane(PaneId::Evaluate));
    let run = app.shared.files.runs[0].dir.clone();
    let cell = |prompt: &str, seed: u64, step: Option<u64>, scale: f64| CellRecord {
        prompt: prompt.into(),
        kind: easel::project::PromptKind::In,
        seed,
        scale,
        step,
        file: format!("cell-{prompt}-{seed}-{scale}.png").into(),
        key: String::new(),
        seconds: 1.0,
        scores: Default::default(),
    };
    // Two prompts × two seeds at the base model and at step 50 × scale 1: stopped after 7 of 8.
    let mut cells = Vec::new();
    for (step, scale) in [(None, 0.0), (Some(50), 1.0)] {
        for prompt in ["a zeltmug", "a zeltmug on grass"] {
            for seed in [1, 2] {
                cells.push(cell(prompt, seed, step, scale));
            }
        }
    }
    cells.pop();
    let planned_groups = vec![(None, 0.0), (Some(50), 1.0), (Some(50), 0.5)];
    let report = EvalReport { cells, planned: 12, planned_groups, ..EvalReport::default() };
    app.done(Done::Evaluation(run, Ok(Some(Box::new(report)))));
    let base = screen(&app, 100, 30);
    assert!(base.contains("base model · 7 of 12 cells (stopped: e continues)"), "{base}");
    app.handle_key(Key::plain(KeyCode::Right));
    let step = screen(&app, 100, 30);
    assert!(step.contains("step 50 · scale 1"), "→ moves to the checkpoint:\n{step}");
    assert_eq!(step.matches("not rendered (e)").count(), 1, "{step}");
    // A group the evaluation never reached is there too, every cell marked.
    app.handle_key(Key::plain(KeyCode::Right));
    let unreached = screen(&app, 100, 30);
    assert!(unreached.contains("step 50 · scale 0.5"), "{unreached}");
    assert_eq!(unreached.matches("not rendered (e)").count(), 4, "{unreached}");
}
