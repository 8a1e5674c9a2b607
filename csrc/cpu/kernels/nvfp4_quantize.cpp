// NVFP4 quantization on the CPU (kernels.md 4.3-4.5, 4.10 "CPU"): two passes over the input.
//
//   abs_max:         max |x| as integer bit patterns (|x| orders like its bits, inf and NaN
//                    included, so one pass also tells whether the input is finite);
//   nvfp4_quantize:  per 16-element block (or 16x16 tile): block amax -> E4M3 scale by integer
//                    bit operations -> element multiplier -> clamp, RNE (threshold compares) or
//                    stochastic rounding against the caller's uniforms -> nibble pack.
//
// The arithmetic is python/nemocore/ref/quant.py's, operation for operation in float32
// (nvfp4_common.h), so codes and scales equal the reference bit for bit. With AVX2 one block is
// two registers; the scalar path handles the partial last block and the blocks whose multiplier
// is infinite (a zero scale under the TE convention), where NaN must flow as in the reference.
// Work items are groups of 16 rows, so 2D tiles never straddle two threads.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/common/parallel.h"
#include "cpu/kernels/nvfp4_common.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace nemocore::cpu::NEMOCORE_CPU_ISA {
namespace {

using nvfp4::BlockScale;
using nvfp4::GlobalScales;

// ---- abs-max --------------------------------------------------------------------------------

// Largest |x| bit pattern of a row; 16-bit floats compare as their 15 magnitude bits.
template <typename T>
uint32_t row_abs_max_bits(const T* row, int64_t cols) {
  if constexpr (std::is_same_v<T, float>) {
    const auto* u = reinterpret_cast<const uint32_t*>(row);
    uint32_t m = 0;
    for (int64_t i = 0; i < cols; ++i) m = std::max(m, u[i] & 0x7fffffffu);
    return m;
  } else {
    const auto* u = reinterpret_cast<const uint16_t*>(row);
    uint16_t m = 0;
    for (int64_t i = 0; i < cols; ++i) m = std::max<uint16_t>(m, u[i] & 0x7fffu);
    return float_to_bits(to_acc<float>(T{m}));
  }
}

template <typename T>
void abs_max_impl(const AbsMaxParams& p) {
  const T* x = static_cast<const T*>(p.x);
  const int64_t rows_per_item = std::max<int64_t>(1, 65536 / std::max<int64_t>(p.cols, 1));
  const int64_t items = ceil_div(p.rows, rows_per_item);
  std::vector<uint32_t> partial(static_cast<size_t>(std::max<int64_t>(items, 1)), 0u);
  parallel_for(items, p.num_threads, [&](int64_t item) {
    const int64_t r1 = std::min(p.rows, (item + 1) * rows_per_item);
    uint32_t m = 0;
    for (int64_t r = item * rows_per_item; r < r1; ++r)
      m = std::max(m, row_abs_max_bits(x + r * p.row_stride, p.cols));
    partial[item] = m;
  });
  *p.out_bits = *std::max_element(partial.begin(), partial.end());
}

// ---- one 16-element block -------------------------------------------------------------------

// Loads block kb of a row as 16 floats, zero-padding past `cols`.
template <typename T>
void load_block_scalar(const T* row, int64_t kb, int64_t cols, float* out) {
  for (int i = 0; i < 16; ++i) {
    const int64_t c = kb * 16 + i;
    out[i] = c < cols ? to_acc<float>(row[c]) : 0.f;
  }
}

void quantize_block_scalar(const float* x, float enc, const float* rand, Nvfp4Compat compat,
                           uint8_t* q) {
  for (int i = 0; i < 8; ++i) {
    const uint8_t lo = nvfp4::e2m1_code(x[2 * i], enc, rand ? rand + 2 * i : nullptr, compat);
    const uint8_t hi =
        nvfp4::e2m1_code(x[2 * i + 1], enc, rand ? rand + 2 * i + 1 : nullptr, compat);
    q[i] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

#if defined(__AVX2__)
inline void load16(const float* p, __m256& a, __m256& b) {
  a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
}
inline void load16(const bf16* p, __m256& a, __m256& b) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  a = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(w)), 16));
  b = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(w, 1)), 16));
}
inline void load16(const f16* p, __m256& a, __m256& b) {
  a = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  b = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

inline __m256 vabs(__m256 v) {
  return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}

// Codes of 8 scaled values (finite multiplier, so no NaN), as int32 lanes.
inline __m256i codes8(__m256 x, __m256 enc, const float* rand, Nvfp4Compat compat) {
  const __m256 six = _mm256_set1_ps(nvfp4::kE2m1Max);
  const __m256 v = _mm256_min_ps(
      _mm256_max_ps(_mm256_mul_ps(x, enc), _mm256_sub_ps(_mm256_setzero_ps(), six)), six);
  const __m256 av = vabs(v);
  __m256i code = _mm256_setzero_si256();
  auto count = [&](float threshold, int predicate) {
    // A true compare is all ones (-1): subtracting it counts it.
    const __m256 t = _mm256_set1_ps(threshold);
    const __m256 m =
        predicate == 0 ? _mm256_cmp_ps(av, t, _CMP_GT_OQ) : _mm256_cmp_ps(av, t, _CMP_GE_OQ);
    code = _mm256_sub_epi32(code, _mm256_castps_si256(m));
  };
  if (rand == nullptr) {
    // RNE by float bit tricks instead of 7 threshold compares (same results, fewer ops):
    // |v| >= 1 is a normal E2M1 value, so round the fp32 mantissa to 1 bit (carry trick) and
    // rebias the exponent (127 -> 1); below 1 the grid is 0, 0.5, 1: nearest-even integer of
    // 2|v| (cvtps rounds with MXCSR's default, nearest even).
    const __m256i u = _mm256_castps_si256(av);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 22), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x1fffff)));
    const __m256i normal = _mm256_sub_epi32(_mm256_srli_epi32(rounded, 22), _mm256_set1_epi32(252));
    const __m256i small = _mm256_cvtps_epi32(_mm256_add_ps(av, av));
    const __m256 is_small = _mm256_cmp_ps(av, _mm256_set1_ps(1.f), _CMP_LT_OQ);
    code = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(normal), _mm256_castsi256_ps(small), is_small));
  } else {
    for (int i = 1; i < 8; ++i) count(nvfp4::kE2m1Values[i], 1);
    const __m256 grid = _mm256_loadu_ps(nvfp4::kE2m1Values);
    const __m256i up_idx =
        _mm256_min_epi32(_mm256_add_epi32(code, _mm256_set1_epi32(1)), _mm256_set1_epi32(7));
    const __m256 lo = _mm256_permutevar8x32_ps(grid, code);
    const __m256 hi = _mm256_permutevar8x32_ps(grid, up_idx);
    const __m256 prob = _mm256_div_ps(_mm256_sub_ps(av, lo), _mm256_sub_ps(hi, lo));
    const __m256 up = _mm256_cmp_ps(_mm256_loadu_ps(rand), prob, _CMP_LT_OQ);
    code = _mm256_sub_epi32(code, _mm256_castps_si256(up));
  }
  const __m256i vi = _mm256_castps_si256(v);
  const __m256i negative =
      compat == Nvfp4Compat::kTorchao
          ? _mm256_srai_epi32(vi, 31)
          : _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
  return _mm256_or_si256(code, _mm256_and_si256(negative, _mm256_set1_epi32(8)));
}

// 16 int32 codes (elements 0-7 in a, 8-15 in b) -> 8 bytes, even element in the low nibble.
inline void pack16(__m256i a, __m256i b, uint8_t* q) {
  // packs interleaves the 128-bit lanes; the permute restores element order c0..c15 (int16).
  const __m256i c = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
  // As int32 lanes each holds c[2i] | c[2i+1] << 16; fold the high code down to bits 4..7.
  const __m256i folded = _mm256_or_si256(c, _mm256_srli_epi32(c, 12));
  const __m256i bytes = _mm256_shuffle_epi8(
      folded, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8,
                               12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
  const uint32_t lo = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_castsi256_si128(bytes)));
  const uint32_t hi = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(bytes, 1)));
  const uint64_t word = lo | (static_cast<uint64_t>(hi) << 32);
  std::memcpy(q, &word, 8);
}

// Codes of a block whose TE multiplier is infinite (its E4M3 scale is 0): x * inf saturates to
// +-6 (code 7 or 15) and 0 * inf is NaN (code 0), whatever the rounding mode; the reference's
// result without the scalar NaN path. (torchao's multiplier is never infinite.)
inline __m256i codes8_infinite_enc(__m256 x) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256i nonzero = _mm256_castps_si256(_mm256_cmp_ps(x, zero, _CMP_NEQ_OQ));
  const __m256i negative = _mm256_castps_si256(_mm256_cmp_ps(x, zero, _CMP_LT_OQ));
  return _mm256_or_si256(_mm256_and_si256(nonzero, _mm256_set1_epi32(7)),
                         _mm256_and_si256(negative, _mm256_set1_epi32(8)));
}

// Horizontal max of each of 8 registers, as the 8 lanes of one (an 8x8 transpose-reduce).
inline __m256 hmax8(const __m256* m) {
  __m256 t[4];
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm256_max_ps(_mm256_unpacklo_ps(m[2 * i], m[2 * i + 1]),
                         _mm256_unpackhi_ps(m[2 * i], m[2 * i + 1]));
  }
  __m256 u[2];
  for (int i = 0; i < 2; ++i) {
    u[i] = _mm256_max_ps(_mm256_shuffle_ps(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm256_shuffle_ps(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  return _mm256_max_ps(_mm256_permute2f128_ps(u[0], u[1], 0x20),
                       _mm256_permute2f128_ps(u[0], u[1], 0x31));
}

// nvfp4::e4m3_encode / e4m3_decode on 8 lanes (inputs in [0, 448]).
inline __m256i e4m3_encode8(__m256 f) {
  const __m256i u = _mm256_castps_si256(f);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 20), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7ffff)));
  const __m256i normal = _mm256_sub_epi32(_mm256_srli_epi32(rounded, 20), _mm256_set1_epi32(960));
  // cvtps rounds with MXCSR's mode: nearest even, as nearbyint in the scalar path
  const __m256i sub = _mm256_cvtps_epi32(_mm256_mul_ps(f, _mm256_set1_ps(512.f)));
  const __m256 is_sub = _mm256_cmp_ps(f, _mm256_set1_ps(nvfp4::kE4m3MinNormal), _CMP_LT_OQ);
  return _mm256_castps_si256(
      _mm256_blendv_ps(_mm256_castsi256_ps(normal), _mm256_castsi256_ps(sub), is_sub));
}
inline __m256 e4m3_decode8(__m256i b) {
  const __m256i exp = _mm256_srli_epi32(b, 3), man = _mm256_and_si256(b, _mm256_set1_epi32(7));
  const __m256i normal =
      _mm256_or_si256(_mm256_slli_epi32(_mm256_add_epi32(exp, _mm256_set1_epi32(120)), 23),
                      _mm256_slli_epi32(man, 20));
  const __m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(man), _mm256_set1_ps(0.001953125f));
  const __m256 is_sub = _mm256_castsi256_ps(_mm256_cmpeq_epi32(exp, _mm256_setzero_si256()));
  return _mm256_blendv_ps(_mm256_castsi256_ps(normal), sub, is_sub);
}

// nvfp4::block_scale on 8 blocks: scale bytes (int32 lanes) and multipliers.
inline void block_scale8(const GlobalScales& g, __m256 bamax, __m256i& bytes, __m256& enc) {
  if (g.compat == Nvfp4Compat::kTransformerEngine) {
    const __m256 ds = _mm256_min_ps(_mm256_mul_ps(bamax, _mm256_set1_ps(g.te_multiplier)),
                                    _mm256_set1_ps(nvfp4::kE4m3Max));
    bytes = e4m3_encode8(ds);
    enc = _mm256_div_ps(_mm256_set1_ps(1.f),
                        _mm256_mul_ps(e4m3_decode8(bytes), _mm256_set1_ps(g.te_decode)));
    return;
  }
  if (g.ao_all_zero) {
    bytes = _mm256_set1_epi32(nvfp4::e4m3_encode(nvfp4::kE4m3MinNormal));
    enc = _mm256_setzero_ps();
    return;
  }
  __m256 s = _mm256_div_ps(_mm256_div_ps(bamax, _mm256_set1_ps(nvfp4::kE2m1Max)),
                           _mm256_set1_ps(g.ao_pts));
  s = _mm256_min_ps(_mm256_max_ps(s, _mm256_set1_ps(nvfp4::kE4m3MinNormal)),
                    _mm256_set1_ps(nvfp4::kE4m3Max));
  bytes = e4m3_encode8(s);
  enc = _mm256_div_ps(_mm256_set1_ps(g.ao_inv_pts), e4m3_decode8(bytes));
}

// 8 full blocks of a row (1D scales): amax, scales and codes with the scale math vectorised
// across the blocks.
template <typename T>
void quantize_8_blocks(const T* x, const GlobalScales& g, const float* rand, Nvfp4Compat compat,
                       uint8_t* scales, uint8_t* q) {
  __m256 m[8];
  for (int j = 0; j < 8; ++j) {
    __m256 a, b;
    load16(x + 16 * j, a, b);
    m[j] = _mm256_max_ps(vabs(a), vabs(b));
  }
  __m256i bytes;
  __m256 enc;
  block_scale8(g, hmax8(m), bytes, enc);
  alignas(32) int32_t byte_lanes[8];
  alignas(32) float enc_lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(byte_lanes), bytes);
  _mm256_store_ps(enc_lanes, enc);
  for (int j = 0; j < 8; ++j) {
    scales[j] = static_cast<uint8_t>(byte_lanes[j]);
    const float* rj = rand ? rand + 16 * j : nullptr;
    if (enc_lanes[j] <= FLT_MAX) {
      __m256 a, b;
      load16(x + 16 * j, a, b);
      const __m256 e = _mm256_set1_ps(enc_lanes[j]);
      pack16(codes8(a, e, rj, compat), codes8(b, e, rj ? rj + 8 : nullptr, compat), q + 8 * j);
    } else if (compat == Nvfp4Compat::kTransformerEngine) {  // a zero scale
      __m256 a, b;
      load16(x + 16 * j, a, b);
      pack16(codes8_infinite_enc(a), codes8_infinite_enc(b), q + 8 * j);
    } else {
      float buf[16];
      load_block_scalar(x + 16 * j, 0, 16, buf);
      quantize_block_scalar(buf, enc_lanes[j], rj, compat, q + 8 * j);
    }
  }
}
#endif

// Block kb of one row: its amax (for 1D scales) or quantization with a given multiplier.
template <typename T>
float block_amax(const T* row, int64_t kb, int64_t cols) {
#if defined(__AVX2__)
  if ((kb + 1) * 16 <= cols) {
    __m256 a, b;
    load16(row + kb * 16, a, b);
    return hmax(_mm256_max_ps(vabs(a), vabs(b)));
  }
#endif
  float buf[16];
  load_block_scalar(row, kb, cols, buf);
  float m = 0.f;
  for (float v : buf) m = std::max(m, std::fabs(v));
  return m;
}

template <typename T>
void quantize_block(const T* row, int64_t kb, int64_t cols, float enc, const float* rand,
                    Nvfp4Compat compat, uint8_t* q) {
#if defined(__AVX2__)
  if ((kb + 1) * 16 <= cols && enc <= FLT_MAX) {
    __m256 a, b;
    load16(row + kb * 16, a, b);
    const __m256 e = _mm256_set1_ps(enc);
    pack16(codes8(a, e, rand, compat), codes8(b, e, rand ? rand + 8 : nullptr, compat), q);
    return;
  }
  if ((kb + 1) * 16 <= cols && compat == Nvfp4Compat::kTransformerEngine) {  // a zero scale
    __m256 a, b;
    load16(row + kb * 16, a, b);
    pack16(codes8_infinite_enc(a), codes8_infinite_enc(b), q);
    return;
  }
#endif
  float buf[16];
  load_block_scalar(row, kb, cols, buf);
  quantize_block_scalar(buf, enc, rand, compat, q);
}

// ---- rows -----------------------------------------------------------------------------------

template <typename T>
void quantize_rows(const Nvfp4QuantizeParams& p, const GlobalScales& g, int64_t r0, int64_t r1) {
  const T* x = static_cast<const T*>(p.x);
  const int64_t nb = ceil_div(p.cols, 16), kp = nb * 16;
  auto rand_of = [&](int64_t r, int64_t kb) {
    return p.rand ? p.rand + r * kp + kb * 16 : nullptr;
  };
  if (!p.block_2d) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* row = x + r * p.row_stride;
      int64_t kb = 0;
#if defined(__AVX2__)
      for (; (kb + 8) * 16 <= p.cols; kb += 8) {
        quantize_8_blocks(row + kb * 16, g, rand_of(r, kb), p.compat, p.scales + r * nb + kb,
                          p.qdata + r * kp / 2 + kb * 8);
      }
#endif
      for (; kb < nb; ++kb) {
        const BlockScale s = nvfp4::block_scale(g, block_amax(row, kb, p.cols));
        p.scales[r * nb + kb] = s.byte;
        quantize_block(row, kb, p.cols, s.enc, rand_of(r, kb), p.compat,
                       p.qdata + r * kp / 2 + kb * 8);
      }
    }
    return;
  }
  for (int64_t kb = 0; kb < nb; ++kb) {  // one 16x16 tile per block column of the row group
    float tile_amax = 0.f;
    for (int64_t r = r0; r < r1; ++r)
      tile_amax = std::max(tile_amax, block_amax(x + r * p.row_stride, kb, p.cols));
    const BlockScale s = nvfp4::block_scale(g, tile_amax);
    for (int64_t r = r0; r < r1; ++r) {
      p.scales[r * nb + kb] = s.byte;
      quantize_block(x + r * p.row_stride, kb, p.cols, s.enc, rand_of(r, kb), p.compat,
                     p.qdata + r * kp / 2 + kb * 8);
    }
  }
}

template <typename T>
void quantize_impl(const Nvfp4QuantizeParams& p) {
  const GlobalScales g = nvfp4::global_scales(p.amax, p.compat);
  *p.tensor_scale = g.tensor_scale;
  const int64_t groups = ceil_div(p.rows, 16);
  const int threads = double(p.rows) * p.cols < 32768 ? 1 : p.num_threads;
  parallel_for(groups, threads, [&](int64_t gi) {
    quantize_rows<T>(p, g, gi * 16, std::min(p.rows, gi * 16 + 16));
  });
}

}  // namespace

void abs_max(const AbsMaxParams& p) {
  switch (p.dtype) {
    case DType::kFloat32: return abs_max_impl<float>(p);
    case DType::kBFloat16: return abs_max_impl<bf16>(p);
    case DType::kFloat16: return abs_max_impl<f16>(p);
    default:
      throw std::invalid_argument(std::string("x: unsupported dtype ") + dtype_name(p.dtype));
  }
}

void nvfp4_quantize(const Nvfp4QuantizeParams& p) {
  switch (p.dtype) {
    case DType::kFloat32: return quantize_impl<float>(p);
    case DType::kBFloat16: return quantize_impl<bf16>(p);
    case DType::kFloat16: return quantize_impl<f16>(p);
    default:
      throw std::invalid_argument(std::string("x: unsupported dtype ") + dtype_name(p.dtype));
  }
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
