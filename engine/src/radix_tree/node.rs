//! Tree nodes and the arena that stores them, with generation-checked handles.

use std::collections::HashMap;
use std::time::Instant;

/// A handle to a tree node. Stays valid while the node exists; a handle to an evicted
/// node is detected (its generation no longer matches) rather than aliasing a new node.
/// A locked node is never evicted, so a handle you hold a lock on is always valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId {
    pub(super) idx: u32,
    pub(super) gen: u32,
}

pub(super) struct Node {
    /// Arena index of the parent; `None` only for the root.
    pub parent: Option<u32>,
    /// The tokens on the edge into this node; always whole pages (empty for the root).
    pub tokens: Vec<u32>,
    /// One pool page per `page_size` tokens, in order.
    pub pages: Vec<u32>,
    /// Children keyed by the first page of their tokens (siblings differ in it).
    pub children: HashMap<Box<[u32]>, u32>,
    /// Number of locks held on this node or any descendant (locks cover the whole path).
    pub lock_ref: u32,
    /// Logical time of the last match/insert through this node (LRU order).
    pub last_access: u64,
    /// Soft pin: evicted only as a last resort until this instant.
    pub pinned_until: Option<Instant>,
}

impl Node {
    pub fn new(parent: Option<u32>, tokens: Vec<u32>, pages: Vec<u32>, last_access: u64) -> Self {
        Node {
            parent,
            tokens,
            pages,
            children: HashMap::new(),
            lock_ref: 0,
            last_access,
            pinned_until: None,
        }
    }
}

struct Entry {
    gen: u32,
    node: Option<Node>,
}

/// Slab of nodes; freed indices are reused with a bumped generation.
pub(super) struct Arena {
    entries: Vec<Entry>,
    free: Vec<u32>,
    live: usize,
}

impl Arena {
    pub fn new() -> Self {
        Arena {
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    pub fn add(&mut self, node: Node) -> u32 {
        self.live += 1;
        if let Some(idx) = self.free.pop() {
            self.entries[idx as usize].node = Some(node);
            idx
        } else {
            self.entries.push(Entry {
                gen: 0,
                node: Some(node),
            });
            (self.entries.len() - 1) as u32
        }
    }

    pub fn remove(&mut self, idx: u32) -> Node {
        let e = &mut self.entries[idx as usize];
        let node = e.node.take().expect("removing a dead node");
        e.gen = e.gen.wrapping_add(1);
        self.free.push(idx);
        self.live -= 1;
        node
    }

    pub fn get(&self, idx: u32) -> &Node {
        self.entries[idx as usize]
            .node
            .as_ref()
            .expect("dead node index")
    }

    pub fn get_mut(&mut self, idx: u32) -> &mut Node {
        self.entries[idx as usize]
            .node
            .as_mut()
            .expect("dead node index")
    }

    pub fn id(&self, idx: u32) -> NodeId {
        NodeId {
            idx,
            gen: self.entries[idx as usize].gen,
        }
    }

    /// The index behind `id`, or `None` if that node has since been removed.
    pub fn resolve(&self, id: NodeId) -> Option<u32> {
        let e = self.entries.get(id.idx as usize)?;
        (e.gen == id.gen && e.node.is_some()).then_some(id.idx)
    }

    /// Live nodes (the root included).
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Node)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.node.as_ref().map(|n| (i as u32, n)))
    }
}
