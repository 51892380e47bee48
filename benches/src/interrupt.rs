//! Ctrl-C: the first stops the run (requests in flight end, what was measured is
//! reported); a second exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static STOP: AtomicBool = AtomicBool::new(false);

pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if STOP.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!(
                "\ninterrupted: finishing with what was measured so far (Ctrl-C again to quit now)"
            );
        });
    });
}

pub fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}
