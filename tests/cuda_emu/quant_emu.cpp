// Host test of the CUDA NVFP4 kernels (csrc/cuda/nvfp4.cu) through the emulator (emu.h): the
// real CUDA source against the CPU kernels (csrc/cpu/kernels/nvfp4_*.cpp, compiled here at the
// baseline ISA), which tests/quant checks bit for bit against the pure-PyTorch reference.
//   quantize:   codes, scales and the tensor scale must be identical, for float32 / bfloat16 /
//               float16 input, both conventions, 1D and 2D blocks, RNE and stochastic rounding,
//               awkward shapes (1 x 1, partial blocks, partial 16-row tiles), zero blocks, -0.0;
//   dequantize: identical outputs (float32 and bfloat16);
//   nvfp4_mm:   W4A4 and W4A16, float32 and bf16 output, against a float64 sum over the
//               dequantized operands: the portable kernel (nvfp4.cu) through the emulated
//               m16n8k16 bf16 MMA (fragments rebuilt from the PTX layout), and the Hopper one
//               (nvfp4_mm_sm90.cu) through tests/cuda_emu/cuda/common/sm90.cuh, whose copies and
//               wgmma MMAs run as late (or, with EMU_EAGER_COPIES=1, the copies as early) as the
//               hardware may, through the 128-byte swizzle of the real descriptors: a wrong
//               layout, a missing wait, or a tile rewritten while an MMA reads it fails here.
//               Operands are random codes with scale bytes over the whole E4M3 range (zero,
//               subnormal, 448); shapes cover tile tails and more k slices than stages.
// Build: see tests/test_cuda_emulated.py. Run with any argument for the quick suite.
#include "emu.h"  // first: it stands in for the CUDA runtime

#include "cuda/nvfp4.cu"
#include "cuda/nvfp4_mm_sm90.cu"

#define NEMOCORE_CPU_ISA base
#include "cpu/kernels/nvfp4_dequantize.cpp"
#include "cpu/kernels/nvfp4_quantize.cpp"

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using nemocore::DType;
using nemocore::Nvfp4Compat;

static std::mt19937_64 rng(2025);
static int failures = 0, cases = 0;

static double randn() { return std::normal_distribution<double>(0.0, 1.0)(rng); }

// Row-scaled normals with a zero block and a -0.0, as float; converted per dtype below.
static std::vector<float> sample(int64_t rows, int64_t cols) {
  std::vector<float> x(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    const double scale = std::ldexp(1.0, static_cast<int>(rng() % 13) - 6);
    for (int64_t c = 0; c < cols; ++c) x[r * cols + c] = static_cast<float>(randn() * scale);
  }
  if (rows > 1 && cols >= 32)
    for (int c = 16; c < 32; ++c) x[cols + c] = 0.f;
  if (!x.empty()) x[0] = -0.f;
  return x;
}

static uint16_t to_bits(float f, DType t) {
  if (t == DType::kBFloat16) return __bfloat16_as_ushort(__float2bfloat16_rn(f));
  return __half_as_ushort(__float2half_rn(f));
}

static float amax_of(const std::vector<float>& x, DType t) {
  float m = 0.f;
  for (float v : x) {
    float w = v;
    if (t == DType::kBFloat16) w = __bfloat162float(__float2bfloat16_rn(v));
    if (t == DType::kFloat16) w = __half2float(__float2half_rn(v));
    m = std::fmax(m, std::fabs(w));
  }
  return m;
}

struct Quantized {
  std::vector<uint8_t> q, s;
  float ts = -1.f;
};

static void fail(const std::string& what) {
  if (++failures <= 20) printf("FAIL %s\n", what.c_str());
}

static void quantize_case(int64_t rows, int64_t cols, DType dtype, Nvfp4Compat compat,
                          bool block_2d, bool stochastic) {
  ++cases;
  const std::vector<float> xf = sample(rows, cols);
  std::vector<uint16_t> x16(xf.size());
  for (size_t i = 0; i < xf.size(); ++i) x16[i] = to_bits(xf[i], dtype);
  const int64_t nb = (cols + 15) / 16;
  std::vector<float> rand(rows * nb * 16);
  for (auto& u : rand) u = std::uniform_real_distribution<float>(0.f, 1.f)(rng);
  nemocore::Nvfp4QuantizeParams p;
  p.x = dtype == DType::kFloat32 ? static_cast<const void*>(xf.data()) : x16.data();
  p.dtype = dtype, p.rows = rows, p.cols = cols, p.row_stride = cols;
  p.amax = amax_of(xf, dtype), p.compat = compat, p.block_2d = block_2d;
  p.rand = stochastic ? rand.data() : nullptr;
  Quantized cpu, gpu;
  for (Quantized* out : {&cpu, &gpu}) {
    out->q.assign(rows * nb * 8, 0xEE), out->s.assign(rows * nb, 0xEE);
    p.qdata = out->q.data(), p.scales = out->s.data(), p.tensor_scale = &out->ts;
    if (out == &cpu)
      nemocore::cpu::base::nvfp4_quantize(p);
    else
      nemocore::cuda::nvfp4_quantize(p);
  }
  const std::string where = "quantize " + std::to_string(rows) + "x" + std::to_string(cols) +
                            " dtype " + std::to_string(int(dtype)) + " compat " +
                            std::to_string(int(compat)) + (block_2d ? " 2d" : "") +
                            (stochastic ? " sr" : "");
  if (cpu.q != gpu.q) return fail(where + ": codes differ");
  if (cpu.s != gpu.s) return fail(where + ": scales differ");
  if (std::memcmp(&cpu.ts, &gpu.ts, 4) != 0) return fail(where + ": tensor scale differs");
  // Dequantize both ways, float32 and bfloat16.
  for (DType out_t : {DType::kFloat32, DType::kBFloat16}) {
    nemocore::Nvfp4DequantizeParams d;
    d.qdata = cpu.q.data(), d.scales = cpu.s.data(), d.tensor_scale = &cpu.ts;
    d.qdata_cols = nb * 8, d.rows = rows, d.cols = cols, d.out_dtype = out_t;
    std::vector<float> a(rows * cols, 7.f), b(rows * cols, 9.f);
    d.out = a.data();
    nemocore::cpu::base::nvfp4_dequantize(d);
    d.out = b.data();
    nemocore::cuda::nvfp4_dequantize(d);
    const size_t bytes = rows * cols * (out_t == DType::kFloat32 ? 4 : 2);
    if (std::memcmp(a.data(), b.data(), bytes) != 0) return fail(where + ": dequantize differs");
  }
}

// abs_max: the CUDA kernel (16-byte vectors for one aligned contiguous run, elements for
// strided rows or a misaligned start) against the CPU one, with an inf or NaN placed anywhere.
static void abs_max_case(int64_t rows, int64_t cols, int64_t stride, int64_t offset, DType dtype,
                         float poison) {
  ++cases;
  std::vector<float> xf = sample(rows, stride);
  if (poison != 0.f) xf[(rng() % rows) * stride + rng() % cols] = poison;
  std::vector<uint16_t> x16(xf.size() + 8);
  for (size_t i = 0; i < xf.size(); ++i) x16[i + offset] = to_bits(xf[i], dtype);
  std::vector<float> xf_off(xf.size() + 8);
  std::copy(xf.begin(), xf.end(), xf_off.begin() + offset);
  nemocore::AbsMaxParams p;
  p.x = dtype == DType::kFloat32 ? static_cast<const void*>(xf_off.data() + offset)
                                 : x16.data() + offset;
  p.dtype = dtype, p.rows = rows, p.cols = cols, p.row_stride = stride;
  uint32_t cpu = 0xdead, gpu = 0;
  p.out_bits = &cpu;
  nemocore::cpu::base::abs_max(p);
  p.out_bits = &gpu;
  nemocore::cuda::abs_max(p);
  // NaN payloads may differ (fp16 -> float widens them): compare "not finite" as a class
  const bool same = cpu == gpu || (cpu >= 0x7f800000u && gpu >= 0x7f800000u &&
                                   (cpu == 0x7f800000u) == (gpu == 0x7f800000u));
  if (!same) {
    fail("abs_max " + std::to_string(rows) + "x" + std::to_string(cols) + " stride " +
         std::to_string(stride) + " offset " + std::to_string(offset) + " dtype " +
         std::to_string(int(dtype)) + ": cpu " + std::to_string(cpu) + " cuda " +
         std::to_string(gpu));
  }
}

// The short RNE form (e2m1_code_rne) against e2m1_code: every bf16 input (ties to even
// included: x * 1 hits every E2M1 midpoint) times multipliers from 2^-20 to 2^20, both
// conventions; NaN input only through 0 * inf, which the kernels keep off the short form.
static void e2m1_rne_case() {
  ++cases;
  namespace fp4 = nemocore::cuda::nvfp4;
  std::vector<float> encs = {1.f, 0.5f, 2.f, 0x1p-20f, 0x1p20f, 3.f, 1.f / 3.f, 0.f};
  for (int i = 0; i < 40; ++i)
    encs.push_back(std::ldexp(1.f + float(rng() % 1000) / 1000.f, int(rng() % 41) - 20));
  for (float enc : encs) {
    for (uint32_t u = 0; u < 0x10000; ++u) {
      const float x = fp4::float_of(u << 16);
      if (std::isnan(x)) continue;
      for (int compat : {0, 1}) {
        const uint8_t want = fp4::e2m1_code(x, enc, 0.f, false, compat);
        const uint8_t got = fp4::e2m1_code_rne(x, enc, compat);
        if (got != want) {
          return fail("e2m1_code_rne(" + std::to_string(x) + ", " + std::to_string(enc) +
                      ", compat " + std::to_string(compat) + "): got " + std::to_string(got) +
                      " want " + std::to_string(want));
        }
      }
    }
  }
}

// A random NVFP4 operand (rows, kp): any codes (both signs, -0 included), scale bytes mostly
// near 1 and now and then 0, subnormal or 448.
static Quantized random_operand(int64_t rows, int64_t kp) {
  Quantized o;
  o.q.resize(rows * kp / 2), o.s.resize(rows * kp / 16);
  for (auto& b : o.q) b = static_cast<uint8_t>(rng());
  for (auto& b : o.s) {
    const uint64_t pick = rng() % 16;
    b = pick == 0 ? 0 : pick == 1 ? 1 + rng() % 7 : pick == 2 ? 126 : 48 + rng() % 24;
  }
  o.ts = std::ldexp(1.f + float(rng() % 100) / 100.f, int(rng() % 7) - 3);
  return o;
}

// float64 value of element (r, k) of an NVFP4 operand, before the tensor scale.
static double element(const Quantized& t, int64_t kp, int64_t r, int64_t k) {
  const int code = (t.q[r * kp / 2 + k / 2] >> (4 * (k & 1))) & 15;
  const double mag = nemocore::cuda::nvfp4::e2m1_value(code) *
                     double(nemocore::cuda::nvfp4::e4m3_decode(t.s[r * kp / 16 + k / 16]));
  return code & 8 ? -mag : mag;
}

static void mm_case(int64_t m, int64_t n, int64_t kp, bool w4a16, DType out_dtype, bool sm90) {
  ++cases;
  const Quantized a = random_operand(m, kp), b = random_operand(n, kp);
  std::vector<uint16_t> a16(m * kp);
  for (auto& v : a16) v = to_bits(static_cast<float>(randn()), DType::kBFloat16);
  nemocore::Nvfp4MmParams p;
  p.m = m, p.n = n, p.kp = kp;
  if (w4a16) {
    p.a_bf16 = a16.data();
  } else {
    p.a_qdata = a.q.data(), p.a_scales = a.s.data(), p.a_tensor_scale = &a.ts;
  }
  p.b_qdata = b.q.data(), p.b_scales = b.s.data(), p.b_tensor_scale = &b.ts;
  const bool f32 = out_dtype == DType::kFloat32;
  std::vector<float> out32(m * n + 4, 555.f);
  std::vector<uint16_t> out16(m * n + 4, 0x4321);
  p.out = f32 ? static_cast<void*>(out32.data()) : out16.data();
  p.out_dtype = out_dtype;
  const std::string where = std::string(sm90 ? "nvfp4_mm_sm90 " : "nvfp4_mm ") + std::to_string(m) +
                            "x" + std::to_string(n) + "x" + std::to_string(kp) +
                            (w4a16 ? " w4a16" : " w4a4") + (f32 ? " f32" : " bf16");
  if (sm90) {
    if (!nemocore::cuda::nvfp4_mm_sm90_supports(p)) return fail(where + ": not supported");
    nemocore::cuda::nvfp4_mm_sm90(p);
  } else {
    nemocore::cuda::nvfp4_mm(p);
  }
  const double alpha = (w4a16 ? 1.0 : double(a.ts)) * double(b.ts);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double want = 0, mag = 0;
      for (int64_t k = 0; k < kp; ++k) {
        const double av = w4a16 ? double(__bfloat162float(__ushort_as_bfloat16(a16[i * kp + k])))
                                : element(a, kp, i, k);
        want += av * element(b, kp, j, k), mag += std::fabs(av * element(b, kp, j, k));
      }
      want *= alpha, mag *= alpha;
      const double got =
          f32 ? out32[i * n + j] : double(__bfloat162float(__ushort_as_bfloat16(out16[i * n + j])));
      // fp32 accumulation; bf16 output rounds once more (half an ulp: 2^-9 relative)
      const double tol = 1e-5 * mag + (f32 ? 0.0 : std::fabs(want) / 256) + 1e-30;
      if (!(std::fabs(got - want) <= tol)) {
        return fail(where + " at (" + std::to_string(i) + ", " + std::to_string(j) + "): got " +
                    std::to_string(got) + " want " + std::to_string(want));
      }
    }
  }
  for (int e = 0; e < 4; ++e) {
    if (f32 ? out32[m * n + e] != 555.f : out16[m * n + e] != 0x4321)
      return fail(where + ": wrote past the output");
  }
}

// Which operands the Hopper kernel takes: the dispatch routes the others to the portable one.
static void sm90_eligibility() {
  ++cases;
  std::vector<uint8_t> q(4096), s(512);
  std::vector<float> out(64);
  float ts = 1.f;
  nemocore::Nvfp4MmParams p;
  p.m = 2, p.n = 2, p.kp = 64, p.a_qdata = q.data(), p.a_scales = s.data();
  p.a_tensor_scale = &ts, p.b_qdata = q.data(), p.b_scales = s.data(), p.b_tensor_scale = &ts;
  p.out = out.data();
  if (!nemocore::cuda::nvfp4_mm_sm90_supports(p)) fail("sm90 eligibility: kp 64 refused");
  p.kp = 48;
  if (nemocore::cuda::nvfp4_mm_sm90_supports(p)) fail("sm90 eligibility: kp 48 accepted");
  bool threw = false;
  try {
    nemocore::cuda::nvfp4_mm_sm90(p);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  if (!threw) fail("sm90 eligibility: nvfp4_mm_sm90 ran on kp 48");
  p.kp = 128, p.b_qdata = q.data() + 8;
  if (nemocore::cuda::nvfp4_mm_sm90_supports(p)) fail("sm90 eligibility: misaligned codes");
  p.b_qdata = q.data(), p.b_scales = s.data() + 2;
  if (nemocore::cuda::nvfp4_mm_sm90_supports(p)) fail("sm90 eligibility: misaligned scales");
}

int main(int argc, char** argv) {
  const bool quick = argc > 1;
  const int64_t shapes[][2] = {{1, 1}, {3, 17}, {16, 64}, {33, 100}, {40, 300}};
  for (auto [rows, cols] : shapes)
    for (DType t : {DType::kFloat32, DType::kBFloat16, DType::kFloat16})
      for (Nvfp4Compat c : {Nvfp4Compat::kTransformerEngine, Nvfp4Compat::kTorchao})
        for (bool b2 : {false, true})
          for (bool sr : {false, true})
            if (!quick || t != DType::kFloat16 || !sr) quantize_case(rows, cols, t, c, b2, sr);
  e2m1_rne_case();
  // (rows, cols, row stride, element offset of the start)
  const int64_t abs_shapes[][4] = {{1, 1, 1, 0},      {3, 17, 17, 0},    {64, 64, 64, 0},
                                   {33, 100, 100, 1}, {40, 300, 320, 0}, {700, 96, 96, 0}};
  for (auto [rows, cols, stride, offset] : abs_shapes)
    for (DType t : {DType::kFloat32, DType::kBFloat16, DType::kFloat16})
      for (float poison : {0.f, INFINITY, -INFINITY, NAN})
        abs_max_case(rows, cols, stride, offset, t, poison);
  const int64_t mms[][3] = {{1, 1, 16}, {5, 70, 48}, {64, 64, 64}, {130, 9, 32}};
  for (auto [m, n, kp] : mms)
    for (bool w4a16 : {false, true}) mm_case(m, n, kp, w4a16, DType::kFloat32, false);
  mm_case(33, 20, 80, true, DType::kBFloat16, false);
  sm90_eligibility();
  // Hopper, M <= 64 (64 x 64 tiles, 10 stages): one row and column; column tails; 12 slices.
  // M > 64 (128 x 128, 5 stages): exact tiles; row and column tails; 7 slices.
  const int64_t sm90_mms[][3] = {{1, 1, 64},     {5, 70, 128},  {16, 130, 768},
                                 {128, 128, 64}, {130, 9, 448}, {200, 260, 192}};
  for (auto [m, n, kp] : sm90_mms)
    for (bool w4a16 : {false, true})
      for (DType out : {DType::kFloat32, DType::kBFloat16})
        if (!quick || out == DType::kFloat32 || m == 5) mm_case(m, n, kp, w4a16, out, true);
  printf("%s (%d failures, %d cases, %ld launches)\n", failures ? "FAILED" : "OK", failures, cases,
         emu_launches);
  return failures ? 1 : 0;
}
