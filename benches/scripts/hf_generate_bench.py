"""HF transformers' `generate` on the same GGUF weights, the GPU baseline looptree's CUDA
path is compared with: prefill tok/s (one prompt of --prompt-len tokens) and greedy decode
tok/s at each --batch (tokens summed over the batch), medians of --reps runs.

Runs where PyTorch and transformers are installed (the `gguf` package is needed to read
the file); the weights are dequantized to --dtype, as transformers does for GGUF.
"""
import argparse
import json
import os
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()

    path = os.path.abspath(a.gguf)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=getattr(torch, a.dtype)
    ).to("cuda").eval()
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    report = {"engine": "transformers", "dtype": a.dtype, "model": os.path.basename(path), "decode_tok_s": {}}

    with torch.inference_mode():
        prompt = torch.randint(100, vocab - 100, (1, a.prompt_len), generator=gen).cuda()
        model(prompt)  # warm-up
        runs = [a.prompt_len / timed(lambda: model(prompt)) for _ in range(a.reps)]
        report["prefill_tok_s"] = statistics.median(runs)
        print(f"transformers prefill {a.prompt_len} tokens: {report['prefill_tok_s']:.0f} tok/s", flush=True)

        for b in a.batch:
            ids = torch.randint(100, vocab - 100, (b, 16), generator=gen).cuda()
            mask = torch.ones_like(ids)

            def generate(n):
                model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                               do_sample=False, pad_token_id=0)

            generate(4)  # warm-up
            runs = []
            for _ in range(a.reps):
                # Subtract the prompt's forward and the first token, as llama-bench's tg does.
                t_full, t_one = timed(lambda: generate(a.gen)), timed(lambda: generate(1))
                runs.append(b * (a.gen - 1) / (t_full - t_one))
            report["decode_tok_s"][str(b)] = statistics.median(runs)
            print(f"transformers decode batch {b}: {report['decode_tok_s'][str(b)]:.0f} tok/s", flush=True)

    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
