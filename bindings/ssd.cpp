// pybind11 glue for the Mamba-2 SSD kernels: unpack, check, release the GIL, launch. No logic.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "launch.h"
#include "nemocore/ssd.h"
#include "tensor_view.h"

// CMake defines NEMOCORE_WITH_CUDA_SSD_{FWD,BWD,UPDATE} for each CUDA SSD kernel that is part of
// NEMOCORE_CUDA_SOURCES, and CUDA tensors reach exactly those; an op whose CUDA kernel is not
// built gets a clear error instead of a missing symbol at import.
#if defined(NEMOCORE_WITH_CUDA) && defined(NEMOCORE_WITH_CUDA_SSD_FWD)
#define NEMOCORE_SSD_CUDA_FWD (&::nemocore::cuda::ssd_fwd)
#else
#define NEMOCORE_SSD_CUDA_FWD nullptr
#endif
#if defined(NEMOCORE_WITH_CUDA) && defined(NEMOCORE_WITH_CUDA_SSD_BWD)
#define NEMOCORE_SSD_CUDA_BWD (&::nemocore::cuda::ssd_bwd)
#else
#define NEMOCORE_SSD_CUDA_BWD nullptr
#endif
#if defined(NEMOCORE_WITH_CUDA) && defined(NEMOCORE_WITH_CUDA_SSD_UPDATE)
#define NEMOCORE_SSD_CUDA_UPDATE (&::nemocore::cuda::ssd_state_update)
#else
#define NEMOCORE_SSD_CUDA_UPDATE nullptr
#endif

namespace py = pybind11;

namespace nemocore::bindings {
namespace {

DType acc_dtype_for(DType io) { return io == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32; }

// A tensor of the given shape and dtype on x's device; optionally contiguous.
void check_tensor(const TensorView& t, const char* name, const std::vector<int64_t>& shape,
                  DType dtype, const TensorView& x, bool contiguous) {
  check_shape(t, name, shape);
  check_dtype(t, name, dtype);
  check_same_device(t, name, x, "x");
  int64_t numel = 1;
  for (int64_t d : t.shape) numel *= d;
  if (contiguous && numel > 0) check_contiguous(t, name);  // an empty tensor's strides vary
}

struct ScanConfig {
  int64_t chunk_size, num_chunks;
  bool dt_softplus, has_dt_limit;
  double dt_min, dt_max;
  int num_threads;
  uintptr_t stream;
};

SsdFwdParams scan_params(const py::handle& x_obj, const py::handle& dt_obj, const py::handle& A_obj,
                         const py::handle& B_obj, const py::handle& C_obj, const py::handle& D_obj,
                         const py::handle& z_obj, const py::handle& bias_obj,
                         const py::handle& seqs_obj, const py::handle& init_obj,
                         const ScanConfig& cfg, TensorView& x) {
  x = view_of(x_obj, "x");
  check(x.dim() == 4, "x: expected (batch, seqlen, nheads, headdim), got " + x.describe());
  check_float_dtype(x, "x");
  SsdFwdParams p;
  p.batch = x.size(0), p.seqlen = x.size(1), p.nheads = x.size(2), p.headdim = x.size(3);
  p.io_dtype = x.dtype;
  const DType acc = acc_dtype_for(x.dtype);
  p.x = x.data;
  p.x_batch_stride = x.stride(0), p.x_seq_stride = x.stride(1);
  p.x_head_stride = x.stride(2), p.x_dim_stride = x.stride(3);
  const TensorView B = view_of(B_obj, "B"), C = view_of(C_obj, "C");
  check(B.dim() == 4 && B.size(2) > 0 && p.nheads % B.size(2) == 0,
        "B: expected (batch, seqlen, ngroups, dstate) with ngroups dividing nheads = " +
            std::to_string(p.nheads) + ", got " + B.describe());
  p.ngroups = B.size(2), p.dstate = B.size(3);
  check_tensor(B, "B", {p.batch, p.seqlen, p.ngroups, p.dstate}, x.dtype, x, false);
  check_tensor(C, "C", {p.batch, p.seqlen, p.ngroups, p.dstate}, x.dtype, x, false);
  p.B = B.data, p.C = C.data;
  p.B_batch_stride = B.stride(0), p.B_seq_stride = B.stride(1);
  p.B_group_stride = B.stride(2), p.B_state_stride = B.stride(3);
  p.C_batch_stride = C.stride(0), p.C_seq_stride = C.stride(1);
  p.C_group_stride = C.stride(2), p.C_state_stride = C.stride(3);
  const TensorView dt = view_of(dt_obj, "dt");
  check_tensor(dt, "dt", {p.batch, p.seqlen, p.nheads}, acc, x, false);
  p.dt = dt.data;
  p.dt_batch_stride = dt.stride(0), p.dt_seq_stride = dt.stride(1), p.dt_head_stride = dt.stride(2);
  const TensorView A = view_of(A_obj, "A");
  check_tensor(A, "A", {p.nheads}, acc, x, true);
  p.A = A.data;
  if (auto D = optional_view_of(D_obj, "D")) {
    p.D_has_hdim = D->dim() == 2;
    if (p.D_has_hdim) {
      check_tensor(*D, "D", {p.nheads, p.headdim}, acc, x, true);
    } else {
      check_tensor(*D, "D", {p.nheads}, acc, x, true);
    }
    p.D = D->data;
  }
  if (auto z = optional_view_of(z_obj, "z")) {
    check_tensor(*z, "z", {p.batch, p.seqlen, p.nheads, p.headdim}, x.dtype, x, false);
    p.z = z->data;
    p.z_batch_stride = z->stride(0), p.z_seq_stride = z->stride(1);
    p.z_head_stride = z->stride(2), p.z_dim_stride = z->stride(3);
  }
  if (auto bias = optional_view_of(bias_obj, "dt_bias")) {
    check_tensor(*bias, "dt_bias", {p.nheads}, acc, x, true);
    p.dt_bias = bias->data;
  }
  const TensorView seqs = view_of(seqs_obj, "seqs");
  check(seqs.dim() == 2 && seqs.size(1) == kSeqColumns,
        "seqs: expected (num_seqs, 5), got " + seqs.describe());
  check_tensor(seqs, "seqs", {seqs.size(0), kSeqColumns}, DType::kInt64, x, true);
  p.num_seqs = seqs.size(0);
  p.seqs = static_cast<const int64_t*>(seqs.data);
  if (auto init = optional_view_of(init_obj, "initial_states")) {
    check(init->dim() == 4, "initial_states: expected 4 dimensions, got " + init->describe());
    check_tensor(*init, "initial_states", {init->size(0), p.nheads, p.headdim, p.dstate}, acc, x,
                 false);
    p.initial_states = init->data;
    p.init_row_stride = init->stride(0), p.init_head_stride = init->stride(1);
    p.init_dim_stride = init->stride(2), p.init_state_stride = init->stride(3);
  }
  check(cfg.chunk_size >= 1, "chunk_size: must be positive, got " + std::to_string(cfg.chunk_size));
  p.chunk_size = cfg.chunk_size, p.num_chunks = cfg.num_chunks;
  p.dt_softplus = cfg.dt_softplus, p.has_dt_limit = cfg.has_dt_limit;
  p.dt_min = cfg.dt_min, p.dt_max = cfg.dt_max;
  p.num_threads = cfg.num_threads < 1 ? 1 : cfg.num_threads;
  p.stream = reinterpret_cast<void*>(cfg.stream);
  return p;
}

void* io_out(const py::handle& obj, const char* name, const SsdFwdParams& p, const TensorView& x) {
  const TensorView t = view_of(obj, name);
  check_tensor(t, name, {p.batch, p.seqlen, p.nheads, p.headdim}, x.dtype, x, true);
  return t.data;
}

void* opt_out(const py::handle& obj, const char* name, const std::vector<int64_t>& shape,
              DType dtype, const TensorView& x) {
  auto t = optional_view_of(obj, name);
  if (!t) return nullptr;
  check_tensor(*t, name, shape, dtype, x, true);
  return t->data;
}

// The same for an output that must be given (its data pointer is null when it is empty).
void* req_out(const py::handle& obj, const char* name, const std::vector<int64_t>& shape,
              DType dtype, const TensorView& x) {
  check(!obj.is_none(), std::string(name) + ": required");
  return opt_out(obj, name, shape, dtype, x);
}

void ssd_fwd(const py::handle& x, const py::handle& dt, const py::handle& A, const py::handle& B,
             const py::handle& C, const py::handle& D, const py::handle& z,
             const py::handle& dt_bias, const py::handle& seqs, const py::handle& initial_states,
             const py::handle& out, const py::handle& final_states, const ScanConfig& cfg,
             const py::handle& workspace) {
  TensorView xv;
  SsdFwdParams p = scan_params(x, dt, A, B, C, D, z, dt_bias, seqs, initial_states, cfg, xv);
  p.out = io_out(out, "out", p, xv);
  p.final_states =
      opt_out(final_states, "final_states", {p.num_seqs, p.nheads, p.headdim, p.dstate},
              acc_dtype_for(xv.dtype), xv);
  if (xv.is_cuda) {
    const int64_t elems =
        ssd_cuda_fwd_workspace_elems(p.num_chunks, p.nheads, p.chunk_size, p.headdim, p.dstate);
    p.workspace = req_out(workspace, "workspace", {elems}, acc_dtype_for(xv.dtype), xv);
  }
  launch(xv, "mamba_chunk_scan_combined", &cpu::ssd_fwd, NEMOCORE_SSD_CUDA_FWD, p);
}

void ssd_bwd(const py::handle& x, const py::handle& dt, const py::handle& A, const py::handle& B,
             const py::handle& C, const py::handle& D, const py::handle& z,
             const py::handle& dt_bias, const py::handle& seqs, const py::handle& initial_states,
             const py::handle& dout, const py::handle& dfinal_states, const py::tuple& grads,
             const ScanConfig& cfg, const py::handle& workspace) {
  TensorView xv;
  SsdBwdParams p;
  p.fwd = scan_params(x, dt, A, B, C, D, z, dt_bias, seqs, initial_states, cfg, xv);
  const SsdFwdParams& f = p.fwd;
  const DType acc = acc_dtype_for(xv.dtype);
  const TensorView g = view_of(dout, "dout");
  check_tensor(g, "dout", {f.batch, f.seqlen, f.nheads, f.headdim}, xv.dtype, xv, false);
  p.dout = g.data;
  p.dout_batch_stride = g.stride(0), p.dout_seq_stride = g.stride(1);
  p.dout_head_stride = g.stride(2), p.dout_dim_stride = g.stride(3);
  const std::vector<int64_t> state_shape{f.num_seqs, f.nheads, f.headdim, f.dstate};
  p.dfinal_states = opt_out(dfinal_states, "dfinal_states", state_shape, acc, xv);
  check(grads.size() == 9, "grads: expected (dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinit)");
  const std::vector<int64_t> bc_shape{f.batch, f.seqlen, f.ngroups, f.dstate};
  p.dx = io_out(grads[0], "dx", f, xv);
  p.ddt = req_out(grads[1], "ddt", {f.batch, f.seqlen, f.nheads}, acc, xv);
  p.dA = req_out(grads[2], "dA", {f.nheads}, acc, xv);
  p.dB = req_out(grads[3], "dB", bc_shape, xv.dtype, xv);
  p.dC = req_out(grads[4], "dC", bc_shape, xv.dtype, xv);
  if (f.D) {
    p.dD = opt_out(
        grads[5], "dD",
        f.D_has_hdim ? std::vector<int64_t>{f.nheads, f.headdim} : std::vector<int64_t>{f.nheads},
        acc, xv);
  }
  if (f.z) p.dz = io_out(grads[6], "dz", f, xv);
  if (f.dt_bias) p.ddt_bias = opt_out(grads[7], "ddt_bias", {f.nheads}, acc, xv);
  if (auto gi = optional_view_of(grads[8], "dinitial_states")) {
    check(!initial_states.is_none(), "dinitial_states: given without initial_states");
    check_tensor(*gi, "dinitial_states", {gi->size(0), f.nheads, f.headdim, f.dstate}, acc, xv,
                 true);
    p.dinitial_states = gi->data;
  }
  if (xv.is_cuda) {
    const int64_t elems = ssd_cuda_bwd_workspace_elems(f.num_chunks, f.nheads, f.ngroups,
                                                       f.chunk_size, f.headdim, f.dstate);
    p.workspace = req_out(workspace, "workspace", {elems}, acc, xv);
  }
  launch(xv, "mamba_chunk_scan_combined backward", &cpu::ssd_bwd, NEMOCORE_SSD_CUDA_BWD, p);
}

void ssd_state_update(const py::handle& state_obj, const py::handle& x_obj,
                      const py::handle& dt_obj, const py::handle& A_obj, const py::handle& B_obj,
                      const py::handle& C_obj, const py::handle& D_obj, const py::handle& z_obj,
                      const py::handle& bias_obj, const py::handle& indices_obj,
                      const py::handle& out_obj, bool dt_softplus, bool has_dt_limit, double dt_min,
                      double dt_max, int num_threads, uintptr_t stream) {
  const TensorView x = view_of(x_obj, "x");
  check(x.dim() == 3, "x: expected (batch, nheads, headdim), got " + x.describe());
  check_float_dtype(x, "x");
  const DType acc = acc_dtype_for(x.dtype);
  SsdStateUpdateParams p;
  p.batch = x.size(0), p.nheads = x.size(1), p.headdim = x.size(2);
  p.io_dtype = x.dtype;
  const TensorView B = view_of(B_obj, "B"), C = view_of(C_obj, "C");
  check(B.dim() == 3 && B.size(1) > 0 && p.nheads % B.size(1) == 0,
        "B: expected (batch, ngroups, dstate) with ngroups dividing nheads = " +
            std::to_string(p.nheads) + ", got " + B.describe());
  p.ngroups = B.size(1), p.dstate = B.size(2);
  check_tensor(B, "B", {p.batch, p.ngroups, p.dstate}, x.dtype, x, false);
  check_tensor(C, "C", {p.batch, p.ngroups, p.dstate}, x.dtype, x, false);
  const TensorView st = view_of(state_obj, "state");
  check(
      st.dim() == 4 && st.size(1) == p.nheads && st.size(2) == p.headdim && st.size(3) == p.dstate,
      "state: expected (batch, nheads, headdim, dstate), got " + st.describe());
  check(st.dtype == DType::kFloat32 || st.dtype == x.dtype,
        "state: expected float32 or x's dtype, got " + st.describe());
  check_same_device(st, "state", x, "x");
  p.state_dtype = st.dtype;
  p.state = st.data;
  p.state_batch_stride = st.stride(0), p.state_head_stride = st.stride(1);
  p.state_dim_stride = st.stride(2), p.state_state_stride = st.stride(3);
  if (auto idx = optional_view_of(indices_obj, "state_batch_indices")) {
    check_tensor(*idx, "state_batch_indices", {p.batch}, DType::kInt32, x, true);
    p.state_batch_indices = static_cast<const int32_t*>(idx->data);
  } else {
    check(st.size(0) == p.batch, "state: expected batch " + std::to_string(p.batch) +
                                     " (or pass state_batch_indices), got " + st.describe());
  }
  p.x = x.data;
  p.x_batch_stride = x.stride(0), p.x_head_stride = x.stride(1), p.x_dim_stride = x.stride(2);
  const TensorView dt = view_of(dt_obj, "dt");
  check_tensor(dt, "dt", {p.batch, p.nheads, p.headdim}, acc, x, false);
  p.dt = dt.data;
  p.dt_batch_stride = dt.stride(0), p.dt_head_stride = dt.stride(1), p.dt_dim_stride = dt.stride(2);
  const TensorView A = view_of(A_obj, "A");
  check_tensor(A, "A", {p.nheads, p.headdim, p.dstate}, acc, x, false);
  p.A = A.data;
  p.A_head_stride = A.stride(0), p.A_dim_stride = A.stride(1), p.A_state_stride = A.stride(2);
  p.B = B.data, p.C = C.data;
  p.B_batch_stride = B.stride(0), p.B_group_stride = B.stride(1), p.B_state_stride = B.stride(2);
  p.C_batch_stride = C.stride(0), p.C_group_stride = C.stride(1), p.C_state_stride = C.stride(2);
  if (auto D = optional_view_of(D_obj, "D")) {
    check_tensor(*D, "D", {p.nheads, p.headdim}, acc, x, false);
    p.D = D->data, p.D_head_stride = D->stride(0), p.D_dim_stride = D->stride(1);
  }
  if (auto z = optional_view_of(z_obj, "z")) {
    check_tensor(*z, "z", {p.batch, p.nheads, p.headdim}, x.dtype, x, false);
    p.z = z->data;
    p.z_batch_stride = z->stride(0), p.z_head_stride = z->stride(1), p.z_dim_stride = z->stride(2);
  }
  if (auto bias = optional_view_of(bias_obj, "dt_bias")) {
    check_tensor(*bias, "dt_bias", {p.nheads, p.headdim}, acc, x, false);
    p.dt_bias = bias->data;
    p.dt_bias_head_stride = bias->stride(0), p.dt_bias_dim_stride = bias->stride(1);
  }
  const TensorView out = view_of(out_obj, "out");
  check_tensor(out, "out", {p.batch, p.nheads, p.headdim}, x.dtype, x, true);
  p.out = out.data;
  p.dt_softplus = dt_softplus, p.has_dt_limit = has_dt_limit;
  p.dt_min = dt_min, p.dt_max = dt_max;
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = reinterpret_cast<void*>(stream);
  launch(x, "selective_state_update", &cpu::ssd_state_update, NEMOCORE_SSD_CUDA_UPDATE, p);
}

}  // namespace

void register_ssd(py::module_& m) {
  py::class_<ScanConfig>(m, "SsdScanConfig")
      .def(py::init([](int64_t chunk_size, int64_t num_chunks, bool dt_softplus, bool has_dt_limit,
                       double dt_min, double dt_max, int num_threads, uintptr_t stream) {
             return ScanConfig{chunk_size, num_chunks, dt_softplus, has_dt_limit,
                               dt_min,     dt_max,     num_threads, stream};
           }),
           py::arg("chunk_size"), py::arg("num_chunks"), py::arg("dt_softplus"),
           py::arg("has_dt_limit"), py::arg("dt_min"), py::arg("dt_max"), py::arg("num_threads"),
           py::arg("stream"));
  m.def("ssd_fwd", &ssd_fwd, py::arg("x"), py::arg("dt"), py::arg("A"), py::arg("B"), py::arg("C"),
        py::arg("D"), py::arg("z"), py::arg("dt_bias"), py::arg("seqs"), py::arg("initial_states"),
        py::arg("out"), py::arg("final_states"), py::arg("config"),
        py::arg("workspace") = py::none(),
        "Mamba-2 SSD chunked scan forward into `out` (and per-sequence `final_states`); CUDA "
        "tensors need a `workspace` (see ssd_cuda_fwd_workspace_elems in nemocore/ssd.h).");
  m.def("ssd_bwd", &ssd_bwd, py::arg("x"), py::arg("dt"), py::arg("A"), py::arg("B"), py::arg("C"),
        py::arg("D"), py::arg("z"), py::arg("dt_bias"), py::arg("seqs"), py::arg("initial_states"),
        py::arg("dout"), py::arg("dfinal_states"), py::arg("grads"), py::arg("config"),
        py::arg("workspace") = py::none(),
        "Mamba-2 SSD backward into grads = (dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinit); CUDA "
        "tensors need a `workspace` (see ssd_cuda_bwd_workspace_elems in nemocore/ssd.h).");
  m.def("ssd_state_update", &ssd_state_update, py::arg("state"), py::arg("x"), py::arg("dt"),
        py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D"), py::arg("z"), py::arg("dt_bias"),
        py::arg("state_batch_indices"), py::arg("out"), py::arg("dt_softplus"),
        py::arg("has_dt_limit"), py::arg("dt_min"), py::arg("dt_max"), py::arg("num_threads"),
        py::arg("stream"), "One Mamba-2 decoding step; updates `state` in place.");
}

}  // namespace nemocore::bindings
