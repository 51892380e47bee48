//! What the tree holds after a path: an earlier iteration's, sibling sample's or retry's
//! continuation of the same context, read as a speculative draft.

use super::{NodeId, RadixTree};

impl RadixTree {
    /// Up to `max` cached tokens that follow `node`'s path extended by `after`, taking the
    /// most recently used branch where the tree forks; empty if the tree holds nothing
    /// past that context (or `node` is gone). Touches neither LRU order nor shape.
    pub fn continuation(&self, node: NodeId, after: &[u32], max: usize) -> Vec<u32> {
        let Some(mut cur) = self.arena.resolve(node) else {
            return Vec::new();
        };
        let mut rest = after;
        let mut out = Vec::new();
        // Match `after` down the tree; it may end part of the way along an edge.
        let mut offset = self.arena.get(cur).tokens.len();
        while !rest.is_empty() {
            let Some(child) = self.child_along(cur, rest) else {
                return out;
            };
            let edge = &self.arena.get(child).tokens;
            let n = edge.len().min(rest.len());
            if edge[..n] != rest[..n] {
                return out;
            }
            rest = &rest[n..];
            cur = child;
            offset = n;
        }
        // Then read on, most recent branch first.
        while out.len() < max {
            let edge = &self.arena.get(cur).tokens;
            let take = (max - out.len()).min(edge.len() - offset);
            out.extend_from_slice(&edge[offset..offset + take]);
            let Some(next) = self.latest_child(cur) else {
                break;
            };
            cur = next;
            offset = 0;
        }
        out
    }

    /// The child of `idx` whose edge starts with `tokens` (or that `tokens` starts with);
    /// the most recently used if several do (a partial first page matches several).
    fn child_along(&self, idx: u32, tokens: &[u32]) -> Option<u32> {
        if tokens.is_empty() {
            return None;
        }
        if tokens.len() >= self.page_size {
            return self.child(idx, tokens);
        }
        self.arena
            .get(idx)
            .children
            .values()
            .copied()
            .filter(|&c| self.arena.get(c).tokens.starts_with(tokens))
            .max_by_key(|&c| self.arena.get(c).last_access)
    }

    fn latest_child(&self, idx: u32) -> Option<u32> {
        self.arena
            .get(idx)
            .children
            .values()
            .copied()
            .max_by_key(|&c| self.arena.get(c).last_access)
    }
}

#[cfg(test)]
mod tests {
    use crate::pages::PageAllocator;
    use crate::radix_tree::RadixTree;

    fn cached(tree: &mut RadixTree, alloc: &mut PageAllocator, tokens: &[u32]) {
        let pages = alloc.alloc(alloc.pages_for(tokens.len())).unwrap();
        let r = tree.insert(tokens, &pages, alloc);
        alloc.free_all(&pages[r.pages.len()..]).unwrap();
    }

    #[test]
    fn reads_on_past_the_context_along_the_latest_branch() {
        let mut alloc = PageAllocator::new(64, 1);
        let mut tree = RadixTree::for_allocator(&alloc);
        cached(&mut tree, &mut alloc, &[1, 2, 3, 4, 5, 6]);
        cached(&mut tree, &mut alloc, &[1, 2, 3, 7, 8]);
        let root = tree.root();
        // The later insert is the more recent branch after [1, 2, 3].
        assert_eq!(tree.continuation(root, &[1, 2, 3], 5), vec![7, 8]);
        assert_eq!(tree.continuation(root, &[1, 2, 3, 4], 5), vec![5, 6]);
        assert_eq!(tree.continuation(root, &[1], 3), vec![2, 3, 7]);
        assert_eq!(
            tree.continuation(root, &[1, 2, 3, 4, 5, 6], 5),
            Vec::<u32>::new()
        );
        assert_eq!(tree.continuation(root, &[9], 5), Vec::<u32>::new());
        // From a matched node, `after` continues its path.
        let m = tree.match_prefix(&[1, 2]);
        assert_eq!(tree.continuation(m.node, &[3, 4], 1), vec![5]);
        assert_eq!(tree.continuation(m.node, &[], 2), vec![3, 7]);
    }

    #[test]
    fn pages_longer_than_one_token() {
        let mut alloc = PageAllocator::new(64, 4);
        let mut tree = RadixTree::for_allocator(&alloc);
        cached(&mut tree, &mut alloc, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let root = tree.root();
        // The ninth token is a partial page: not cached.
        assert_eq!(tree.continuation(root, &[1, 2], 3), vec![3, 4, 5]);
        assert_eq!(tree.continuation(root, &[1, 2, 3, 4, 5], 9), vec![6, 7, 8]);
        assert_eq!(
            tree.continuation(root, &[1, 2, 3, 4, 5, 6, 7, 8], 9),
            Vec::<u32>::new()
        );
    }
}
