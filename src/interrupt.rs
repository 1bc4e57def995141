//! Ctrl-C and SIGTERM, seen by whoever needs them.
//!
//! `main` installs the listener once; from then on the first SIGINT or SIGTERM is recorded here
//! and every [`wait`] resolves. Work that must end cleanly watches it: an exec session ends its
//! session (TerminateSession) and returns, a scaling change stops after the step in flight, the
//! connect runbook says what state things are in. Work that has nothing to clean up is simply
//! dropped by `main`. A second signal means "now": `main` stops waiting for the clean end.
//! Before [`install`] (unit tests, library use) nothing is ever signalled.

use crate::error::Signal;
use std::sync::OnceLock;
use tokio::sync::watch;

/// How many signals arrived, and the first one.
type Seen = (u32, Option<Signal>);

fn channel() -> &'static watch::Sender<Seen> {
    static CHANNEL: OnceLock<watch::Sender<Seen>> = OnceLock::new();
    CHANNEL.get_or_init(|| watch::channel((0, None)).0)
}

/// Start listening for SIGINT and SIGTERM (call once, inside the runtime).
pub fn install() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return;
    };
    tokio::spawn(async move {
        loop {
            let which = tokio::select! {
                _ = interrupt.recv() => Signal::Interrupt,
                _ = terminate.recv() => Signal::Terminate,
            };
            channel().send_modify(|(count, first)| {
                *count += 1;
                first.get_or_insert(which);
            });
        }
    });
}

/// The first signal, if one arrived.
pub fn requested() -> Option<Signal> {
    channel().borrow().1
}

/// Resolves at the first signal (never, when none comes).
pub async fn wait() -> Signal {
    wait_for(1).await
}

/// `work`, unless a signal comes first: then an interruption that says nothing was started.
pub async fn before_starting<T>(
    work: impl std::future::Future<Output = crate::error::Result<T>>,
) -> crate::error::Result<T> {
    if let Some(signal) = requested() {
        return Err(nothing_started(signal));
    }
    tokio::select! {
        result = work => result,
        signal = wait() => Err(nothing_started(signal)),
    }
}

fn nothing_started(signal: Signal) -> crate::error::Error {
    crate::error::Error::Interrupted {
        signal,
        message: format!("interrupted ({}) before anything was started", signal.name()),
        fix: None,
    }
}

/// Resolves at the second signal: the user insists.
pub async fn wait_again() -> Signal {
    wait_for(2).await
}

async fn wait_for(count: u32) -> Signal {
    let mut seen = channel().subscribe();
    match seen.wait_for(|(n, _)| *n >= count).await {
        Ok(value) => value.1.unwrap_or(Signal::Interrupt),
        Err(_) => std::future::pending().await,
    }
}
