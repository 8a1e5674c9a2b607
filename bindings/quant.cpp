// pybind11 glue for the NVFP4 kernels (abs-max, quantize, dequantize, dequantizing GEMM):
// unpack, check, release the GIL, launch. No logic; python/nemocore/quant/nvfp4.py allocates
// the outputs.
#include <pybind11/pybind11.h>

#include <string>

#include "launch.h"
#include "nemocore/quant.h"
#include "tensor_view.h"

// CMake defines NEMOCORE_WITH_CUDA_QUANT when csrc/cuda/nvfp4_*.cu are part of the build;
// otherwise CUDA tensors get a clear error.
#if defined(NEMOCORE_WITH_CUDA) && defined(NEMOCORE_WITH_CUDA_QUANT)
#define NEMOCORE_QUANT_CUDA(fn) (&::nemocore::cuda::fn)
#else
#define NEMOCORE_QUANT_CUDA(fn) nullptr
#endif

namespace py = pybind11;

namespace nemocore::bindings {
namespace {

// A 2D float32/bfloat16/float16 tensor with contiguous rows.
void check_rows(const TensorView& x, const char* name) {
  check(x.dim() == 2, std::string(name) + ": expected (rows, cols), got " + x.describe());
  check(x.dtype == DType::kFloat32 || x.dtype == DType::kBFloat16 || x.dtype == DType::kFloat16,
        std::string(name) + ": expected float32, bfloat16 or float16, got " + x.describe());
  check(x.size(1) <= 1 || x.stride(1) == 1,
        std::string(name) + ": the last dim must be contiguous, got " + x.describe());
}

void check_u8(const TensorView& t, const char* name, const std::vector<int64_t>& shape,
              const TensorView& ref) {
  check_shape(t, name, shape);
  check_dtype(t, name, DType::kUInt8);
  check_same_device(t, name, ref, "x");
  check_contiguous(t, name);
}

void check_scalar_f32(const TensorView& t, const char* name, const TensorView& ref) {
  check(t.dim() == 0 || (t.dim() == 1 && t.size(0) == 1),
        std::string(name) + ": expected one float32 value, got " + t.describe());
  check_dtype(t, name, DType::kFloat32);
  check_same_device(t, name, ref, "x");
}

// An NVFP4 GEMM operand of `rows` rows of `kp` values: its codes, block scales and tensor scale
// (tensors named `side` + "_qdata", ...), checked to live where `ref` does.
struct Nvfp4Operand {
  const uint8_t* qdata;
  const uint8_t* scales;
  const float* tensor_scale;
};

Nvfp4Operand nvfp4_operand(const py::handle& q_obj, const py::handle& s_obj,
                           const py::handle& ts_obj, const std::string& side, int64_t rows,
                           int64_t kp, const TensorView& ref) {
  const std::string qn = side + "_qdata", sn = side + "_scales", tn = side + "_tensor_scale";
  const TensorView q = view_of(q_obj, qn.c_str()), s = view_of(s_obj, sn.c_str());
  const TensorView ts = view_of(ts_obj, tn.c_str());
  check_u8(q, qn.c_str(), {rows, kp / 2}, ref);
  check_u8(s, sn.c_str(), {rows, kp / 16}, ref);
  check_scalar_f32(ts, tn.c_str(), ref);
  return {static_cast<const uint8_t*>(q.data), static_cast<const uint8_t*>(s.data),
          static_cast<const float*>(ts.data)};
}

void abs_max(const py::handle& x_obj, const py::handle& out_obj, int num_threads,
             uintptr_t stream) {
  const TensorView x = view_of(x_obj, "x"), out = view_of(out_obj, "out");
  check_rows(x, "x");
  check(out.dim() == 1 && out.size(0) == 1 && out.dtype == DType::kInt32,
        "out: expected (1,) int32, got " + out.describe());
  check_same_device(out, "out", x, "x");
  AbsMaxParams p;
  p.x = x.data, p.dtype = x.dtype, p.rows = x.size(0), p.cols = x.size(1);
  p.row_stride = x.stride(0);
  p.out_bits = static_cast<uint32_t*>(out.data);
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = reinterpret_cast<void*>(stream);
  launch(x, "nvfp4 abs_max", &cpu::abs_max, NEMOCORE_QUANT_CUDA(abs_max), p);
}

void nvfp4_quantize(const py::handle& x_obj, double amax, int compat, bool block_2d,
                    const py::handle& rand_obj, const py::handle& qdata_obj,
                    const py::handle& scales_obj, const py::handle& tensor_scale_obj,
                    int num_threads, uintptr_t stream, const py::handle& amax_bits_obj) {
  const TensorView x = view_of(x_obj, "x");
  check_rows(x, "x");
  check(compat == 0 || compat == 1, "compat: expected 0 (te) or 1 (torchao)");
  Nvfp4QuantizeParams p;
  p.x = x.data, p.dtype = x.dtype, p.rows = x.size(0), p.cols = x.size(1);
  p.row_stride = x.stride(0);
  const int64_t nb = (p.cols + 15) / 16;
  p.amax = static_cast<float>(amax);
  p.compat = static_cast<Nvfp4Compat>(compat);
  p.block_2d = block_2d;
  if (const auto rand = optional_view_of(rand_obj, "rand")) {
    check_shape(*rand, "rand", {p.rows, nb * 16});
    check_dtype(*rand, "rand", DType::kFloat32);
    check_same_device(*rand, "rand", x, "x");
    check_contiguous(*rand, "rand");
    p.rand = static_cast<const float*>(rand->data);
  }
  const TensorView q = view_of(qdata_obj, "qdata"), s = view_of(scales_obj, "scales");
  const TensorView ts = view_of(tensor_scale_obj, "tensor_scale");
  check_u8(q, "qdata", {p.rows, nb * 8}, x);
  check_u8(s, "scales", {p.rows, nb}, x);
  check_scalar_f32(ts, "tensor_scale", x);
  p.qdata = static_cast<uint8_t*>(q.data), p.scales = static_cast<uint8_t*>(s.data);
  p.tensor_scale = static_cast<float*>(ts.data);
  if (const auto bits = optional_view_of(amax_bits_obj, "amax_bits")) {  // CPU: amax found here
    check(!x.is_cuda, "amax_bits: CPU only; on CUDA pass amax from abs_max");
    check(bits->dim() == 1 && bits->size(0) == 1 && bits->dtype == DType::kInt32,
          "amax_bits: expected (1,) int32, got " + bits->describe());
    check_same_device(*bits, "amax_bits", x, "x");
    p.amax_bits = static_cast<uint32_t*>(bits->data);
  }
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = reinterpret_cast<void*>(stream);
  launch(x, "nvfp4_quantize", &cpu::nvfp4_quantize, NEMOCORE_QUANT_CUDA(nvfp4_quantize), p);
}

void nvfp4_dequantize(const py::handle& qdata_obj, const py::handle& scales_obj,
                      const py::handle& tensor_scale_obj, const py::handle& out_obj,
                      int num_threads, uintptr_t stream) {
  const TensorView q = view_of(qdata_obj, "qdata"), out = view_of(out_obj, "out");
  check(q.dim() == 2, "qdata: expected (rows, Kp/2) uint8, got " + q.describe());
  const int64_t rows = q.size(0), half = q.size(1);
  check(half % 8 == 0, "qdata: the packed width must be a multiple of 8 bytes (16-blocks)");
  check_u8(q, "qdata", {rows, half}, q);
  check_u8(view_of(scales_obj, "scales"), "scales", {rows, half / 8}, q);
  const TensorView s = view_of(scales_obj, "scales"),
                   ts = view_of(tensor_scale_obj, "tensor_scale");
  check_scalar_f32(ts, "tensor_scale", q);
  check(out.dim() == 2 && out.size(0) == rows && out.size(1) <= half * 2 &&
            out.size(1) > half * 2 - 16,
        "out: expected (rows, cols) with cols within the last 16-block of qdata, got " +
            out.describe());
  check_same_device(out, "out", q, "qdata");
  check_contiguous(out, "out");
  Nvfp4DequantizeParams p;
  p.qdata = static_cast<const uint8_t*>(q.data), p.scales = static_cast<const uint8_t*>(s.data);
  p.tensor_scale = static_cast<const float*>(ts.data);
  p.qdata_cols = half, p.rows = rows, p.cols = out.size(1), p.out_dtype = out.dtype;
  p.out = out.data;
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = reinterpret_cast<void*>(stream);
  launch(q, "nvfp4 dequantize", &cpu::nvfp4_dequantize, NEMOCORE_QUANT_CUDA(nvfp4_dequantize), p);
}

// out (M, N) = alpha * A @ B^T, B NVFP4 (N, Kp), A NVFP4 (M, Kp) or bf16 (M, Kp) (a_bf16).
void nvfp4_mm(const py::handle& a_q, const py::handle& a_s, const py::handle& a_ts,
              const py::handle& a_bf16, const py::handle& b_q, const py::handle& b_s,
              const py::handle& b_ts, const py::handle& out_obj, uintptr_t stream) {
  const TensorView bq = view_of(b_q, "b_qdata"), out = view_of(out_obj, "out");
  check(bq.dim() == 2 && bq.size(1) % 8 == 0,
        "b_qdata: expected (N, Kp/2) uint8, got " + bq.describe());
  Nvfp4MmParams p;
  p.n = bq.size(0), p.kp = bq.size(1) * 2;
  check(out.dim() == 2 && out.size(1) == p.n, "out: expected (M, N), got " + out.describe());
  p.m = out.size(0);
  const Nvfp4Operand b = nvfp4_operand(b_q, b_s, b_ts, "b", p.n, p.kp, bq);
  p.b_qdata = b.qdata, p.b_scales = b.scales, p.b_tensor_scale = b.tensor_scale;
  if (const auto a = optional_view_of(a_bf16, "a_bf16")) {
    check_shape(*a, "a_bf16", {p.m, p.kp});
    check_dtype(*a, "a_bf16", DType::kBFloat16);
    check_same_device(*a, "a_bf16", bq, "b_qdata");
    check_contiguous(*a, "a_bf16");
    p.a_bf16 = a->data;
  } else {
    const Nvfp4Operand aq = nvfp4_operand(a_q, a_s, a_ts, "a", p.m, p.kp, bq);
    p.a_qdata = aq.qdata, p.a_scales = aq.scales, p.a_tensor_scale = aq.tensor_scale;
  }
  check(out.dtype == DType::kFloat32 || out.dtype == DType::kBFloat16,
        "out: expected float32 or bfloat16, got " + out.describe());
  check_same_device(out, "out", bq, "b_qdata");
  check_contiguous(out, "out");
  p.out = out.data, p.out_dtype = out.dtype;
  p.stream = reinterpret_cast<void*>(stream);
  check(bq.is_cuda,
        "nvfp4_mm: the kernel is CUDA only; on the CPU nemocore.quant.nvfp4_mm "
        "dequantizes and runs an fp32 GEMM");
  launch(bq, "nvfp4_mm", static_cast<KernelFn<Nvfp4MmParams>::type>(nullptr),
         NEMOCORE_QUANT_CUDA(nvfp4_mm), p);
}

}  // namespace

void register_quant(py::module_& m) {
  m.def("abs_max", &abs_max, py::arg("x"), py::arg("out"), py::arg("num_threads"),
        py::arg("stream"),
        "max |x| of a (rows, cols) float tensor as int32 bits into out (CUDA: maxed into "
        "it, so pass zeros).");
  m.def("nvfp4_quantize", &nvfp4_quantize, py::arg("x"), py::arg("amax"), py::arg("compat"),
        py::arg("block_2d"), py::arg("rand"), py::arg("qdata"), py::arg("scales"),
        py::arg("tensor_scale"), py::arg("num_threads"), py::arg("stream"),
        py::arg("amax_bits") = py::none(),
        "NVFP4-quantize x (rows, cols) into qdata, scales and tensor_scale; with amax_bits "
        "(CPU), find amax in the same call (written there as abs_max does; no quantization "
        "when it is not finite).");
  m.def("nvfp4_dequantize", &nvfp4_dequantize, py::arg("qdata"), py::arg("scales"),
        py::arg("tensor_scale"), py::arg("out"), py::arg("num_threads"), py::arg("stream"),
        "NVFP4 qdata/scales/tensor_scale into out (rows, cols).");
  m.def("nvfp4_mm", &nvfp4_mm, py::arg("a_qdata"), py::arg("a_scales"), py::arg("a_tensor_scale"),
        py::arg("a_bf16"), py::arg("b_qdata"), py::arg("b_scales"), py::arg("b_tensor_scale"),
        py::arg("out"), py::arg("stream"),
        "CUDA: out = A @ B^T with B NVFP4 and A NVFP4 or bf16 (a_bf16), dequantized in the "
        "GEMM's main loop.");
}

}  // namespace nemocore::bindings
