// NVFP4 quantization on the CPU (kernels.md 4.3-4.5, 4.10 "CPU"): two passes over the input.
//
//   abs_max:         max |x| as integer bit patterns (|x| orders like its bits, inf and NaN
//                    included, so one pass also tells whether the input is finite);
//   nvfp4_quantize:  per 16-element block (or 16x16 tile): block amax -> E4M3 scale by integer
//                    bit operations -> element multiplier -> clamp, RNE or stochastic rounding
//                    against the caller's uniforms -> nibble pack.
//
// Called with amax_bits (what nemocore.quant does on the CPU), nvfp4_quantize runs both passes
// itself, and with AVX2 and RNE its first pass also stores every whole block's max |x| (1/16 of
// the input's size): that pass is bound by reading the tensor from memory, so the block
// reduction costs little there, and the compute-bound second pass skips it.
//
// The arithmetic is python/nemocore/ref/quant.py's, operation for operation in float32
// (nvfp4_common.h), so codes and scales equal the reference bit for bit. With AVX2
// (nvfp4_avx2.h) a row's whole groups of 8 blocks get their scales first, 8 blocks per
// register, then their codes, 4 blocks per 32-byte store; multipliers come from a per-call
// table of the 127 scale bytes. The per-block paths handle the partial last groups and
// stochastic rounding; the scalar path the partial last block and, under stochastic
// rounding, the blocks whose multiplier is infinite, where NaN must flow as in the reference.
// Work items are groups of 16 rows, so 2D tiles never straddle two threads.
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/common/parallel.h"
#include "cpu/kernels/nvfp4_common.h"

#if defined(__AVX2__)
#include "cpu/kernels/nvfp4_avx2.h"
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

// Max of `rows_max(r0, r1)` over work items of ~64k elements each (rows r0..r1), in parallel;
// 0 for no rows.
template <typename RowsMax>
uint32_t parallel_rows_max(int64_t rows, int64_t cols, int num_threads, RowsMax rows_max) {
  const int64_t rows_per_item = std::max<int64_t>(1, 65536 / std::max<int64_t>(cols, 1));
  const int64_t items = ceil_div(rows, rows_per_item);
  std::vector<uint32_t> partial(static_cast<size_t>(std::max<int64_t>(items, 1)), 0u);
  parallel_for(items, num_threads, [&](int64_t item) {
    partial[item] = rows_max(item * rows_per_item, std::min(rows, (item + 1) * rows_per_item));
  });
  return *std::max_element(partial.begin(), partial.end());
}

template <typename T>
void abs_max_impl(const AbsMaxParams& p) {
  const T* x = static_cast<const T*>(p.x);
  *p.out_bits = parallel_rows_max(p.rows, p.cols, p.num_threads, [&](int64_t r0, int64_t r1) {
    uint32_t m = 0;
    for (int64_t r = r0; r < r1; ++r)
      m = std::max(m, row_abs_max_bits(x + r * p.row_stride, p.cols));
    return m;
  });
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
using nvfp4::load16;
using nvfp4::vabs;

// Codes of 8 scaled values under stochastic rounding (finite multiplier), as int32 lanes.
inline __m256i codes8_sr(__m256 x, __m256 enc, const float* rand, Nvfp4Compat compat) {
  const __m256 six = _mm256_set1_ps(nvfp4::kE2m1Max);
  const __m256 v = _mm256_min_ps(
      _mm256_max_ps(_mm256_mul_ps(x, enc), _mm256_sub_ps(_mm256_setzero_ps(), six)), six);
  const __m256 av = vabs(v);
  __m256i code = _mm256_setzero_si256();
  for (int i = 1; i < 8; ++i) {  // a true compare is all ones (-1): subtracting it counts it
    const __m256 m = _mm256_cmp_ps(av, _mm256_set1_ps(nvfp4::kE2m1Values[i]), _CMP_GE_OQ);
    code = _mm256_sub_epi32(code, _mm256_castps_si256(m));
  }
  const __m256 grid = _mm256_loadu_ps(nvfp4::kE2m1Values);
  const __m256i up_idx =
      _mm256_min_epi32(_mm256_add_epi32(code, _mm256_set1_epi32(1)), _mm256_set1_epi32(7));
  const __m256 lo = _mm256_permutevar8x32_ps(grid, code);
  const __m256 hi = _mm256_permutevar8x32_ps(grid, up_idx);
  const __m256 prob = _mm256_div_ps(_mm256_sub_ps(av, lo), _mm256_sub_ps(hi, lo));
  const __m256 up = _mm256_cmp_ps(_mm256_loadu_ps(rand), prob, _CMP_LT_OQ);
  code = _mm256_sub_epi32(code, _mm256_castps_si256(up));
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

// One whole block under RNE: the clamped rounding of nvfp4_avx2.h, which also handles an
// infinite multiplier (x * inf saturates to +-6, 0 * inf is NaN and gives code 0).
template <typename T>
void quantize_block_rne(const T* x, float enc, Nvfp4Compat compat, uint8_t* q) {
  const __m256i bytes = nvfp4::block_code_bytes<true>(x, _mm256_set1_ps(enc), compat);
  alignas(32) uint32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), bytes);
  constexpr int kPos[8] = {0, 1, 4, 5, 2, 3, 6, 7};  // byte of lane i for non-bf16 pair order
  for (int i = 0; i < 8; ++i)
    q[nvfp4::kPairsInOrder<T> ? i : kPos[i]] = static_cast<uint8_t>(lanes[i]);
}

// Scale bytes of 8 blocks from their amax, stored; whether their codes take the fast path.
inline bool scales_8_blocks(const GlobalScales& g, const nvfp4::EncTable& t, __m256 amax,
                            uint8_t* bytes_out) {
  const __m256i bytes = nvfp4::block_scale_bytes8(g, amax);
  nvfp4::store_bytes8(bytes, bytes_out);
  return nvfp4::fast8(t, bytes);
}

// Codes of `groups` groups of 8 whole blocks of a row, with scale bytes bytes[8 * groups].
template <Nvfp4Compat kCompat, typename T>
void codes_of_groups(const T* row, int64_t groups, const uint8_t* bytes, const uint8_t* fast,
                     const nvfp4::EncTable& t, uint8_t* q) {
  for (int64_t gi = 0; gi < groups; ++gi) {
    if (fast[gi]) {
      nvfp4::codes_8_blocks<true, kCompat>(row + gi * 128, bytes + gi * 8, t, q + gi * 64);
    } else {
      nvfp4::codes_8_blocks<false, kCompat>(row + gi * 128, bytes + gi * 8, t, q + gi * 64);
    }
  }
}
template <typename T>
void codes_of_groups(Nvfp4Compat compat, const T* row, int64_t groups, const uint8_t* bytes,
                     const uint8_t* fast, const nvfp4::EncTable& t, uint8_t* q) {
  if (compat == Nvfp4Compat::kTorchao) {
    codes_of_groups<Nvfp4Compat::kTorchao>(row, groups, bytes, fast, t, q);
  } else {
    codes_of_groups<Nvfp4Compat::kTransformerEngine>(row, groups, bytes, fast, t, q);
  }
}

// 8 whole blocks of a row under stochastic rounding (1D scales).
template <typename T>
void quantize_8_blocks_sr(const T* x, const GlobalScales& g, const nvfp4::EncTable& t,
                          const float* rand, uint8_t* scales, uint8_t* q) {
  nvfp4::store_bytes8(nvfp4::block_scale_bytes8(g, nvfp4::block_amax8(x)), scales);
  for (int j = 0; j < 8; ++j) {
    const float* rj = rand + 16 * j;
    const float enc = t.enc[scales[j]];
    if (enc <= FLT_MAX) {
      __m256 a, b;
      load16(x + 16 * j, a, b);
      const __m256 e = _mm256_set1_ps(enc);
      pack16(codes8_sr(a, e, rj, g.compat), codes8_sr(b, e, rj + 8, g.compat), q + 8 * j);
    } else {
      float buf[16];
      load_block_scalar(x + 16 * j, 0, 16, buf);
      quantize_block_scalar(buf, enc, rj, g.compat, q + 8 * j);
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
    return nvfp4::hmax(_mm256_max_ps(vabs(a), vabs(b)));
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
  if ((kb + 1) * 16 <= cols && rand == nullptr) {
    quantize_block_rne(row + kb * 16, enc, compat, q);
    return;
  }
  if ((kb + 1) * 16 <= cols && enc <= FLT_MAX) {
    __m256 a, b;
    load16(row + kb * 16, a, b);
    const __m256 e = _mm256_set1_ps(enc);
    pack16(codes8_sr(a, e, rand, compat), codes8_sr(b, e, rand + 8, compat), q);
    return;
  }
#endif
  float buf[16];
  load_block_scalar(row, kb, cols, buf);
  quantize_block_scalar(buf, enc, rand, compat, q);
}

// ---- rows -----------------------------------------------------------------------------------

#if defined(__AVX2__)
using Tables = nvfp4::EncTable;
#else
struct Tables {};
#endif

// The maxima of a tensor's whole groups of 8 blocks, stored by the fused first pass
// (block_maxima_pass): row r's are bits[r * stride, r * stride + stride). Empty (bits null):
// the quantize pass takes them from the input.
template <typename T>
struct BlockMaxima {
#if defined(__AVX2__)
  std::unique_ptr<nvfp4::MagBits<T>[]> bits;
  int64_t stride = 0;
  const nvfp4::MagBits<T>* row(int64_t r) const { return bits ? bits.get() + r * stride : nullptr; }
#endif
};

// Rows [r0, r1) with 1D (1x16) scales; the blocks past the last whole group of 8 one by one.
template <typename T>
void quantize_rows_1d(const Nvfp4QuantizeParams& p, const GlobalScales& g,
                      [[maybe_unused]] const Tables& t, [[maybe_unused]] const BlockMaxima<T>& bm,
                      int64_t r0, int64_t r1) {
  const T* x = static_cast<const T*>(p.x);
  const int64_t nb = ceil_div(p.cols, 16), kp = nb * 16, groups = p.cols / 128;
  std::vector<uint8_t> fast(static_cast<size_t>(groups));
  for (int64_t r = r0; r < r1; ++r) {
    const T* row = x + r * p.row_stride;
    const float* rand = p.rand ? p.rand + r * kp : nullptr;
    uint8_t* scales = p.scales + r * nb;
    uint8_t* q = p.qdata + r * kp / 2;
    int64_t kb = 0;
#if defined(__AVX2__)
    if (rand) {
      for (; (kb + 8) * 16 <= p.cols; kb += 8)
        quantize_8_blocks_sr(row + kb * 16, g, t, rand + kb * 16, scales + kb, q + kb * 8);
    } else {
      // All scales of the row first, then all codes: the scale arithmetic is a long dependency
      // chain per group, and with it out of the code loop the two loops run at throughput.
      const nvfp4::MagBits<T>* maxima = bm.row(r);
      for (int64_t gi = 0; gi < groups; ++gi) {
        const __m256 amax = maxima ? nvfp4::load_block_max8<T>(maxima + gi * 8)
                                   : nvfp4::block_amax8(row + gi * 128);
        fast[gi] = scales_8_blocks(g, t, amax, scales + gi * 8);
      }
      codes_of_groups(p.compat, row, groups, scales, fast.data(), t, q);
      kb = groups * 8;
    }
#endif
    for (; kb < nb; ++kb) {
      const BlockScale s = nvfp4::block_scale(g, block_amax(row, kb, p.cols));
      scales[kb] = s.byte;
      quantize_block(row, kb, p.cols, s.enc, rand ? rand + kb * 16 : nullptr, p.compat, q + kb * 8);
    }
  }
}

// Rows [r0, r1) (at most 16: one row of tiles) with 2D (16x16) scales.
template <typename T>
void quantize_rows_2d(const Nvfp4QuantizeParams& p, const GlobalScales& g,
                      [[maybe_unused]] const Tables& t, [[maybe_unused]] const BlockMaxima<T>& bm,
                      int64_t r0, int64_t r1) {
  const T* x = static_cast<const T*>(p.x);
  const int64_t nb = ceil_div(p.cols, 16), kp = nb * 16;
  auto rand_of = [&](int64_t r, int64_t kb) {
    return p.rand ? p.rand + r * kp + kb * 16 : nullptr;
  };
  int64_t kb = 0;
#if defined(__AVX2__)
  if (p.rand == nullptr) {  // tiles 8 at a time: all scales first, then the codes row by row
    const int64_t groups = p.cols / 128;
    std::vector<uint8_t> bytes(static_cast<size_t>(groups) * 8), fast(static_cast<size_t>(groups));
    std::vector<float> tile_amax(static_cast<size_t>(groups) * 8, 0.f);
    for (int64_t r = r0; r < r1; ++r) {  // row by row: the reads stay sequential
      const T* row = x + r * p.row_stride;
      const nvfp4::MagBits<T>* maxima = bm.row(r);
      for (int64_t gi = 0; gi < groups; ++gi) {
        float* m = tile_amax.data() + gi * 8;
        const __m256 amax = maxima ? nvfp4::load_block_max8<T>(maxima + gi * 8)
                                   : nvfp4::block_amax8(row + gi * 128);
        _mm256_storeu_ps(m, _mm256_max_ps(_mm256_loadu_ps(m), amax));
      }
    }
    for (int64_t gi = 0; gi < groups; ++gi) {
      fast[gi] =
          scales_8_blocks(g, t, _mm256_loadu_ps(tile_amax.data() + gi * 8), bytes.data() + gi * 8);
    }
    for (int64_t r = r0; r < r1; ++r) {
      std::memcpy(p.scales + r * nb, bytes.data(), bytes.size());
      codes_of_groups(p.compat, x + r * p.row_stride, groups, bytes.data(), fast.data(), t,
                      p.qdata + r * kp / 2);
    }
    kb = groups * 8;
  }
#endif
  for (; kb < nb; ++kb) {  // one 16x16 tile per block column of the row group
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
void quantize_impl(const Nvfp4QuantizeParams& p, const BlockMaxima<T>& bm) {
  const GlobalScales g = nvfp4::global_scales(p.amax, p.compat);
  Tables t;
#if defined(__AVX2__)
  nvfp4::fill_enc_table(g, std::is_same_v<T, bf16>, t);
#endif
  *p.tensor_scale = g.tensor_scale;
  const int64_t groups = ceil_div(p.rows, 16);
  const int threads = double(p.rows) * p.cols < 32768 ? 1 : p.num_threads;
  parallel_for(groups, threads, [&](int64_t gi) {
    const int64_t r1 = std::min(p.rows, gi * 16 + 16);
    if (p.block_2d) {
      quantize_rows_2d<T>(p, g, t, bm, gi * 16, r1);
    } else {
      quantize_rows_1d<T>(p, g, t, bm, gi * 16, r1);
    }
  });
}

// ---- fused: abs-max and block maxima, then quantize --------------------------------------

#if defined(__AVX2__)
// Asks for the input 8 KB past one group of 8 blocks: with the block reduction in the loop, the
// out-of-order window alone runs too little ahead of the reads to keep the memory busy
// (measured: ~3% faster with one thread and with two, 4-16 KB alike).
template <typename T>
inline void prefetch_ahead(const T* group) {
  const char* p = reinterpret_cast<const char*>(group) + 8192;
  for (size_t line = 0; line < 128 * sizeof(T); line += 64) _mm_prefetch(p + line, _MM_HINT_T0);
}

// Pass 1 of the fused quantizer: stores the maxima of every whole group of 8 blocks (so that
// pass 2 needs no block reduction) and returns max |x| as abs_max does. This pass is bound by
// reading the tensor from memory, so the reduction costs little here.
template <typename T>
uint32_t block_maxima_pass(const Nvfp4QuantizeParams& p, BlockMaxima<T>& bm) {
  using Mag = nvfp4::MagBits<T>;
  const int64_t groups = p.cols / 128;
  bm.stride = groups * 8;
  bm.bits.reset(new Mag[static_cast<size_t>(p.rows * bm.stride)]);  // no zero fill: all written
  const T* x = static_cast<const T*>(p.x);
  return parallel_rows_max(p.rows, p.cols, p.num_threads, [&](int64_t r0, int64_t r1) {
    __m256 vmax = _mm256_setzero_ps();
    uint32_t m = 0;
    for (int64_t r = r0; r < r1; ++r) {
      const T* row = x + r * p.row_stride;
      Mag* out = bm.bits.get() + r * bm.stride;
      for (int64_t gi = 0; gi < groups; ++gi) {
        prefetch_ahead(row + gi * 128);
        // integer max on the float lanes' bits (non-negative): inf and NaN order above all
        vmax = _mm256_castsi256_ps(_mm256_max_epi32(
            _mm256_castps_si256(vmax),
            _mm256_castps_si256(nvfp4::store_block_max8(row + gi * 128, out + gi * 8))));
      }
      if (groups * 128 < p.cols) {
        m = std::max(m, row_abs_max_bits(row + groups * 128, p.cols - groups * 128));
      }
    }
    alignas(32) uint32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_castps_si256(vmax));
    for (uint32_t v : lanes) m = std::max(m, v);
    return m;
  });
}
#endif

// abs_max, then (when the input is finite) nvfp4_quantize with that amax. With AVX2 and RNE the
// first pass also stores the block maxima.
template <typename T>
void quantize_fused(const Nvfp4QuantizeParams& p) {
  BlockMaxima<T> bm;
  uint32_t bits = 0;
#if defined(__AVX2__)
  if (p.rand == nullptr && p.cols >= 128)
    bits = block_maxima_pass<T>(p, bm);
  else
#endif
  {
    AbsMaxParams a;
    a.x = p.x, a.dtype = p.dtype, a.rows = p.rows, a.cols = p.cols;
    a.row_stride = p.row_stride, a.out_bits = &bits, a.num_threads = p.num_threads;
    abs_max_impl<T>(a);
  }
  *p.amax_bits = bits;
  if (bits >= 0x7f800000u) return;  // inf or NaN: the caller raises
  Nvfp4QuantizeParams q = p;
  q.amax = bits_to_float(bits);
  quantize_impl<T>(q, bm);
}

template <typename T>
void quantize_entry(const Nvfp4QuantizeParams& p) {
  if (p.amax_bits) return quantize_fused<T>(p);
  quantize_impl<T>(p, BlockMaxima<T>{});
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
    case DType::kFloat32: return quantize_entry<float>(p);
    case DType::kBFloat16: return quantize_entry<bf16>(p);
    case DType::kFloat16: return quantize_entry<f16>(p);
    default:
      throw std::invalid_argument(std::string("x: unsupported dtype ") + dtype_name(p.dtype));
  }
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
