// Decode-time attention over a shared context plus per-sample decoded tokens (bifurcated
// attention, decoding.md section 2, kernels.md section 5), shared by the CPU and CUDA kernels.
//
// For sample i, query head h (KV head j = h / (H / Hkv)) and query position t < q_len:
//   keys   = K_ctx[c(i), j, :ctx_len(c(i))]  then  K_dec[i, j, :visible(i, t)]
//   visible(i, t) = clamp(dec_len(i) - q_len + 1 + t, 0, dec_len(i))
//     (the q_len queries are the last q_len decoded positions, so query t sees the decoded keys
//     up to and including its own; decoding.md 2.5)
//   out[i, h, t] = softmax(scale * q . keys) @ values,  lse[i, h, t] = log sum exp(scale q . k)
// No causal mask against the context. Either part may be absent or empty for a sample; a query
// with no key at all gets out = 0 and lse = -inf (never NaN).
// The context part is where the savings are: its keys and values are read once per (context,
// KV head) for every sample and grouped query head that uses them.
//
// Letters: b batch, H query heads, Hkv KV heads (H % Hkv == 0), T q_len, D head dim,
// Mc context length, Md decoded capacity, C contexts.
// Element types: io (io_dtype: float32, float16, bfloat16 or float64) for q, k, v and out;
// acc (float64 for float64 io, float32 otherwise) for lse and all arithmetic.
// Strides in elements; inputs any strides; outputs contiguous.
#pragma once

#include <cstdint>

#include "nemocore/common.h"

namespace nemocore {

struct AttentionDecodeParams {
  int64_t batch = 0, nheads = 0, nkv_heads = 0, q_len = 0, headdim = 0;
  DType io_dtype = DType::kFloat32;
  double scale = 1.0;

  const void* q = nullptr;  // (b, H, T, D)
  int64_t q_batch_stride = 0, q_head_stride = 0, q_seq_stride = 0, q_dim_stride = 0;

  // Shared context: (C, Hkv, Mc, D) each, or nullptr / Mc == 0 for none.
  int64_t num_contexts = 0, ctx_len = 0;
  const void* k_ctx = nullptr;
  int64_t kc_ctx_stride = 0, kc_head_stride = 0, kc_seq_stride = 0, kc_dim_stride = 0;
  const void* v_ctx = nullptr;
  int64_t vc_ctx_stride = 0, vc_head_stride = 0, vc_seq_stride = 0, vc_dim_stride = 0;
  const int64_t* ctx_index = nullptr;  // (b,) in [0, C), or nullptr: every sample uses context 0
  const int64_t* ctx_lens = nullptr;   // (C,) in [0, Mc], or nullptr: all Mc

  // Per-sample decoded part: (b, Hkv, Md, D) each, or nullptr / Md == 0 for none.
  int64_t max_dec_len = 0;
  const void* k_dec = nullptr;
  int64_t kd_batch_stride = 0, kd_head_stride = 0, kd_seq_stride = 0, kd_dim_stride = 0;
  const void* v_dec = nullptr;
  int64_t vd_batch_stride = 0, vd_head_stride = 0, vd_seq_stride = 0, vd_dim_stride = 0;
  const int64_t* dec_lens = nullptr;  // (b,) in [0, Md], or nullptr: all Md

  void* out = nullptr;  // (b, H, T, D), io, contiguous
  void* lse = nullptr;  // (b, H, T), acc, contiguous, natural log

  // CUDA only: scratch of attention_decode_cuda_workspace_elems(p) acc elements, allocated by
  // the caller; contents need not be initialised.
  void* workspace = nullptr;

  int num_threads = 1;     // CPU only
  void* stream = nullptr;  // CUDA only
};

namespace cpu {
void attention_decode(const AttentionDecodeParams& p);
}  // namespace cpu

namespace cuda {
// Built when CMake defines NEMOCORE_WITH_CUDA_ATTENTION (csrc/cuda/attention_decode.cu).
void attention_decode(const AttentionDecodeParams& p);
// Acc elements of AttentionDecodeParams::workspace the CUDA kernel needs for these sizes (the
// split-KV partial states); 0 if none.
int64_t attention_decode_cuda_workspace_elems(const AttentionDecodeParams& p);
}  // namespace cuda

}  // namespace nemocore
