// nvfp4_mm on Hopper tensor cores (wgmma), dequantizing NVFP4 to bf16 in the main loop:
//   out (M, N) = alpha * A (M, Kp) @ B (N, Kp)^T      (kernels.md 4.10, "GEMM")
// with B NVFP4 and A NVFP4 (W4A4 emulation) or bf16 (W4A16); alpha = tensor_scale_a *
// tensor_scale_b (tensor_scale_b alone for bf16 A), applied in the epilogue. An E2M1 value
// times its E4M3 block scale has at most 6 significant bits and lies in [2^-10, 2688], so the
// bf16 operands are exact and the result equals the exact FP4 GEMM up to fp32 accumulation
// order, as the portable kernel of nvfp4.cu does.
//
// Tiles: 128 x 128 with two warpgroups (warpgroup g owning rows 64 g + [0, 64)), or for
// M <= 64 (decode) 64 x 64 with one, so that N / 64 blocks share the weights' reads, with a
// deeper ring since those reads are the whole cost. The reduction walks 64-wide k slices. Each
// slice is copied by cp.async into a ring of raw stages: the packed codes (32 bytes a row), the
// scale bytes (4 a row) and, for W4A16, A's bf16 tile (128-byte swizzled, cuda/common/sm90.cuh).
// All threads then expand the slice's NVFP4 tiles into bf16 tiles in the same swizzled layout
// (two such buffers, alternating), and each warpgroup issues four wgmma m64nNk16 on them.
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

constexpr int kBK = 64;  // k slice: one 128-byte bf16 row, 32 bytes of codes, 4 scale bytes

constexpr int round_up_1024(int bytes) { return (bytes + 1023) / 1024 * 1024; }

// A tile configuration: kWarpgroups x 64 rows of A, kBN columns (B rows), kStages raw stages.
// Large M takes 128 x 128 tiles; M <= 64 (decode) 64 x 64 tiles, so that N / 64 blocks share
// the weights' reads, and a deeper ring, since those reads are all the work there is.
template <int kWarpgroups, int kBNCols, int kStageCount>
struct Tile {
  static constexpr int kBM = 64 * kWarpgroups, kBN = kBNCols, kThreads = 128 * kWarpgroups;
  static constexpr int kStages = kStageCount, kAhead = kStages - 2;
  static constexpr int kRegs = kBN / 2;  // fp32 accumulators per thread (wgmma m64nNk16)
};
using LargeTile = Tile<2, 128, 5>;
using SmallTile = Tile<1, 64, 10>;

// An NVFP4 operand's raw tile of `rows` rows for one slice: codes (32 bytes a row), then scale
// bytes (4 a row).
constexpr int packed_bytes(int rows) { return rows * (kBK / 2 + kBK / 16); }

// Shared memory of one block: kStages raw stages, then two bf16 buffers. Every bf16 tile
// starts on a 1024-byte boundary (the swizzle atom).
template <typename C, bool kA4>
struct Layout {
  static constexpr int kARaw = kA4 ? packed_bytes(C::kBM) : C::kBM * kBK * 2;  // A's part
  static constexpr int kStage = round_up_1024(kARaw + packed_bytes(C::kBN));
  static constexpr int kBTile = C::kBN * kBK * 2;  // B's bf16 tile, then A's (W4A4)
  static constexpr int kBuffer = kBTile + (kA4 ? C::kBM * kBK * 2 : 0);
  static constexpr int kSmem = C::kStages * kStage + 2 * kBuffer + 1024;  // + alignment slack
};

// Issues the copies of packed rows row0 .. row0 + kRows - 1 of an NVFP4 operand (rows past
// `rows` zero-filled) for k slice `slice`: 16-byte halves of the rows' codes, and their 4-byte
// scale words.
template <int kRows, int kThreads>
__device__ __forceinline__ void load_packed(unsigned char* dst, const uint8_t* q, const uint8_t* s,
                                            int64_t row0, int64_t rows, int64_t kp, int64_t slice) {
#pragma unroll
  for (int c = threadIdx.x; c < 2 * kRows; c += kThreads) {
    const int r = c / 2, half = c % 2;
    const bool ok = row0 + r < rows;  // a zero-filled copy reads nothing, but needs an address
    sm90::cp_async_16(dst + r * 32 + half * 16,
                      ok ? q + (row0 + r) * (kp / 2) + slice * (kBK / 2) + half * 16 : q, ok);
  }
#pragma unroll
  for (int r = threadIdx.x; r < kRows; r += kThreads) {
    const bool ok = row0 + r < rows;
    sm90::cp_async_4(dst + kRows * 32 + r * 4,
                     ok ? s + (row0 + r) * (kp / 16) + slice * (kBK / 16) : s, ok);
  }
}

// Issues the copies of k slice `slice` into raw stage `stage`.
template <typename C, bool kA4>
__device__ __forceinline__ void load_slice(unsigned char* stage, const Nvfp4MmParams& p, int64_t m0,
                                           int64_t n0, int64_t slice) {
  if constexpr (kA4) {
    load_packed<C::kBM, C::kThreads>(stage, p.a_qdata, p.a_scales, m0, p.m, p.kp, slice);
  } else {  // bf16 A: kBM rows x 8 chunks of 16 bytes
    const auto* a = static_cast<const __nv_bfloat16*>(p.a_bf16);
#pragma unroll
    for (int chunk = threadIdx.x; chunk < C::kBM * 8; chunk += C::kThreads) {
      const int r = chunk / 8, c = chunk % 8;
      const bool ok = m0 + r < p.m;
      sm90::cp_async_16(stage + sm90::swizzle128(r, c),
                        ok ? a + (m0 + r) * p.kp + slice * kBK + c * 8 : a, ok);
    }
  }
  load_packed<C::kBN, C::kThreads>(stage + Layout<C, kA4>::kARaw, p.b_qdata, p.b_scales, n0, p.n,
                                   p.kp, slice);
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

// Expands a raw NVFP4 tile of kRows rows (load_packed's layout) into a kRows x 64 bf16 tile,
// 128-byte swizzled: each half row (32 codes, two 16-element blocks) becomes 4 chunks of 8 bf16.
template <int kRows, int kThreads>
__device__ __forceinline__ void expand_tile(const unsigned char* raw, unsigned char* tile) {
#pragma unroll
  for (int c = threadIdx.x; c < 2 * kRows; c += kThreads) {
    const int r = c / 2, half = c % 2;
    const uint4 codes = *reinterpret_cast<const uint4*>(raw + r * 32 + half * 16);
    const unsigned char* scales = raw + kRows * 32 + r * 4 + half * 2;
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
}

template <typename C, bool kA4, typename O>
__global__ void __launch_bounds__(C::kThreads)
    nvfp4_mm_sm90_kernel(const Nvfp4MmParams p, int64_t n_tiles) {
  using L = Layout<C, kA4>;
  const int64_t m0 = (int64_t(blockIdx.x) / n_tiles) * C::kBM;
  const int64_t n0 = (blockIdx.x % n_tiles) * C::kBN;
  const int64_t slices = p.kp / kBK;
  unsigned char* smem = sm90::dynamic_smem();
  unsigned char* buffers = smem + C::kStages * L::kStage;

  for (int s = 0; s < C::kAhead; ++s) {  // the prologue: slices 0 .. kAhead - 1 in flight
    if (s < slices) load_slice<C, kA4>(smem + s * L::kStage, p, m0, n0, s);
    sm90::cp_async_commit();  // empty groups too: one group per slice keeps the count uniform
  }

  const int group = threadIdx.x / 128;
  float acc[C::kRegs] = {};
  for (int64_t s = 0; s < slices; ++s) {
    sm90::cp_async_wait<C::kAhead - 1>();  // this thread's copies of slice s have landed
    sm90::fence_proxy_async();             // W4A16: the MMAs read A's tile straight from the stage
    __syncthreads();  // everyone's have; and every warpgroup retired the MMAs of slice s - 2
    const int64_t next = s + C::kAhead;  // refills the stage of slice s - 2
    if (next < slices) load_slice<C, kA4>(smem + (next % C::kStages) * L::kStage, p, m0, n0, next);
    sm90::cp_async_commit();

    const unsigned char* raw = smem + (s % C::kStages) * L::kStage;
    unsigned char* buffer = buffers + (s % 2) * L::kBuffer;  // last read by the MMAs of s - 2
    expand_tile<C::kBN, C::kThreads>(raw + L::kARaw, buffer);
    if constexpr (kA4) expand_tile<C::kBM, C::kThreads>(raw, buffer + L::kBTile);
    sm90::fence_proxy_async();  // the expanded tiles are read by the MMAs (the async proxy)
    __syncthreads();

    const unsigned char* a_tile = kA4 ? buffer + L::kBTile : raw;
    sm90::fence_accumulators(acc);
    sm90::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk)
      sm90::wgmma_m64k16<__nv_bfloat16>(acc, a_tile + group * 64 * 128 + kk * 32, buffer + kk * 32);
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
  for (int i = 0; i < C::kRegs; ++i) {
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

template <typename C, bool kA4, typename O>
void launch_sm90(const Nvfp4MmParams& p) {
  const int64_t n_tiles = (p.n + C::kBN - 1) / C::kBN;
  const unsigned grid = grid_blocks(((p.m + C::kBM - 1) / C::kBM) * n_tiles, "nvfp4_mm_sm90");
  launch_kernel_smem("nvfp4_mm_sm90", nvfp4_mm_sm90_kernel<C, kA4, O>, grid, dim3(C::kThreads),
                     Layout<C, kA4>::kSmem, static_cast<cudaStream_t>(p.stream), p, n_tiles);
}

template <typename C, typename O>
void launch_sm90(const Nvfp4MmParams& p) {
  if (p.a_qdata != nullptr) {
    launch_sm90<C, true, O>(p);
  } else {
    launch_sm90<C, false, O>(p);
  }
}

template <typename O>
void launch_sm90(const Nvfp4MmParams& p) {
  if (p.m <= SmallTile::kBM) {
    launch_sm90<SmallTile, O>(p);
  } else {
    launch_sm90<LargeTile, O>(p);
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
