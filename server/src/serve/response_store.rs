//! Recent responses kept in memory for `previous_response_id`: a client that sends only
//! the new items gets the whole conversation rendered again, so its prefix is found in
//! the KV cache. Bounded in count and age; nothing survives a restart.

use super::responses_types::Item;
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

#[derive(Default)]
struct Inner {
    /// id -> (stored at, the conversation's items including the response's output).
    by_id: HashMap<String, (Instant, Vec<Item>)>,
    order: VecDeque<String>,
}

impl ResponseStore {
    pub fn put(&self, id: String, items: Vec<Item>) {
        self.put_at(id, items, Instant::now());
    }

    fn put_at(&self, id: String, items: Vec<Item>, now: Instant) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.expire(now);
        while g.order.len() >= MAX_KEPT {
            if let Some(old) = g.order.pop_front() {
                g.by_id.remove(&old);
            }
        }
        g.order.push_back(id.clone());
        g.by_id.insert(id, (now, items));
    }

    /// The conversation up to and including response `id`, if it is still kept.
    pub fn get(&self, id: &str) -> Option<Vec<Item>> {
        self.get_at(id, Instant::now())
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Vec<Item>> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.expire(now);
        g.by_id.get(id).map(|(_, items)| items.clone())
    }
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while let Some(old) = self.order.front() {
            match self.by_id.get(old) {
                Some((at, _)) if now.duration_since(*at) < MAX_AGE => break,
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
    use super::super::responses_types::Item;
    use super::*;
    use serde_json::json;

    fn item() -> Item {
        Item::Reasoning(json!({}))
    }

    #[test]
    fn kept_until_too_old_or_too_many() {
        let s = ResponseStore::default();
        let t0 = Instant::now();
        s.put_at("a".into(), vec![item()], t0);
        assert_eq!(
            s.get_at("a", t0 + Duration::from_secs(10)).map(|v| v.len()),
            Some(1)
        );
        assert!(s
            .get_at("a", t0 + MAX_AGE + Duration::from_secs(1))
            .is_none());
        assert!(s.get_at("nope", t0).is_none());
        for i in 0..MAX_KEPT + 5 {
            s.put_at(format!("r{i}"), Vec::new(), t0);
        }
        assert!(s.get_at("r0", t0).is_none());
        assert!(s.get_at(&format!("r{}", MAX_KEPT + 4), t0).is_some());
        assert_eq!(s.inner.lock().unwrap().by_id.len(), MAX_KEPT);
    }
}
