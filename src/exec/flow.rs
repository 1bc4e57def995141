//! Back-pressure between a session loop and whoever consumes its output, counted in bytes.
//!
//! The session loop never waits on its consumer (a paused `| less`, a slow disk): it pushes what
//! arrives and, once [`OutputQueue::is_full`], stops reading the websocket until the consumer
//! has taken enough ([`OutputQueue::drained`]). TCP flow control then holds the agent's output
//! back, as it does for the official plugin, while the loop keeps its timers, keepalives,
//! deadline and Ctrl-C. The consumer releases bytes only once it has passed them on, so a
//! consumer that is itself held back (stdout) holds the session back too.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, mpsc};

/// How many bytes of output may wait between the session and its consumer.
pub const OUTPUT_QUEUE_BYTES: usize = 256 * 1024;

struct Shared {
    queued: AtomicUsize,
    limit: usize,
    drained: Notify,
}

/// The session's end.
pub struct OutputQueue {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    shared: Arc<Shared>,
}

/// The consumer's end.
pub struct OutputReceiver {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
}

/// A queue holding at most about `limit` bytes before the producer holds back.
pub fn output_queue(limit: usize) -> (OutputQueue, OutputReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared { queued: AtomicUsize::new(0), limit, drained: Notify::new() });
    (OutputQueue { tx, shared: Arc::clone(&shared) }, OutputReceiver { rx, shared })
}

/// The consumer has gone.
#[derive(Debug)]
pub struct Closed;

impl OutputQueue {
    /// Queue `bytes` without waiting; fails when the consumer has gone.
    pub fn push(&self, bytes: Vec<u8>) -> Result<(), Closed> {
        let len = bytes.len();
        self.shared.queued.fetch_add(len, Ordering::AcqRel);
        self.tx.send(bytes).map_err(|_| {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            Closed
        })
    }

    /// Whether the producer should stop taking in more.
    pub fn is_full(&self) -> bool {
        self.shared.queued.load(Ordering::Acquire) >= self.shared.limit
    }

    /// Whether the consumer has gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves once there is room again (or the consumer has gone).
    pub async fn drained(&self) {
        loop {
            let notified = self.shared.drained.notified();
            if !self.is_full() || self.is_closed() {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = self.tx.closed() => return,
            }
        }
    }
}

impl OutputReceiver {
    /// The next chunk; call [`OutputReceiver::release`] once it has been passed on.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    /// `len` bytes have left the consumer.
    pub fn release(&self, len: usize) {
        let before = self.shared.queued.fetch_sub(len, Ordering::AcqRel);
        if before >= self.shared.limit && before - len < self.shared.limit {
            self.shared.drained.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_producer_is_held_until_the_consumer_releases() {
        let (queue, mut receiver) = output_queue(10);
        queue.push(vec![0; 6]).unwrap();
        assert!(!queue.is_full());
        queue.push(vec![0; 6]).unwrap();
        assert!(queue.is_full());
        let chunk = receiver.recv().await.unwrap();
        let waiting = tokio::spawn(async move {
            queue.drained().await;
            queue
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "still full until released");
        receiver.release(chunk.len());
        let queue = waiting.await.unwrap();
        assert!(!queue.is_full());
        drop(receiver);
        assert!(queue.push(vec![1]).is_err(), "the consumer has gone");
    }
}
