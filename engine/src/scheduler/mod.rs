//! The engine and its scheduler: admits requests, plans one batch per step (every decode
//! token plus prefill chunks under a token budget), decides who gives way when the pool is
//! short, and runs the step: plan, the model's forward, then the output processor
//! (`output/`). The pool and the prefix tree belong to the KV cache manager
//! (`kv_cache/`). Single-threaded; [`crate::handle::EngineHandle`] runs it on its
//! own thread.

mod admit;
pub(crate) mod batch_plan;
mod disk_load;
mod peers;
mod pressure;
mod release;

use crate::config::EngineConfig;
use crate::constraint::Constraint;
use crate::counters::Counters;
use crate::detokenize::Detokenizer;
use crate::kv_cache::{self, KvCache, NoPrefixCache, PrefixCache, PrefixReuse};
use crate::radix_tree::{Namespace, NodeId};
use crate::request::{EventSink, GenerationRequest, Limits, RequestError, TokenLogprob};
use crate::sampling::SamplingParams;
use crate::sequence::Seq;
use crate::speculation::Prediction;
use crate::{KvPool, KvPoolConfig, Model};
use std::collections::HashMap;
use std::sync::Arc;

pub type RequestId = u64;

/// How much a request's cached context is worth keeping under memory pressure: its tokens
/// held, then the earlier arrival. Loops further along hold more that would be computed
/// again, and a stable order lets some loops finish (and free memory) instead of all of
/// them taking turns evicting each other.
type Worth = (usize, std::cmp::Reverse<u64>);

pub(crate) struct Req {
    pub id: RequestId,
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub prompt_logprobs: Option<usize>,
    pub session: Option<String>,
    /// The cache this request may share (from its `cache_salt`; 0 when it has none).
    pub namespace: Namespace,
    pub constraint: Option<Constraint>,
    pub prediction: Option<Arc<Prediction>>,
    pub sink: Box<dyn EventSink>,
    /// Step at which it (last) started waiting, for aging.
    pub waiting_since: u64,
    /// Step at which it was last preempted for memory (see `Engine::is_deferred`).
    pub deferred_at: Option<u64>,
    pub arrival: u64,
    /// Empty until admitted; one sequence until the prompt is prefilled, then n forks.
    pub seqs: Vec<Seq>,
    pub prefilled: bool,
    /// Prompt tokens served from the cache at first admission (usage reporting).
    pub cached_tokens: Option<usize>,
    pub prompt_lps: Vec<TokenLogprob>,
    pub cancelled: bool,
}

impl Req {
    pub fn is_done(&self) -> bool {
        self.cancelled || (self.prefilled && self.seqs.iter().all(|s| s.done))
    }
    pub fn max_tokens(&self, max_context: usize) -> usize {
        let room = max_context - self.prompt.len();
        self.params.max_tokens.map_or(room, |m| m.min(room))
    }
    /// Whether it may start from cached K/V at all (what it may take is the cache's call):
    /// prompt logprobs need logits at every prompt position, which cached K/V lack.
    pub fn matches_cache(&self) -> bool {
        self.prefilled || self.prompt_logprobs.is_none()
    }
}

pub struct Engine {
    pub(crate) model: Arc<dyn Model>,
    pub(crate) detok: Arc<dyn Detokenizer>,
    pub(crate) cfg: EngineConfig,
    /// The pool, its pages and the prefix tree over them.
    pub(crate) cache: KvCache,
    pub(crate) waiting: Vec<Req>,
    pub(crate) running: Vec<Req>,
    /// Admitted requests whose prefix is being read from disk (`disk_load.rs`).
    pub(crate) loading: Vec<disk_load::Loading>,
    /// Pinned node of each session's last finished request (sessions of different
    /// namespaces are different sessions).
    pub(crate) sessions: HashMap<(Namespace, String), NodeId>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) step_no: u64,
    pub(crate) next_id: RequestId,
    /// The last step's logits; the buffer is reused by the next step.
    pub(crate) logits: Vec<f32>,
    /// Finished sequences' outputs, a draft source for others (speculation on).
    pub(crate) recent: crate::speculation::RecentOutputs,
}

impl Engine {
    pub fn new(
        model: Arc<dyn Model>,
        detok: Arc<dyn Detokenizer>,
        cfg: EngineConfig,
    ) -> candle_core::Result<Self> {
        let mc = model.config();
        let per_token = mc.kv_bytes_per_token(cfg.kv_dtype);
        let num_pages = (cfg.kv_memory_bytes / per_token / cfg.page_size).max(1);
        let pool_cfg = KvPoolConfig {
            num_layers: mc.num_layers,
            num_kv_heads: mc.num_kv_heads,
            head_dim: mc.head_dim,
            num_slots: num_pages * cfg.page_size,
            dtype: cfg.kv_dtype,
        };
        let pool = KvPool::new(pool_cfg, model.device())?;
        let counters = Arc::new(Counters::default());
        let reuse: Box<dyn PrefixReuse> = match (cfg.enable_prefix_cache, &cfg.kv_disk) {
            (true, _) => Box::new(PrefixCache),
            (false, None) => Box::new(NoPrefixCache),
            (false, Some(_)) => candle_core::bail!(
                "the disk tier holds the prefix cache's pages: it needs the prefix cache"
            ),
        };
        let disk =
            kv_cache::open_disk(cfg.kv_disk.as_ref(), &pool, cfg.page_size, counters.clone());
        let cache = KvCache::new(pool, cfg.page_size, counters.clone(), reuse, disk);
        Ok(Self {
            model,
            detok,
            cfg,
            cache,
            waiting: Vec::new(),
            running: Vec::new(),
            loading: Vec::new(),
            sessions: HashMap::new(),
            counters,
            step_no: 0,
            next_id: 0,
            logits: Vec::new(),
            recent: crate::speculation::RecentOutputs::new(
                crate::speculation::RECENT_OUTPUT_TOKENS,
            ),
        })
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
    pub fn model(&self) -> &Arc<dyn Model> {
        &self.model
    }
    /// Token slots in the KV pool.
    pub fn capacity_tokens(&self) -> usize {
        self.cache.pool().num_slots()
    }
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty() || !self.loading.is_empty()
    }
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }
    pub fn num_running(&self) -> usize {
        self.running.len()
    }
    /// The prefix tree's counters (cached, locked, evictable tokens).
    pub fn tree_stats(&self) -> crate::radix_tree::TreeStats {
        self.cache.tree_stats()
    }

    /// Whether a disk tier is in use and writing now (not paused after a failed write).
    pub fn kv_disk_writing(&self) -> bool {
        self.cache.disk_writing()
    }

    /// Waits until every page queued for the disk is written (or failed) and durable (tests,
    /// and anyone about to copy the directory).
    pub fn kv_disk_settle(&mut self) {
        self.cache.disk_settle();
    }

    /// What requests are checked against.
    pub fn limits(&self) -> Limits {
        let mc = self.model.config();
        Limits {
            vocab_size: mc.vocab_size,
            max_context: mc.max_context,
            total_pages: self.cache.total_pages(),
            page_size: self.cfg.page_size,
            max_running_seqs: self.cfg.max_running_seqs,
        }
    }

    /// Checks a request and queues it. Errors are the caller's mistakes (a 4xx); the sink
    /// also receives them as [`crate::Event::Failed`].
    pub fn add_request(
        &mut self,
        req: GenerationRequest,
        sink: Box<dyn EventSink>,
    ) -> Result<RequestId, RequestError> {
        let id = self.next_id;
        self.add_request_with_id(id, req, sink)?;
        Ok(id)
    }

    /// [`Self::add_request`] with an id chosen by the caller (ids must be unique).
    pub fn add_request_with_id(
        &mut self,
        id: RequestId,
        req: GenerationRequest,
        mut sink: Box<dyn EventSink>,
    ) -> Result<(), RequestError> {
        if let Err(e) = self.limits().check(&req) {
            sink.send(crate::request::Event::Failed {
                message: e.to_string(),
                by_request: true,
            });
            return Err(e);
        }
        self.next_id = self.next_id.max(id + 1);
        Counters::add(&self.counters.requests, 1);
        Counters::add(&self.counters.prompt_tokens, req.prompt.len());
        self.waiting.push(Req {
            id,
            prompt: req.prompt,
            params: req.params,
            prompt_logprobs: req.prompt_logprobs,
            session: req.session,
            namespace: req.cache_salt.as_deref().map_or(0, namespace_of),
            constraint: req.constraint,
            prediction: req
                .prediction
                .filter(|p| !p.is_empty())
                .map(|p| Arc::new(Prediction::new(p))),
            sink,
            waiting_since: self.step_no,
            deferred_at: None,
            arrival: self.step_no,
            seqs: Vec::new(),
            prefilled: false,
            cached_tokens: None,
            prompt_lps: Vec::new(),
            cancelled: false,
        });
        self.update_gauges();
        Ok(())
    }

    /// Cancels a request: it stops before the next step and its KV is released.
    pub fn cancel(&mut self, id: RequestId) {
        let loading = self.loading.iter_mut().map(|l| &mut l.req);
        for r in self
            .waiting
            .iter_mut()
            .chain(self.running.iter_mut())
            .chain(loading)
        {
            if r.id == id {
                r.cancelled = true;
            }
        }
    }

    /// Runs one step. Returns false when there was nothing to do.
    pub fn step(&mut self) -> bool {
        self.cache.settle();
        self.release_done();
        self.admit();
        let Some(plan) = self.build_batch() else {
            self.wait_for_disk_loads();
            self.update_gauges();
            return self.has_work();
        };
        self.step_no += 1;
        Counters::add(&self.counters.steps, 1);
        Counters::add(&self.counters.computed_tokens, plan.batch.tokens.len());
        let mut logits = std::mem::take(&mut self.logits);
        let started = std::time::Instant::now();
        // A panic in model code fails the step's requests, not the engine: the forward only
        // writes K/V at slots of positions not yet computed, which the requests' release
        // gives back without caching.
        let forward = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.model
                .forward_into(&plan.batch, self.cache.pool_mut(), &mut logits)
        }));
        // Where a workload's time goes (`-vv`): prompt chunks against decode steps.
        tracing::trace!(
            rows = plan.batch.tokens.len(),
            sequences = plan.entries.len(),
            drafted = plan
                .entries
                .iter()
                .filter_map(|e| e.draft.as_ref())
                .map(|d| d.tokens.len())
                .sum::<usize>(),
            forward_ms = started.elapsed().as_secs_f64() * 1e3,
            "step"
        );
        match forward {
            Ok(Ok(())) => self.emit(plan, &mut logits),
            Ok(Err(e)) => self.fail_running(&format!("model forward failed: {e}")),
            Err(panic) => self.fail_running(&format!(
                "model forward panicked: {}",
                panic_message(panic.as_ref())
            )),
        }
        self.logits = logits;
        self.release_done();
        self.update_gauges();
        true
    }

    fn update_gauges(&self) {
        let c = &self.counters;
        Counters::set(&c.waiting, self.waiting.len());
        Counters::set(&c.running, self.running.len() + self.loading.len());
        Counters::set(&c.pages_used, self.cache.used_pages());
        let tree = self.cache.tree_stats();
        Counters::set(&c.cached_tokens_in_tree, tree.cached_tokens);
        Counters::set(&c.locked_tokens_in_tree, tree.locked_tokens);
        Counters::set(&c.evictable_pages, tree.evictable_pages);
        Counters::set(
            &c.waiting_prompt_tokens,
            self.waiting.iter().map(|r| r.prompt.len()).sum(),
        );
        Counters::set(&c.sessions, self.sessions.len());
    }

    /// Checks the books: every pool page is either free, the tree's, or owned by exactly
    /// one live sequence. For tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let seqs = self
            .running
            .iter()
            .chain(&self.waiting)
            .flat_map(|r| &r.seqs);
        self.cache
            .check_books(seqs.map(|s| &s.kv), self.loading_pages())
    }
}

/// The text a panic was raised with, if it was text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A cache salt's namespace: a 64-bit hash, never 0 (the unsalted cache).
fn namespace_of(salt: &str) -> Namespace {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    salt.hash(&mut h);
    h.finish().max(1)
}
