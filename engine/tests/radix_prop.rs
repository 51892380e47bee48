//! Property test: the page allocator and radix tree driven the way the scheduler drives
//! them (match, lock, allocate, decode, insert, finish/abort, evict, pin), checked after
//! every step against a simple reference model of what the cache must hold.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use looptree_engine::pages::{slots_of, PageAllocator};
use looptree_engine::radix_tree::{Match, NodeId, RadixTree};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A request whose prompt is a prefix of an earlier sequence plus some new tokens.
    Start {
        base: usize,
        cut: usize,
        extra: Vec<u32>,
    },
    /// A running sequence generates tokens.
    Decode {
        seq: usize,
        toks: Vec<u32>,
    },
    /// A running sequence hands its whole pages to the tree (as before n > 1 forks).
    Share {
        seq: usize,
    },
    Finish {
        seq: usize,
    },
    /// Cancelled without caching anything.
    Abort {
        seq: usize,
    },
    Evict {
        n: usize,
    },
    /// A match nobody locks (cache-aware ordering, or a request that found no room).
    Probe {
        base: usize,
        cut: usize,
        extra: Vec<u32>,
    },
    Pin {
        seq: usize,
        secs: u64,
    },
    Tick {
        secs: u64,
    },
}

struct Seq {
    tokens: Vec<u32>,
    pages: Vec<u32>,
    /// Leading pages held by the tree (the locked path); the rest are the sequence's own.
    shared: usize,
    node: NodeId,
}

struct World {
    ps: usize,
    tree: RadixTree,
    alloc: PageAllocator,
    seqs: Vec<Seq>,
    /// Reference cache: every cached page-aligned prefix -> the page holding its last page.
    cache: HashMap<Vec<u32>, u32>,
    /// What each written slot holds: (token, position).
    content: HashMap<u32, (u32, usize)>,
    history: Vec<Vec<u32>>,
    now: Instant,
}

impl World {
    fn new(ps: usize, num_pages: usize) -> Self {
        let alloc = PageAllocator::new(num_pages, ps);
        World {
            ps,
            tree: RadixTree::for_allocator(&alloc),
            alloc,
            seqs: Vec::new(),
            cache: HashMap::new(),
            content: HashMap::new(),
            history: vec![Vec::new()],
            now: Instant::now(),
        }
    }

    fn prompt(&self, base: usize, cut: usize, extra: &[u32]) -> Vec<u32> {
        let h = &self.history[base % self.history.len()];
        let mut p = h[..cut % (h.len() + 1)].to_vec();
        p.extend_from_slice(extra);
        p
    }

    /// Page-aligned prefixes some live sequence holds locked.
    fn locked_keys(&self) -> HashSet<Vec<u32>> {
        let ps = self.ps;
        self.seqs
            .iter()
            .flat_map(|s| (1..=s.shared).map(move |k| s.tokens[..k * ps].to_vec()))
            .collect()
    }

    fn check_match(&self, tokens: &[u32], m: &Match) {
        let ps = self.ps;
        let mut want = Vec::new();
        while let Some(&p) = tokens
            .get(..(want.len() + 1) * ps)
            .and_then(|k| self.cache.get(k))
        {
            want.push(p);
        }
        assert_eq!(m.len, want.len() * ps, "longest cached prefix");
        assert_eq!(m.pages, want);
        assert_eq!(m.slots, slots_of(&want, ps, m.len));
        for (i, s) in m.slots.iter().enumerate() {
            assert_eq!(
                self.content.get(s),
                Some(&(tokens[i], i)),
                "slot {s} holds another token"
            );
        }
        assert_eq!(self.tree.cached_prefix_len(tokens), m.len);
    }

    /// Allocates `n` pages, evicting first if the pool is short (as the scheduler would).
    fn alloc_pages(&mut self, n: usize) -> Option<Vec<u32>> {
        if self.alloc.free_pages() < n {
            self.evict(n - self.alloc.free_pages());
        }
        let pages = self.alloc.alloc(n)?;
        let values: HashSet<u32> = self.cache.values().copied().collect();
        for p in &pages {
            assert!(
                !self.tree.owns_page(*p) && !values.contains(p),
                "page {p} handed out but cached"
            );
            assert!(
                !self.seqs.iter().any(|s| s.pages.contains(p)),
                "page {p} handed out twice"
            );
        }
        Some(pages)
    }

    fn evict(&mut self, n: usize) {
        let evictable = self.cache.len() - self.locked_keys().len();
        let freed = self
            .tree
            .evict_at(n, &mut self.alloc, self.now, Default::default());
        assert_eq!(
            freed.len(),
            n.min(evictable),
            "evicts exactly what is asked, if it can"
        );
        for p in &freed {
            assert!(
                !self.seqs.iter().any(|s| s.pages.contains(p)),
                "evicted page {p} is in use"
            );
            assert!(self.alloc.is_free(*p));
        }
        let freed: HashSet<u32> = freed.into_iter().collect();
        let before = self.cache.len();
        self.cache.retain(|_, p| !freed.contains(p));
        assert_eq!(
            before - self.cache.len(),
            freed.len(),
            "evicted pages were cached"
        );
    }

    fn write(&mut self, seq: usize, from: usize) {
        let s = &self.seqs[seq];
        assert!(
            from >= s.shared * self.ps,
            "a sequence writes into a tree page"
        );
        for (i, slot) in slots_of(&s.pages, self.ps, s.tokens.len())
            .into_iter()
            .enumerate()
            .skip(from)
        {
            self.content.insert(slot, (s.tokens[i], i));
        }
    }

    fn start(&mut self, prompt: Vec<u32>) {
        if prompt.is_empty() {
            return;
        }
        let m = self.tree.match_prefix(&prompt[..prompt.len() - 1]);
        self.check_match(&prompt[..prompt.len() - 1], &m);
        self.tree.lock(m.node);
        let need = self.alloc.pages_for(prompt.len()) - m.pages.len();
        // Locked before allocating, so the eviction this may trigger cannot take the match.
        let shared = m.pages.len();
        self.seqs.push(Seq {
            tokens: prompt,
            pages: m.pages,
            shared,
            node: m.node,
        });
        let Some(own) = self.alloc_pages(need) else {
            let s = self.seqs.pop().unwrap();
            self.tree.unlock(s.node);
            return;
        };
        let s = self.seqs.last_mut().unwrap();
        s.pages.extend(own);
        self.write(self.seqs.len() - 1, m.len);
    }

    fn decode(&mut self, seq: usize, toks: &[u32]) {
        for &t in toks {
            let s = &self.seqs[seq];
            if s.tokens.len() == s.pages.len() * self.ps {
                let Some(p) = self.alloc_pages(1) else { return };
                self.seqs[seq].pages.extend(p);
            }
            self.seqs[seq].tokens.push(t);
            self.write(seq, self.seqs[seq].tokens.len() - 1);
        }
    }

    fn share(&mut self, seq: usize) {
        let ps = self.ps;
        let s = &self.seqs[seq];
        let full = s.tokens.len() / ps;
        let (mut want_pages, mut want_freed, mut added) = (Vec::new(), Vec::new(), Vec::new());
        for j in 0..full {
            let key = s.tokens[..(j + 1) * ps].to_vec();
            match self.cache.get(&key) {
                Some(&p) => {
                    if p != s.pages[j] {
                        assert!(j >= s.shared, "a locked page changed");
                        want_freed.push(s.pages[j]);
                    }
                    want_pages.push(p);
                }
                None => {
                    want_pages.push(s.pages[j]);
                    added.push((key, s.pages[j]));
                }
            }
        }
        let r = self.tree.insert(&s.tokens, &s.pages, &mut self.alloc);
        assert_eq!(r.len, full * ps);
        assert_eq!(r.pages, want_pages);
        assert_eq!(r.freed, want_freed);
        assert_eq!(r.new_tokens, added.len() * ps);
        self.cache.extend(added);
        self.tree.lock(r.node);
        self.tree.unlock(s.node);
        let s = &mut self.seqs[seq];
        s.pages[..full].copy_from_slice(&r.pages);
        s.shared = full;
        s.node = r.node;
        // The adopted tree pages really hold this sequence's tokens.
        for (i, slot) in slots_of(&s.pages, ps, full * ps).iter().enumerate() {
            assert_eq!(self.content.get(slot), Some(&(s.tokens[i], i)));
        }
    }

    fn end(&mut self, seq: usize, cache_it: bool) {
        if cache_it {
            self.share(seq);
        }
        let s = self.seqs.swap_remove(seq);
        self.alloc
            .free_all(&s.pages[s.shared..])
            .expect("own pages are allocated");
        self.tree.unlock(s.node);
        self.history.push(s.tokens);
    }

    fn apply(&mut self, op: Op) {
        let n = self.seqs.len();
        match op {
            Op::Start { base, cut, extra } => self.start(self.prompt(base, cut, &extra)),
            Op::Probe { base, cut, extra } => {
                let p = self.prompt(base, cut, &extra);
                let m = self.tree.match_prefix(&p);
                self.check_match(&p, &m);
            }
            Op::Decode { seq, toks } if n > 0 => self.decode(seq % n, &toks),
            Op::Share { seq } if n > 0 => self.share(seq % n),
            Op::Finish { seq } if n > 0 => self.end(seq % n, true),
            Op::Abort { seq } if n > 0 => self.end(seq % n, false),
            Op::Pin { seq, secs } if n > 0 => {
                assert!(self.tree.pin(
                    self.seqs[seq % n].node,
                    self.now + Duration::from_secs(secs)
                ));
            }
            Op::Evict { n } => self.evict(n),
            Op::Tick { secs } => self.now += Duration::from_secs(secs),
            _ => {}
        }
    }

    fn check(&self) {
        self.tree.validate().unwrap();
        let (a, st) = (&self.alloc, self.tree.stats());
        assert_eq!(a.free_pages() + a.used_pages(), a.total_pages());
        let own: Vec<u32> = self
            .seqs
            .iter()
            .flat_map(|s| s.pages[s.shared..].iter().copied())
            .collect();
        assert_eq!(
            a.used_pages(),
            st.cached_pages + own.len(),
            "page accounting"
        );
        let mut held = self.tree.pages();
        held.extend(&own);
        let distinct: HashSet<u32> = held.iter().copied().collect();
        assert_eq!(distinct.len(), held.len(), "a page has two owners");
        assert!(held.iter().all(|&p| !a.is_free(p)), "a held page is free");
        let tree_pages: HashSet<u32> = self.tree.pages().into_iter().collect();
        assert_eq!(
            tree_pages,
            self.cache.values().copied().collect::<HashSet<_>>()
        );
        assert_eq!(self.cache.len(), st.cached_pages);
        for s in &self.seqs {
            assert!(
                s.pages[..s.shared].iter().all(|p| tree_pages.contains(p)),
                "locked page evicted"
            );
        }
        assert_eq!(st.locked_tokens, self.locked_keys().len() * self.ps);
        for k in self.cache.keys() {
            assert!(
                k.len() == self.ps || self.cache.contains_key(&k[..k.len() - self.ps]),
                "hole"
            );
        }
    }
}

fn op(vocab: u32) -> impl Strategy<Value = Op> {
    let toks = move |max| prop::collection::vec(0..vocab, 0..max);
    prop_oneof![
        4 => (any::<usize>(), any::<usize>(), toks(6)).prop_map(|(base, cut, extra)| Op::Start { base, cut, extra }),
        4 => (any::<usize>(), toks(6)).prop_map(|(seq, toks)| Op::Decode { seq, toks }),
        1 => any::<usize>().prop_map(|seq| Op::Share { seq }),
        3 => any::<usize>().prop_map(|seq| Op::Finish { seq }),
        1 => any::<usize>().prop_map(|seq| Op::Abort { seq }),
        1 => (0usize..6).prop_map(|n| Op::Evict { n }),
        2 => (any::<usize>(), any::<usize>(), toks(4)).prop_map(|(base, cut, extra)| Op::Probe { base, cut, extra }),
        1 => (any::<usize>(), 0u64..5).prop_map(|(seq, secs)| Op::Pin { seq, secs }),
        1 => (0u64..3).prop_map(|secs| Op::Tick { secs }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, usize, Vec<Op>)> {
    (prop::sample::select(vec![1usize, 2, 4]), 2u32..4).prop_flat_map(|(ps, vocab)| {
        (
            Just(ps),
            3usize..24,
            prop::collection::vec(op(vocab), 1..80),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tree_and_allocator_match_the_reference((ps, num_pages, ops) in scenario()) {
        let mut w = World::new(ps, num_pages);
        for op in ops {
            w.apply(op);
            w.check();
        }
        // Draining everything leaves an empty tree and a full free list.
        while !w.seqs.is_empty() {
            w.end(0, true);
            w.check();
        }
        w.evict(num_pages);
        w.check();
        prop_assert_eq!(w.alloc.free_pages(), num_pages);
        prop_assert_eq!(w.tree.stats().nodes, 0);
    }
}
