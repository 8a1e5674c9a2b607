// nvfp4_mm on Hopper tensor cores (wgmma), dequantizing NVFP4 to bf16 in the main loop:
//   out (M, N) = alpha * A (M, Kp) @ B (N, Kp)^T      (kernels.md 4.10, "GEMM")
// with B NVFP4 and A NVFP4 (W4A4 emulation) or bf16 (W4A16); alpha = tensor_scale_a *
// tensor_scale_b (tensor_scale_b alone for bf16 A), applied in the epilogue. An E2M1 value
// times its E4M3 block scale has at most 6 significant bits and lies in [2^-10, 2688], so the
// bf16 operands are exact and the result equals the exact FP4 GEMM up to fp32 accumulation
// order, as the portable kernel of nvfp4.cu does.
//
// Block: 256 threads = two warpgroups; a 128 x 128 output tile, warpgroup g owning rows
// 64 g + [0, 64). The reduction walks 64-wide k slices. Each slice is copied by cp.async into a
// ring of kStages raw stages: the packed codes (128 rows x 32 bytes), the scale bytes (128 rows
// x 4) and, for W4A16, A's bf16 tile (128-byte swizzled, cuda/common/sm90.cuh). All 256 threads
// then expand the slice's NVFP4 tiles into bf16 tiles in the same swizzled layout (two such
// buffers, alternating), and each warpgroup issues four wgmma m64n128k16 on them.
//
// The wgmma of slice s runs while the threads expand slice s + 1: the loop retires MMAs with
// wgmma_wait<1>, one group behind. So a bf16 buffer is rewritten two slices after the MMA that
// read it, and a raw stage (whose A tile the MMA reads directly for W4A16) is refilled two
// slices after its MMA: the copies run kStages - 2 slices ahead.
//
// Rows past M or N are zero-filled by the copies (code 0 and scale byte 0 expand to zeros), so
// neither needs to be a tile multiple; Kp must be a multiple of 64 (nvfp4_mm_sm90_supports).
#include <cstdint>
#include <stdexcept>
#include <type_traits>

#include "cuda/common/launch.cuh"
#include "cuda/common/sm90.cuh"
#include "cuda/nvfp4_common.cuh"
#include "cuda/nvfp4_mm_sm90.h"

namespace nemocore::cuda {
namespace {

constexpr int kBM = 128, kBN = 128, kBK = 64, kThreads90 = 256;
constexpr int kStages = 5, kAhead = kStages - 2;
constexpr int kBf16Tile = 128 * kBK * 2;     // 16 KiB: 128 rows of one slice in bf16
constexpr int kCodeBytes = 128 * kBK / 2;    // 4 KiB: 128 rows x 32 bytes of packed codes
constexpr int kScaleBytes = 128 * kBK / 16;  // 512 B: 128 rows x 4 scale bytes
constexpr int kPackedTile = kCodeBytes + kScaleBytes;

constexpr int round_up_1024(int bytes) { return (bytes + 1023) / 1024 * 1024; }

// Shared memory of one block: kStages raw stages, then two bf16 buffers. Every bf16 tile
// starts on a 1024-byte boundary (the swizzle atom).
template <bool kA4>
struct Layout {
  static constexpr int kARaw = kA4 ? kPackedTile : kBf16Tile;  // A's part of a raw stage
  static constexpr int kStage = round_up_1024(kARaw + kPackedTile);
  static constexpr int kBuffer = (kA4 ? 2 : 1) * kBf16Tile;  // B's bf16 tile, then A's (W4A4)
  static constexpr int kSmem = kStages * kStage + 2 * kBuffer + 1024;  // + alignment slack
};

// Issues the copies of packed rows row0 .. row0 + 127 of an NVFP4 operand (rows past `rows`
// zero-filled) for k slice `slice`: thread t copies 16 bytes of codes of row t / 2, and threads
// 0-127 the 4 scale bytes of row t.
__device__ __forceinline__ void load_packed(unsigned char* dst, const uint8_t* q, const uint8_t* s,
                                            int64_t row0, int64_t rows, int64_t kp, int64_t slice) {
  const int t = threadIdx.x, r = t / 2, half = t % 2;
  const bool ok = row0 + r < rows;  // a zero-filled copy reads nothing, but needs a valid address
  sm90::cp_async_16(dst + r * 32 + half * 16,
                    ok ? q + (row0 + r) * (kp / 2) + slice * (kBK / 2) + half * 16 : q, ok);
  if (t < 128) {
    const bool s_ok = row0 + t < rows;
    sm90::cp_async_4(dst + kCodeBytes + t * 4,
                     s_ok ? s + (row0 + t) * (kp / 16) + slice * (kBK / 16) : s, s_ok);
  }
}

// Issues the copies of k slice `slice` into raw stage `stage`.
template <bool kA4>
__device__ __forceinline__ void load_slice(unsigned char* stage, const Nvfp4MmParams& p, int64_t m0,
                                           int64_t n0, int64_t slice) {
  if constexpr (kA4) {
    load_packed(stage, p.a_qdata, p.a_scales, m0, p.m, p.kp, slice);
  } else {  // bf16 A: 128 rows x 8 chunks of 16 bytes, four per thread
    const auto* a = static_cast<const __nv_bfloat16*>(p.a_bf16);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int chunk = threadIdx.x + i * kThreads90, r = chunk / 8, c = chunk % 8;
      const bool ok = m0 + r < p.m;
      sm90::cp_async_16(stage + sm90::swizzle128(r, c),
                        ok ? a + (m0 + r) * p.kp + slice * kBK + c * 8 : a, ok);
    }
  }
  load_packed(stage + Layout<kA4>::kARaw, p.b_qdata, p.b_scales, n0, p.n, p.kp, slice);
}

// Two E2M1 codes (the low nibble first) times `scale` as a bf16 pair, exact. The codes' sign,
// exponent and mantissa bits go into the same fields of two fp16 halves, which then hold the
// E2M1 values times 2^-14 (code 1, E2M1's subnormal 0.5, becomes fp16's subnormal 2^-15), so
// a multiply by scale * 2^14 (scale16) gives the values; the products' low 16 bits are zero.
__device__ __forceinline__ uint32_t e2m1x2_to_bf16x2(uint32_t byte, float scale16) {
  const uint32_t t = (byte & 0xFu) | ((byte & 0xF0u) << 12);
  const uint32_t h = ((t & 0x00080008u) << 12) | ((t & 0x00070007u) << 9);
  const float lo = __half2float(__ushort_as_half(static_cast<unsigned short>(h & 0xFFFFu)));
  const float hi = __half2float(__ushort_as_half(static_cast<unsigned short>(h >> 16)));
  return (nvfp4::bits_of(lo * scale16) >> 16) | (nvfp4::bits_of(hi * scale16) & 0xFFFF0000u);
}

// Expands a raw NVFP4 tile (load_packed's layout) into a 128 x 64 bf16 tile, 128-byte
// swizzled: thread t takes row t / 2, codes 32 (t % 2) .. + 31 (two 16-element blocks), and
// writes 4 chunks of 8 bf16.
__device__ __forceinline__ void expand_tile(const unsigned char* raw, unsigned char* tile) {
  const int t = threadIdx.x, r = t / 2, half = t % 2;
  const uint4 codes = *reinterpret_cast<const uint4*>(raw + r * 32 + half * 16);
  const unsigned char* scales = raw + kCodeBytes + r * 4 + half * 2;
  const float s0 = nvfp4::e4m3_decode(scales[0]) * 16384.f;
  const float s1 = nvfp4::e4m3_decode(scales[1]) * 16384.f;
  const uint32_t words[4] = {codes.x, codes.y, codes.z, codes.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {  // 8 codes of block j / 2 -> chunk 4 half + j
    const uint32_t w = words[j];
    const float s = j < 2 ? s0 : s1;
    uint4 out;
    out.x = e2m1x2_to_bf16x2(w & 0xFFu, s);
    out.y = e2m1x2_to_bf16x2((w >> 8) & 0xFFu, s);
    out.z = e2m1x2_to_bf16x2((w >> 16) & 0xFFu, s);
    out.w = e2m1x2_to_bf16x2(w >> 24, s);
    *reinterpret_cast<uint4*>(tile + sm90::swizzle128(r, 4 * half + j)) = out;
  }
}

template <bool kA4, typename O>
__global__ void __launch_bounds__(kThreads90)
    nvfp4_mm_sm90_kernel(const Nvfp4MmParams p, int64_t n_tiles) {
  using L = Layout<kA4>;
  const int64_t m0 = (int64_t(blockIdx.x) / n_tiles) * kBM, n0 = (blockIdx.x % n_tiles) * kBN;
  const int64_t slices = p.kp / kBK;
  unsigned char* smem = sm90::dynamic_smem();
  unsigned char* buffers = smem + kStages * L::kStage;

  for (int s = 0; s < kAhead; ++s) {  // the prologue: slices 0 .. kAhead - 1 in flight
    if (s < slices) load_slice<kA4>(smem + s * L::kStage, p, m0, n0, s);
    sm90::cp_async_commit();  // empty groups too: one group per slice keeps the count uniform
  }

  const int group = threadIdx.x / 128;
  float acc[64] = {};
  for (int64_t s = 0; s < slices; ++s) {
    sm90::cp_async_wait<kAhead - 1>();  // this thread's copies of slice s have landed
    sm90::fence_proxy_async();          // W4A16: the MMAs read A's tile straight from the stage
    __syncthreads();  // everyone's have; and every warpgroup retired the MMAs of slice s - 2
    const int64_t next = s + kAhead;  // refills the stage of slice s - 2
    if (next < slices) load_slice<kA4>(smem + (next % kStages) * L::kStage, p, m0, n0, next);
    sm90::cp_async_commit();

    const unsigned char* raw = smem + (s % kStages) * L::kStage;
    unsigned char* buffer = buffers + (s % 2) * L::kBuffer;  // last read by the MMAs of s - 2
    expand_tile(raw + L::kARaw, buffer);
    if constexpr (kA4) expand_tile(raw, buffer + kBf16Tile);
    sm90::fence_proxy_async();  // the expanded tiles are read by the MMAs (the async proxy)
    __syncthreads();

    const unsigned char* a_tile = kA4 ? buffer + kBf16Tile : raw;
    sm90::fence_accumulators(acc);
    sm90::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      sm90::wgmma_m64n128k16<__nv_bfloat16>(acc, a_tile + group * 64 * 128 + kk * 32,
                                            buffer + kk * 32);
    }
    sm90::wgmma_commit();
    sm90::wgmma_wait<1>();  // the MMAs of slice s - 1 are done; those of s run on
    sm90::fence_accumulators(acc);
  }
  sm90::wgmma_wait<0>();
  sm90::fence_accumulators(acc);

  const float alpha = (kA4 ? *p.a_tensor_scale : 1.f) * *p.b_tensor_scale;
  O* out = static_cast<O*>(p.out);
  const int t = threadIdx.x % 128;
#pragma unroll
  for (int i = 0; i < 64; ++i) {
    const int64_t r = m0 + group * 64 + sm90::acc_row(t, i), c = n0 + sm90::acc_col(t, i);
    if (r >= p.m || c >= p.n) continue;
    const float v = acc[i] * alpha;
    if constexpr (std::is_same_v<O, float>) {
      out[r * p.n + c] = v;
    } else {
      out[r * p.n + c] = __float2bfloat16_rn(v);
    }
  }
}

template <bool kA4, typename O>
void launch_sm90(const Nvfp4MmParams& p) {
  const int64_t n_tiles = (p.n + kBN - 1) / kBN;
  const unsigned grid = grid_blocks(((p.m + kBM - 1) / kBM) * n_tiles, "nvfp4_mm_sm90");
  launch_kernel_smem("nvfp4_mm_sm90", nvfp4_mm_sm90_kernel<kA4, O>, grid, dim3(kThreads90),
                     Layout<kA4>::kSmem, static_cast<cudaStream_t>(p.stream), p, n_tiles);
}

template <typename O>
void launch_sm90(const Nvfp4MmParams& p) {
  if (p.a_qdata != nullptr) {
    launch_sm90<true, O>(p);
  } else {
    launch_sm90<false, O>(p);
  }
}

bool aligned(const void* ptr, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

}  // namespace

bool nvfp4_mm_sm90_supports(const Nvfp4MmParams& p) {
  const bool a_ok = p.a_qdata != nullptr ? aligned(p.a_qdata, 16) && aligned(p.a_scales, 4)
                                         : aligned(p.a_bf16, 16);
  const bool out_ok = p.out_dtype == DType::kFloat32 || p.out_dtype == DType::kBFloat16;
  return p.kp > 0 && p.kp % kBK == 0 && a_ok && aligned(p.b_qdata, 16) && aligned(p.b_scales, 4) &&
         out_ok;
}

void nvfp4_mm_sm90(const Nvfp4MmParams& p) {
  if (p.m == 0 || p.n == 0) return;
  if (!nvfp4_mm_sm90_supports(p))
    throw std::invalid_argument("nemocore: nvfp4_mm_sm90: operands not eligible (see header)");
  if (p.out_dtype == DType::kFloat32) {
    launch_sm90<float>(p);
  } else {
    launch_sm90<__nv_bfloat16>(p);
  }
}

}  // namespace nemocore::cuda
