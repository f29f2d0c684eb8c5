//! Terminal output: plain lines, a live status line that rewrites itself on
//! a terminal (and prints only changes otherwise, e.g. into a pipe or a log),
//! and one-line errors.

use std::io::{IsTerminal, Write};

/// Prints one line on stdout.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Prints `edge-diffusion: error: …` on stderr, on one line.
pub fn error(text: &str) {
    let one_line = text.replace('\n', " ");
    let _ = writeln!(std::io::stderr().lock(), "edge-diffusion: error: {one_line}");
}

/// A status line that updates in place on a terminal.
pub struct Live {
    tty: bool,
    last: String,
    last_key: String,
}

impl Live {
    /// A live line on stdout.
    pub fn new() -> Self {
        Self { tty: std::io::stdout().is_terminal(), last: String::new(), last_key: String::new() }
    }

    /// Shows `text`: redrawn on a terminal, printed as a new line elsewhere
    /// when it changed.
    pub fn show(&mut self, text: &str) {
        self.show_keyed(text, text);
    }

    /// Like [`Live::show`], but off a terminal a new line is printed only
    /// when `key` changed (so a ticking clock in `text` does not flood a log).
    pub fn show_keyed(&mut self, key: &str, text: &str) {
        let changed = if self.tty { text != self.last } else { key != self.last_key };
        if !changed {
            return;
        }
        let mut out = std::io::stdout().lock();
        if self.tty {
            let _ = write!(out, "\r\x1b[2K{text}");
        } else {
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
        text.clone_into(&mut self.last);
        key.clone_into(&mut self.last_key);
    }

    /// Ends the live line so what follows starts on a fresh line.
    pub fn finish(&mut self) {
        if self.tty && !self.last.is_empty() {
            line("");
        }
        self.last.clear();
        self.last_key.clear();
    }
}
