//! Byte progress on stderr for long fetches. A redrawn line on a terminal; a few plain
//! lines otherwise, so CI logs show progress without thousands of updates.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct Progress {
    label: String,
    total: u64,
    enabled: bool,
    tty: bool,
    state: Mutex<State>,
}

struct State {
    done: u64,
    last_draw: Option<Instant>,
    /// Last quarter reported when stderr is not a terminal.
    last_quarter: u64,
}

impl Progress {
    pub(crate) fn new(label: impl Into<String>, total: u64, enabled: bool) -> Self {
        let p = Self {
            label: label.into(),
            total,
            enabled,
            tty: std::io::stderr().is_terminal(),
            state: Mutex::new(State {
                done: 0,
                last_draw: None,
                last_quarter: 0,
            }),
        };
        p.draw(&mut p.state.lock().unwrap(), true);
        p
    }

    /// Record `n` more bytes done.
    pub(crate) fn add(&self, n: u64) {
        let mut s = self.state.lock().unwrap();
        s.done += n;
        self.draw(&mut s, false);
    }

    /// Set the absolute byte count (for sources that report totals, e.g. the hub client).
    pub(crate) fn set(&self, done: u64) {
        let mut s = self.state.lock().unwrap();
        s.done = done;
        self.draw(&mut s, false);
    }

    pub(crate) fn finish(&self) {
        if !self.enabled {
            return;
        }
        let s = self.state.lock().unwrap();
        let mut err = std::io::stderr().lock();
        let cr = if self.tty { "\r" } else { "" };
        let _ = writeln!(err, "{cr}{}: {} done", self.label, mb(s.done));
    }

    fn draw(&self, s: &mut State, force: bool) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let due = s
                .last_draw
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
            if force || due {
                let pct = (s.done * 100).checked_div(self.total).unwrap_or(0);
                let _ = write!(
                    err,
                    "\r{}: {} / {} ({pct}%)",
                    self.label,
                    mb(s.done),
                    mb(self.total)
                );
                let _ = err.flush();
                s.last_draw = Some(Instant::now());
            }
        } else {
            let quarter = (s.done * 4).checked_div(self.total).unwrap_or(0);
            if force || (quarter > s.last_quarter && quarter < 4) {
                s.last_quarter = quarter;
                let _ = writeln!(err, "{}: {} / {}", self.label, mb(s.done), mb(self.total));
            }
        }
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
