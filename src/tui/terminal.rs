//! Entering and leaving the full-screen terminal mode. The terminal is put
//! back on every way out: the guard's drop covers normal returns and errors,
//! the panic hook covers panics (before the message prints, so it is
//! readable), and the event loop turns signals into a normal return.

use std::io::{self, Stdout, Write, stdout};
use std::sync::Once;

use crossterm::cursor::Show;
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub type Backend = CrosstermBackend<Stdout>;

/// Owns the full-screen terminal; dropping it restores the terminal.
pub struct TerminalGuard {
    pub terminal: Terminal<Backend>,
}

impl TerminalGuard {
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        enable_raw_mode()?;
        let entered =
            execute!(stdout(), EnterAlternateScreen).and_then(|()| Terminal::new(CrosstermBackend::new(stdout())));
        match entered {
            Ok(terminal) => Ok(Self { terminal }),
            Err(error) => {
                restore();
                Err(error)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor. Safe to
/// call more than once and when the terminal was never set up; each step is
/// tried even when an earlier one fails.
pub fn restore() {
    let raw = disable_raw_mode();
    let screen = execute!(stdout(), LeaveAlternateScreen, Show);
    let _ = stdout().flush();
    if let Err(error) = raw.and(screen) {
        eprintln!("easel: could not fully restore the terminal ({error}); `reset` will.");
    }
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}
