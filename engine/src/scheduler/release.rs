//! Giving a request's pool pages back: computed K/V go into the tree (a loop's next
//! iteration, or a resumed preempted request, hits them), own leftovers are freed, locks
//! are dropped, and a session's path is pinned for its TTL.

use super::{Engine, Req};
use crate::request::Event;
use crate::sequence::Seq;
use std::time::Instant;

impl Engine {
    /// Releases finished and cancelled requests.
    pub(super) fn release_done(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].is_done() {
                let mut r = self.running.swap_remove(i);
                let last = self.detach(&mut r);
                if let (Some(session), Some(node), false) = (&r.session, last, r.cancelled) {
                    let until = Instant::now() + self.cfg.session_ttl;
                    if self.cache.pin(node, until) {
                        let key = (r.namespace, session.clone());
                        if let Some(old) = self.sessions.insert(key, node) {
                            if old != node {
                                self.cache.unpin(old);
                            }
                        }
                    }
                }
            } else {
                // A finished fork's context goes to the tree now: its pages become
                // evictable instead of staying locked until its siblings finish.
                let mut seqs = std::mem::take(&mut self.running[i].seqs);
                for s in seqs.iter_mut().filter(|s| s.done) {
                    self.detach_seq(s);
                }
                self.running[i].seqs = seqs;
                i += 1;
            }
        }
        self.waiting.retain(|r| !r.cancelled);
        self.drop_cancelled_loads();
    }

    /// Detaches every sequence of `r` from the pool. Returns the tree node of the last
    /// sequence's cached path (for session pinning).
    pub(super) fn detach(&mut self, r: &mut Req) -> Option<crate::radix_tree::NodeId> {
        let mut last = None;
        for s in r.seqs.iter_mut() {
            last = self.detach_seq(s).or(last);
        }
        last
    }

    /// Detaches one sequence: its computed K/V go into the tree, its own leftover pages
    /// are freed, its lock is dropped. Returns its node in the tree (None if it was not
    /// attached).
    fn detach_seq(&mut self, s: &mut Seq) -> Option<crate::radix_tree::NodeId> {
        // Recorded when a finished sequence first leaves the pool: a fork that finished
        // before its siblings is detached again with its request, with nothing computed
        // left (and a preempted sequence is not done).
        if s.done && s.computed > 0 && self.cfg.max_draft_tokens > 0 {
            let output = &s.tokens[s.tokens.len().saturating_sub(s.generated)..];
            self.recent.add(s.namespace, output);
        }
        let node = self
            .cache
            .detach(&mut s.kv, s.namespace, &s.tokens[..s.computed]);
        s.computed = 0;
        node
    }

    /// A forward failed: every running request fails and is released.
    pub(super) fn fail_running(&mut self, message: &str) {
        tracing::error!("{message}");
        for mut r in std::mem::take(&mut self.running) {
            self.detach(&mut r);
            r.sink.send(Event::Failed {
                message: message.to_string(),
                by_request: false,
            });
        }
    }
}
