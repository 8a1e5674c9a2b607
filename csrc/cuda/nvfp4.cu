// NVFP4 on CUDA (kernels.md 4.3-4.5, 4.10): quantize, dequantize, and the dequantizing GEMM.
//
// abs_max:    max |x| as float bit patterns (inf and NaN above every finite value), 16-byte
//             loads, a block reduction and one atomicMax per block into the caller's zeroed
//             word: the input is read once, where torch's x.abs().amax() writes and rereads a
//             temporary.
// quantize:   one thread per 16-element block (1D) or per 16x16 tile column of a 16-row group
//             (2D), reading its block once with 16-byte loads (rows 16-byte aligned) into
//             registers for both the block amax and the codes; the tensor amax comes from the
//             caller (abs_max above). Arithmetic in nvfp4_common.cuh, bit-equal to the CPU.
// dequantize: one thread per 16-element block.
// nvfp4_mm:   out (M, N) = alpha * A (M, Kp) @ B (N, Kp)^T with B NVFP4 and A NVFP4 (W4A4
//             emulation) or bf16 (W4A16). A 64 x 64 output tile per block of 4 warps; the main
//             loop walks K one NVFP4 block (16) at a time: 128 threads dequantize the 64 + 64
//             16-element row blocks of the slice (E2M1 code times its E4M3 scale, exact in
//             bf16) into shared memory, then each warp runs 8 m16n8k16 bf16 tensor-core MMAs
//             (its 16 rows x 64 columns) with fp32 accumulators. The tensor scales multiply in
//             the epilogue: alpha = tensor_scale_a * tensor_scale_b (tensor_scale_b alone for
//             bf16 A). Equal to the exact FP4 GEMM up to fp32 accumulation order. On Hopper
//             nvfp4_mm_sm90.cu takes over (wgmma, a cp.async ring) when Kp % 64 == 0.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.cuh"
#include "cuda/common/mma.cuh"
#include "cuda/nvfp4_common.cuh"
#ifdef NEMOCORE_WITH_CUDA_SM90A
#include "cuda/nvfp4_mm_sm90.h"
#include "nemocore/cuda_runtime_api.h"
#endif

namespace nemocore::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kTile = 64;  // output tile rows and columns of nvfp4_mm

// ---- device code ----------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ float load_f32(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return *p;
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(*p);
  } else {
    return __half2float(*p);
  }
}

// |v| as float bits: ordered like the magnitudes, inf and NaN above every finite value.
__device__ __forceinline__ uint32_t magnitude_bits(float v) {
  return nvfp4::bits_of(v) & 0x7fffffffu;
}
__device__ __forceinline__ uint32_t umax(uint32_t a, uint32_t b) { return a > b ? a : b; }

// 16-byte loads are possible: every row starts 16-byte aligned (then so does every block).
template <typename T>
bool rows_aligned16(const void* x, int64_t row_stride) {
  return reinterpret_cast<uintptr_t>(x) % 16 == 0 && (row_stride * sizeof(T)) % 16 == 0;
}

// Block kb of `row` as 16 floats (zeros past `cols`): whole blocks of aligned rows with 16-byte
// loads, the others element by element.
template <typename T>
__device__ __forceinline__ void load_block(const T* row, int64_t kb, int64_t cols, bool vec,
                                           float (&v)[16]) {
  const T* src = row + kb * 16;
  if (vec && (kb + 1) * 16 <= cols) {
    constexpr int kLoads = 16 * sizeof(T) / 16;
    uint4 w[kLoads];
#pragma unroll
    for (int i = 0; i < kLoads; ++i) w[i] = reinterpret_cast<const uint4*>(src)[i];
    T e[16];
    memcpy(e, w, sizeof e);
#pragma unroll
    for (int i = 0; i < 16; ++i) v[i] = load_f32(&e[i]);
    return;
  }
  for (int i = 0; i < 16; ++i) v[i] = kb * 16 + i < cols ? load_f32(src + i) : 0.f;
}

__device__ __forceinline__ float block_amax(const float (&v)[16]) {
  float m = 0.f;
#pragma unroll
  for (int i = 0; i < 16; ++i) m = fmaxf(m, fabsf(v[i]));
  return m;
}

// Codes of one block (with its uniforms under stochastic rounding) -> 8 bytes at q.
__device__ __forceinline__ void store_codes(const float (&v)[16], float enc, const float* rand,
                                            int compat, uint8_t* q) {
  uint32_t words[2] = {0u, 0u};
  if (rand == nullptr && enc <= FLT_MAX) {  // RNE, the common case: the short form
#pragma unroll
    for (int i = 0; i < 16; ++i)
      words[i / 8] |= uint32_t(nvfp4::e2m1_code_rne(v[i], enc, compat)) << (4 * (i % 8));
  } else {
    for (int i = 0; i < 16; ++i) {
      const uint32_t code =
          nvfp4::e2m1_code(v[i], enc, rand ? rand[i] : 0.f, rand != nullptr, compat);
      words[i / 8] |= code << (4 * (i % 8));
    }
  }
  uint32_t* out = reinterpret_cast<uint32_t*>(q);
  out[0] = words[0], out[1] = words[1];
}

// Thread i: block (i / nb, i % nb) for 1D; tile column i % nb of row group i / nb for 2D (its
// 16 rows' blocks are read twice: for the tile amax, then for the codes, the second time from
// cache).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    nvfp4_quantize_kernel(const Nvfp4QuantizeParams p, const nvfp4::GlobalScales g, int64_t items,
                          bool vec) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i == 0) *p.tensor_scale = g.tensor_scale;  // device memory: written by the kernel
  if (i >= items) return;
  const T* x = static_cast<const T*>(p.x);
  const int64_t nb = (p.cols + 15) / 16, kb = i % nb;
  auto rand_of = [&](int64_t r) { return p.rand ? p.rand + r * nb * 16 + kb * 16 : nullptr; };
  float v[16];
  float enc;
  if (!p.block_2d) {
    const int64_t r = i / nb;
    load_block(x + r * p.row_stride, kb, p.cols, vec, v);
    p.scales[r * nb + kb] = nvfp4::block_scale(g, block_amax(v), enc);
    store_codes(v, enc, rand_of(r), g.compat, p.qdata + r * nb * 8 + kb * 8);
    return;
  }
  const int64_t r0 = (i / nb) * 16, r1 = r0 + 16 < p.rows ? r0 + 16 : p.rows;
  float amax = 0.f;
  for (int64_t r = r0; r < r1; ++r) {
    load_block(x + r * p.row_stride, kb, p.cols, vec, v);
    amax = fmaxf(amax, block_amax(v));
  }
  const uint8_t s = nvfp4::block_scale(g, amax, enc);
  for (int64_t r = r0; r < r1; ++r) {
    load_block(x + r * p.row_stride, kb, p.cols, vec, v);
    p.scales[r * nb + kb] = s;
    store_codes(v, enc, rand_of(r), g.compat, p.qdata + r * nb * 8 + kb * 8);
  }
}

constexpr int kAbsMaxThreads = 256, kAbsMaxBlocks = 2048;

// Grid-stride over the tensor (`threads` = the grid's threads): 16-byte vectors when it is one
// aligned contiguous run (`flat`), elements otherwise; then the block's max, one atomicMax.
template <typename T>
__global__ void __launch_bounds__(kAbsMaxThreads)
    abs_max_kernel(const AbsMaxParams p, int64_t threads, bool flat) {
  const T* x = static_cast<const T*>(p.x);
  const int64_t n = p.rows * p.cols, tid = int64_t(blockIdx.x) * kAbsMaxThreads + threadIdx.x;
  uint32_t m = 0;
  if (flat) {
    constexpr int kVec = 16 / sizeof(T);
    for (int64_t w = tid; w < n / kVec; w += threads) {
      const uint4 word = reinterpret_cast<const uint4*>(x)[w];
      T e[kVec];
      memcpy(e, &word, sizeof e);
#pragma unroll
      for (int j = 0; j < kVec; ++j) m = umax(m, magnitude_bits(load_f32(&e[j])));
    }
    for (int64_t j = n / kVec * kVec + tid; j < n; j += threads)
      m = umax(m, magnitude_bits(load_f32(x + j)));
  } else {
    for (int64_t j = tid; j < n; j += threads)
      m = umax(m, magnitude_bits(load_f32(x + (j / p.cols) * p.row_stride + j % p.cols)));
  }
  for (int d = 16; d > 0; d /= 2) m = umax(m, __shfl_down_sync(0xffffffffu, m, d));
  __shared__ uint32_t warp_max[kAbsMaxThreads / 32];
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kAbsMaxThreads / 32; ++w) m = umax(m, warp_max[w]);
    atomicMax(p.out_bits, m);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    nvfp4_dequantize_kernel(const Nvfp4DequantizeParams p, int64_t items) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= items) return;
  const int64_t nb_src = p.qdata_cols / 8, nb = (p.cols + 15) / 16;
  const int64_t r = i / nb, kb = i % nb;
  const float scale = nvfp4::e4m3_decode(p.scales[r * nb_src + kb]) * *p.tensor_scale;
  const uint8_t* q = p.qdata + r * p.qdata_cols + kb * 8;
  T* out = static_cast<T*>(p.out) + r * p.cols;
  for (int j = 0; j < 16 && kb * 16 + j < p.cols; ++j) {
    const int code = (q[j / 2] >> (4 * (j & 1))) & 15;
    const float mag = nvfp4::e2m1_value(code) * scale;
    const float v = code & 8 ? -mag : mag;
    if constexpr (std::is_same_v<T, float>) {
      out[kb * 16 + j] = v;
    } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      out[kb * 16 + j] = __float2bfloat16_rn(v);
    } else {
      out[kb * 16 + j] = __float2half_rn(v);
    }
  }
}

// 16 dequantized values of one NVFP4 row block, as bf16 bits (exact: the top 16 bits).
__device__ __forceinline__ void dequant_row_block(const uint8_t* q, uint8_t scale, uint16_t* dst) {
  const float s = nvfp4::e4m3_decode(scale);
  for (int j = 0; j < 16; ++j) {
    const int code = (q[j / 2] >> (4 * (j & 1))) & 15;
    const float mag = nvfp4::e2m1_value(code) * s;
    dst[j] = static_cast<uint16_t>(nvfp4::bits_of(code & 8 ? -mag : mag) >> 16);
  }
}

template <typename O>
__global__ void __launch_bounds__(kThreads)
    nvfp4_mm_kernel(const Nvfp4MmParams p, int64_t n_tiles) {
  __shared__ uint16_t as[kTile][16];
  __shared__ uint16_t bs[kTile][16];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int64_t m0 = (int64_t(blockIdx.x) / n_tiles) * kTile,
                n0 = (int64_t(blockIdx.x) % n_tiles) * kTile;
  const int64_t nb = p.kp / 16;
  float acc[8][4] = {};
  for (int64_t kb = 0; kb < nb; ++kb) {
    // Stage the slice: threads 0-63 take A's rows, 64-127 B's; rows past the matrix are zero.
    const int row = tid % kTile;
    uint16_t* dst = tid < kTile ? as[row] : bs[row];
    const int64_t grow = (tid < kTile ? m0 : n0) + row;
    const bool in = grow < (tid < kTile ? p.m : p.n);
    if (!in) {
      for (int j = 0; j < 16; ++j) dst[j] = 0;
    } else if (tid >= kTile) {
      dequant_row_block(p.b_qdata + grow * nb * 8 + kb * 8, p.b_scales[grow * nb + kb], dst);
    } else if (p.a_qdata) {
      dequant_row_block(p.a_qdata + grow * nb * 8 + kb * 8, p.a_scales[grow * nb + kb], dst);
    } else {
      const uint16_t* src = static_cast<const uint16_t*>(p.a_bf16) + grow * p.kp + kb * 16;
      for (int j = 0; j < 16; ++j) dst[j] = src[j];
    }
    __syncthreads();
    // Warp w: rows 16w..16w+15 of the tile, 8 column tiles of 8 (fragments: cuda/common/mma.cuh).
    const int r = warp * 16 + g;
    uint32_t a[4];
    a[0] = as[r][2 * t] | (uint32_t(as[r][2 * t + 1]) << 16);
    a[1] = as[r + 8][2 * t] | (uint32_t(as[r + 8][2 * t + 1]) << 16);
    a[2] = as[r][2 * t + 8] | (uint32_t(as[r][2 * t + 9]) << 16);
    a[3] = as[r + 8][2 * t + 8] | (uint32_t(as[r + 8][2 * t + 9]) << 16);
    for (int j = 0; j < 8; ++j) {
      const int c = j * 8 + g;
      const uint32_t b[2] = {bs[c][2 * t] | (uint32_t(bs[c][2 * t + 1]) << 16),
                             bs[c][2 * t + 8] | (uint32_t(bs[c][2 * t + 9]) << 16)};
      mma_m16n8k16<__nv_bfloat16>(acc[j], a, b, acc[j]);
    }
    __syncthreads();
  }
  const float alpha = (p.a_qdata ? *p.a_tensor_scale : 1.f) * *p.b_tensor_scale;
  O* out = static_cast<O*>(p.out);
  for (int j = 0; j < 8; ++j) {
    for (int e = 0; e < 4; ++e) {
      const int64_t row = m0 + warp * 16 + g + 8 * (e / 2), col = n0 + j * 8 + 2 * t + (e % 2);
      if (row >= p.m || col >= p.n) continue;
      const float v = acc[j][e] * alpha;
      if constexpr (std::is_same_v<O, float>) {
        out[row * p.n + col] = v;
      } else {
        out[row * p.n + col] = __float2bfloat16_rn(v);
      }
    }
  }
}

// ---- launchers ------------------------------------------------------------------------------

template <typename T>
void launch_quantize(const Nvfp4QuantizeParams& p, const nvfp4::GlobalScales& g) {
  const int64_t nb = (p.cols + 15) / 16;
  const int64_t items = (p.block_2d ? (p.rows + 15) / 16 : p.rows) * nb;
  launch_kernel("nvfp4_quantize", nvfp4_quantize_kernel<T>,
                grid_blocks((items + kThreads - 1) / kThreads, "nvfp4_quantize"), dim3(kThreads),
                static_cast<cudaStream_t>(p.stream), p, g, items,
                rows_aligned16<T>(p.x, p.row_stride));
}

template <typename T>
void launch_abs_max(const AbsMaxParams& p) {
  const int64_t n = p.rows * p.cols;
  const bool flat =
      (p.rows == 1 || p.row_stride == p.cols) && reinterpret_cast<uintptr_t>(p.x) % 16 == 0;
  const int64_t per_block = int64_t(kAbsMaxThreads) * (flat ? 16 / int64_t(sizeof(T)) : 1);
  const int64_t blocks = std::min<int64_t>((n + per_block - 1) / per_block, kAbsMaxBlocks);
  launch_kernel("nvfp4 abs_max", abs_max_kernel<T>, grid_blocks(blocks, "nvfp4 abs_max"),
                dim3(kAbsMaxThreads), static_cast<cudaStream_t>(p.stream), p,
                blocks * kAbsMaxThreads, flat);
}

template <typename T>
void launch_dequantize(const Nvfp4DequantizeParams& p) {
  const int64_t items = p.rows * ((p.cols + 15) / 16);
  launch_kernel("nvfp4_dequantize", nvfp4_dequantize_kernel<T>,
                grid_blocks((items + kThreads - 1) / kThreads, "nvfp4_dequantize"), dim3(kThreads),
                static_cast<cudaStream_t>(p.stream), p, items);
}

}  // namespace

// ---- dispatch -------------------------------------------------------------------------------

// Calls f(TypeTag<T>{}) for the float types the NVFP4 kernels read and write (float32,
// bfloat16, float16); other dtypes throw std::invalid_argument naming `what`.
template <typename F>
void dispatch_nvfp4_dtype(DType dtype, const char* what, F&& f) {
  switch (dtype) {
    case DType::kFloat32: return f(TypeTag<float>{});
    case DType::kBFloat16: return f(TypeTag<__nv_bfloat16>{});
    case DType::kFloat16: return f(TypeTag<__half>{});
    default:
      throw std::invalid_argument(std::string(what) + " must be float32, bfloat16 or float16");
  }
}

// p.out_bits must hold 0 (or a partial maximum to fold in): blocks atomically max into it.
void abs_max(const AbsMaxParams& p) {
  if (p.rows == 0 || p.cols == 0) return;
  dispatch_nvfp4_dtype(p.dtype, "abs_max: x",
                       [&](auto tag) { launch_abs_max<typename decltype(tag)::type>(p); });
}

// The per-tensor constants are derived on the host from p.amax (abs_max's result, which the
// caller read back to check that the input is finite); the kernel writes tensor_scale (device
// memory).
void nvfp4_quantize(const Nvfp4QuantizeParams& p) {
  const nvfp4::GlobalScales g = nvfp4::global_scales(p.amax, p.compat);
  if (p.rows == 0 || p.cols == 0) throw std::invalid_argument("nvfp4_quantize: empty input");
  dispatch_nvfp4_dtype(p.dtype, "nvfp4_quantize: x",
                       [&](auto tag) { launch_quantize<typename decltype(tag)::type>(p, g); });
}

void nvfp4_dequantize(const Nvfp4DequantizeParams& p) {
  if (p.rows == 0 || p.cols == 0) return;
  dispatch_nvfp4_dtype(p.out_dtype, "nvfp4 dequantize: out",
                       [&](auto tag) { launch_dequantize<typename decltype(tag)::type>(p); });
}

// The Hopper kernel (nvfp4_mm_sm90.cu) where it may run and the operands allow it; the
// portable one otherwise.
void nvfp4_mm(const Nvfp4MmParams& p) {
  if (p.m == 0 || p.n == 0) return;
#ifdef NEMOCORE_WITH_CUDA_SM90A
  if (nvfp4_mm_sm90_supports(p) && use_wgmma()) return nvfp4_mm_sm90(p);
#endif
  const int64_t n_tiles = (p.n + kTile - 1) / kTile;
  const unsigned grid = grid_blocks(((p.m + kTile - 1) / kTile) * n_tiles, "nvfp4_mm");
  const auto stream = static_cast<cudaStream_t>(p.stream);
  if (p.out_dtype == DType::kFloat32) {
    launch_kernel("nvfp4_mm", nvfp4_mm_kernel<float>, grid, dim3(kThreads), stream, p, n_tiles);
  } else if (p.out_dtype == DType::kBFloat16) {
    launch_kernel("nvfp4_mm", nvfp4_mm_kernel<__nv_bfloat16>, grid, dim3(kThreads), stream, p,
                  n_tiles);
  } else {
    throw std::invalid_argument("nvfp4_mm: out must be float32 or bfloat16");
  }
}

}  // namespace nemocore::cuda
