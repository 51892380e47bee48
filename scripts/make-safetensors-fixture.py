#!/usr/bin/env python3
"""Make the HF-layout test fixture: SmolLM2's GGUF dequantized into a model directory.

    python3 scripts/make-safetensors-fixture.py [--force]

Writes $LOOPTREE_FIXTURES_DIR/smollm2-135m-hf (default ~/.cache/looptree/fixtures/...) from
$LOOPTREE_MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf (default ~/.cache/looptree/models; run
scripts/fetch-models.sh first):

- model.safetensors: every tensor dequantized to f32 under its HF transformers name, with the
  Q/K rows of attention un-permuted (llama.cpp's converter permutes them so that interleaved
  RoPE rotates adjacent pairs; HF weights rotate the two halves of each head);
- config.json: model_type llama with the hyper-parameters from the GGUF metadata;
- tokenizer.json: byte-level BPE in the layout of SmolLM2's own HF tokenizer (vocabulary and
  merges from the GGUF; digits split one by one, then GPT-2's split), built here rather than
  by looptree so that looptree's loader reads a file it did not write;
- tokenizer_config.json (chat template, special tokens) and generation_config.json.

Idempotent: when the directory exists with a stamp of this script's version, it exits at
once without importing anything. Otherwise it needs the `gguf` and `numpy` packages; when they
are missing it re-runs itself under the cached venv that scripts/fixture-venv.sh makes.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Bump when the output changes, so that cached fixtures are rebuilt.
VERSION = 1
NAME = "smollm2-135m-hf"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
STAMP = "looptree-fixture.json"
HERE = Path(__file__).resolve().parent


def cache_dir(env: str, sub: str) -> Path:
    d = os.environ.get(env)
    return Path(d) if d else Path.home() / ".cache/looptree" / sub


def up_to_date(out: Path) -> bool:
    try:
        return json.loads((out / STAMP).read_text()).get("version") == VERSION
    except (OSError, ValueError):
        return False


def ensure_packages() -> None:
    """Re-executes this script under the fixture venv when gguf/numpy are not importable."""
    try:
        import gguf  # noqa: F401
        import numpy  # noqa: F401
        return
    except ImportError:
        if os.environ.get("LOOPTREE_FIXTURE_REEXEC"):
            raise
    py = subprocess.run(["bash", str(HERE / "fixture-venv.sh")], check=True, stdout=subprocess.PIPE, text=True)
    python = py.stdout.strip().splitlines()[-1]
    os.environ["LOOPTREE_FIXTURE_REEXEC"] = "1"
    os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])


# --- tensors --------------------------------------------------------------------------------

HF_PARTS = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
HF_TOP = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def hf_name(gguf_name: str) -> str:
    if gguf_name in HF_TOP:
        return HF_TOP[gguf_name]
    blk, layer, part, suffix = gguf_name.split(".", 3)
    if blk != "blk" or part not in HF_PARTS:
        raise SystemExit(f"unexpected tensor {gguf_name!r} in a llama GGUF")
    return f"model.layers.{layer}.{HF_PARTS[part]}.{suffix}"


def unpermute(w, n_head: int):
    """Undoes llama.cpp's Q/K row permutation for one projection `[n_head * head_dim, ...]`.

    The converter reorders each head's rows from HF's (half, pair) order to (pair, half), so
    that row 2i and 2i+1 of a head are the i-th rotary pair. Reading the rows back as
    `[head, pair, half]` and swapping the last two axes restores `[head, half, pair]`.
    """
    rows = w.shape[0]
    head_dim = rows // n_head
    return w.reshape(n_head, head_dim // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_safetensors(path: Path, tensors: dict) -> None:
    """The safetensors format: u64 header length, JSON header, then the raw little-endian data."""
    import numpy as np

    dtypes = {np.dtype("float32"): "F32", np.dtype("float16"): "F16"}
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # keep the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for b in blobs:
            f.write(b)


# --- metadata -------------------------------------------------------------------------------


def fields(reader) -> dict:
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        out[key] = field.contents()
    return out


def f32_round(x: float) -> float:
    """A float32 metadata value as the short decimal it was written from (9.9999997e-06 -> 1e-05)."""
    import numpy as np

    return float(str(np.float32(x)))


def config_json(md: dict, n_tensors_vocab: int, tied: bool) -> dict:
    a = md["general.architecture"]
    if a != "llama":
        raise SystemExit(f"expected a llama GGUF, got {a!r}")
    g = lambda k, d=None: md.get(f"{a}.{k}", d)  # noqa: E731
    hidden, heads = int(g("embedding_length")), int(g("attention.head_count"))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": int(g("feed_forward_length")),
        "num_hidden_layers": int(g("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(g("attention.head_count_kv", heads)),
        "head_dim": int(g("rope.dimension_count", hidden // heads)),
        "vocab_size": int(g("vocab_size", n_tensors_vocab)),
        "max_position_embeddings": int(g("context_length")),
        "rms_norm_eps": f32_round(g("attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": f32_round(g("rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "tie_word_embeddings": tied,
        "attention_bias": False,
        "mlp_bias": False,
        "hidden_act": "silu",
        "bos_token_id": md.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": md.get("tokenizer.ggml.eos_token_id"),
        "torch_dtype": "float32",
    }


CONTROL = 3


def tokenizer_json(md: dict) -> dict:
    if md.get("tokenizer.ggml.model") != "gpt2" or md.get("tokenizer.ggml.pre") != "smollm":
        raise SystemExit("expected SmolLM2's byte-level BPE tokenizer (gpt2 model, smollm pre-tokenizer)")
    tokens = md["tokenizer.ggml.tokens"]
    types = md["tokenizer.ggml.token_type"]
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for i, (t, ty) in enumerate(zip(tokens, types))
        if ty == CONTROL
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level],
        },
        "post_processor": dict(byte_level, trim_offsets=False),
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": list(md["tokenizer.ggml.merges"]),
        },
    }


def tokenizer_config_json(md: dict) -> dict:
    tokens = md["tokenizer.ggml.tokens"]
    types = md["tokenizer.ggml.token_type"]
    text = lambda key: tokens[md[key]] if key in md else None  # noqa: E731
    return {
        "add_bos_token": bool(md.get("tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
            for i, (t, ty) in enumerate(zip(tokens, types))
            if ty == CONTROL
        },
        "bos_token": text("tokenizer.ggml.bos_token_id"),
        "eos_token": text("tokenizer.ggml.eos_token_id"),
        "unk_token": text("tokenizer.ggml.unknown_token_id"),
        "pad_token": text("tokenizer.ggml.padding_token_id"),
        "chat_template": md["tokenizer.chat_template"],
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(md["llama.context_length"]),
        "tokenizer_class": "GPT2Tokenizer",
    }


# --- main -----------------------------------------------------------------------------------


def build(src: Path, out: Path) -> None:
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(src))
    md = fields(reader)
    heads = int(md["llama.attention.head_count"])
    kv_heads = int(md.get("llama.attention.head_count_kv", heads))

    tensors = {}
    for t in reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        # GGUF lists dimensions innermost first; numpy's (and HF's) shape is the reverse.
        shape = tuple(int(d) for d in reversed(t.shape))
        w = w.reshape(shape)
        part = t.name.split(".")[2] if t.name.startswith("blk.") else ""
        if part == "attn_q":
            w = unpermute(w, heads)
        elif part == "attn_k":
            w = unpermute(w, kv_heads)
        tensors[hf_name(t.name)] = w
    tied = "lm_head.weight" not in tensors
    vocab = tensors["model.embed_tokens.weight"].shape[0]

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_safetensors(tmp / "model.safetensors", tensors)
    dump = lambda name, obj: (tmp / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")  # noqa: E731
    dump("config.json", config_json(md, vocab, tied))
    dump("tokenizer.json", tokenizer_json(md))
    dump("tokenizer_config.json", tokenizer_config_json(md))
    dump(
        "generation_config.json",
        {"bos_token_id": md.get("tokenizer.ggml.bos_token_id"), "eos_token_id": md.get("tokenizer.ggml.eos_token_id")},
    )
    dump(STAMP, {"version": VERSION, "source": src.name, "source_bytes": src.stat().st_size})
    # Swap the finished directory in, so an interrupted run never leaves a half fixture.
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def main() -> None:
    force = "--force" in sys.argv[1:]
    out = cache_dir("LOOPTREE_FIXTURES_DIR", "fixtures") / NAME
    if not force and up_to_date(out):
        print(f"fixture present: {out}")
        return
    src = cache_dir("LOOPTREE_MODELS_DIR", "models") / GGUF_FILE
    if not src.is_file():
        raise SystemExit(f"{src} is missing: run `bash scripts/fetch-models.sh smollm2-135m` first")
    ensure_packages()
    print(f"making fixture {out} from {src.name}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    build(src, out)
    print(f"fixture made: {out}")


if __name__ == "__main__":
    main()
