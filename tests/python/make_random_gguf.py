"""Writes a small random-weight GGUF of one architecture, reproducible from its seed, to
check looptree's model code against llama.cpp without real weights.

    PY=$(bash scripts/fixture-venv.sh)
    "$PY" tests/python/make_random_gguf.py qwen3 --seed 1 --out /tmp/qwen3.gguf

The tokenizer metadata is copied from a real model (Qwen2.5's BPE vocabulary, which Qwen3
shares) so llama.cpp loads the file as it would a real one. Weights are quantized as real
files are (Q8_0, Q5_0, Q4_1 and F16 by the `gguf` package, Q4_K, Q5_K and Q6_K by `kquants.py`,
since the package cannot write those), and scaled so next-token distributions are peaked: a near-uniform
distribution would let a wrong model agree with the reference.

phi3 is written as llama.cpp's converter writes Phi-3/Phi-4-mini: fused `attn_qkv` and
`ffn_up` (gate rows, then up rows), partial rotary (`--rope-dims`), LongRoPE factor tensors
with the attention factor, and a `sliding_window` that llama.cpp ignores (it is kept small
here so that honouring it would show). Its vocabulary is whatever `--tokenizer-from` gives
(Qwen2.5's in the tests; Phi-3's own is a SentencePiece one, not at hand here).
"""

import math

import argparse
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

from kquants import quantize_q4_k, quantize_q5_k, quantize_q6_k

K_QUANTS = {Q.Q4_K: quantize_q4_k, Q.Q5_K: quantize_q5_k, Q.Q6_K: quantize_q6_k}

ARCHS = ("llama", "qwen2", "qwen3", "qwen3moe", "phi3")
# The tokens Qwen3's vocabulary adds in Qwen2.5's padding slots (all user-defined).
QWEN3_ADDED = {151665: "<tool_response>", 151666: "</tool_response>", 151667: "<think>", 151668: "</think>"}
USER_DEFINED = 4
DEFAULT_TOKENIZER = os.path.expanduser("~/.cache/looptree/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")


def copy_tokenizer(src, w, qwen3_vocab=False):
    r = gguf.GGUFReader(src)
    vocab = None
    for name, field in r.fields.items():
        if not name.startswith("tokenizer.") or name == "tokenizer.chat_template":
            continue
        t = field.types[0]
        value = field.contents()
        if qwen3_vocab and name in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"):
            for i, text in QWEN3_ADDED.items():
                if name == "tokenizer.ggml.tokens":
                    assert value[i].startswith("[PAD"), f"token {i} is {value[i]!r}, not padding"
                value[i] = text if name == "tokenizer.ggml.tokens" else USER_DEFINED
        if t == gguf.GGUFValueType.ARRAY:
            w.add_array(name, value)
            if name == "tokenizer.ggml.tokens":
                vocab = len(value)
        elif t == gguf.GGUFValueType.STRING:
            w.add_string(name, value)
        elif t == gguf.GGUFValueType.BOOL:
            w.add_bool(name, value)
        else:
            w.add_key_value(name, value, t)
    return vocab


def put(w, name, x, qtype):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if qtype == Q.F32:
        w.add_tensor(name, x)
    elif qtype == Q.F16:
        w.add_tensor(name, x.astype(np.float16))
    elif qtype in K_QUANTS:
        rows = K_QUANTS[qtype](x.reshape(-1, x.shape[-1]))
        w.add_tensor(name, rows.reshape(*x.shape[:-1], rows.shape[-1]), raw_dtype=qtype)
    else:
        w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)


def llama3_divisors(rope_dims, base, factor, original_context, low=1.0, high=4.0):
    """Llama 3.1's rope scaling as per-pair divisors of the frequencies (what the GGUF
    converter stores in rope_freqs.weight): high frequencies kept, low ones divided by the
    factor, a smooth blend between."""
    out = []
    for i in range(0, rope_dims, 2):
        wavelen = 2 * math.pi * base ** (i / rope_dims)
        if wavelen < original_context / high:
            out.append(1.0)
        elif wavelen > original_context / low:
            out.append(factor)
        else:
            smooth = (original_context / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", choices=ARCHS)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer-from", default=DEFAULT_TOKENIZER)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=0, help="0: hidden / heads")
    ap.add_argument("--ffn", type=int, default=256)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--experts-used", type=int, default=2)
    ap.add_argument("--quant", default="mixed", choices=("mixed", "k_mixed", "q8_0", "q5_0", "q4_1", "f16"),
                    help="k_mixed: Q4_K, Q5_K, Q6_K and Q8_0 as K-quant files mix them (widths multiples of 256)")
    ap.add_argument("--qwen3-vocab", action="store_true",
                    help="add Qwen3's <think>, </think>, <tool_response>, </tool_response> tokens")
    ap.add_argument("--chat-template", help="a file whose text becomes tokenizer.chat_template")
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--tied", action="store_true", help="no output.weight: the head is the embedding")
    ap.add_argument("--rope-dims", type=int, default=0, help="phi3: rotated elements per head (0: all)")
    ap.add_argument("--original-context", type=int, default=256,
                    help="phi3: LongRoPE's pre-extension context (long factors apply past it)")
    ap.add_argument("--attn-factor", type=float, default=0.0,
                    help="phi3: rope.scaling.attn_factor (0: the converter's formula)")
    ap.add_argument("--sliding-window", type=int, default=16, help="phi3: written, and ignored by llama.cpp")
    ap.add_argument("--rope-base", type=float, default=0.0, help="rope.freq_base (0: the architecture's usual)")
    ap.add_argument("--llama3-rope", type=float, default=0.0,
                    help="llama: write rope_freqs.weight as the converter does for Llama 3.1+ "
                         "with this scaling factor (0: none)")
    ap.add_argument("--llama3-original-context", type=int, default=64,
                    help="llama3 rope: the pre-extension context (small, so short prompts feel it)")
    a = ap.parse_args()

    rng = np.random.default_rng(a.seed)
    arch = a.arch
    hd = a.head_dim or a.hidden // a.heads
    w = gguf.GGUFWriter(a.out, arch)
    w.add_name(f"random-{arch}-seed{a.seed}")
    vocab = copy_tokenizer(a.tokenizer_from, w, a.qwen3_vocab)
    if a.chat_template:
        with open(a.chat_template, encoding="utf-8") as f:
            w.add_chat_template(f.read())
    w.add_block_count(a.layers)
    w.add_context_length(a.context)
    w.add_embedding_length(a.hidden)
    w.add_feed_forward_length(a.ffn)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_layer_norm_rms_eps(1e-6)
    rope_base = a.rope_base or (1_000_000.0 if arch.startswith("qwen") else 10_000.0)
    w.add_rope_freq_base(rope_base)
    rope_dims = a.rope_dims or hd
    if arch == "phi3":
        w.add_rope_dimension_count(rope_dims)
        w.add_rope_scaling_orig_ctx_len(a.original_context)
        scale = a.context / a.original_context
        # The converter's LongRoPE attention factor.
        attn = a.attn_factor or (math.sqrt(1 + math.log(scale) / math.log(a.original_context)) if scale > 1 else 1.0)
        w.add_rope_scaling_attn_factors(attn)
        w.add_sliding_window(a.sliding_window)
    if arch == "qwen3moe":
        w.add_expert_count(a.experts)
        w.add_expert_used_count(a.experts_used)
        w.add_expert_feed_forward_length(a.ffn)

    # Projections cycle through the quantizations real files mix; small norms stay f32.
    cycle = {
        "mixed": [Q.Q8_0, Q.Q5_0, Q.Q4_1, Q.F16],
        "k_mixed": [Q.Q4_K, Q.Q6_K, Q.Q5_K, Q.Q8_0],
        "q8_0": [Q.Q8_0], "q5_0": [Q.Q5_0], "q4_1": [Q.Q4_1], "f16": [Q.F16],
    }[a.quant]
    counter = [0]

    def qt():
        counter[0] += 1
        return cycle[counter[0] % len(cycle)]

    def mat(out_f, in_f, gain=1.0):
        # Variance-preserving init, times a gain.
        return rng.standard_normal((out_f, in_f)).astype(np.float32) * (gain / np.sqrt(in_f))

    def norm_w(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    embd = rng.standard_normal((vocab, a.hidden)).astype(np.float32)
    # A tied head is the embedding: scaled as output.weight would be, for peaked but not
    # near-certain next-token distributions.
    put(w, "token_embd.weight", embd * (6.0 / np.sqrt(a.hidden) if a.tied else 1.0), Q.Q8_0)
    if a.llama3_rope:
        put(w, "rope_freqs.weight", llama3_divisors(rope_dims, rope_base, a.llama3_rope,
                                                    a.llama3_original_context), Q.F32)
    if arch == "phi3":
        # Per-pair frequency divisors rising with the pair (as real ones do), long ones far
        # more than short ones, so that either choice, or none, shows in the logits.
        pairs = rope_dims // 2
        ramp = np.linspace(0.0, 1.0, pairs)
        for name, top in (("rope_factors_long.weight", 40.0), ("rope_factors_short.weight", 3.0)):
            f = top ** ramp * (1.0 + 0.1 * rng.random(pairs))
            put(w, name, f, Q.F32)
        for i in range(a.layers):
            p = f"blk.{i}."
            put(w, p + "attn_norm.weight", norm_w(a.hidden), Q.F32)
            qkv = [mat(a.heads * hd, a.hidden, 2.0), mat(a.kv_heads * hd, a.hidden, 2.0), mat(a.kv_heads * hd, a.hidden)]
            put(w, p + "attn_qkv.weight", np.concatenate(qkv), qt())
            put(w, p + "attn_output.weight", mat(a.hidden, a.heads * hd), qt())
            put(w, p + "ffn_norm.weight", norm_w(a.hidden), Q.F32)
            put(w, p + "ffn_up.weight", np.concatenate([mat(a.ffn, a.hidden), mat(a.ffn, a.hidden)]), qt())
            put(w, p + "ffn_down.weight", mat(a.hidden, a.ffn), qt())
    for i in range(a.layers if arch != "phi3" else 0):
        p = f"blk.{i}."
        put(w, p + "attn_norm.weight", norm_w(a.hidden), Q.F32)
        put(w, p + "attn_q.weight", mat(a.heads * hd, a.hidden, 2.0), qt())
        put(w, p + "attn_k.weight", mat(a.kv_heads * hd, a.hidden, 2.0), qt())
        put(w, p + "attn_v.weight", mat(a.kv_heads * hd, a.hidden), qt())
        if arch == "qwen2":
            for n, d in (("q", a.heads * hd), ("k", a.kv_heads * hd), ("v", a.kv_heads * hd)):
                put(w, p + f"attn_{n}.bias", 0.5 * rng.standard_normal(d), Q.F32)
        if arch in ("qwen3", "qwen3moe"):
            put(w, p + "attn_q_norm.weight", norm_w(hd), Q.F32)
            put(w, p + "attn_k_norm.weight", norm_w(hd), Q.F32)
        put(w, p + "attn_output.weight", mat(a.hidden, a.heads * hd), qt())
        put(w, p + "ffn_norm.weight", norm_w(a.hidden), Q.F32)
        if arch == "qwen3moe":
            e = a.experts
            put(w, p + "ffn_gate_inp.weight", mat(e, a.hidden, 3.0), Q.F32)
            qe = qt()
            put(w, p + "ffn_gate_exps.weight", np.stack([mat(a.ffn, a.hidden) for _ in range(e)]), qe)
            put(w, p + "ffn_up_exps.weight", np.stack([mat(a.ffn, a.hidden) for _ in range(e)]), qe)
            put(w, p + "ffn_down_exps.weight", np.stack([mat(a.hidden, a.ffn) for _ in range(e)]), qt())
        else:
            put(w, p + "ffn_gate.weight", mat(a.ffn, a.hidden), qt())
            put(w, p + "ffn_up.weight", mat(a.ffn, a.hidden), qt())
            put(w, p + "ffn_down.weight", mat(a.hidden, a.ffn), qt())
    put(w, "output_norm.weight", norm_w(a.hidden), Q.F32)
    # Logits with a spread of several nats: peaked next-token distributions.
    if not a.tied:
        put(w, "output.weight", mat(vocab, a.hidden, 6.0), Q.Q8_0)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
