//! The workbench: a tokio event loop over terminal input, finished jobs,
//! a refresh tick and signals. State in `app` (the panes in `panes/`, what
//! they share in `shared`), background work in `jobs`, drawing in `view`.

mod action;
mod app;
mod effect;
mod fit;
mod help;
pub mod jobs;
mod keymap;
mod pane;
mod panes;
mod preview;
mod shared;
mod terminal;
pub mod theme;
mod view;
mod widgets;

use std::io;
use std::time::Duration;

use crossterm::event::{Event, EventStream};
use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};

pub use action::{Action, PaneId};
pub use app::App;
pub use effect::Effect;
pub use jobs::{Done, ScanResult};
pub use keymap::Key;
pub use shared::{ProjectFiles, SharedContext};
pub use theme::Theme;
pub use view::render;

use crate::project::Project;
use jobs::Jobs;

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
        app.shared.picker = image_picker();
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

/// What woke the loop.
enum Wake {
    Key(Key),
    /// A resize, a focus change, a key that is no key: just redraw.
    Redraw,
    Done(Done),
    Tick,
    Exit(Exit),
}

/// The loop: draw, wait for the next input or finished job, apply it, start
/// the effects. Keys already waiting are applied before the next frame, so
/// a burst of input (a paste, a held key) costs one frame.
async fn event_loop(guard: &mut terminal::TerminalGuard, mut app: App) -> anyhow::Result<Exit> {
    let mut events = EventStream::new();
    let mut jobs = Jobs::default();
    let opening = app.start();
    if start(&mut app, &mut jobs, opening).is_break() {
        return Ok(Exit::Quit);
    }
    let mut refresh_tick = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH_EVERY, REFRESH_EVERY);
    refresh_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let crash_drill = std::env::var("EASEL_CRASH_DRILL").ok();

    loop {
        guard.terminal.draw(|frame| view::render(&app, frame))?;
        // Drawing asks for the images it could not show yet.
        let previews = app.shared.previews.take_wanted().into_iter().map(Effect::Preview).collect();
        if start(&mut app, &mut jobs, previews).is_break() {
            return Ok(Exit::Quit);
        }
        // Test support: prove that a panic or an error after the screen is up
        // still leaves the terminal usable (see tests/tui_e2e.rs).
        match crash_drill.as_deref() {
            Some("panic") => panic!("crash drill: panic inside the workbench"),
            Some("error") => anyhow::bail!("crash drill: error inside the workbench"),
            _ => {}
        }

        let mut wake = tokio::select! {
            event = events.next() => terminal_event(event)?,
            done = jobs.next() => Wake::Done(done),
            _ = refresh_tick.tick() => Wake::Tick,
            _ = terminate.recv() => Wake::Exit(Exit::Signal(15)),
            _ = hangup.recv() => Wake::Exit(Exit::Signal(1)),
            _ = interrupt.recv() => Wake::Exit(Exit::Signal(2)),
            _ = quit.recv() => Wake::Exit(Exit::Signal(3)),
        };
        loop {
            let effects = match wake {
                Wake::Key(key) => app.handle_key(key),
                Wake::Redraw => Vec::new(),
                Wake::Done(done) => app.done(done),
                // A tick while a read runs is skipped, not queued: the files are being read.
                Wake::Tick if jobs.reading_files() => Vec::new(),
                Wake::Tick => vec![Effect::Refresh { captions: false }],
                Wake::Exit(exit) => return Ok(exit),
            };
            if start(&mut app, &mut jobs, effects).is_break() {
                return Ok(Exit::Quit);
            }
            jobs.start_queued(&app.shared);
            // More input already waiting is applied before drawing. (Polled with
            // this task's waker: the stream keeps the first waker it is given.)
            match tokio::time::timeout(Duration::ZERO, events.next()).await {
                Ok(event) => wake = terminal_event(event)?,
                Err(_) => break,
            }
        }
    }
}

/// Starts the effects as jobs; what a job decides at once goes straight back
/// to the app (and its effects are started too). Breaks on `Quit`.
fn start(app: &mut App, jobs: &mut Jobs, mut effects: Vec<Effect>) -> std::ops::ControlFlow<()> {
    while !effects.is_empty() {
        let mut next = Vec::new();
        for effect in effects {
            if effect == Effect::Quit {
                return std::ops::ControlFlow::Break(());
            }
            if let Some(done) = jobs.start(effect, &app.shared) {
                next.extend(app.done(done));
            }
        }
        effects = next;
    }
    std::ops::ControlFlow::Continue(())
}

/// A terminal event as a reason to wake.
fn terminal_event(event: Option<std::io::Result<Event>>) -> anyhow::Result<Wake> {
    Ok(match event {
        Some(Ok(Event::Key(key))) => Key::from_event(&key).map_or(Wake::Redraw, Wake::Key),
        Some(Ok(_)) => Wake::Redraw,
        Some(Err(error)) => return Err(error.into()),
        None => Wake::Exit(Exit::Quit), // the terminal went away
    })
}

/// Whether both ends of the terminal are interactive, as the workbench needs.
pub fn is_interactive() -> bool {
    use std::io::IsTerminal;
    io::stdin().is_terminal() && io::stdout().is_terminal()
}
