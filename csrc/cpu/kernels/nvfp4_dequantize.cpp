// NVFP4 dequantization on the CPU: value = e2m1(code) * (float(scale) * tensor_scale), the
// product in brackets once per scale byte value per call (a 256-entry table; the order of the
// reference and of torchao's dequantize, so results match bit for bit). With AVX2 a block's 8
// bytes widen to 32-bit lanes, a register permute looks up the E2M1 magnitudes, the sign bit
// is xor-ed in, and the result is rounded to the output type (bf16 round to nearest even; for
// bf16 output the even and odd nibbles of each byte land in the two halves of one 32-bit
// lane, which is already the memory order of the pair).
#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cpu/common/parallel.h"
#include "cpu/kernels/nvfp4_common.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace nemocore::cpu::NEMOCORE_CPU_ISA {
namespace {

template <typename T>
void dequantize_block_scalar(const uint8_t* q, float scale, int n, T* out) {
  for (int i = 0; i < n; ++i) {
    const int code = (q[i / 2] >> (4 * (i & 1))) & 15;
    const float mag = nvfp4::kE2m1Values[code & 7] * scale;
    out[i] = from_acc<T, float>(code & 8 ? -mag : mag);
  }
}

#if defined(__AVX2__)
inline void store16(float* o, __m256 a, __m256 b) {
  _mm256_storeu_ps(o, a), _mm256_storeu_ps(o + 8, b);
}
// fp32 bits rounded to nearest even at bit 16 (the bf16 is the top half); values are finite.
inline __m256i bf16_rounded(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  return _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
}
inline __m256i bf16_bits(__m256 v) { return _mm256_srli_epi32(bf16_rounded(v), 16); }
inline void store16(bf16* o, __m256 a, __m256 b) {
  const __m256i h = _mm256_permute4x64_epi64(_mm256_packus_epi32(bf16_bits(a), bf16_bits(b)), 0xD8);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), h);
}
inline void store16(f16* o, __m256 a, __m256 b) {
  const int rne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm256_cvtps_ph(a, rne));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 8), _mm256_cvtps_ph(b, rne));
}

// 8 bytes -> 16 codes: elements 0-7 in lo, 8-15 in hi (int32 lanes).
inline void unpack16(const uint8_t* q, __m256i& lo, __m256i& hi) {
  uint64_t word;
  std::memcpy(&word, q, 8);
  const __m256i bytes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(word)));
  const __m256i even = _mm256_and_si256(bytes, _mm256_set1_epi32(15));
  const __m256i odd = _mm256_srli_epi32(bytes, 4);
  // unpack works within 128-bit lanes: [e0 o0 e1 o1 | e4 o4 e5 o5], [e2 o2 e3 o3 | e6 o6 e7 o7]
  const __m256i a = _mm256_unpacklo_epi32(even, odd), b = _mm256_unpackhi_epi32(even, odd);
  lo = _mm256_permute2x128_si256(a, b, 0x20);
  hi = _mm256_permute2x128_si256(a, b, 0x31);
}

inline __m256 decode8(__m256i code, __m256 scale) {
  const __m256 grid = _mm256_loadu_ps(nvfp4::kE2m1Values);
  const __m256 mag = _mm256_mul_ps(_mm256_permutevar8x32_ps(grid, code), scale);
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(code, _mm256_set1_epi32(8)), 28);
  return _mm256_xor_ps(mag, _mm256_castsi256_ps(sign));
}

// bf16 output: the bytes of a block decoded as even / odd elements (lane i = byte i's low /
// high nibble), each rounded to bf16 in its half of a 32-bit lane, which is then the pair's
// memory layout: no reordering. The nibble's bit 3 is the sign: shifted to bit 31 and masked.
inline void dequantize_block_bf16(const uint8_t* q, __m256 scale, bf16* out) {
  uint64_t word;
  std::memcpy(&word, q, 8);
  const __m256i bytes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(word)));
  const __m256 grid = _mm256_loadu_ps(nvfp4::kE2m1Values);
  const __m256i sign_bit = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  // vpermps reads the low 3 bits of each lane: the even nibble's magnitude directly
  const __m256 even =
      _mm256_xor_ps(_mm256_mul_ps(_mm256_permutevar8x32_ps(grid, bytes), scale),
                    _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(bytes, 28), sign_bit)));
  const __m256 odd = _mm256_xor_ps(
      _mm256_mul_ps(_mm256_permutevar8x32_ps(grid, _mm256_srli_epi32(bytes, 4)), scale),
      _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(bytes, 24), sign_bit)));
  const __m256i pairs = _mm256_or_si256(
      _mm256_srli_epi32(bf16_rounded(even), 16),
      _mm256_and_si256(bf16_rounded(odd), _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), pairs);
}
#endif

template <typename T>
void dequantize_row(const Nvfp4DequantizeParams& p, const float* scale_of_byte, int64_t r) {
  const int64_t nb = ceil_div(p.cols, 16);
  const int64_t kp_src = p.qdata_cols * 2;
  const uint8_t* q = p.qdata + r * p.qdata_cols;
  const uint8_t* s = p.scales + r * (kp_src / 16);
  T* out = static_cast<T*>(p.out) + r * p.cols;
  for (int64_t kb = 0; kb < nb; ++kb) {
    const float scale = scale_of_byte[s[kb]];
    const int n = static_cast<int>(std::min<int64_t>(16, p.cols - kb * 16));
#if defined(__AVX2__)
    if constexpr (std::is_same_v<T, bf16>) {
      if (n == 16) {
        dequantize_block_bf16(q + kb * 8, _mm256_broadcast_ss(&scale_of_byte[s[kb]]),
                              out + kb * 16);
        continue;
      }
    }
    if (n == 16) {
      __m256i lo, hi;
      unpack16(q + kb * 8, lo, hi);
      const __m256 sv = _mm256_set1_ps(scale);
      store16(out + kb * 16, decode8(lo, sv), decode8(hi, sv));
      continue;
    }
#endif
    dequantize_block_scalar(q + kb * 8, scale, n, out + kb * 16);
  }
}

template <typename T>
void dequantize_impl(const Nvfp4DequantizeParams& p) {
  // float(scale) * tensor_scale of every scale byte, once per call instead of once per block
  float scale_of_byte[256];
  for (int b = 0; b < 256; ++b)
    scale_of_byte[b] = nvfp4::e4m3_decode(static_cast<uint8_t>(b)) * *p.tensor_scale;
  const int64_t rows_per_item = std::max<int64_t>(1, 32768 / std::max<int64_t>(p.cols, 1));
  const int threads = double(p.rows) * p.cols < 32768 ? 1 : p.num_threads;
  parallel_for(ceil_div(p.rows, rows_per_item), threads, [&](int64_t item) {
    const int64_t r1 = std::min(p.rows, (item + 1) * rows_per_item);
    for (int64_t r = item * rows_per_item; r < r1; ++r) dequantize_row<T>(p, scale_of_byte, r);
  });
}

}  // namespace

void nvfp4_dequantize(const Nvfp4DequantizeParams& p) {
  switch (p.out_dtype) {
    case DType::kFloat32: return dequantize_impl<float>(p);
    case DType::kBFloat16: return dequantize_impl<bf16>(p);
    case DType::kFloat16: return dequantize_impl<f16>(p);
    default:
      throw std::invalid_argument(std::string("out: unsupported dtype ") + dtype_name(p.out_dtype) +
                                  "; use float32, bfloat16 or float16");
  }
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
