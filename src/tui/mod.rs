//! The workbench: a tokio event loop over terminal events, background
//! refreshes of the project's files, and signals; state in `app`, drawing
//! in `view`.

mod action;
mod app;
mod caption_editor;
mod help;
mod keymap;
mod panes;
mod preview;
mod review;
mod terminal;
pub mod theme;
mod view;

use std::io;
use std::time::Duration;

use crossterm::event::{Event, EventStream};
use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

pub use action::{Action, PaneId};
pub use app::{App, Effect, ProjectFiles, SharedContext};
pub use keymap::{Key, Keymap};
pub use review::{Filter, ScanResult, Sort};
pub use theme::Theme;
pub use view::render;

use crate::dataset::Inventory;
use crate::project::Project;
use crate::train::{Command, Resume, TrainOptions, list_runs, read_metrics};

/// How often the project's files are re-read, so that new images, captions
/// edited elsewhere and runs started by another process show up.
const REFRESH_EVERY: Duration = Duration::from_secs(3);

/// How the workbench ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Quit,
    /// Ended by a signal (SIGTERM, SIGHUP, SIGINT, SIGQUIT), with its number.
    Signal(i32),
}

/// Opens the workbench on `project` and runs until the user quits or a
/// signal arrives. The terminal is restored on every way out.
pub fn run(project: Project, theme: Theme) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let mut guard = terminal::TerminalGuard::enter()?;
        let mut app = App::new(project, theme);
        app.picker = image_picker();
        let result = event_loop(&mut guard, app).await;
        drop(guard);
        result
    })
}

/// How to draw images. Outside tmux the terminal is asked (Kitty, Sixel,
/// iTerm2); inside tmux, Unicode half-blocks, which always work there, since
/// the query waits for answers tmux does not pass on (seconds of a blank
/// screen, keys lost). `EASEL_IMAGES=query|halfblocks` overrides either way.
/// Asking must happen before events are read.
fn image_picker() -> ratatui_image::picker::Picker {
    use ratatui_image::picker::Picker;
    let inside_tmux = std::env::var_os("TMUX").is_some();
    match std::env::var("EASEL_IMAGES").as_deref() {
        Ok("halfblocks") => Picker::halfblocks(),
        Ok("query") => Picker::from_query_stdio().unwrap_or_else(|_| Picker::halfblocks()),
        _ if inside_tmux => Picker::halfblocks(),
        _ => Picker::from_query_stdio().unwrap_or_else(|_| Picker::halfblocks()),
    }
}

/// Reads the dataset, the runs and the shown runs' metrics off the UI thread;
/// the captions are linted again when they (or the vocabulary) changed.
fn spawn_refresh(app: &mut App, results: mpsc::Sender<ProjectFiles>) {
    let rebuild_captions = std::mem::take(&mut app.captions_stale) || app.files.captions.is_none();
    let project = app.project.clone();
    let dataset = app.project.dataset_dir();
    let runs = app.project.runs_dir();
    let previous = app.files.inventory.clone();
    let extension = app.project.config.caption_extension.clone();
    let (shown, compare) = app.metrics_targets();
    tokio::task::spawn_blocking(move || {
        let inventory = Inventory::read(&dataset, &extension, Some(&previous));
        let (captions, caption_context) = if rebuild_captions || inventory != previous {
            let (report, context) = crate::captions::CaptionReport::build(&project);
            (Some(report), context.map(|c| app::SharedContext(std::sync::Arc::new(c))))
        } else {
            (None, None)
        };
        let files = ProjectFiles {
            inventory,
            runs: list_runs(&runs),
            metrics: shown.as_deref().map(read_metrics),
            compare_metrics: compare.as_deref().map(read_metrics),
            captions,
            caption_context,
        };
        let _ = results.blocking_send(files);
    });
}

/// Writes captions through the journal (or a rule into vocabulary.toml).
fn run_caption_job(
    project: &Project,
    job: &caption_editor::CaptionJob,
) -> Result<String, crate::captions::journal::JournalError> {
    use crate::captions::journal::{Change, Journal, JournalError, read_text};
    use caption_editor::CaptionJob;
    let dataset = project.dataset_dir();
    let mut journal = Journal::open(&dataset);
    match job {
        CaptionJob::Save { file, before, after, force, .. } => {
            // The file's exact text (a trailing newline, say) is what undo brings back.
            let on_disk = read_text(&dataset.join(file))?;
            let unchanged = on_disk.as_deref().unwrap_or("").trim() == before.as_deref().unwrap_or("").trim();
            let before = if *force || unchanged { on_disk } else { before.clone() };
            let change = Change { path: file.clone(), before, after: Some(after.clone()) };
            journal.apply(&format!("edit {}", file.display()), vec![change])?;
            Ok(format!("Saved {} (u undoes).", file.display()))
        }
        CaptionJob::Apply { label, changes } => {
            let count = journal.apply(label, changes.clone())?;
            Ok(format!("Applied: {label} ({count} files; u undoes)."))
        }
        CaptionJob::Undo => Ok(match journal.undo()? {
            Some(label) => format!("Undid: {label} (U redoes)."),
            None => "Nothing to undo.".into(),
        }),
        CaptionJob::Redo => Ok(match journal.redo()? {
            Some(label) => format!("Redid: {label}."),
            None => "Nothing to redo.".into(),
        }),
        CaptionJob::AcceptRule { canonical, alias } => {
            crate::captions::vocabulary::Vocabulary::add_alias(&project.root, canonical, alias)
                .map_err(|e| JournalError::Io(format!("{e:#}")))?;
            Ok(format!("Added {canonical} = [\"{alias}\"] to vocabulary.toml (N reviews what it changes)."))
        }
    }
}

/// What a background scan reports to the loop.
enum ScanUpdate {
    Progress(usize, usize),
    Done(ScanResult),
}

/// Scans the dataset off the UI thread (rayon inside), reporting progress.
fn spawn_scan(app: &App, updates: mpsc::UnboundedSender<ScanUpdate>) {
    use crate::dataset::decisions;
    let project = app.project.clone();
    tokio::task::spawn_blocking(move || {
        let config = &project.config;
        let dataset = project.dataset_dir();
        // A reject or restore cut short last time is completed before looking.
        let _ = decisions::recover(&dataset);
        let progress = |done: usize, total: usize| {
            // About a hundred messages per scan move the gauge smoothly.
            if done == total || done.is_multiple_of((total / 100).max(1)) {
                let _ = updates.send(ScanUpdate::Progress(done, total));
            }
        };
        let report = crate::dataset::scan::scan(&dataset, &project.cache_dir(), config, &progress);
        let result = ScanResult {
            report,
            rejected: decisions::rejected_images(&dataset),
            kept: decisions::Kept::read(&dataset),
        };
        let _ = updates.send(ScanUpdate::Done(result));
    });
}

/// Starts the trainer on its own thread; its events are forwarded to the loop.
fn start_training(
    app: &App,
    resume: Option<String>,
    events: mpsc::UnboundedSender<crate::train::Event>,
) -> std::sync::mpsc::Sender<Command> {
    let options = TrainOptions {
        resume: resume.map(Resume::Run),
        device: crate::device::default_device(),
        ..TrainOptions::default()
    };
    let handle = crate::train::spawn(app.project.clone(), options);
    std::thread::spawn(move || {
        for event in handle.events.iter() {
            if events.send(event).is_err() {
                break;
            }
        }
    });
    handle.commands
}

async fn event_loop(guard: &mut terminal::TerminalGuard, mut app: App) -> anyhow::Result<Exit> {
    let mut events = EventStream::new();
    let (files_tx, mut files_rx) = mpsc::channel(1);
    let mut refresh_in_flight = true;
    // A refresh asked for while one runs: that one may have read the files
    // before the change that asked, so another follows it.
    let mut refresh_queued = false;
    spawn_refresh(&mut app, files_tx.clone());
    let (trainer_tx, mut trainer_rx) = mpsc::unbounded_channel();
    let mut trainer: Option<std::sync::mpsc::Sender<Command>> = None;
    let (scan_tx, mut scan_rx) = mpsc::unbounded_channel();
    let mut scan_in_flight = false;
    let mut previews_in_flight = 0usize;
    let (preview_tx, mut preview_rx) =
        mpsc::unbounded_channel::<(std::path::PathBuf, Result<image::DynamicImage, String>)>();
    // Metrics are re-read on trainer events, at most this often.
    let mut last_refresh = tokio::time::Instant::now();
    let mut refresh_tick = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH_EVERY, REFRESH_EVERY);
    refresh_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let crash_drill = std::env::var("EASEL_CRASH_DRILL").ok();

    loop {
        guard.terminal.draw(|frame| view::render(&app, frame))?;
        // Two decodes at a time: holding a key down must not start dozens. What
        // is not started now is forgotten, and asked for again if still shown.
        for path in app.previews.take_wanted() {
            if previews_in_flight >= 2 {
                app.previews.forget(&path);
                continue;
            }
            previews_in_flight += 1;
            let results = preview_tx.clone();
            tokio::task::spawn_blocking(move || {
                let result = preview::decode(&path);
                let _ = results.send((path, result));
            });
        }
        // Test support: prove that a panic or an error after the screen is up
        // still leaves the terminal usable (see tests/tui_e2e.rs).
        match crash_drill.as_deref() {
            Some("panic") => panic!("crash drill: panic inside the workbench"),
            Some("error") => anyhow::bail!("crash drill: error inside the workbench"),
            _ => {}
        }

        let effect = tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => Key::from_event(&key).and_then(|key| app.handle_key(key)),
                Some(Ok(_)) => None, // resize and the rest: redraw
                Some(Err(error)) => return Err(error.into()),
                None => return Ok(Exit::Quit), // the terminal went away
            },
            Some(files) = files_rx.recv() => {
                refresh_in_flight = false;
                app.files_loaded(files);
                std::mem::take(&mut refresh_queued).then_some(Effect::Refresh)
            }
            Some((path, result)) = preview_rx.recv() => {
                previews_in_flight -= 1;
                app.previews.loaded(path, result);
                None
            }
            Some(update) = scan_rx.recv() => {
                match update {
                    ScanUpdate::Progress(done, total) => app.scan_progress(done, total),
                    ScanUpdate::Done(result) => {
                        scan_in_flight = false;
                        app.scan_loaded(result);
                    }
                }
                None
            }
            Some(event) = trainer_rx.recv() => {
                app.trainer_event(&event);
                (last_refresh.elapsed() > Duration::from_millis(300)).then_some(Effect::Refresh)
            }
            _ = refresh_tick.tick() => (!refresh_in_flight).then_some(Effect::Refresh),
            _ = terminate.recv() => return Ok(Exit::Signal(15)),
            _ = hangup.recv() => return Ok(Exit::Signal(1)),
            _ = interrupt.recv() => return Ok(Exit::Signal(2)),
            _ = quit.recv() => return Ok(Exit::Signal(3)),
        };

        let effect = match effect {
            Some(Effect::Caption(job)) => {
                let result = run_caption_job(&app.project, &job);
                app.caption_job_done(&job, result);
                Some(Effect::Refresh)
            }
            Some(Effect::Decide(decision)) => {
                use crate::dataset::decisions::{self, Decision, Kept};
                let dataset = app.project.dataset_dir();
                let result = decisions::apply(&dataset, &decision, &app.project.config.caption_extension);
                let moved_files = matches!(decision, Decision::Reject(_) | Decision::Restore(_));
                let kept = (!moved_files).then(|| Kept::read(&dataset));
                app.decision_done(result.map_err(|error| format!("{error:#}")), kept);
                moved_files.then_some(Effect::Refresh)
            }
            effect => effect,
        };
        match effect {
            Some(Effect::Quit) => return Ok(Exit::Quit),
            Some(Effect::Refresh) if !refresh_in_flight => {
                refresh_in_flight = true;
                last_refresh = tokio::time::Instant::now();
                spawn_refresh(&mut app, files_tx.clone());
            }
            Some(Effect::StartTraining { resume }) => trainer = Some(start_training(&app, resume, trainer_tx.clone())),
            Some(Effect::Trainer(command)) => {
                if trainer.as_ref().is_none_or(|commands| commands.send(command).is_err()) {
                    app.info("The trainer is no longer running.".into());
                }
            }
            Some(Effect::Refresh) => refresh_queued = true,
            None | Some(Effect::Decide(_) | Effect::Caption(_)) => {}
            Some(effect @ (Effect::SaveTheme | Effect::SaveThenQuit)) => {
                // Quitting saves an open caption edit too; a failed save keeps the workbench open.
                if effect == Effect::SaveThenQuit
                    && let Some(job) = app.pending_caption_save()
                {
                    let result = run_caption_job(&app.project, &job);
                    let failed = result.is_err();
                    app.caption_job_done(&job, result);
                    if failed {
                        app.overlay = None;
                        continue;
                    }
                }
                let theme = app.theme.name.clone();
                let saved = if app.theme.name == app.saved_theme { Ok(()) } else { app.project.save_theme(&theme) };
                match saved {
                    Ok(()) => {
                        app.theme_saved();
                        if effect == Effect::SaveThenQuit {
                            return Ok(Exit::Quit);
                        }
                    }
                    Err(error) => app.save_failed(error.to_string()),
                }
            }
        }
        if app.scan_wanted && !scan_in_flight {
            app.scan_wanted = false;
            scan_in_flight = true;
            spawn_scan(&app, scan_tx.clone());
        }
    }
}

/// Whether both ends of the terminal are interactive, as the workbench needs.
pub fn is_interactive() -> bool {
    use std::io::IsTerminal;
    io::stdin().is_terminal() && io::stdout().is_terminal()
}
