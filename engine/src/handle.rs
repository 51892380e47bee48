//! Runs an [`Engine`] on its own thread; any thread submits and cancels requests.

use crate::counters::Counters;
use crate::prefix_kv::PrefixKv;
use crate::request::{EventSink, GenerationRequest, Limits, RequestError};
use crate::scheduler::{Engine, RequestId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[allow(clippy::large_enum_variant)] // one command per request: boxing it would only add an allocation
enum Command {
    Add(RequestId, GenerationRequest, Box<dyn EventSink>),
    Cancel(RequestId),
    CachedLen(Vec<u32>, mpsc::Sender<usize>),
    Export(
        Vec<u32>,
        usize,
        mpsc::Sender<Result<(Option<PrefixKv>, bool), String>>,
    ),
    Import(Box<PrefixKv>, Duration, mpsc::Sender<Result<usize, String>>),
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
                    Command::CachedLen(tokens, reply) => {
                        let _ = reply.send(engine.cached_prefix_len(&tokens));
                    }
                    Command::Export(tokens, min_len, reply) => {
                        let exported = engine
                            .export_prefix(&tokens, min_len)
                            .map_err(|e| e.to_string());
                        let _ = reply.send(exported.map(|p| {
                            // What is held: the exported prefix, or (below min_len) a walk of the tree.
                            let held = p.as_ref().map_or_else(
                                || engine.cached_prefix_len(&tokens),
                                |p| p.tokens.len(),
                            );
                            let computing = engine.prefilling_past(&tokens, held);
                            (p, computing)
                        }));
                    }
                    Command::Import(prefix, keep, reply) => {
                        let _ = reply.send(engine.import_prefix(&prefix, keep));
                    }
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
        Self {
            tx,
            counters,
            limits,
            max_waiting,
            next_id: Arc::new(AtomicU64::new(0)),
            thread: Some(thread),
        }
    }

    /// Checks and queues a request; its events go to `sink` from the engine thread.
    pub fn submit(
        &self,
        req: GenerationRequest,
        sink: Box<dyn EventSink>,
    ) -> Result<RequestId, RequestError> {
        self.limits.check(&req)?;
        if self.counters.waiting.load(Ordering::Relaxed) as usize >= self.max_waiting {
            return Err(RequestError::QueueFull);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Command::Add(id, req, sink))
            .map_err(|_| RequestError::EngineStopped)?;
        Ok(id)
    }

    pub fn cancel(&self, id: RequestId) {
        let _ = self.tx.send(Command::Cancel(id));
    }

    /// How many leading tokens of `tokens` the prefix tree holds (asked between steps).
    pub fn cached_prefix_len(&self, tokens: Vec<u32>) -> Result<usize, RequestError> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Command::CachedLen(tokens, tx))
            .map_err(|_| RequestError::EngineStopped)?;
        rx.recv().map_err(|_| RequestError::EngineStopped)
    }

    /// See [`Engine::export_prefix`], and whether the engine is still prefilling more of
    /// `tokens` ([`Engine::prefilling_past`]); blocks until the engine thread answers.
    pub fn export_prefix(
        &self,
        tokens: Vec<u32>,
        min_len: usize,
    ) -> Result<(Option<PrefixKv>, bool), String> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Command::Export(tokens, min_len, tx))
            .map_err(|_| "the engine has stopped".to_string())?;
        rx.recv()
            .map_err(|_| "the engine has stopped".to_string())?
    }

    /// See [`Engine::import_prefix`]; blocks until the engine thread answers.
    pub fn import_prefix(&self, prefix: PrefixKv, keep: Duration) -> Result<usize, String> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Command::Import(Box::new(prefix), keep, tx))
            .map_err(|_| "the engine has stopped".to_string())?;
        rx.recv()
            .map_err(|_| "the engine has stopped".to_string())?
    }

    /// False once the engine thread has ended (a panic outside model code): nothing more
    /// will be served, and a supervisor should restart the process.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
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
