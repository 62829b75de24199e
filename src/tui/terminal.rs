//! The terminal guard: raw mode + alternate screen while the TUI runs, restored on every exit
//! path — drop, error, and panic (the hook restores before the panic message prints, so the
//! message is readable and the shell is usable). `suspend`/`resume` hand the terminal to a
//! shell and take it back.

use std::io::{self, Stdout};
use std::sync::Once;

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;

/// The ratatui terminal the runtime draws on.
pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Owns raw mode and the alternate screen.
pub struct TerminalGuard {
    terminal: Term,
    active: bool,
}

impl TerminalGuard {
    /// Enters raw mode and the alternate screen.
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        let mut guard = Self {
            terminal,
            active: false,
        };
        guard.resume()?;
        Ok(guard)
    }

    /// The terminal to draw on.
    pub fn terminal(&mut self) -> &mut Term {
        &mut self.terminal
    }

    /// Gives the terminal back (main screen, cooked mode, cursor shown).
    pub fn suspend(&mut self) -> io::Result<()> {
        self.active = false;
        restore()
    }

    /// Takes the terminal again and forgets what is on screen, so the next draw repaints
    /// everything (the shell wrote over it).
    ///
    /// Not `Terminal::clear`: in ratatui 0.30 it asks the terminal for the cursor position
    /// (an escape-sequence round trip with a 2 s limit), which failed the whole app with
    /// "the cursor position could not be read" when a loaded machine or a slow link answered
    /// late, right after a shell. A fullscreen resize clears the screen and resets the
    /// previous buffer without asking anything.
    pub fn resume(&mut self) -> io::Result<()> {
        enable_raw_mode()?;
        self.active = true;
        execute!(io::stdout(), EnterAlternateScreen, Hide)?;
        let size = self.terminal.size()?;
        self.terminal
            .resize(Rect::new(0, 0, size.width, size.height))
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if self.active {
            let _ = restore();
        }
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor.
pub fn restore() -> io::Result<()> {
    // Try every step even if one fails: a half-restored terminal is the worst outcome.
    let raw = disable_raw_mode();
    let screen = execute!(io::stdout(), LeaveAlternateScreen, Show);
    raw.and(screen)
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = restore();
            previous(info);
        }));
    });
}
