//! Ctrl-C (SIGINT) and SIGTERM during a job: the work stops at the next
//! batch boundary, the shards already complete stay on disk and in the
//! manifest (whose status stays "running"), and the command says how far
//! it got and exits 128 + the signal. A second signal ends the process at
//! once, for a stop that does not come.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

static SIGNAL: AtomicUsize = AtomicUsize::new(0);
static ARMED: AtomicBool = AtomicBool::new(false);

/// Installs the handlers (once per process; later calls do nothing).
pub fn install() -> std::io::Result<()> {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    for sig in [SIGINT, SIGTERM] {
        // The order matters: the shutdown sees the flag of the signal before.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, &ARMED)?;
        signal_hook::flag::register_usize(sig, &SIGNAL, sig as usize)?;
        signal_hook::flag::register(sig, &ARMED)?;
    }
    let _ = DONE.set(());
    Ok(())
}

/// The signal that asked the job to stop, if one did.
pub fn requested() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s as i32),
    }
}

/// A job stopped by a signal, after keeping what was complete.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: {done} of {total} shards complete; rerun the same command to resume")]
pub struct Interrupted {
    pub done: usize,
    pub total: usize,
    pub signal: i32,
}

impl Interrupted {
    /// 130 for SIGINT, 143 for SIGTERM (the shell's convention).
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal) as u8
    }
}
