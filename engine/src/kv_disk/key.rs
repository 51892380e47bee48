//! Names of pages on disk. A page is named by a hash of everything before it and of its
//! own tokens, chained from a root that is the directory's secret and the namespace: the
//! same tokens after a different prefix, or in another namespace, are another page. The
//! secret (random per directory) keeps anyone who sends prompts from crafting two paths
//! with one name; SHA-256 makes a chance collision out of the question.

use sha2::{Digest, Sha256};

use crate::radix_tree::Namespace;

/// 128 bits of a SHA-256.
pub type PageKey = [u8; 16];

fn truncated(h: Sha256) -> PageKey {
    let full = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&full[..16]);
    k
}

/// The key "before" a namespace's first page.
pub fn root_key(secret: &[u8; 16], ns: Namespace) -> PageKey {
    let mut h = Sha256::new();
    h.update(b"looptree-kv-root");
    h.update(secret);
    h.update(ns.to_le_bytes());
    truncated(h)
}

/// The key of the page holding `tokens` right after the page (or root) `parent`.
pub fn next_key(parent: &PageKey, tokens: &[u32]) -> PageKey {
    let mut h = Sha256::new();
    h.update(parent);
    for t in tokens {
        h.update(t.to_le_bytes());
    }
    truncated(h)
}

/// The keys of the whole pages of `tokens` after `root`, in order.
pub fn chain(root: PageKey, tokens: &[u32], page_size: usize) -> Vec<PageKey> {
    let mut prev = root;
    tokens
        .chunks_exact(page_size)
        .map(|page| {
            prev = next_key(&prev, page);
            prev
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_the_whole_path() {
        let s = [7u8; 16];
        let a = chain(root_key(&s, 0), &[1, 2, 3, 4], 2);
        let b = chain(root_key(&s, 0), &[9, 2, 3, 4], 2);
        assert_eq!(a.len(), 2);
        assert_ne!(a[1], b[1], "same page after another prefix");
        assert_ne!(a, chain(root_key(&s, 1), &[1, 2, 3, 4], 2), "namespace");
        assert_ne!(a, chain(root_key(&[8; 16], 0), &[1, 2, 3, 4], 2), "secret");
        assert_eq!(a[..1], chain(root_key(&s, 0), &[1, 2, 3], 2)[..]);
    }
}
