//! Page allocator: which pool slots are free, in pages of `page_size` slots.
