//! Recent responses kept in memory for `previous_response_id` and `GET`/`DELETE
//! /v1/responses/{id}`: a client that sends only the new items gets the whole
//! conversation rendered again, so its prefix is found in the KV cache. Bounded in count
//! and age; nothing survives a restart.

use super::responses_types::{Item, ResponseObject};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most responses kept; the oldest goes first.
const MAX_KEPT: usize = 1024;
/// A response older than this is forgotten (an agent loop replies within minutes).
const MAX_AGE: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct ResponseStore {
    inner: Mutex<Inner>,
}

struct Kept {
    at: Instant,
    /// The conversation's items, the response's output included.
    items: Vec<Item>,
    /// `None` in tests that keep only a conversation.
    response: Option<ResponseObject>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Kept>,
    order: VecDeque<String>,
}

impl ResponseStore {
    /// Keeps `response` and the conversation up to and including it.
    pub fn put(&self, response: ResponseObject, items: Vec<Item>) {
        let id = response.id.clone();
        self.put_at(id, items, Some(response), Instant::now());
    }

    fn put_at(&self, id: String, items: Vec<Item>, response: Option<ResponseObject>, now: Instant) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.expire(now);
        while g.order.len() >= MAX_KEPT {
            if let Some(old) = g.order.pop_front() {
                g.by_id.remove(&old);
            }
        }
        g.order.push_back(id.clone());
        g.by_id.insert(
            id,
            Kept {
                at: now,
                items,
                response,
            },
        );
    }

    /// The conversation up to and including response `id`, if it is still kept.
    pub fn get(&self, id: &str) -> Option<Vec<Item>> {
        self.get_at(id, Instant::now())
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Vec<Item>> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.expire(now);
        g.by_id.get(id).map(|k| k.items.clone())
    }

    /// The response object `id`, if it is still kept.
    pub fn response(&self, id: &str) -> Option<ResponseObject> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.expire(Instant::now());
        g.by_id.get(id).and_then(|k| k.response.clone())
    }

    /// Forgets response `id`; whether it was kept.
    pub fn delete(&self, id: &str) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.expire(Instant::now());
        let kept = g.by_id.remove(id).is_some();
        g.order.retain(|o| o != id);
        kept
    }
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while let Some(old) = self.order.front() {
            match self.by_id.get(old) {
                Some(k) if now.duration_since(k.at) < MAX_AGE => break,
                _ => {
                    let old = self.order.pop_front().unwrap_or_default();
                    self.by_id.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::responses_types::{Item, ReasoningItem};
    use super::*;

    fn item() -> Item {
        Item::Reasoning(ReasoningItem::default())
    }

    #[test]
    fn kept_until_too_old_or_too_many() {
        let s = ResponseStore::default();
        let t0 = Instant::now();
        s.put_at("a".into(), vec![item()], None, t0);
        assert_eq!(
            s.get_at("a", t0 + Duration::from_secs(10)).map(|v| v.len()),
            Some(1)
        );
        assert!(s
            .get_at("a", t0 + MAX_AGE + Duration::from_secs(1))
            .is_none());
        assert!(s.get_at("nope", t0).is_none());
        for i in 0..MAX_KEPT + 5 {
            s.put_at(format!("r{i}"), Vec::new(), None, t0);
        }
        assert!(s.get_at("r0", t0).is_none());
        assert!(s.get_at(&format!("r{}", MAX_KEPT + 4), t0).is_some());
        assert_eq!(s.inner.lock().unwrap().by_id.len(), MAX_KEPT);
    }

    #[test]
    fn a_deleted_response_is_gone() {
        let s = ResponseStore::default();
        s.put_at("a".into(), vec![item()], None, Instant::now());
        s.put_at("b".into(), vec![item()], None, Instant::now());
        assert!(s.delete("a"));
        assert!(!s.delete("a"));
        assert!(s.get("a").is_none());
        assert!(s.get("b").is_some());
        assert_eq!(s.inner.lock().unwrap().order, ["b"]);
    }
}
