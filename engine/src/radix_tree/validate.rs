//! A full consistency check of the tree, for tests and debugging.

use super::RadixTree;

impl RadixTree {
    /// Every page the tree holds, in no particular order.
    pub fn pages(&self) -> Vec<u32> {
        self.arena
            .iter()
            .flat_map(|(_, n)| n.pages.iter().copied())
            .collect()
    }

    /// Checks the tree's structural invariants and counters; `Err` says what is broken.
    /// O(tree size): meant for tests, not the hot path.
    pub fn validate(&self) -> Result<(), String> {
        let ps = self.page_size;
        let mut seen_page = vec![false; self.in_tree.len()];
        let (mut cached, mut locked, mut reachable) = (0, 0, 0);
        let mut stack = vec![self.root];
        stack.extend(self.namespaces.values());
        while let Some(idx) = stack.pop() {
            reachable += 1;
            let n = self.arena.get(idx);
            if idx == self.root || self.namespaces.values().any(|&r| r == idx) {
                if !n.tokens.is_empty() || n.parent.is_some() {
                    return Err("root holds tokens or has a parent".into());
                }
                if idx != self.root && n.children.is_empty() && n.lock_ref == 0 {
                    return Err(format!("namespace root {idx} is empty and unlocked"));
                }
            } else if n.tokens.is_empty() || n.tokens.len() != n.pages.len() * ps {
                return Err(format!(
                    "node {idx}: {} tokens for {} pages",
                    n.tokens.len(),
                    n.pages.len()
                ));
            }
            for &p in &n.pages {
                let seen = seen_page
                    .get_mut(p as usize)
                    .ok_or(format!("page {p} out of range"))?;
                if std::mem::replace(seen, true) {
                    return Err(format!("page {p} held twice"));
                }
            }
            cached += n.tokens.len();
            if n.lock_ref > 0 {
                locked += n.tokens.len();
            }
            let mut child_locks = 0;
            for (key, &c) in &n.children {
                let child = self.arena.get(c);
                if child.parent != Some(idx) {
                    return Err(format!("node {c}: parent is not {idx}"));
                }
                if child.tokens.get(..ps) != Some(&key[..]) {
                    return Err(format!("node {c}: key is not its first page"));
                }
                child_locks += child.lock_ref;
                stack.push(c);
            }
            if n.lock_ref < child_locks {
                return Err(format!(
                    "node {idx}: lock_ref {} < children's {child_locks}",
                    n.lock_ref
                ));
            }
        }
        if reachable != self.arena.len() {
            return Err(format!("{} nodes, {reachable} reachable", self.arena.len()));
        }
        if seen_page != self.in_tree {
            return Err("page ownership map differs from the nodes' pages".into());
        }
        if (cached, locked) != (self.cached_tokens, self.locked_tokens) {
            return Err(format!(
                "counters: cached {} locked {}, nodes say {cached} and {locked}",
                self.cached_tokens, self.locked_tokens
            ));
        }
        Ok(())
    }
}
