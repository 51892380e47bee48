// Writes the new tokens' K (or V) rows into their pool slots, converting from f32.
#include "common.cuh"

template <typename KV>
__device__ void kv_write(const float* __restrict__ src, KV* __restrict__ pool,
                         const uint32_t* __restrict__ slots, int n, int row) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (size_t)n * row) return;
  const size_t t = i / row, e = i % row;
  pool[(size_t)slots[t] * row + e] = from_f32<KV>(src[i]);
}

#define KV_WRITE(NAME, KV)                                                                  \
  extern "C" __global__ void NAME(const float* src, KV* pool, const uint32_t* slots, int n,  \
                                  int row) {                                                \
    kv_write<KV>(src, pool, slots, n, row);                                                 \
  }

KV_WRITE(kv_write_f32, float)
KV_WRITE(kv_write_f16, __half)
KV_WRITE(kv_write_bf16, __nv_bfloat16)
