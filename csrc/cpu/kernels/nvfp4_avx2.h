// AVX2 building blocks of the NVFP4 quantizer (nvfp4_quantize.cpp): loads, block maxima, the
// block scales of 8 blocks at once, and E2M1 rounding of whole blocks. Every helper computes
// what nvfp4_common.h computes for one element, bit for bit. Included only by sources compiled
// per ISA level, and only where __AVX2__ is defined.
#pragma once

#include <immintrin.h>

#include <cfloat>
#include <type_traits>

#include "cpu/kernels/nvfp4_common.h"

namespace nemocore::cpu::NEMOCORE_CPU_ISA::nvfp4 {
namespace {

// ---- loads ----------------------------------------------------------------------------------

// One 16-element block as two registers of 8 floats in element order.
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

// One block split into element pairs: lane i of `even` / `odd` holds the elements that share
// one packed byte, the even one in the low nibble. For bf16 lane i is pair i (two bit
// operations on one load); for the other types the pairs come in the order 0 1 4 5 2 3 6 7
// (`kPairsInOrder` false), which pack_bytes undoes.
template <typename T>
constexpr bool kPairsInOrder = std::is_same_v<T, bf16>;

inline void load_pairs(const bf16* p, __m256& even, __m256& odd) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  even = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  odd = _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}
template <typename T>
inline void load_pairs(const T* p, __m256& even, __m256& odd) {
  __m256 a, b;
  load16(p, a, b);
  even = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  odd = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

inline __m256 vabs(__m256 v) {
  return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}

// ---- block maxima ---------------------------------------------------------------------------

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

// |x| orders like its bit pattern with the sign cleared (inf and NaN above every finite value),
// so block maxima reduce as integers: 16-bit lanes for bf16 and fp16, 32-bit lanes for float.
// The quantizer's first pass stores them (MagBits per block) and its second pass reads them.
template <typename T>
using MagBits = std::conditional_t<std::is_same_v<T, float>, uint32_t, uint16_t>;

// Max |x| bits of 8 consecutive blocks of 16-bit floats, one per 16-bit lane: two blocks
// interleaved per register, halving the lanes per block at each step.
inline __m128i block_max_bits8(const uint16_t* x) {
  const __m256i magnitude = _mm256_set1_epi16(0x7fff);
  auto load = [&](int j) {
    return _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16 * j)),
                            magnitude);
  };
  __m256i pairs[4];  // blocks 2i, 2i+1 in alternating 16-bit lanes
  for (int i = 0; i < 4; ++i) {
    const __m256i a = load(2 * i), b = load(2 * i + 1);
    pairs[i] = _mm256_max_epi16(_mm256_unpacklo_epi16(a, b), _mm256_unpackhi_epi16(a, b));
  }
  __m256i quads[2];  // blocks 4i..4i+3 repeating
  for (int i = 0; i < 2; ++i) {
    quads[i] = _mm256_max_epi16(_mm256_unpacklo_epi32(pairs[2 * i], pairs[2 * i + 1]),
                                _mm256_unpackhi_epi32(pairs[2 * i], pairs[2 * i + 1]));
  }
  const __m256i eights = _mm256_max_epi16(_mm256_unpacklo_epi64(quads[0], quads[1]),
                                          _mm256_unpackhi_epi64(quads[0], quads[1]));
  return _mm_max_epi16(_mm256_castsi256_si128(eights), _mm256_extracti128_si256(eights, 1));
}

// Float blocks: one 32-bit lane per block (an 8x8 transpose-reduce on integers).
inline __m256i block_max_bits8(const uint32_t* x) {
  const __m256i magnitude = _mm256_set1_epi32(0x7fffffff);
  auto ps = [](__m256i v) { return _mm256_castsi256_ps(v); };
  auto si = [](__m256 v) { return _mm256_castps_si256(v); };
  __m256i m[8];
  for (int j = 0; j < 8; ++j) {
    const auto* p = reinterpret_cast<const __m256i*>(x + 16 * j);
    m[j] = _mm256_max_epi32(_mm256_and_si256(_mm256_loadu_si256(p), magnitude),
                            _mm256_and_si256(_mm256_loadu_si256(p + 1), magnitude));
  }
  __m256i t[4];
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm256_max_epi32(_mm256_unpacklo_epi32(m[2 * i], m[2 * i + 1]),
                            _mm256_unpackhi_epi32(m[2 * i], m[2 * i + 1]));
  }
  __m256i u[2];
  for (int i = 0; i < 2; ++i) {
    u[i] = _mm256_max_epi32(
        si(_mm256_shuffle_ps(ps(t[2 * i]), ps(t[2 * i + 1]), _MM_SHUFFLE(1, 0, 1, 0))),
        si(_mm256_shuffle_ps(ps(t[2 * i]), ps(t[2 * i + 1]), _MM_SHUFFLE(3, 2, 3, 2))));
  }
  return _mm256_max_epi32(_mm256_permute2x128_si256(u[0], u[1], 0x20),
                          _mm256_permute2x128_si256(u[0], u[1], 0x31));
}

// Stores the max |x| bits of 8 consecutive blocks; returns them as 8 float lanes.
inline __m256 store_block_max8(const bf16* x, uint16_t* out) {
  const __m128i m = block_max_bits8(reinterpret_cast<const uint16_t*>(x));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), m);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(m), 16));
}
inline __m256 store_block_max8(const f16* x, uint16_t* out) {
  const __m128i m = block_max_bits8(reinterpret_cast<const uint16_t*>(x));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), m);
  return _mm256_cvtph_ps(m);
}
inline __m256 store_block_max8(const float* x, uint32_t* out) {
  const __m256i m = block_max_bits8(reinterpret_cast<const uint32_t*>(x));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), m);
  return _mm256_castsi256_ps(m);
}

// Stored maxima of 8 blocks (store_block_max8) as 8 float lanes.
template <typename T>
inline __m256 load_block_max8(const MagBits<T>* m) {
  if constexpr (std::is_same_v<T, float>) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(m));
  } else {
    const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m));
    if constexpr (std::is_same_v<T, f16>) return _mm256_cvtph_ps(w);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(w), 16));
  }
}

// Max |x| of 8 consecutive blocks, one per lane.
template <typename T>
inline __m256 block_amax8(const T* x) {
  MagBits<T> unused[8];
  return store_block_max8(x, unused);
}

// ---- scales of 8 blocks ---------------------------------------------------------------------

// e4m3_encode on 8 lanes (inputs in [0, 448]). Normal: the carry trick of e4m3_encode keeps 3
// mantissa bits. Subnormal (below 2^-6): 2^14 + f rounds f to a multiple of 2^-9 = ulp(2^14),
// to nearest even as nearbyint(f * 512) does, and the low bits of the sum are the byte.
inline __m256i e4m3_encode8(__m256 f) {
  const __m256i u = _mm256_castps_si256(f);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 20), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7ffff)), lsb);
  const __m256i normal = _mm256_sub_epi32(_mm256_srli_epi32(rounded, 20), _mm256_set1_epi32(960));
  const __m256 two14 = _mm256_set1_ps(16384.f);
  const __m256i sub =
      _mm256_sub_epi32(_mm256_castps_si256(_mm256_add_ps(f, two14)), _mm256_castps_si256(two14));
  const __m256 is_sub = _mm256_cmp_ps(f, _mm256_set1_ps(kE4m3MinNormal), _CMP_LT_OQ);
  return _mm256_castps_si256(
      _mm256_blendv_ps(_mm256_castsi256_ps(normal), _mm256_castsi256_ps(sub), is_sub));
}

// block_scale_byte on 8 blocks (int32 lanes).
inline __m256i block_scale_bytes8(const GlobalScales& g, __m256 bamax) {
  if (g.compat == Nvfp4Compat::kTransformerEngine) {
    return e4m3_encode8(_mm256_min_ps(_mm256_mul_ps(bamax, _mm256_set1_ps(g.te_multiplier)),
                                      _mm256_set1_ps(kE4m3Max)));
  }
  if (g.ao_all_zero) return _mm256_set1_epi32(e4m3_encode(kE4m3MinNormal));
  __m256 s =
      _mm256_div_ps(_mm256_div_ps(bamax, _mm256_set1_ps(kE2m1Max)), _mm256_set1_ps(g.ao_pts));
  // min first: a NaN s (0 / 0 when pts underflows to 0) becomes 448, as in the scalar path
  s = _mm256_max_ps(_mm256_min_ps(s, _mm256_set1_ps(kE4m3Max)), _mm256_set1_ps(kE4m3MinNormal));
  return e4m3_encode8(s);
}

// The multiplier of every scale byte (block_enc, 127 divisions once per call instead of one per
// block), and the bytes whose blocks take the fast rounding path: a finite multiplier and a
// normal E4M3 scale (byte >= 8), so |x| * enc <= 6 * 16/15 < 7 (a normal scale rounds down by
// at most 1/16) and the clamp to 6 is the E2M1 rounding's own saturation. For bf16 input the
// fast path takes the sign from the input's bits, so TE's "v < 0" must equal "x < 0 and x !=
// 0": no nonzero bf16 (>= 2^-133) may underflow in x * enc, which enc >= 2^-16 guarantees. The
// multiplier falls as the byte grows, so the fast bytes are one range [fast_lo, fast_hi].
struct EncTable {
  alignas(64) float enc[256];
  int fast_lo = 1, fast_hi = 0;
};

inline bool fast_byte(const GlobalScales& g, float enc, int b, bool bf16_input) {
  const float min_enc = bf16_input && g.compat == Nvfp4Compat::kTransformerEngine ? 0x1p-16f : 0.f;
  return b >= 8 && enc <= FLT_MAX && enc >= min_enc;
}

inline void fill_enc_table(const GlobalScales& g, bool bf16_input, EncTable& t) {
  for (int b = 0; b < 256; ++b) t.enc[b] = b <= 126 ? block_enc(g, static_cast<uint8_t>(b)) : 0.f;
  int lo = 8;
  while (lo <= 126 && !fast_byte(g, t.enc[lo], lo, bf16_input)) ++lo;
  int hi = lo;
  while (hi + 1 <= 126 && fast_byte(g, t.enc[hi + 1], hi + 1, bf16_input)) ++hi;
  t.fast_lo = lo <= 126 ? lo : 1, t.fast_hi = lo <= 126 ? hi : 0;
}

// Whether all 8 scale bytes (int32 lanes) are fast.
inline bool fast8(const EncTable& t, __m256i bytes) {
  const __m256i out = _mm256_or_si256(_mm256_cmpgt_epi32(bytes, _mm256_set1_epi32(t.fast_hi)),
                                      _mm256_cmpgt_epi32(_mm256_set1_epi32(t.fast_lo), bytes));
  return _mm256_testz_si256(out, out);
}

// 8 scale bytes from int32 lanes.
inline void store_bytes8(__m256i lanes, uint8_t* out) {
  const __m128i w =
      _mm_packus_epi32(_mm256_castsi256_si128(lanes), _mm256_extracti128_si256(lanes, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(w, w));
}

// ---- E2M1 rounding, round to nearest even ----------------------------------------------------

// RNE to E2M1 is one float addition: |v| + M rounds |v| to a multiple of ulp(M), and
// M = 2^(22 + e) for |v| in [2^e, 2^(e+1)) (e = 0 below 1) makes that step E2M1's spacing
// there (0.5 below 2, then 1, then 2); ties go to an even multiple, which is E2M1's even
// mantissa. The low mantissa bits of the sum then count the steps; adding 2e to M's mantissa
// makes them the code itself (an even offset leaves the ties alone). M comes from a register
// lookup indexed by the integer part of |v| (0..6, as |v| < 7 here).
inline __m256i e2m1_magic8(__m256 av) {
  const __m256i table = _mm256_setr_epi32(0x4a800000, 0x4a800000, 0x4b000002, 0x4b000002,
                                          0x4b800004, 0x4b800004, 0x4b800004, 0x4b800004);
  return _mm256_permutevar8x32_epi32(table, _mm256_cvttps_epi32(av));
}

// Magnitude codes of 8 values |x| * enc (|x| >= 0, product < 7) in bits 0-2 of each lane; bits
// 3..22 are zero, the rest not.
inline __m256i e2m1_magnitudes8(__m256 ax, __m256 enc) {
  const __m256 av = _mm256_mul_ps(ax, enc);
  return _mm256_castps_si256(_mm256_add_ps(av, _mm256_castsi256_ps(e2m1_magic8(av))));
}

// Codes with sign of 8 values x * enc in bits 0-3 of each lane (bits 4..22 zero), any input.
// The sign (8) is added to M. With kClamp, |v| is first clamped to 6 and the NaN of 0 * inf
// (an infinite multiplier) becomes 0: magnitude code 0, and the sign that the reference gives
// it (v < 0 is false; signbit of x86's default NaN is set).
template <bool kClamp>
inline __m256i e2m1_codes8(__m256 x, __m256 enc, Nvfp4Compat compat) {
  const __m256 v = _mm256_mul_ps(x, enc);
  __m256 av = vabs(v);
  if (kClamp) {  // max(NaN, 0) is 0 (the second operand)
    av = _mm256_min_ps(_mm256_max_ps(av, _mm256_setzero_ps()), _mm256_set1_ps(kE2m1Max));
  }
  const __m256i negative =
      compat == Nvfp4Compat::kTorchao
          ? _mm256_srai_epi32(_mm256_castps_si256(v), 31)  // signbit: -0.0 counts
          : _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
  const __m256i m =
      _mm256_add_epi32(e2m1_magic8(av), _mm256_and_si256(negative, _mm256_set1_epi32(8)));
  return _mm256_castps_si256(_mm256_add_ps(av, _mm256_castsi256_ps(m)));
}

// One block's 8 code bytes (low byte of each 32-bit lane, pair order of load_pairs), any input.
template <bool kClamp, typename T>
inline __m256i block_code_bytes(const T* x, __m256 enc, Nvfp4Compat compat) {
  __m256 even, odd;
  load_pairs(x, even, odd);
  const __m256i lo = e2m1_codes8<kClamp>(even, enc, compat);
  const __m256i hi = e2m1_codes8<kClamp>(odd, enc, compat);
  return _mm256_or_si256(lo, _mm256_slli_epi32(hi, 4));
}

// The fast path for bf16 (see EncTable): magnitudes from |x|, signs from the input bits as 16-bit
// lanes (-1 for negative, or for TE negative and nonzero: -x > 0 as int16, where 0x8000
// negates to itself), moved to bits 3 and 7 of each pair's byte by one multiply-add (even
// lane * -8 + odd lane * -128). Few constants: the loop keeps them all in registers.
template <Nvfp4Compat kCompat>
inline __m256i block_code_bytes_fast(const bf16* x, __m256 enc) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  const __m256i zero = _mm256_setzero_si256();
  const __m256i aw = _mm256_and_si256(w, _mm256_set1_epi16(0x7fff));
  const __m256i lo = e2m1_magnitudes8(_mm256_castsi256_ps(_mm256_slli_epi32(aw, 16)), enc);
  const __m256i hi = e2m1_magnitudes8(_mm256_castsi256_ps(_mm256_blend_epi16(aw, zero, 0x55)), enc);
  const __m256i negative = kCompat == Nvfp4Compat::kTorchao
                               ? _mm256_srai_epi16(w, 15)
                               : _mm256_cmpgt_epi16(_mm256_sub_epi16(zero, w), zero);
  const __m256i sign =
      _mm256_madd_epi16(negative, _mm256_set1_epi32(static_cast<int>(0xff80fff8u)));
  return _mm256_or_si256(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), sign);
}

// 4 blocks' code bytes -> 32 packed bytes, block after block.
template <typename T>
inline void store_code_bytes4(const __m256i* bytes, uint8_t* q) {
  const __m256i low = _mm256_set1_epi32(0xff);
  const __m256i w01 =
      _mm256_packus_epi32(_mm256_and_si256(bytes[0], low), _mm256_and_si256(bytes[1], low));
  const __m256i w23 =
      _mm256_packus_epi32(_mm256_and_si256(bytes[2], low), _mm256_and_si256(bytes[3], low));
  // 128-bit lane 0 holds bytes 0-3 of blocks 0..3 (in lane order), lane 1 bytes 4-7
  const __m256i b = _mm256_packus_epi16(w01, w23);
  __m256i out = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  if constexpr (!kPairsInOrder<T>) {
    // pairs came as 0 1 4 5 | 2 3 6 7: swap the middle 16-bit units of each 8-byte block
    out = _mm256_shuffle_epi8(
        out, _mm256_setr_epi8(0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15, 0, 1, 4, 5, 2,
                              3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), out);
}

// Codes of 8 consecutive blocks with scale bytes bytes[0..7]: kFast if fast8 holds for them.
template <bool kFast, Nvfp4Compat kCompat, typename T>
inline void codes_8_blocks(const T* x, const uint8_t* bytes, const EncTable& t, uint8_t* q) {
  for (int half = 0; half < 2; ++half) {
    __m256i code_bytes[4];
    for (int j = 0; j < 4; ++j) {
      const int blk = 4 * half + j;
      const __m256 e = _mm256_broadcast_ss(&t.enc[bytes[blk]]);
      if constexpr (kFast && std::is_same_v<T, bf16>) {
        code_bytes[j] = block_code_bytes_fast<kCompat>(x + 16 * blk, e);
      } else {
        code_bytes[j] = block_code_bytes<!kFast>(x + 16 * blk, e, kCompat);
      }
    }
    store_code_bytes4<T>(code_bytes, q + 32 * half);
  }
}

}  // namespace
}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA::nvfp4
