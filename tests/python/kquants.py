"""Q4_K, Q5_K and Q6_K quantization in numpy, for the random-weight test files: the `gguf`
package reads these types but cannot write them. Any valid encoding serves (llama.cpp and
looptree read the same bytes); this one is the plain one: each sub-block's scale (and, for
Q4_K, its minimum) from its range, those quantized in turn against the super-block's
scale. Layouts as in ggml's `block_q4_K`, `block_q5_K` and `block_q6_K`; `check()` round-trips them
through the `gguf` package's dequantizer.
"""

import numpy as np

QK_K = 256


def _f16(x):
    return x.astype(np.float16).astype(np.float32)


def _div(a, b):
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def _k_scaled(x, levels):
    """Q4_K and Q5_K's common part: per 32 values a scale and a minimum, each 6 bits
    against the super-block's `d` and `dmin`; q in 0..levels. Returns the packed header
    (d, dmin, 12 bytes of scales and minimums) and q, [blocks, 8, 32]."""
    b = x.reshape(-1, 8, 32).astype(np.float32)
    lo = np.minimum(b.min(-1), 0.0)
    hi = np.maximum(b.max(-1), 0.0)
    scale, mins = (hi - lo) / levels, -lo
    d, dmin = _f16(scale.max(-1) / 63.0), _f16(mins.max(-1) / 63.0)
    sc = np.clip(np.round(_div(scale, d[:, None])), 0, 63).astype(np.uint8)
    m = np.clip(np.round(_div(mins, dmin[:, None])), 0, 63).astype(np.uint8)
    step = d[:, None] * sc
    q = np.clip(np.round(_div(b + (dmin[:, None] * m)[..., None], step[..., None])), 0, levels)
    q = q.astype(np.uint8)
    scales = np.concatenate(
        [
            sc[:, :4] | ((sc[:, 4:] >> 4) << 6),
            m[:, :4] | ((m[:, 4:] >> 4) << 6),
            (sc[:, 4:] & 0xF) | ((m[:, 4:] & 0xF) << 4),
        ],
        axis=1,
    )
    head = np.stack([d, dmin], axis=1).astype(np.float16).view(np.uint8)
    return np.concatenate([head, scales], axis=1), q


def _nibbles(q):
    # 32 bytes per pair of sub-blocks: the first in the low nibbles, the second in the high.
    q = q & 0xF
    return (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(-1, 128)


def quantize_q4_k(x):
    """Rows of `x` (length a multiple of 256) as Q4_K blocks: 144 bytes per 256 values,
    y = d·sc·q − dmin·m with 4-bit q and 6-bit sc, m per 32 values."""
    rows, n = x.shape
    head, q = _k_scaled(x, 15)
    return np.concatenate([head, _nibbles(q)], axis=1).reshape(rows, n // QK_K * 144)


def quantize_q5_k(x):
    """Rows of `x` as Q5_K blocks: 176 bytes per 256 values, as Q4_K with a fifth bit of
    each q in `qh` (bit 2j of byte l: value l of sub-block 2j; bit 2j+1: of sub-block 2j+1)."""
    rows, n = x.shape
    head, q = _k_scaled(x, 31)
    high = (q >> 4).astype(np.uint8)  # [blocks, 8, 32]
    qh = np.zeros((q.shape[0], 32), dtype=np.uint8)
    for sub in range(8):
        qh |= high[:, sub, :] << sub
    return np.concatenate([head, qh, _nibbles(q)], axis=1).reshape(rows, n // QK_K * 176)


def quantize_q6_k(x):
    """Rows of `x` as Q6_K blocks: 210 bytes per 256 values, y = d·sc·(q − 32) with 6-bit
    q and an 8-bit sc per 16 values."""
    rows, n = x.shape
    b = x.reshape(-1, 16, 16).astype(np.float32)
    scale = np.abs(b).max(-1) / 31.0
    d = _f16(scale.max(-1) / 127.0)
    sc = np.clip(np.round(_div(scale, d[:, None])), -128, 127)
    step = d[:, None] * sc
    q = (np.clip(np.round(_div(b, step[..., None])), -32, 31) + 32).astype(np.uint8)
    q = q.reshape(-1, 2, 4, 32)  # per half of 128 values: four runs of 32
    ql = np.concatenate(
        [(q[:, :, 0] & 0xF) | ((q[:, :, 2] & 0xF) << 4), (q[:, :, 1] & 0xF) | ((q[:, :, 3] & 0xF) << 4)],
        axis=2,
    ).reshape(-1, 128)
    qh = ((q[:, :, 0] >> 4) | ((q[:, :, 1] >> 4) << 2) | ((q[:, :, 2] >> 4) << 4) | ((q[:, :, 3] >> 4) << 6))
    qh = qh.reshape(-1, 64)
    scales = sc.astype(np.int8).view(np.uint8)
    tail = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    return np.concatenate([ql, qh, scales, tail], axis=1).reshape(rows, n // QK_K * 210)


def check():
    import gguf

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 512)).astype(np.float32) * 0.05
    x[1, :256] += 0.2  # a sub-block with no negative values
    for quant, qtype, tol in ((quantize_q4_k, gguf.GGMLQuantizationType.Q4_K, 0.02),
                              (quantize_q5_k, gguf.GGMLQuantizationType.Q5_K, 0.01),
                              (quantize_q6_k, gguf.GGMLQuantizationType.Q6_K, 0.01)):
        y = gguf.quants.dequantize(quant(x), qtype).reshape(x.shape)
        err = np.abs(y - x).max()
        assert err < tol, (qtype, err)
        print(qtype.name, "max error", err)


if __name__ == "__main__":
    check()
