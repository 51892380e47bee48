//! Turning logits into the next token: processors, samplers, stop conditions.
