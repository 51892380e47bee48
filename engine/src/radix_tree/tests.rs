use std::time::{Duration, Instant};

use super::*;
use crate::pages::PageAllocator;

fn setup(num_pages: usize, ps: usize) -> (RadixTree, PageAllocator) {
    let alloc = PageAllocator::new(num_pages, ps);
    (RadixTree::for_allocator(&alloc), alloc)
}

/// Runs a whole request the way the scheduler would: match, lock, allocate the rest,
/// insert everything, free the partial tail, unlock. Returns the insert result.
fn run(tree: &mut RadixTree, alloc: &mut PageAllocator, tokens: &[u32]) -> InsertResult {
    let m = tree.match_prefix(tokens);
    tree.lock(m.node);
    let mut pages = m.pages.clone();
    pages.extend(
        alloc
            .alloc(alloc.pages_for(tokens.len()) - m.pages.len())
            .expect("pool too small"),
    );
    let r = tree.insert(tokens, &pages, alloc);
    alloc.free_all(&pages[r.pages.len()..]).unwrap();
    tree.unlock(m.node);
    tree.validate().unwrap();
    r
}

#[test]
fn split_on_partial_match() {
    let (mut tree, mut alloc) = setup(16, 1);
    let a = run(&mut tree, &mut alloc, &[1, 2, 3, 4]);
    assert_eq!(tree.stats().nodes, 1);
    let m = tree.match_prefix(&[1, 2, 9]);
    assert_eq!(m.len, 2);
    assert_eq!(m.slots, a.pages[..2].to_vec(), "page size 1: slot = page");
    assert_eq!(
        tree.stats().nodes,
        2,
        "the match split [1,2,3,4] into [1,2] + [3,4]"
    );
    assert_eq!(
        tree.cached_prefix_len(&[1, 2, 3, 4, 5]),
        4,
        "the split keeps the whole path"
    );
    let b = run(&mut tree, &mut alloc, &[1, 2, 5, 6]);
    assert_eq!(b.new_tokens, 2);
    assert_eq!(
        b.pages[..2],
        a.pages[..2],
        "shared prefix uses the same pages"
    );
    assert_eq!(tree.stats().nodes, 3);
    assert_eq!(tree.stats().cached_tokens, 6);
    assert_eq!(alloc.used_pages(), 6);
}

#[test]
fn insert_of_known_tokens_frees_the_duplicates() {
    let (mut tree, mut alloc) = setup(16, 2);
    let a = run(&mut tree, &mut alloc, &[1, 2, 3, 4]);
    // A second request computed the same tokens in its own pages (it started before the
    // first finished), plus one more page.
    let own = alloc.alloc(3).unwrap();
    let r = tree.insert(&[1, 2, 3, 4, 5, 6], &own, &mut alloc);
    assert_eq!(r.len, 6);
    assert_eq!(r.freed, own[..2].to_vec());
    assert_eq!(r.pages, vec![a.pages[0], a.pages[1], own[2]]);
    assert_eq!(r.new_tokens, 2);
    assert!(alloc.is_free(own[0]) && alloc.is_free(own[1]));
    assert_eq!(alloc.used_pages(), tree.stats().cached_pages);
    tree.validate().unwrap();
}

#[test]
fn forks_share_the_prompt_and_diverge_below_it() {
    let (mut tree, mut alloc) = setup(32, 2);
    let prompt = [7, 7, 8, 8, 9];
    // Prefill once, then make the prompt's whole pages tree-owned so the forks share them.
    let mut pages = alloc.alloc(3).unwrap();
    let m0 = tree.match_prefix(&prompt[..4]);
    assert_eq!(m0.len, 0);
    tree.lock(m0.node);
    let r = tree.insert(&prompt, &pages, &mut alloc);
    assert_eq!((r.len, r.freed.len()), (4, 0));
    tree.lock(r.node);
    tree.unlock(m0.node);
    pages[..2].copy_from_slice(&r.pages);
    // Three forks: each copies the tail page (token 9) into its own page and continues.
    let mut forks = Vec::new();
    for f in 0..3u32 {
        tree.lock(r.node);
        let mut fp = r.pages.clone();
        fp.extend(alloc.alloc(2).unwrap());
        forks.push((vec![7, 7, 8, 8, 9, 100 + f, 1, 2], fp));
    }
    alloc.free(pages[2]).unwrap();
    tree.unlock(r.node);
    for (tokens, fp) in &forks {
        let fr = tree.insert(tokens, fp, &mut alloc);
        assert_eq!(fr.pages[..2], r.pages[..], "prompt pages shared");
        assert!(fr.freed.is_empty());
        tree.unlock(r.node);
    }
    let s = tree.stats();
    assert_eq!(s.nodes, 4, "prompt node + one node per fork");
    assert_eq!(s.cached_tokens, 4 + 3 * 4);
    assert_eq!(s.locked_tokens, 0);
    assert_eq!(alloc.used_pages(), s.cached_pages);
    tree.validate().unwrap();
}

#[test]
fn evicts_least_recently_used_leaf_first() {
    let (mut tree, mut alloc) = setup(16, 1);
    let a = run(&mut tree, &mut alloc, &[1, 1]);
    let b = run(&mut tree, &mut alloc, &[2, 2]);
    let c = run(&mut tree, &mut alloc, &[3, 3]);
    tree.match_prefix(&[1, 1]); // a is now the most recent
    assert_eq!(tree.evict(2, &mut alloc), b.pages);
    assert_eq!(tree.evict(2, &mut alloc), c.pages);
    assert_eq!(tree.evict(5, &mut alloc), a.pages);
    assert_eq!(
        tree.stats(),
        TreeStats {
            evicted_pages: 6,
            ..Default::default()
        }
    );
    assert_eq!(alloc.used_pages(), 0);
}

#[test]
fn evicts_only_what_is_asked_trimming_the_tail() {
    let (mut tree, mut alloc) = setup(16, 2);
    let a = run(&mut tree, &mut alloc, &[1, 2, 3, 4, 5, 6]);
    assert_eq!(tree.evict(1, &mut alloc), vec![a.pages[2]]);
    assert_eq!(
        tree.cached_prefix_len(&[1, 2, 3, 4, 5, 6]),
        4,
        "the prefix stays cached"
    );
    assert_eq!(alloc.used_pages(), 2);
    tree.validate().unwrap();
}

#[test]
fn locked_paths_are_never_evicted() {
    let (mut tree, mut alloc) = setup(16, 1);
    run(&mut tree, &mut alloc, &[1, 2, 3]);
    run(&mut tree, &mut alloc, &[1, 2, 4]);
    let m = tree.match_prefix(&[1, 2, 3]);
    tree.lock(m.node);
    assert_eq!(tree.stats().locked_tokens, 3);
    assert_eq!(tree.stats().evictable_pages, 1);
    let freed = tree.evict(10, &mut alloc);
    assert_eq!(freed.len(), 1, "only the [4] leaf is unlocked");
    assert!(!freed.iter().any(|p| m.pages.contains(p)));
    assert_eq!(tree.match_prefix(&[1, 2, 3]).pages, m.pages);
    tree.unlock(m.node);
    assert_eq!(tree.evict(10, &mut alloc).len(), 3);
    tree.validate().unwrap();
}

#[test]
fn split_keeps_locks_on_both_halves() {
    let (mut tree, mut alloc) = setup(16, 1);
    run(&mut tree, &mut alloc, &[1, 2, 3, 4]);
    let whole = tree.match_prefix(&[1, 2, 3, 4]);
    tree.lock(whole.node);
    let half = tree.match_prefix(&[1, 2]); // splits the locked node
    assert_eq!(tree.stats().locked_tokens, 4);
    tree.lock(half.node);
    tree.unlock(whole.node); // the old handle still means [1,2,3,4]
    assert_eq!(tree.stats().locked_tokens, 2);
    assert_eq!(tree.evict(10, &mut alloc).len(), 2);
    tree.unlock(half.node);
    assert_eq!(tree.stats().locked_tokens, 0);
    tree.validate().unwrap();
}

#[test]
fn partial_pages_are_never_shared() {
    let (mut tree, mut alloc) = setup(16, 4);
    let a = run(&mut tree, &mut alloc, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(
        (a.len, a.pages.len()),
        (8, 2),
        "the partial third page is not cached"
    );
    assert_eq!(alloc.used_pages(), 2);
    // Diverging inside the second page: only the first page is shared.
    let m = tree.match_prefix(&[1, 2, 3, 4, 5, 6, 0, 0]);
    assert_eq!(m.len, 4);
    assert_eq!(
        m.slots,
        (a.pages[0] * 4..a.pages[0] * 4 + 4).collect::<Vec<_>>()
    );
    // Fewer tokens than a page match nothing.
    assert_eq!(tree.match_prefix(&[1, 2, 3]).len, 0);
    // A prefix ending mid-page matches only the whole pages before it.
    assert_eq!(tree.match_prefix(&[1, 2, 3, 4, 5, 6, 7]).len, 4);
    // The sibling that diverged in page two gets its own page two.
    let b = run(&mut tree, &mut alloc, &[1, 2, 3, 4, 5, 6, 0, 0]);
    assert_eq!(b.pages[0], a.pages[0]);
    assert_ne!(b.pages[1], a.pages[1]);
    tree.validate().unwrap();
}

#[test]
fn pinned_paths_go_last_until_they_expire() {
    let (mut tree, mut alloc) = setup(16, 1);
    let t0 = Instant::now();
    let a = run(&mut tree, &mut alloc, &[1]);
    let b = run(&mut tree, &mut alloc, &[2]);
    let c = run(&mut tree, &mut alloc, &[3]);
    assert!(tree.pin(a.node, t0 + Duration::from_secs(10)));
    // a is the least recently used, but pinned: b goes first.
    assert_eq!(
        tree.evict_at(1, &mut alloc, t0, Default::default()),
        b.pages
    );
    // When nothing unpinned is left, the pin yields.
    assert_eq!(
        tree.evict_at(2, &mut alloc, t0, Default::default()),
        vec![c.pages[0], a.pages[0]]
    );
    // Expired pins are plain LRU again.
    let d = run(&mut tree, &mut alloc, &[4]);
    let e = run(&mut tree, &mut alloc, &[5]);
    assert!(tree.pin(d.node, t0 + Duration::from_secs(1)));
    assert_eq!(
        tree.evict_at(
            1,
            &mut alloc,
            t0 + Duration::from_secs(2),
            Default::default()
        ),
        d.pages
    );
    assert!(!tree.pin(d.node, t0), "evicted node: pin reports it");
    assert!(tree.unpin(e.node));
}

/// Five leaves below a shared root page [9]: plain, pinned, two wanted by fresh requests
/// (ranked 0 and 1) and one by a deferred request. Each leaf holds two pages.
fn five_kinds(t0: Instant) -> (RadixTree, PageAllocator, [Vec<u32>; 5], Vec<Vec<u32>>) {
    let (mut tree, mut alloc) = setup(16, 1);
    let paths: Vec<Vec<u32>> = (1..=5).map(|x| vec![9, x, x]).collect();
    // Inserted in reverse, so the plain LRU order alone would take the fresh ones first.
    let mut own: Vec<Vec<u32>> = vec![Vec::new(); 5];
    for (i, p) in paths.iter().enumerate().rev() {
        own[i] = run(&mut tree, &mut alloc, p).pages[1..].to_vec();
    }
    let pinned = tree.match_prefix(&paths[1]).node;
    assert!(tree.pin(pinned, t0 + Duration::from_secs(10)));
    // The pin's match touched the LRU clock; touch the plain leaf last of all.
    tree.match_prefix(&paths[0]);
    let [a, b, c, d, e]: [Vec<u32>; 5] = own.try_into().unwrap();
    (tree, alloc, [a, b, c, d, e], paths)
}

#[test]
fn eviction_takes_plain_then_deferred_then_pinned_then_fresh_paths_needed_last_first() {
    let t0 = Instant::now();
    let (mut tree, mut alloc, [plain, pinned, fresh0, fresh1, deferred], paths) = five_kinds(t0);
    // Fresh requests: paths[2] is admitted before paths[3]; then the deferred one.
    let seqs: Vec<(Namespace, &[u32])> =
        vec![(0, &paths[2][..]), (0, &paths[3][..]), (0, &paths[4][..])];
    let wanted = Wanted {
        seqs: &seqs,
        fresh: 2,
        spare_fresh: false,
    };
    let mut order = Vec::new();
    for _ in 0..5 {
        let mut freed = tree.evict_at(2, &mut alloc, t0, wanted);
        freed.sort();
        order.push(freed);
        tree.validate().unwrap();
    }
    let sorted = |mut v: Vec<u32>| {
        v.sort();
        v
    };
    assert_eq!(
        order,
        vec![
            sorted(plain),
            sorted(deferred),
            sorted(pinned),
            sorted(fresh1),
            sorted(fresh0)
        ]
    );
    // Then the shared root page, which every wanted path runs through.
    assert_eq!(tree.stats().cached_tokens, 1);
}

#[test]
fn sparing_fresh_paths_leaves_them_whole() {
    let t0 = Instant::now();
    let (mut tree, mut alloc, [_, _, fresh0, fresh1, _], paths) = five_kinds(t0);
    let seqs: Vec<(Namespace, &[u32])> =
        vec![(0, &paths[2][..]), (0, &paths[3][..]), (0, &paths[4][..])];
    let wanted = Wanted {
        seqs: &seqs,
        fresh: 2,
        spare_fresh: true,
    };
    // Plain, deferred and pinned leaves: six pages, and nothing more comes out.
    assert_eq!(tree.evict_at(16, &mut alloc, t0, wanted).len(), 6);
    assert_eq!(tree.cached_prefix_len(&paths[2][..]), 3);
    assert_eq!(tree.cached_prefix_len(&paths[3][..]), 3);
    assert!(fresh0.iter().chain(&fresh1).all(|&p| tree.owns_page(p)));
}

#[test]
fn evictable_pages_sparing_counts_what_is_left_to_take() {
    let t0 = Instant::now();
    let (tree, _alloc, _, paths) = five_kinds(t0);
    assert_eq!(tree.stats().evictable_pages, 11);
    assert_eq!(tree.evictable_pages_sparing(&[], false), 11);
    // The root page lies on every spared path.
    assert_eq!(
        tree.evictable_pages_sparing(&[(0, &paths[2][..])], false),
        8
    );
    assert_eq!(
        tree.evictable_pages_sparing(&[(0, &paths[2][..]), (0, &paths[3][..])], false),
        6
    );
    // And the pinned leaf too.
    assert_eq!(
        tree.evictable_pages_sparing(&[(0, &paths[2][..]), (0, &paths[3][..])], true),
        4
    );
    assert_eq!(tree.evictable_pages_sparing(&[], true), 8);
}

#[test]
#[should_panic(expected = "stale node handle")]
fn lock_of_an_evicted_node_panics() {
    let (mut tree, mut alloc) = setup(4, 1);
    let a = run(&mut tree, &mut alloc, &[1, 2]);
    tree.evict(2, &mut alloc);
    run(&mut tree, &mut alloc, &[3, 4]); // reuses the arena slot
    tree.lock(a.node);
}

#[test]
#[should_panic(expected = "already in the tree")]
fn inserting_a_tree_page_for_new_tokens_panics() {
    let (mut tree, mut alloc) = setup(4, 1);
    let a = run(&mut tree, &mut alloc, &[1]);
    tree.insert(&[2], &a.pages, &mut alloc);
}

#[test]
fn probing_changes_nothing() {
    let (mut tree, mut alloc) = setup(8, 1);
    run(&mut tree, &mut alloc, &[1, 2, 3]);
    let before = tree.stats();
    assert_eq!(tree.cached_prefix_len(&[1, 2, 9]), 2);
    assert_eq!(tree.cached_prefix_len(&[]), 0);
    assert_eq!(tree.stats(), before, "no split");
    let empty = tree.match_prefix(&[]);
    assert_eq!((empty.len, empty.node), (0, tree.root()));
}

#[test]
fn namespaces_share_nothing_and_leave_no_empty_roots() {
    let mut alloc = PageAllocator::new(32, 2);
    let mut tree = RadixTree::for_allocator(&alloc);
    let tokens = [1, 2, 3, 4, 5, 6];
    let pages = alloc.alloc(3).unwrap();
    let r = tree.insert_in(7, &tokens, &pages, &mut alloc);
    assert_eq!(r.new_tokens, 6);
    tree.validate().unwrap();
    assert_eq!(tree.cached_prefix_len_in(7, &tokens), 6);
    assert_eq!(
        tree.cached_prefix_len(&tokens),
        0,
        "not in the shared namespace"
    );
    assert_eq!(tree.cached_prefix_len_in(8, &tokens), 0, "nor in another");
    assert!(tree.continuation(tree.root(), &[1, 2], 4).is_empty());
    // The same tokens in the shared namespace are new pages, not a duplicate of the salted.
    let shared = alloc.alloc(3).unwrap();
    let r = tree.insert(&tokens, &shared, &mut alloc);
    assert_eq!((r.new_tokens, r.freed.len()), (6, 0));
    assert_eq!(tree.stats().cached_tokens, 12);
    assert_eq!(tree.stats().nodes, 2);
    // A match locks within its namespace; an empty namespace's root goes with its last
    // lock or node.
    let m = tree.match_prefix_in(9, &tokens);
    assert_eq!(m.len, 0);
    tree.lock(m.node);
    tree.validate().unwrap();
    tree.unlock(m.node);
    tree.validate().unwrap();
    assert_eq!(tree.evict(6, &mut alloc).len(), 6);
    tree.validate().unwrap();
    assert_eq!(tree.stats().cached_tokens, 0);
    assert_eq!(alloc.free_pages(), 32);
}
