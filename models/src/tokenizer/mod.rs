//! Tokenizers from tokenizer.json or built from GGUF metadata.
