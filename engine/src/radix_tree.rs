//! Radix tree over token ids whose values are KV pool slots.
