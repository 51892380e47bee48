//! `--max-concurrent-per-key`: how many requests one API key may have in flight, so that
//! one tenant's burst cannot take every slot of `--max-concurrent` from the others. A
//! request holds its key's slot until its whole response has been sent (a stream's last
//! event), not just its headers.

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// In-flight requests per key, against one limit.
pub struct KeySlots {
    in_flight: Arc<Vec<AtomicUsize>>,
    limit: Option<usize>,
}

impl KeySlots {
    pub fn new(keys: usize, limit: Option<usize>) -> Self {
        Self {
            in_flight: Arc::new((0..keys).map(|_| AtomicUsize::new(0)).collect()),
            limit,
        }
    }

    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// A slot of key `key`; None when it has `limit` in flight already.
    pub fn take(&self, key: usize) -> Option<KeySlot> {
        let Some(limit) = self.limit else {
            return Some(KeySlot(None));
        };
        let count = &self.in_flight[key];
        if count.fetch_add(1, Ordering::AcqRel) >= limit {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(KeySlot(Some((self.in_flight.clone(), key))))
    }
}

/// A key's in-flight slot, given back when dropped.
pub struct KeySlot(Option<(Arc<Vec<AtomicUsize>>, usize)>);

impl Drop for KeySlot {
    fn drop(&mut self) {
        if let Some((counts, key)) = &self.0 {
            counts[*key].fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A response body that holds its request's [`KeySlot`] until it is sent or dropped.
pub struct HeldBody {
    inner: Body,
    _slot: KeySlot,
}

impl HeldBody {
    pub fn wrap(inner: Body, slot: KeySlot) -> Body {
        Body::new(Self { inner, _slot: slot })
    }
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_limit_and_slots_come_back() {
        let slots = KeySlots::new(2, Some(2));
        let a = [slots.take(0).unwrap(), slots.take(0).unwrap()];
        assert!(slots.take(0).is_none(), "a third for key 0");
        let b = slots.take(1);
        assert!(b.is_some(), "key 1 is not held back by key 0");
        drop(a);
        assert!(slots.take(0).is_some());
        let unlimited = KeySlots::new(1, None);
        let held: Vec<_> = (0..100).map(|_| unlimited.take(0).unwrap()).collect();
        assert_eq!(held.len(), 100);
    }
}
