// pybind11 glue for causal conv1d: unpack, check, release the GIL, launch. No logic.
#include <pybind11/pybind11.h>

#include <stdexcept>

#include "launch.h"
#include "nemocore/causal_conv1d.h"
#include "tensor_view.h"

#ifdef NEMOCORE_WITH_CUDA
#define NEMOCORE_CUDA_FN(fn) (&::nemocore::cuda::fn)
#else
#define NEMOCORE_CUDA_FN(fn) nullptr
#endif

namespace py = pybind11;

namespace nemocore::bindings {
namespace {

// Weights, biases and their gradients are float32, or float64 for float64 activations.
DType weight_dtype_for(DType io) {
  return io == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
}

struct Conv1dArgs {
  TensorView x, weight;
  std::optional<TensorView> bias;
  int64_t batch, dim, seqlen, width;
};

// Checks shared by every entry point: x (b, C, L) and weight (C, K), bias (C,).
Conv1dArgs check_conv_args(const py::handle& x_obj, const py::handle& w_obj,
                           const py::handle& b_obj) {
  Conv1dArgs a{
      view_of(x_obj, "x"), view_of(w_obj, "weight"), optional_view_of(b_obj, "bias"), 0, 0, 0, 0};
  check(a.x.dim() == 3, "x: expected 3 dimensions (batch, dim, seqlen), got " + a.x.describe());
  check_float_dtype(a.x, "x");
  a.batch = a.x.size(0), a.dim = a.x.size(1), a.seqlen = a.x.size(2);
  check(a.weight.dim() == 2 && a.weight.size(0) == a.dim,
        "weight: expected shape (dim, width) with dim = " + std::to_string(a.dim) + ", got " +
            a.weight.describe());
  a.width = a.weight.size(1);
  check(a.width >= 1, "weight: width must be at least 1, got " + a.weight.describe());
  check_dtype(a.weight, "weight", weight_dtype_for(a.x.dtype));
  check_contiguous(a.weight, "weight");
  check_same_device(a.weight, "weight", a.x, "x");
  if (a.bias) {
    check_shape(*a.bias, "bias", {a.dim});
    check_dtype(*a.bias, "bias", weight_dtype_for(a.x.dtype));
    check_contiguous(*a.bias, "bias");
    check_same_device(*a.bias, "bias", a.x, "x");
  }
  return a;
}

// A (b, C, n) tensor of the io dtype on x's device.
void check_io(const TensorView& t, const char* name, const Conv1dArgs& a, int64_t n) {
  check_shape(t, name, {a.batch, a.dim, n});
  check_dtype(t, name, a.x.dtype);
  check_same_device(t, name, a.x, "x");
}

CausalConv1dFwdParams fwd_params(const Conv1dArgs& a, const py::handle& seq_idx_obj,
                                 const py::handle& init_obj, bool silu, int num_threads,
                                 uintptr_t stream) {
  CausalConv1dFwdParams p;
  p.batch = a.batch, p.dim = a.dim, p.seqlen = a.seqlen, p.width = a.width;
  p.io_dtype = a.x.dtype;
  p.silu = silu;
  p.x = a.x.data;
  p.x_batch_stride = a.x.stride(0), p.x_dim_stride = a.x.stride(1), p.x_seq_stride = a.x.stride(2);
  p.weight = a.weight.data;
  p.bias = a.bias ? a.bias->data : nullptr;
  if (auto seq = optional_view_of(seq_idx_obj, "seq_idx")) {
    check_shape(*seq, "seq_idx", {a.batch, a.seqlen});
    check_dtype(*seq, "seq_idx", DType::kInt32);
    check_same_device(*seq, "seq_idx", a.x, "x");
    p.seq_idx = static_cast<const int32_t*>(seq->data);
    p.seq_idx_batch_stride = seq->stride(0), p.seq_idx_seq_stride = seq->stride(1);
  }
  if (auto init = optional_view_of(init_obj, "initial_states")) {
    check(p.seq_idx == nullptr, "initial_states: cannot be combined with seq_idx");
    check_io(*init, "initial_states", a, a.width - 1);
    p.initial_states = init->data;
    p.init_batch_stride = init->stride(0), p.init_dim_stride = init->stride(1);
    p.init_seq_stride = init->stride(2);
  }
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = reinterpret_cast<void*>(stream);
  return p;
}

void causal_conv1d_fwd(const py::handle& x, const py::handle& weight, const py::handle& bias,
                       const py::handle& seq_idx, const py::handle& initial_states,
                       const py::handle& out, const py::handle& final_states, bool silu,
                       int num_threads, uintptr_t stream) {
  const Conv1dArgs a = check_conv_args(x, weight, bias);
  CausalConv1dFwdParams p = fwd_params(a, seq_idx, initial_states, silu, num_threads, stream);
  const TensorView o = view_of(out, "out");
  check_io(o, "out", a, a.seqlen);
  p.out = o.data;
  p.out_batch_stride = o.stride(0), p.out_dim_stride = o.stride(1), p.out_seq_stride = o.stride(2);
  if (auto fin = optional_view_of(final_states, "final_states")) {
    check(p.seq_idx == nullptr, "final_states: cannot be combined with seq_idx");
    check_io(*fin, "final_states", a, a.width - 1);
    p.final_states = fin->data;
    p.final_batch_stride = fin->stride(0), p.final_dim_stride = fin->stride(1);
    p.final_seq_stride = fin->stride(2);
  }
  launch(a.x, "causal_conv1d_fn", &cpu::causal_conv1d_fwd, NEMOCORE_CUDA_FN(causal_conv1d_fwd), p);
}

void causal_conv1d_bwd(const py::handle& x, const py::handle& weight, const py::handle& bias,
                       const py::handle& seq_idx, const py::handle& initial_states,
                       const py::handle& dout, const py::handle& dfinal_states,
                       const py::handle& dx, const py::handle& dweight, const py::handle& dbias,
                       const py::handle& dinitial_states, bool silu, int num_threads,
                       uintptr_t stream) {
  const Conv1dArgs a = check_conv_args(x, weight, bias);
  CausalConv1dBwdParams p;
  p.fwd = fwd_params(a, seq_idx, initial_states, silu, num_threads, stream);
  const TensorView g = view_of(dout, "dout");
  check_io(g, "dout", a, a.seqlen);
  p.dout = g.data;
  p.dout_batch_stride = g.stride(0), p.dout_dim_stride = g.stride(1),
  p.dout_seq_stride = g.stride(2);
  if (auto gf = optional_view_of(dfinal_states, "dfinal_states")) {
    check_io(*gf, "dfinal_states", a, a.width - 1);
    p.dfinal_states = gf->data;
    p.dfinal_batch_stride = gf->stride(0), p.dfinal_dim_stride = gf->stride(1);
    p.dfinal_seq_stride = gf->stride(2);
  }
  const TensorView gx = view_of(dx, "dx");
  check_io(gx, "dx", a, a.seqlen);
  p.dx = gx.data;
  p.dx_batch_stride = gx.stride(0), p.dx_dim_stride = gx.stride(1), p.dx_seq_stride = gx.stride(2);
  const TensorView gw = view_of(dweight, "dweight");
  check_shape(gw, "dweight", {a.dim, a.width});
  check_dtype(gw, "dweight", weight_dtype_for(a.x.dtype));
  check_contiguous(gw, "dweight");
  check_same_device(gw, "dweight", a.x, "x");
  p.dweight = gw.data;
  if (auto gb = optional_view_of(dbias, "dbias")) {
    check_shape(*gb, "dbias", {a.dim});
    check_dtype(*gb, "dbias", weight_dtype_for(a.x.dtype));
    check_contiguous(*gb, "dbias");
    check_same_device(*gb, "dbias", a.x, "x");
    p.dbias = gb->data;
  }
  if (auto gi = optional_view_of(dinitial_states, "dinitial_states")) {
    check(p.fwd.initial_states != nullptr, "dinitial_states: given without initial_states");
    check_io(*gi, "dinitial_states", a, a.width - 1);
    p.dinitial_states = gi->data;
    p.dinit_batch_stride = gi->stride(0), p.dinit_dim_stride = gi->stride(1);
    p.dinit_seq_stride = gi->stride(2);
  }
  launch(a.x, "causal_conv1d_fn backward", &cpu::causal_conv1d_bwd,
         NEMOCORE_CUDA_FN(causal_conv1d_bwd), p);
}

// A (batch,) int32 tensor on x's device, or nullptr for None.
const int32_t* batch_indices(const py::handle& obj, const char* name, const Conv1dArgs& a) {
  auto v = optional_view_of(obj, name);
  if (!v) return nullptr;
  check_shape(*v, name, {a.batch});
  check_dtype(*v, name, DType::kInt32);
  check_contiguous(*v, name);
  check_same_device(*v, name, a.x, "x");
  return static_cast<const int32_t*>(v->data);
}

void causal_conv1d_update(const py::handle& x, const py::handle& conv_state,
                          const py::handle& weight, const py::handle& bias,
                          const py::handle& cache_seqlens, const py::handle& conv_state_indices,
                          const py::handle& out, bool silu, int num_threads, uintptr_t stream) {
  const Conv1dArgs a = check_conv_args(x, weight, bias);
  const TensorView st = view_of(conv_state, "conv_state");
  check(st.dim() == 3 && st.size(1) == a.dim && st.size(2) >= a.width - 1,
        "conv_state: expected shape (batch, dim, state_len) with dim = " + std::to_string(a.dim) +
            " and state_len >= width - 1 = " + std::to_string(a.width - 1) + ", got " +
            st.describe());
  check_dtype(st, "conv_state", a.x.dtype);
  check_same_device(st, "conv_state", a.x, "x");
  CausalConv1dUpdateParams p;
  p.batch = a.batch, p.dim = a.dim, p.seqlen = a.seqlen, p.width = a.width;
  p.state_len = st.size(2);
  p.io_dtype = a.x.dtype;
  p.silu = silu;
  p.x = a.x.data;
  p.x_batch_stride = a.x.stride(0), p.x_dim_stride = a.x.stride(1), p.x_seq_stride = a.x.stride(2);
  p.conv_state = st.data;
  p.state_batch_stride = st.stride(0), p.state_dim_stride = st.stride(1);
  p.state_seq_stride = st.stride(2);
  p.weight = a.weight.data;
  p.bias = a.bias ? a.bias->data : nullptr;
  p.cache_seqlens = batch_indices(cache_seqlens, "cache_seqlens", a);
  p.conv_state_indices = batch_indices(conv_state_indices, "conv_state_indices", a);
  check(p.conv_state_indices != nullptr || st.size(0) == a.batch,
        "conv_state: expected batch size " + std::to_string(a.batch) +
            " (or pass "
            "conv_state_indices), got " +
            st.describe());
  check(p.state_len > 0 || a.width == 1 || a.batch == 0,
        "conv_state: state_len must be positive, got " + st.describe());
  const TensorView o = view_of(out, "out");
  check_io(o, "out", a, a.seqlen);
  p.out = o.data;
  p.out_batch_stride = o.stride(0), p.out_dim_stride = o.stride(1), p.out_seq_stride = o.stride(2);
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = reinterpret_cast<void*>(stream);
  launch(a.x, "causal_conv1d_update", &cpu::causal_conv1d_update,
         NEMOCORE_CUDA_FN(causal_conv1d_update), p);
}

}  // namespace

void register_causal_conv1d(py::module_& m) {
  m.def("causal_conv1d_fwd", &causal_conv1d_fwd, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("seq_idx"), py::arg("initial_states"), py::arg("out"), py::arg("final_states"),
        py::arg("silu"), py::arg("num_threads"), py::arg("stream"),
        "Causal depthwise conv1d forward into `out` (and `final_states`).");
  m.def("causal_conv1d_bwd", &causal_conv1d_bwd, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("seq_idx"), py::arg("initial_states"), py::arg("dout"), py::arg("dfinal_states"),
        py::arg("dx"), py::arg("dweight"), py::arg("dbias"), py::arg("dinitial_states"),
        py::arg("silu"), py::arg("num_threads"), py::arg("stream"),
        "Causal depthwise conv1d backward into dx, dweight, dbias and dinitial_states.");
  m.def("causal_conv1d_update", &causal_conv1d_update, py::arg("x"), py::arg("conv_state"),
        py::arg("weight"), py::arg("bias"), py::arg("cache_seqlens"), py::arg("conv_state_indices"),
        py::arg("out"), py::arg("silu"), py::arg("num_threads"), py::arg("stream"),
        "One decoding step of causal conv1d; rolls conv_state in place.");
}

}  // namespace nemocore::bindings
