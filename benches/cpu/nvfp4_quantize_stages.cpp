// Where the CPU NVFP4 quantizer's time goes: each stage of csrc/cpu/kernels/nvfp4_avx2.h timed
// alone on rows that stay in cache (64 x 4096 bf16, 512 KB), in ns per 16-element block (the
// kernel reads the tensor from DRAM in a separate abs-max pass, which quant_bench.py times).
//
//   g++ -O3 -mavx2 -mfma -mf16c -std=c++17 -Icsrc -Icsrc/include -o /tmp/nvfp4_stages
//       benches/cpu/nvfp4_quantize_stages.cpp && /tmp/nvfp4_stages
//
// "codes, fixed magic" adds one constant instead of the exponent-dependent one (wrong codes
// above 2): what the E2M1 lookup (cvttps2dq + vpermd per 8 values) costs.
#define NEMOCORE_CPU_ISA avx2
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu/kernels/nvfp4_avx2.h"

namespace nv = nemocore::cpu::avx2::nvfp4;
using nemocore::Nvfp4Compat;
using nemocore::cpu::bf16;

constexpr int kRows = 64, kCols = 4096, kGroups = kCols / 128;

// block_code_bytes_fast<TE> with a constant magic (timing only).
inline __m256i codes_fixed_magic(const bf16* x, __m256 enc) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  const __m256i zero = _mm256_setzero_si256();
  const __m256i aw = _mm256_and_si256(w, _mm256_set1_epi16(0x7fff));
  const __m256 magic = _mm256_castsi256_ps(_mm256_set1_epi32(0x4a800000));
  auto round = [&](__m256i a) {
    return _mm256_castps_si256(_mm256_add_ps(_mm256_mul_ps(_mm256_castsi256_ps(a), enc), magic));
  };
  const __m256i lo = round(_mm256_slli_epi32(aw, 16)),
                hi = round(_mm256_blend_epi16(aw, zero, 0x55));
  const __m256i negative = _mm256_cmpgt_epi16(_mm256_sub_epi16(zero, w), zero);
  const __m256i sign =
      _mm256_madd_epi16(negative, _mm256_set1_epi32(static_cast<int>(0xff80fff8u)));
  return _mm256_or_si256(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), sign);
}

int main() {
  std::vector<bf16> x(kRows * kCols);
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  for (auto& v : x) v.bits = static_cast<uint16_t>(nemocore::cpu::float_to_bits(normal(rng)) >> 16);
  std::vector<uint8_t> q(kRows * kCols / 2), scales(kRows * kCols / 16), fast(kGroups);
  const auto te = nv::global_scales(5.f, Nvfp4Compat::kTransformerEngine);
  const auto ao = nv::global_scales(5.f, Nvfp4Compat::kTorchao);
  nv::EncTable te_table, ao_table;
  nv::fill_enc_table(te, true, te_table);
  nv::fill_enc_table(ao, true, ao_table);
  __m256 sink = _mm256_setzero_ps();

  auto scales_of_row = [&](int r, const nv::GlobalScales& g, const nv::EncTable& t) {
    for (int gi = 0; gi < kGroups; ++gi) {
      const __m256i bytes = nv::block_scale_bytes8(g, nv::block_amax8(&x[r * kCols + gi * 128]));
      nv::store_bytes8(bytes, &scales[r * kCols / 16 + gi * 8]);
      fast[gi] = nv::fast8(t, bytes);
    }
  };
  auto codes_of_row = [&](int r, const nv::EncTable& t, auto compat) {
    for (int gi = 0; gi < kGroups; ++gi) {
      nv::codes_8_blocks<true, decltype(compat)::value>(&x[r * kCols + gi * 128],
                                                        &scales[r * kCols / 16 + gi * 8], t,
                                                        &q[r * kCols / 2 + gi * 64]);
    }
  };
  using Te = std::integral_constant<Nvfp4Compat, Nvfp4Compat::kTransformerEngine>;
  using Ao = std::integral_constant<Nvfp4Compat, Nvfp4Compat::kTorchao>;
  auto stage = [&](const char* name, auto&& row_fn) {
    double best = 1e30;
    for (int rep = 0; rep < 100; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < kRows; ++r) row_fn(r);
      best = std::min(best,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("| %s | %.2f |\n", name, best * 1e9 / (kRows * kCols / 16));
  };

  std::printf("| stage (bf16, 1 thread, rows in cache) | ns per 16-element block |\n|---|---|\n");
  stage("block amax (int16 reduction, 8 blocks at once)", [&](int r) {
    for (int gi = 0; gi < kGroups; ++gi)
      sink = _mm256_max_ps(sink, nv::block_amax8(&x[r * kCols + gi * 128]));
  });
  stage("block amax + E4M3 scale bytes (TE)", [&](int r) { scales_of_row(r, te, te_table); });
  scales_of_row(0, te, te_table);
  stage("codes, TE (given the scales)", [&](int r) { codes_of_row(r, te_table, Te{}); });
  stage("codes, torchao (given the scales)", [&](int r) { codes_of_row(r, ao_table, Ao{}); });
  stage("codes, TE, fixed magic (timing only)", [&](int r) {
    for (int gi = 0; gi < kGroups; ++gi) {
      __m256i b[4];
      for (int half = 0; half < 2; ++half) {
        for (int j = 0; j < 4; ++j) {
          const int blk = gi * 8 + half * 4 + j;
          b[j] =
              codes_fixed_magic(&x[r * kCols + blk * 16],
                                _mm256_broadcast_ss(&te_table.enc[scales[r * kCols / 16 + blk]]));
        }
        nv::store_code_bytes4<bf16>(b, &q[r * kCols / 2 + gi * 64 + half * 32]);
      }
    }
  });
  stage("whole row: scales, then codes (TE)", [&](int r) {
    scales_of_row(r, te, te_table);
    codes_of_row(r, te_table, Te{});
  });
  // The one-call kernel (nvfp4_quantize with amax_bits): pass 1 stores the block maxima while
  // it reads the tensor for amax, pass 2 starts from them.
  std::vector<uint16_t> maxima(kRows * kCols / 16);
  stage("pass 1 of the one-call kernel: block maxima stored", [&](int r) {
    for (int gi = 0; gi < kGroups; ++gi) {
      const int blk = r * kCols / 16 + gi * 8;
      sink = _mm256_max_ps(sink, nv::store_block_max8(&x[blk * 16], &maxima[blk]));
    }
  });
  stage("pass 2 of the one-call kernel: scales from them, then codes (TE)", [&](int r) {
    for (int gi = 0; gi < kGroups; ++gi) {
      const int blk = r * kCols / 16 + gi * 8;
      const __m256i bytes = nv::block_scale_bytes8(te, nv::load_block_max8<bf16>(&maxima[blk]));
      nv::store_bytes8(bytes, &scales[blk]);
      fast[gi] = nv::fast8(te_table, bytes);
    }
    codes_of_row(r, te_table, Te{});
  });
  alignas(32) float s[8];
  _mm256_store_ps(s, sink);
  return s[0] < 0 && q[1] == 255 ? 1 : 0;  // keep the results alive
}
