//! What the long-running commands (`easel train`, `eval`, `captions auto`)
//! share on the command line: durations as m:ss or h:mm:ss, a progress line
//! that is redrawn in place on a terminal and logged as plain lines
//! otherwise, and stopping cleanly on Ctrl-C, SIGTERM or SIGHUP.

use std::io::{IsTerminal, Stdout, Write};

pub fn duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    if seconds >= 3600 {
        format!("{}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
    } else {
        format!("{}:{:02}", seconds / 60, seconds % 60)
    }
}

/// Progress on stdout: on a terminal one line redrawn in place, in a log
/// (stdout not a TTY) one line per update.
pub struct ProgressLine {
    out: Stdout,
    tty: bool,
    drawn: bool,
}

impl ProgressLine {
    pub fn new() -> Self {
        Self { out: std::io::stdout(), tty: std::io::stdout().is_terminal(), drawn: false }
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

impl Default for ProgressLine {
    fn default() -> Self {
        Self::new()
    }
}

/// Calls `stop` once, on the first Ctrl-C, SIGTERM or SIGHUP: the command
/// then ends its work at the next safe point (a checkpoint, a saved batch)
/// instead of the process dying mid-write.
pub fn on_stop_signal(stop: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            stop();
        });
    });
}
