//! Runs an [`Engine`] on its own thread; any thread submits and cancels requests.

use crate::counters::Counters;
use crate::engine::{Engine, RequestId};
use crate::request::{EventSink, GenerationRequest, Limits, RequestError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

enum Command {
    Add(RequestId, GenerationRequest, Box<dyn EventSink>),
    Cancel(RequestId),
}

pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    limits: Limits,
    max_waiting: usize,
    next_id: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl EngineHandle {
    pub fn spawn(mut engine: Engine) -> Self {
        let (tx, rx) = mpsc::channel::<Command>();
        let counters = engine.counters();
        let limits = engine.limits();
        let max_waiting = engine.config().max_waiting_requests;
        let thread = std::thread::Builder::new()
            .name("looptree-engine".into())
            .spawn(move || {
                let apply = |engine: &mut Engine, cmd: Command| match cmd {
                    Command::Add(id, req, sink) => {
                        let _ = engine.add_request_with_id(id, req, sink);
                    }
                    Command::Cancel(id) => engine.cancel(id),
                };
                loop {
                    if !engine.has_work() {
                        // Idle: sleep until a command arrives; all senders gone = shut down.
                        match rx.recv() {
                            Ok(cmd) => apply(&mut engine, cmd),
                            Err(_) => return,
                        }
                    }
                    while let Ok(cmd) = rx.try_recv() {
                        apply(&mut engine, cmd);
                    }
                    engine.step();
                }
            })
            .expect("spawn engine thread");
        Self { tx, counters, limits, max_waiting, next_id: Arc::new(AtomicU64::new(0)), thread: Some(thread) }
    }

    /// Checks and queues a request; its events go to `sink` from the engine thread.
    pub fn submit(&self, req: GenerationRequest, sink: Box<dyn EventSink>) -> Result<RequestId, RequestError> {
        self.limits.check(&req)?;
        if self.counters.waiting.load(Ordering::Relaxed) as usize >= self.max_waiting {
            return Err(RequestError::QueueFull);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.tx.send(Command::Add(id, req, sink)).map_err(|_| RequestError::EngineStopped)?;
        Ok(id)
    }

    pub fn cancel(&self, id: RequestId) {
        let _ = self.tx.send(Command::Cancel(id));
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        // Closing the channel stops the thread once it is idle.
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
