//! Chat templates (GGUF metadata or tokenizer_config.json) rendered with minijinja.
