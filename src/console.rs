//! What the command line's commands share: durations as m:ss or h:mm:ss, a
//! progress line that is redrawn in place on a terminal and logged as plain
//! lines otherwise, stopping cleanly on Ctrl-C, SIGTERM or SIGHUP (and the
//! exit status that says so), and ending quietly on a closed pipe.

use std::io::{IsTerminal, Stderr, Stdout, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

pub fn duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    if seconds >= 3600 {
        format!("{}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
    } else {
        format!("{}:{:02}", seconds / 60, seconds % 60)
    }
}

/// Progress on stdout (or stderr): on a terminal one line redrawn in place,
/// in a log (not a TTY) one line per update.
pub struct ProgressLine<W: Write + IsTerminal = Stdout> {
    out: W,
    tty: bool,
    drawn: bool,
}

impl ProgressLine<Stdout> {
    pub fn new() -> Self {
        Self::on(std::io::stdout())
    }
}

impl ProgressLine<Stderr> {
    /// For a command whose output is the file it writes, with stdout kept for what it says at the end.
    pub fn stderr() -> Self {
        Self::on(std::io::stderr())
    }
}

impl<W: Write + IsTerminal> ProgressLine<W> {
    fn on(out: W) -> Self {
        Self { tty: out.is_terminal(), out, drawn: false }
    }

    pub fn show(&mut self, line: &str) {
        let _ = if self.tty { write!(self.out, "\r\x1b[2K{line}") } else { writeln!(self.out, "{line}") };
        let _ = self.out.flush();
        self.drawn = true;
    }

    /// Ends the redrawn line, so what is printed next starts on its own line.
    pub fn finish(&mut self) {
        if self.tty && self.drawn {
            let _ = writeln!(self.out);
        }
        self.drawn = false;
    }
}

impl Default for ProgressLine<Stdout> {
    fn default() -> Self {
        Self::new()
    }
}

/// Which stop signal arrived, once one has.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicI32>);

impl StopSignal {
    /// The signal's number (`libc::SIGINT`, …), or `None` while none has come.
    pub fn received(&self) -> Option<i32> {
        Some(self.0.load(Ordering::Acquire)).filter(|&number| number != 0)
    }
}

/// Calls `stop` once, on the first Ctrl-C, SIGTERM or SIGHUP: the command
/// then ends its work at the next safe point (a checkpoint, a saved batch)
/// instead of the process dying mid-write. The returned [`StopSignal`] says
/// which signal it was, for the exit status ([`signal_exit_code`]).
pub fn on_stop_signal(stop: impl FnOnce() + Send + 'static) -> StopSignal {
    let signal = StopSignal::default();
    let received = Arc::clone(&signal.0);
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
                return;
            };
            let number = tokio::select! {
                _ = tokio::signal::ctrl_c() => libc::SIGINT,
                _ = term.recv() => libc::SIGTERM,
                _ = hup.recv() => libc::SIGHUP,
            };
            received.store(number, Ordering::Release);
            stop();
        });
    });
    signal
}

/// The exit status a shell gives a command that signal `number` ended: 128 + n
/// (130 for Ctrl-C), so scripts can tell an interrupted run from a finished one.
pub fn signal_exit_code(number: i32) -> ExitCode {
    ExitCode::from(u8::try_from(128 + number).unwrap_or(u8::MAX))
}

/// Lets a closed pipe end the process as it ends other command-line tools
/// (`easel scan --json | head`): killed by SIGPIPE, silently, status 141 in
/// a shell. Rust starts with SIGPIPE ignored, so a write to a closed pipe
/// fails instead and `println!` panics on the failure. Only for commands
/// that lose nothing by ending at any write.
pub fn end_on_closed_pipe() {
    // SAFETY: sets one signal back to its default action; no handler of ours runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
