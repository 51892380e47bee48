//! Resolving `--model` (path, HF directory, hub repo id, built-in alias) to local files.
