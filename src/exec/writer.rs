//! The one task that writes a session's socket or pipe.
//!
//! A session loop never awaits a write: it hands items to this task through a bounded channel
//! ([`Writer::has_room`] and [`Writer::try_write`] never wait) and keeps racing its progress
//! against the deadline and Ctrl-C. The task writes each item with a bound; a write that fails,
//! or that has not finished after [`Writer::spawn`]'s `stall` bound (the peer stopped reading and
//! the kernel's buffers are full), is reported as a [`Fault`] for the loop to act on, and the
//! outlet is dropped.
//!
//! A session can change outlets: the native transport attaches a new websocket each time the
//! data channel is resumed. Each attachment is a generation; an item is written only to the
//! outlet of the generation it was queued for, so frames meant for a dropped socket never reach
//! its successor, and [`Writer::detach`] abandons the current outlet at once, even in the middle
//! of a stalled write. Ending is bounded too: [`Writer::close`] gives the outlet its closing
//! (a websocket Close frame, a pipe's end) within the bound it is given, and dropping a writer
//! stops its task.

use futures::SinkExt;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

/// Where a writer writes: one websocket, one pipe, or one forwarded TCP connection
/// ([`crate::portfwd::session`]).
pub trait Outlet: Send + 'static {
    type Item: Send + 'static;
    /// Write one item and flush it.
    fn write(&mut self, item: Self::Item) -> impl Future<Output = Result<(), String>> + Send;
    /// End the stream the polite way (a websocket Close frame, a pipe's end of file).
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// The sending half of a websocket.
impl<S> Outlet for futures::stream::SplitSink<tokio_tungstenite::WebSocketStream<S>, Message>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Item = Message;

    async fn write(&mut self, item: Message) -> Result<(), String> {
        self.send(item).await.map_err(|e| e.to_string())
    }

    async fn close(&mut self) {
        let _ = SinkExt::close(self).await;
    }
}

/// A child process's stdin.
impl Outlet for tokio::process::ChildStdin {
    type Item = Vec<u8>;

    async fn write(&mut self, item: Vec<u8>) -> Result<(), String> {
        use tokio::io::AsyncWriteExt;
        self.write_all(&item).await.map_err(|e| e.to_string())?;
        self.flush().await.map_err(|e| e.to_string())
    }

    async fn close(&mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.shutdown().await;
    }
}

/// What went wrong with a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// The write failed (the peer went away).
    Failed(String),
    /// The write had not finished after the stall bound.
    Stalled(Duration),
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultKind::Failed(reason) => write!(f, "a write failed ({reason})"),
            FaultKind::Stalled(bound) => write!(f, "a write did not finish within {} s", bound.as_secs_f64()),
        }
    }
}

/// A write to the outlet of `generation` went wrong; that outlet has been dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub generation: u64,
    pub kind: FaultKind,
}

/// A new outlet, its generation, and what it must be sent first (before anything queued).
struct Attachment<O: Outlet> {
    generation: u64,
    outlet: O,
    preamble: Vec<O::Item>,
}

enum Command<T> {
    Write(u64, T),
    Close(u64),
}

/// The session's handle on its writer task.
pub struct Writer<O: Outlet> {
    commands: mpsc::Sender<Command<O::Item>>,
    attachments: mpsc::UnboundedSender<Attachment<O>>,
    /// Every generation up to this one has been given up.
    detached: watch::Sender<u64>,
    faults: tokio::sync::Mutex<mpsc::UnboundedReceiver<Fault>>,
    generation: u64,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl<O: Outlet> Writer<O> {
    /// Start the task: `capacity` items may wait for it, and a write that takes longer than
    /// `stall` is reported as stalled.
    pub fn spawn(capacity: usize, stall: Duration) -> Writer<O> {
        let (commands, command_rx) = mpsc::channel(capacity);
        let (attachments, attachment_rx) = mpsc::unbounded_channel();
        let (detached, detached_rx) = watch::channel(0);
        let (fault_tx, faults) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(command_rx, attachment_rx, detached_rx, fault_tx, stall));
        Writer { commands, attachments, detached, faults: faults.into(), generation: 0, task: Some(task) }
    }

    /// Write to `outlet` from now on, `preamble` first (the previous outlet, if any, is given
    /// up); returns its generation. The preamble does not count against the queue.
    pub fn attach(&mut self, outlet: O, preamble: Vec<O::Item>) -> u64 {
        self.detach();
        self.generation += 1;
        let _ = self.attachments.send(Attachment { generation: self.generation, outlet, preamble });
        self.generation
    }

    /// Give up the current outlet at once: a write in progress is abandoned and what is queued
    /// for it is dropped.
    pub fn detach(&mut self) {
        self.detached.send_replace(self.generation);
    }

    /// Whether [`Writer::try_write`] would take an item now.
    pub fn has_room(&self) -> bool {
        self.commands.capacity() > 0
    }

    /// Resolves once there is room for an item.
    pub async fn room(&self) {
        if let Ok(permit) = self.commands.reserve().await {
            drop(permit);
        } else {
            std::future::pending::<()>().await;
        }
    }

    /// Queue `item` for the current outlet without waiting; false when there is no room (or
    /// the task has gone).
    pub fn try_write(&self, item: O::Item) -> bool {
        self.commands.try_send(Command::Write(self.generation, item)).is_ok()
    }

    /// The next fault of the current outlet (faults of outlets given up since are skipped).
    pub async fn fault(&self) -> Fault {
        let mut faults = self.faults.lock().await;
        loop {
            match faults.recv().await {
                Some(fault) if fault.generation == self.generation && *self.detached.borrow() < self.generation => {
                    return fault;
                }
                Some(_) => {}
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Write what is queued, close the outlet and stop, all within `bound`; then the task is
    /// stopped however far it got.
    pub async fn close(mut self, bound: Duration) {
        let Some(mut task) = self.task.take() else { return };
        let generation = self.generation;
        let closing = async {
            if self.commands.send(Command::Close(generation)).await.is_ok() {
                let _ = (&mut task).await;
            }
        };
        if tokio::time::timeout(bound, closing).await.is_err() {
            tracing::debug!("the writer did not close within {} s; stopped", bound.as_secs_f64());
        }
        task.abort();
    }
}

impl<O: Outlet> Drop for Writer<O> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Write `item` to `outlet` within `stall`, unless generation `live` is given up meanwhile
/// (then `Ok(false)`).
async fn write_one<O: Outlet>(
    outlet: &mut O,
    item: O::Item,
    stall: Duration,
    detached: &mut watch::Receiver<u64>,
    live: u64,
) -> Result<bool, FaultKind> {
    tokio::select! {
        written = tokio::time::timeout(stall, outlet.write(item)) => match written {
            Ok(Ok(())) => Ok(true),
            Ok(Err(reason)) => Err(FaultKind::Failed(reason)),
            Err(_) => Err(FaultKind::Stalled(stall)),
        },
        _ = detached.wait_for(|given_up| *given_up >= live) => Ok(false),
    }
}

/// The writer task.
async fn run<O: Outlet>(
    mut commands: mpsc::Receiver<Command<O::Item>>,
    mut attachments: mpsc::UnboundedReceiver<Attachment<O>>,
    mut detached: watch::Receiver<u64>,
    faults: mpsc::UnboundedSender<Fault>,
    stall: Duration,
) {
    let mut current: Option<(u64, O)> = None;
    loop {
        // A new outlet is taken as soon as it comes, so its preamble goes out even when nothing
        // else is queued; an item queued for it is sent after it, so it is there by then.
        let next = tokio::select! {
            biased;
            Some(attachment) = attachments.recv() => Err(attachment),
            command = commands.recv() => match command {
                Some(command) => Ok(command),
                None => return,
            },
        };
        let command = match next {
            Err(Attachment { generation, mut outlet, preamble }) => {
                current = None;
                let mut healthy = true;
                for item in preamble {
                    match write_one(&mut outlet, item, stall, &mut detached, generation).await {
                        Ok(true) => {}
                        Ok(false) => {
                            healthy = false;
                            break;
                        }
                        Err(kind) => {
                            tracing::debug!(generation, %kind, "write fault; the outlet is dropped");
                            let _ = faults.send(Fault { generation, kind });
                            healthy = false;
                            break;
                        }
                    }
                }
                if healthy {
                    current = Some((generation, outlet));
                }
                continue;
            }
            Ok(command) => command,
        };
        let generation = match &command {
            Command::Write(generation, _) | Command::Close(generation) => *generation,
        };
        if current.as_ref().is_some_and(|(live, _)| *live <= *detached.borrow()) {
            current = None;
        }
        let Some((live, outlet)) = current.as_mut().filter(|(live, _)| *live == generation) else {
            // Queued for an outlet that has been given up (or that failed).
            if matches!(command, Command::Close(_)) {
                return;
            }
            continue;
        };
        let live = *live;
        match command {
            Command::Write(_, item) => match write_one(outlet, item, stall, &mut detached, live).await {
                Ok(true) => {}
                Ok(false) => current = None,
                Err(kind) => {
                    tracing::debug!(generation = live, %kind, "write fault; the outlet is dropped");
                    current = None;
                    let _ = faults.send(Fault { generation: live, kind });
                }
            },
            Command::Close(_) => {
                outlet.close().await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::{Arc, Mutex};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// An outlet that records what it is given, and can be told to hang.
    #[derive(Clone, Default)]
    struct Recorder {
        written: Arc<Mutex<Vec<u32>>>,
        hang: Arc<std::sync::atomic::AtomicBool>,
        closed: Arc<std::sync::atomic::AtomicBool>,
        /// Signalled when a write begins.
        entered: Arc<tokio::sync::Notify>,
    }

    impl Outlet for Recorder {
        type Item = u32;
        async fn write(&mut self, item: u32) -> Result<(), String> {
            self.entered.notify_one();
            if self.hang.load(std::sync::atomic::Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if item == u32::MAX {
                return Err("refused".into());
            }
            self.written.lock().unwrap().push(item);
            Ok(())
        }
        async fn close(&mut self) {
            if self.hang.load(std::sync::atomic::Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Reads and discards what arrives on a websocket's receiving half until it ends (tests).
    async fn drain<S>(mut stream: futures::stream::SplitStream<tokio_tungstenite::WebSocketStream<S>>) -> Vec<Message>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut seen = Vec::new();
        while let Some(Ok(message)) = stream.next().await {
            seen.push(message);
        }
        seen
    }

    /// The stall bound in these tests.
    const STALL: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_stalled_write_is_reported_after_the_bound_and_the_caller_never_waits() {
        let mut writer = Writer::<Recorder>::spawn(4, STALL);
        let outlet = Recorder::default();
        outlet.hang.store(true, std::sync::atomic::Ordering::SeqCst);
        let generation = writer.attach(outlet.clone(), Vec::new());
        let started = std::time::Instant::now();
        assert!(writer.try_write(1));
        tokio::time::timeout(Duration::from_secs(5), outlet.entered.notified()).await.expect("the write began");
        // While it hangs the queue fills and then refuses; nothing waits.
        for n in 2..=5 {
            assert!(writer.try_write(n), "item {n}");
        }
        assert!(!writer.has_room());
        assert!(!writer.try_write(6));
        let fault = writer.fault().await;
        assert_eq!(fault, Fault { generation, kind: FaultKind::Stalled(STALL) });
        let took = started.elapsed();
        assert!(took >= STALL && took < STALL * 3, "{took:?}");
        assert!(outlet.written.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_and_drops_the_outlet() {
        let mut writer = Writer::<Recorder>::spawn(8, STALL);
        let outlet = Recorder::default();
        let generation = writer.attach(outlet.clone(), Vec::new());
        assert!(writer.try_write(1));
        assert!(writer.try_write(u32::MAX));
        assert!(writer.try_write(2));
        let fault = writer.fault().await;
        assert_eq!(fault, Fault { generation, kind: FaultKind::Failed("refused".into()) });
        // Closing runs through what is queued: item 2 is not written to the failed outlet.
        writer.close(Duration::from_secs(5)).await;
        assert_eq!(*outlet.written.lock().unwrap(), vec![1]);
        assert!(!outlet.closed.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn detaching_abandons_a_stalled_write_at_once_and_the_next_outlet_gets_only_its_own_items() {
        let mut writer = Writer::<Recorder>::spawn(8, Duration::from_secs(30));
        let first = Recorder::default();
        first.hang.store(true, std::sync::atomic::Ordering::SeqCst);
        writer.attach(first.clone(), Vec::new());
        assert!(writer.try_write(1));
        assert!(writer.try_write(2));
        tokio::time::timeout(Duration::from_secs(5), first.entered.notified()).await.expect("the write began");
        let second = Recorder::default();
        let generation = writer.attach(second.clone(), Vec::new());
        assert_eq!(generation, 2);
        assert!(writer.try_write(3));
        assert!(writer.try_write(4));
        // Well within the 30 s stall bound: the stalled write was given up at once.
        writer.close(Duration::from_secs(5)).await;
        assert_eq!(*second.written.lock().unwrap(), vec![3, 4]);
        assert!(second.closed.load(std::sync::atomic::Ordering::SeqCst));
        assert!(first.written.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn close_writes_what_is_queued_then_closes_and_is_bounded() {
        let mut writer = Writer::<Recorder>::spawn(8, Duration::from_secs(30));
        let outlet = Recorder::default();
        writer.attach(outlet.clone(), Vec::new());
        assert!(writer.try_write(7));
        writer.close(Duration::from_secs(1)).await;
        assert_eq!(*outlet.written.lock().unwrap(), vec![7]);
        assert!(outlet.closed.load(std::sync::atomic::Ordering::SeqCst));

        let mut writer = Writer::<Recorder>::spawn(8, Duration::from_secs(30));
        let stuck = Recorder::default();
        stuck.hang.store(true, std::sync::atomic::Ordering::SeqCst);
        writer.attach(stuck.clone(), Vec::new());
        assert!(writer.try_write(8));
        let started = std::time::Instant::now();
        writer.close(STALL).await;
        let took = started.elapsed();
        assert!(took >= STALL && took < STALL * 3, "{took:?}");
        assert!(!stuck.closed.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// A real websocket whose peer stops reading: once the pipe's buffer is full a write cannot
    /// finish, and the writer says so.
    #[tokio::test]
    async fn a_websocket_whose_peer_stops_reading_is_reported_stalled() {
        let (near, far) = tokio::io::duplex(4096);
        let socket = WebSocketStream::from_raw_socket(near, Role::Client, None).await;
        let (sink, _stream) = socket.split();
        let mut writer = Writer::spawn(64, Duration::from_millis(200));
        let generation = writer.attach(sink, Vec::new());
        let mut queued = 0;
        while writer.try_write(Message::Binary(vec![7u8; 1024].into())) {
            queued += 1;
        }
        assert!(queued >= 8, "{queued}");
        let fault = tokio::time::timeout(Duration::from_secs(5), writer.fault()).await.expect("reported");
        assert_eq!(fault, Fault { generation, kind: FaultKind::Stalled(Duration::from_millis(200)) });
        drop(far);
    }

    /// And a peer that reads gets every message, in order, then the Close frame.
    #[tokio::test]
    async fn a_websocket_peer_that_reads_gets_everything_then_close() {
        let (near, far) = tokio::io::duplex(4096);
        let socket = WebSocketStream::from_raw_socket(near, Role::Client, None).await;
        let peer = WebSocketStream::from_raw_socket(far, Role::Server, None).await;
        let (_peer_sink, peer_stream) = peer.split();
        let reading = tokio::spawn(drain(peer_stream));
        let (sink, _stream) = socket.split();
        let mut writer = Writer::spawn(64, Duration::from_secs(5));
        writer.attach(sink, vec![Message::Text("first".into())]);
        for n in 0..20u8 {
            assert!(writer.try_write(Message::Binary(vec![n; 100].into())));
        }
        writer.close(Duration::from_secs(1)).await;
        let seen = tokio::time::timeout(Duration::from_secs(5), reading).await.unwrap().unwrap();
        let payloads: Vec<u8> = seen
            .iter()
            .filter_map(|m| match m {
                Message::Binary(bytes) => Some(bytes[0]),
                _ => None,
            })
            .collect();
        assert_eq!(payloads, (0..20).collect::<Vec<u8>>());
        assert_eq!(seen.first(), Some(&Message::Text("first".into())), "the preamble goes first");
        assert!(matches!(seen.last(), Some(Message::Close(_))), "{:?}", seen.last());
    }
}
