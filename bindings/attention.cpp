// pybind11 glue for decode-time (bifurcated) attention: unpack, check, release the GIL, launch.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>

#include <string>

#include "launch.h"
#include "nemocore/attention.h"
#include "tensor_view.h"

// CMake defines NEMOCORE_WITH_CUDA_ATTENTION when csrc/cuda/attention_decode.cu is built.
#if defined(NEMOCORE_WITH_CUDA) && defined(NEMOCORE_WITH_CUDA_ATTENTION)
#define NEMOCORE_ATTENTION_CUDA (&::nemocore::cuda::attention_decode)
#else
#define NEMOCORE_ATTENTION_CUDA nullptr
#endif

namespace py = pybind11;

namespace nemocore::bindings {
namespace {

DType acc_dtype_for(DType io) { return io == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32; }

// A (rows,) int64 index tensor on q's device whose entries lie in [lo, hi] (checked on the CPU;
// the Python op checks CUDA ones before the launch).
const int64_t* index_of(const py::handle& obj, const char* name, int64_t rows, int64_t lo,
                        int64_t hi, const TensorView& q) {
  auto t = optional_view_of(obj, name);
  if (!t) return nullptr;
  check_shape(*t, name, {rows});
  check_dtype(*t, name, DType::kInt64);
  check_same_device(*t, name, q, "q");
  if (rows > 0) check_contiguous(*t, name);
  const auto* v = static_cast<const int64_t*>(t->data);
  if (!t->is_cuda) {
    for (int64_t i = 0; i < rows; ++i) {
      check(v[i] >= lo && v[i] <= hi, std::string(name) + "[" + std::to_string(i) +
                                          "] = " + std::to_string(v[i]) + " is outside [" +
                                          std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
  }
  return v;
}

void attention_decode(const py::handle& q_obj, const py::handle& kc_obj, const py::handle& vc_obj,
                      const py::handle& ctx_index, const py::handle& ctx_lens,
                      const py::handle& kd_obj, const py::handle& vd_obj,
                      const py::handle& dec_lens, const py::handle& out_obj,
                      const py::handle& lse_obj, double scale,
                      const std::function<py::object(int64_t)>& alloc_workspace, int num_threads,
                      uintptr_t stream) {
  const TensorView q = view_of(q_obj, "q");
  check(q.dim() == 4, "q: expected (batch, nheads, q_len, headdim), got " + q.describe());
  check_float_dtype(q, "q");
  AttentionDecodeParams p;
  p.batch = q.size(0), p.nheads = q.size(1), p.q_len = q.size(2), p.headdim = q.size(3);
  p.io_dtype = q.dtype, p.scale = scale;
  p.q = q.data;
  p.q_batch_stride = q.stride(0), p.q_head_stride = q.stride(1);
  p.q_seq_stride = q.stride(2), p.q_dim_stride = q.stride(3);
  p.nkv_heads = 0;
  auto kc = optional_view_of(kc_obj, "k_ctx"), vc = optional_view_of(vc_obj, "v_ctx");
  auto kd = optional_view_of(kd_obj, "k_dec"), vd = optional_view_of(vd_obj, "v_dec");
  check(kc.has_value() == vc.has_value(), "k_ctx and v_ctx: give both or neither");
  check(kd.has_value() == vd.has_value(), "k_dec and v_dec: give both or neither");
  check(kc || kd, "attention needs keys: give k_ctx/v_ctx, k_dec/v_dec or both");
  if (kc) {
    check(kc->dim() == 4,
          "k_ctx: expected (num_contexts, nkv_heads, ctx_len, headdim), got " + kc->describe());
    p.num_contexts = kc->size(0), p.nkv_heads = kc->size(1), p.ctx_len = kc->size(2);
    for (const auto* t : {&*kc, &*vc}) {
      const char* name = t == &*kc ? "k_ctx" : "v_ctx";
      check_shape(*t, name, {p.num_contexts, p.nkv_heads, p.ctx_len, p.headdim});
      check_dtype(*t, name, q.dtype);
      check_same_device(*t, name, q, "q");
    }
    p.k_ctx = kc->data, p.v_ctx = vc->data;
    p.kc_ctx_stride = kc->stride(0), p.kc_head_stride = kc->stride(1);
    p.kc_seq_stride = kc->stride(2), p.kc_dim_stride = kc->stride(3);
    p.vc_ctx_stride = vc->stride(0), p.vc_head_stride = vc->stride(1);
    p.vc_seq_stride = vc->stride(2), p.vc_dim_stride = vc->stride(3);
    p.ctx_index = index_of(ctx_index, "ctx_index", p.batch, 0, p.num_contexts - 1, q);
    p.ctx_lens = index_of(ctx_lens, "ctx_lens", p.num_contexts, 0, p.ctx_len, q);
  }
  if (kd) {
    check(kd->dim() == 4,
          "k_dec: expected (batch, nkv_heads, max_dec_len, headdim), got " + kd->describe());
    if (!kc) p.nkv_heads = kd->size(1);
    p.max_dec_len = kd->size(2);
    for (const auto* t : {&*kd, &*vd}) {
      const char* name = t == &*kd ? "k_dec" : "v_dec";
      check_shape(*t, name, {p.batch, p.nkv_heads, p.max_dec_len, p.headdim});
      check_dtype(*t, name, q.dtype);
      check_same_device(*t, name, q, "q");
    }
    p.k_dec = kd->data, p.v_dec = vd->data;
    p.kd_batch_stride = kd->stride(0), p.kd_head_stride = kd->stride(1);
    p.kd_seq_stride = kd->stride(2), p.kd_dim_stride = kd->stride(3);
    p.vd_batch_stride = vd->stride(0), p.vd_head_stride = vd->stride(1);
    p.vd_seq_stride = vd->stride(2), p.vd_dim_stride = vd->stride(3);
    p.dec_lens = index_of(dec_lens, "dec_lens", p.batch, 0, p.max_dec_len, q);
  }
  check(p.nkv_heads > 0 && p.nheads % p.nkv_heads == 0,
        "nheads = " + std::to_string(p.nheads) +
            " must be a multiple of nkv_heads = " + std::to_string(p.nkv_heads));
  const TensorView out = view_of(out_obj, "out"), lse = view_of(lse_obj, "lse");
  check_shape(out, "out", q.shape);
  check_dtype(out, "out", q.dtype);
  check_same_device(out, "out", q, "q");
  check_shape(lse, "lse", {p.batch, p.nheads, p.q_len});
  check_dtype(lse, "lse", acc_dtype_for(q.dtype));
  check_same_device(lse, "lse", q, "q");
  if (p.batch * p.nheads * p.q_len > 0) check_contiguous(out, "out"), check_contiguous(lse, "lse");
  p.out = out.data, p.lse = lse.data;
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = reinterpret_cast<void*>(stream);
  py::object workspace;  // kept alive until the launch has been queued
#if defined(NEMOCORE_WITH_CUDA) && defined(NEMOCORE_WITH_CUDA_ATTENTION)
  if (q.is_cuda) {
    const int64_t elems = cuda::attention_decode_cuda_workspace_elems(p);
    if (elems > 0) {
      workspace = alloc_workspace(elems);
      p.workspace = view_of(workspace, "workspace").data;
    }
  }
#else
  (void)alloc_workspace;
#endif
  if (p.batch * p.nheads * p.q_len == 0) return;
  launch(q, "bifurcated_attention", &cpu::attention_decode, NEMOCORE_ATTENTION_CUDA, p);
}

}  // namespace

void register_attention(py::module_& m) {
  m.def("attention_decode", &attention_decode, py::arg("q"), py::arg("k_ctx"), py::arg("v_ctx"),
        py::arg("ctx_index"), py::arg("ctx_lens"), py::arg("k_dec"), py::arg("v_dec"),
        py::arg("dec_lens"), py::arg("out"), py::arg("lse"), py::arg("scale"),
        py::arg("alloc_workspace"), py::arg("num_threads"), py::arg("stream"),
        "Decode attention over a shared context and per-sample decoded keys into out and lse; "
        "alloc_workspace(n) returns a tensor of n acc elements on q's device (CUDA scratch).");
}

}  // namespace nemocore::bindings
