// Element-wise ops the generic path runs as several launches.
#include "common.cuh"

// out = silu(gate) * up, all f32 [n].
extern "C" __global__ void silu_mul_f32(const float* __restrict__ gate, const float* __restrict__ up,
                                        float* __restrict__ out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i];
  out[i] = g / (1.f + expf(-g)) * up[i];
}

// Rotary embedding of x [n_tokens, n_heads, head_dim] (f32) with cos/sin [n_tokens, head_dim/2].
// interleaved = 1 rotates pairs (2i, 2i+1) (GGUF llama); 0 rotates (i, i + head_dim/2) (HF, qwen2).
extern "C" __global__ void rope_f32(const float* __restrict__ x, const float* __restrict__ cos,
                                    const float* __restrict__ sin, float* __restrict__ out,
                                    int n_tokens, int n_heads, int head_dim, int interleaved) {
  const int half = head_dim / 2;
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;  // one per rotated pair
  if (i >= (size_t)n_tokens * n_heads * half) return;
  const int p = i % half;
  const size_t th = i / half;  // token * n_heads + head
  const size_t t = th / n_heads;
  const float c = cos[t * half + p], s = sin[t * half + p];
  const size_t a = th * head_dim + (interleaved ? 2 * p : p);
  const size_t b = a + (interleaved ? 1 : half);
  const float xa = x[a], xb = x[b];
  out[a] = xa * c - xb * s;
  out[b] = xa * s + xb * c;
}
