// Attention of a mixed batch (decode tokens and prefill chunks with cached prefixes)
// straight over the paged KV pool: no gather, no per-sequence launches.
//
// One block per (query token, head). Its warps take the visible keys round-robin, each
// keeping an online softmax (running max, sum, weighted V) with the head dimension spread
// over the lanes; the warps are merged at the end. A token's result depends only on its
// own query and context, never on the rest of the batch.
#include "common.cuh"

#define WARPS 8
#define MAX_DIMS_PER_LANE 8  // head_dim <= 256

template <typename KV>
__device__ void paged_attention(
    const float* __restrict__ q,          // [n_tokens, n_heads, head_dim]
    const KV* __restrict__ k_pool,        // [num_slots, n_kv_heads * head_dim]
    const KV* __restrict__ v_pool,
    const uint32_t* __restrict__ meta,    // tok_ctx_offset[n_tokens], tok_pos[n_tokens], slots[..]
    float* __restrict__ out,              // [n_tokens, n_heads, head_dim]
    int n_tokens, int n_heads, int n_kv_heads, int head_dim, float scale, int window) {
  const int t = blockIdx.x;
  const int h = blockIdx.y;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int kv_head = h / (n_heads / n_kv_heads);
  const size_t row = (size_t)n_kv_heads * head_dim;
  const uint32_t* slots = meta + 2 * n_tokens + meta[t];
  const int pos = (int)meta[n_tokens + t];
  const int first = (window > 0 && pos + 1 > window) ? pos + 1 - window : 0;

  float qv[MAX_DIMS_PER_LANE];
  float acc[MAX_DIMS_PER_LANE];
  const float* qh = q + ((size_t)t * n_heads + h) * head_dim;
#pragma unroll
  for (int i = 0; i < MAX_DIMS_PER_LANE; i++) {
    const int d = lane + 32 * i;
    qv[i] = d < head_dim ? qh[d] * scale : 0.f;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j = first + warp; j <= pos; j += WARPS) {
    const size_t base = (size_t)slots[j] * row + (size_t)kv_head * head_dim;
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < MAX_DIMS_PER_LANE; i++) {
      const int d = lane + 32 * i;
      if (d < head_dim) s += qv[i] * to_f32(k_pool[base + d]);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    const float m_new = fmaxf(m, s);
    const float correction = expf(m - m_new);
    const float p = expf(s - m_new);
#pragma unroll
    for (int i = 0; i < MAX_DIMS_PER_LANE; i++) {
      const int d = lane + 32 * i;
      if (d < head_dim) acc[i] = acc[i] * correction + p * to_f32(v_pool[base + d]);
    }
    l = l * correction + p;
    m = m_new;
  }

  __shared__ float warp_max[WARPS];
  __shared__ float warp_sum[WARPS];
  __shared__ float warp_acc[WARPS][32 * MAX_DIMS_PER_LANE];
  if (lane == 0) {
    warp_max[warp] = m;
    warp_sum[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < MAX_DIMS_PER_LANE; i++) warp_acc[warp][lane + 32 * i] = acc[i];
  __syncthreads();
  if (warp != 0) return;
  float big = -INFINITY;
  for (int w = 0; w < WARPS; w++) big = fmaxf(big, warp_max[w]);
  float total = 0.f;
  float o[MAX_DIMS_PER_LANE];
#pragma unroll
  for (int i = 0; i < MAX_DIMS_PER_LANE; i++) o[i] = 0.f;
  for (int w = 0; w < WARPS; w++) {
    if (warp_sum[w] == 0.f) continue;  // a warp that saw no key
    const float c = expf(warp_max[w] - big);
    total += warp_sum[w] * c;
#pragma unroll
    for (int i = 0; i < MAX_DIMS_PER_LANE; i++) o[i] += warp_acc[w][lane + 32 * i] * c;
  }
  float* oh = out + ((size_t)t * n_heads + h) * head_dim;
#pragma unroll
  for (int i = 0; i < MAX_DIMS_PER_LANE; i++) {
    const int d = lane + 32 * i;
    if (d < head_dim) oh[d] = o[i] / total;
  }
}

#define PAGED_ATTENTION(NAME, KV)                                                              \
  extern "C" __global__ void NAME(const float* q, const KV* k, const KV* v, const uint32_t* meta, \
                                  float* out, int n_tokens, int n_heads, int n_kv_heads,        \
                                  int head_dim, float scale, int window) {                      \
    paged_attention<KV>(q, k, v, meta, out, n_tokens, n_heads, n_kv_heads, head_dim, scale,     \
                        window);                                                                \
  }

PAGED_ATTENTION(paged_attention_f32, float)
PAGED_ATTENTION(paged_attention_f16, __half)
PAGED_ATTENTION(paged_attention_bf16, __nv_bfloat16)
