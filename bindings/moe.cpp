// pybind11 glue for the MoE kernels (grouped GEMMs and token permute): unpack, check, release
// the GIL, launch. No logic.
#include <pybind11/pybind11.h>

#include <string>

#include "launch.h"
#include "nemocore/moe.h"
#include "tensor_view.h"

// CMake defines NEMOCORE_WITH_CUDA_MOE when csrc/cuda/grouped_mm.cu and moe_permute.cu are part
// of the build; otherwise CUDA tensors get a clear error.
#if defined(NEMOCORE_WITH_CUDA) && defined(NEMOCORE_WITH_CUDA_MOE)
#define NEMOCORE_MOE_CUDA(fn) (&::nemocore::cuda::fn)
#else
#define NEMOCORE_MOE_CUDA(fn) nullptr
#endif

namespace py = pybind11;

namespace nemocore::bindings {
namespace {

DType acc_dtype_for(DType io) { return io == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32; }

int64_t numel(const TensorView& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  return n;
}

// A tensor of the given shape and dtype on ref's device; optionally contiguous.
void check_tensor(const TensorView& t, const char* name, const std::vector<int64_t>& shape,
                  DType dtype, const TensorView& ref, bool contiguous) {
  check_shape(t, name, shape);
  check_dtype(t, name, dtype);
  check_same_device(t, name, ref, "the first operand");
  if (contiguous && numel(t) > 0) check_contiguous(t, name);
}

// (E + 1,) int64 expert row offsets; on the CPU also checked to be a valid partition of rows.
const int64_t* offsets_of(const py::handle& obj, int64_t rows, const TensorView& ref,
                          int64_t& num_experts) {
  const TensorView o = view_of(obj, "offsets");
  check(o.dim() == 1 && o.size(0) >= 2,
        "offsets: expected (num_experts + 1,) int64, got " + o.describe());
  check_tensor(o, "offsets", {o.size(0)}, DType::kInt64, ref, true);
  num_experts = o.size(0) - 1;
  const auto* off = static_cast<const int64_t*>(o.data);
  if (!o.is_cuda) {
    bool ok = off[0] == 0 && off[num_experts] == rows;
    for (int64_t e = 0; ok && e < num_experts; ++e) ok = off[e] <= off[e + 1];
    check(ok, "offsets: expected non-decreasing row offsets from 0 to " + std::to_string(rows) +
                  " (batch_sizes must be non-negative and sum to the rows of the operand)");
  }
  return off;
}

// Row indices (any shape, int64, contiguous) that must lie in [0, bound); checked on the CPU.
const int64_t* index_of(const TensorView& t, const char* name, const std::vector<int64_t>& shape,
                        int64_t bound, const TensorView& ref) {
  check_tensor(t, name, shape, DType::kInt64, ref, true);
  const auto* idx = static_cast<const int64_t*>(t.data);
  if (!t.is_cuda) {
    const int64_t n = numel(t);
    for (int64_t i = 0; i < n; ++i) {
      check(idx[i] >= 0 && idx[i] < bound, std::string(name) + ": entry " + std::to_string(i) +
                                               " is " + std::to_string(idx[i]) + ", outside [0, " +
                                               std::to_string(bound) + ")");
    }
  }
  return idx;
}

void grouped_mm(const py::handle& a_obj, const py::handle& b_obj, const py::handle& offsets,
                const py::handle& out_obj, bool trans_b, int num_threads, uintptr_t stream,
                const py::handle& a_rows_obj) {
  const TensorView a = view_of(a_obj, "a"), b = view_of(b_obj, "b");
  check(a.dim() == 2, "a: expected (tokens, k), got " + a.describe());
  check_float_dtype(a, "a");
  check(
      b.dim() == 3,
      "b: expected (num_experts, k, n) (or (num_experts, n, k) with trans_b), got " + b.describe());
  GroupedMmParams p;
  p.rows = a.size(0), p.k = a.size(1), p.io_dtype = a.dtype;
  if (!a_rows_obj.is_none()) {  // gathered rows: the grouped operand is a[a_rows]
    const TensorView a_rows = view_of(a_rows_obj, "a_rows");
    check(a_rows.dim() == 1, "a_rows: expected (rows,) int64, got " + a_rows.describe());
    p.rows = a_rows.size(0);
    p.a_rows = index_of(a_rows, "a_rows", {p.rows}, a.size(0), a);
  }
  p.offsets = offsets_of(offsets, p.rows, a, p.num_experts);
  const int kdim = trans_b ? 2 : 1, ndim = trans_b ? 1 : 2;
  p.n = b.size(ndim);
  check_tensor(b, "b",
               trans_b ? std::vector<int64_t>{p.num_experts, p.n, p.k}
                       : std::vector<int64_t>{p.num_experts, p.k, p.n},
               a.dtype, a, false);
  p.a = a.data, p.a_row_stride = a.stride(0), p.a_col_stride = a.stride(1);
  p.b = b.data, p.b_expert_stride = b.stride(0);
  p.b_k_stride = b.stride(kdim), p.b_n_stride = b.stride(ndim);
  const TensorView out = view_of(out_obj, "out");
  check_tensor(out, "out", {p.rows, p.n}, a.dtype, a, true);
  p.out = out.data;
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = reinterpret_cast<void*>(stream);
  launch(a, "grouped_mm", &cpu::grouped_mm, NEMOCORE_MOE_CUDA(grouped_mm), p);
}

void grouped_mm_wgrad(const py::handle& x_obj, const py::handle& y_obj, const py::handle& offsets,
                      const py::handle& out_obj, int num_threads, uintptr_t stream) {
  const TensorView x = view_of(x_obj, "x"), y = view_of(y_obj, "y");
  check(x.dim() == 2, "x: expected (tokens, m), got " + x.describe());
  check(y.dim() == 2, "y: expected (tokens, n), got " + y.describe());
  check_float_dtype(x, "x");
  GroupedMmWgradParams p;
  p.rows = x.size(0), p.m = x.size(1), p.n = y.size(1), p.io_dtype = x.dtype;
  check_tensor(y, "y", {p.rows, p.n}, x.dtype, x, false);
  p.offsets = offsets_of(offsets, p.rows, x, p.num_experts);
  p.x = x.data, p.x_row_stride = x.stride(0), p.x_col_stride = x.stride(1);
  p.y = y.data, p.y_row_stride = y.stride(0), p.y_col_stride = y.stride(1);
  const TensorView out = view_of(out_obj, "out");
  check_tensor(out, "out", {p.num_experts, p.m, p.n}, x.dtype, x, true);
  p.out = out.data;
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = reinterpret_cast<void*>(stream);
  launch(x, "grouped_mm backward", &cpu::grouped_mm_wgrad, NEMOCORE_MOE_CUDA(grouped_mm_wgrad), p);
}

void moe_gather(const py::handle& src_obj, const py::handle& index_obj, const py::handle& scale_obj,
                const py::handle& out_obj, int num_threads, uintptr_t stream) {
  const TensorView src = view_of(src_obj, "src");
  check(src.dim() == 2, "src: expected (rows, cols), got " + src.describe());
  check_float_dtype(src, "src");
  const TensorView index = view_of(index_obj, "index");
  check(index.dim() == 1, "index: expected (rows,), got " + index.describe());
  MoeGatherParams p;
  p.rows = index.size(0), p.cols = src.size(1), p.src_rows = src.size(0), p.io_dtype = src.dtype;
  p.src = src.data, p.src_row_stride = src.stride(0), p.src_col_stride = src.stride(1);
  p.index = index_of(index, "index", {p.rows}, p.src_rows, src);
  if (auto scale = optional_view_of(scale_obj, "scale")) {
    check_tensor(*scale, "scale", {p.rows}, acc_dtype_for(src.dtype), src, true);
    p.scale = scale->data;
  }
  const TensorView out = view_of(out_obj, "out");
  check_tensor(out, "out", {p.rows, p.cols}, src.dtype, src, true);
  p.out = out.data;
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = reinterpret_cast<void*>(stream);
  launch(src, "moe_permute", &cpu::moe_gather, NEMOCORE_MOE_CUDA(moe_gather), p);
}

void moe_combine(const py::handle& src_obj, const py::handle& map_obj,
                 const py::handle& weights_obj, const py::handle& out_obj, int num_threads,
                 uintptr_t stream) {
  const TensorView src = view_of(src_obj, "src");
  check(src.dim() == 2, "src: expected (rows, cols), got " + src.describe());
  check_float_dtype(src, "src");
  const TensorView map = view_of(map_obj, "row_id_map");
  check(map.dim() == 2, "row_id_map: expected (tokens, topk), got " + map.describe());
  MoeCombineParams p;
  p.tokens = map.size(0), p.topk = map.size(1), p.cols = src.size(1), p.src_rows = src.size(0);
  p.io_dtype = src.dtype;
  p.src = src.data, p.src_row_stride = src.stride(0), p.src_col_stride = src.stride(1);
  p.row_map = index_of(map, "row_id_map", {p.tokens, p.topk}, p.src_rows, src);
  if (auto w = optional_view_of(weights_obj, "topk_weights")) {
    check_tensor(*w, "topk_weights", {p.tokens, p.topk}, acc_dtype_for(src.dtype), src, true);
    p.weights = w->data;
  }
  const TensorView out = view_of(out_obj, "out");
  check_tensor(out, "out", {p.tokens, p.cols}, src.dtype, src, true);
  p.out = out.data;
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = reinterpret_cast<void*>(stream);
  launch(src, "moe_unpermute", &cpu::moe_combine, NEMOCORE_MOE_CUDA(moe_combine), p);
}

void moe_combine_wgrad(const py::handle& dy_obj, const py::handle& src_obj,
                       const py::handle& map_obj, const py::handle& dw_obj, int num_threads,
                       uintptr_t stream) {
  const TensorView dy = view_of(dy_obj, "dy"), src = view_of(src_obj, "src");
  check(src.dim() == 2, "src: expected (rows, cols), got " + src.describe());
  check_float_dtype(src, "src");
  const TensorView map = view_of(map_obj, "row_id_map");
  check(map.dim() == 2, "row_id_map: expected (tokens, topk), got " + map.describe());
  MoeCombineWgradParams p;
  p.tokens = map.size(0), p.topk = map.size(1), p.cols = src.size(1), p.src_rows = src.size(0);
  p.io_dtype = src.dtype;
  check_tensor(dy, "dy", {p.tokens, p.cols}, src.dtype, src, false);
  p.dy = dy.data, p.dy_row_stride = dy.stride(0), p.dy_col_stride = dy.stride(1);
  p.src = src.data, p.src_row_stride = src.stride(0), p.src_col_stride = src.stride(1);
  p.row_map = index_of(map, "row_id_map", {p.tokens, p.topk}, p.src_rows, src);
  const TensorView dw = view_of(dw_obj, "dweights");
  check_tensor(dw, "dweights", {p.tokens, p.topk}, acc_dtype_for(src.dtype), src, true);
  p.dweights = dw.data;
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = reinterpret_cast<void*>(stream);
  launch(src, "moe_unpermute backward", &cpu::moe_combine_wgrad,
         NEMOCORE_MOE_CUDA(moe_combine_wgrad), p);
}

void moe_sort(const py::handle& ids_obj, const py::handle& counts_obj, const py::handle& map_obj,
              const py::handle& source_obj, int num_threads) {
  const TensorView ids = view_of(ids_obj, "topk_ids");
  check(ids.dim() == 2, "topk_ids: expected (tokens, topk), got " + ids.describe());
  check(ids.dtype == DType::kInt32 || ids.dtype == DType::kInt64,
        "topk_ids: expected int32 or int64, got " + ids.describe());
  check(!ids.is_cuda, "moe_sort: CPU only (CUDA uses torch's stable sort)");
  if (numel(ids) > 0) check_contiguous(ids, "topk_ids");
  MoeSortParams p;
  p.tokens = ids.size(0), p.topk = ids.size(1), p.id_dtype = ids.dtype;
  p.topk_ids = ids.data;
  const TensorView counts = view_of(counts_obj, "counts");
  check(counts.dim() == 1, "counts: expected (num_experts,), got " + counts.describe());
  p.num_experts = counts.size(0);
  check_tensor(counts, "counts", {p.num_experts}, DType::kInt64, ids, true);
  const TensorView map = view_of(map_obj, "row_id_map");
  check_tensor(map, "row_id_map", {p.tokens, p.topk}, DType::kInt64, ids, true);
  const TensorView source = view_of(source_obj, "source");
  check_tensor(source, "source", {p.tokens * p.topk}, DType::kInt64, ids, true);
  p.counts = static_cast<int64_t*>(counts.data);
  p.row_map = static_cast<int64_t*>(map.data);
  p.source = static_cast<int64_t*>(source.data);
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  without_gil([&] { cpu::moe_sort(p); });
}

}  // namespace

void register_moe(py::module_& m) {
  m.def("grouped_mm", &grouped_mm, py::arg("a"), py::arg("b"), py::arg("offsets"), py::arg("out"),
        py::arg("trans_b"), py::arg("num_threads"), py::arg("stream"),
        py::arg("a_rows") = py::none(),
        "out[rows of e] = a[rows of e] @ b[e] (b[e]^T with trans_b); offsets: (E + 1,) int64; "
        "with a_rows (rows,) int64, the grouped operand is a[a_rows] (gathered in the load).");
  m.def("grouped_mm_wgrad", &grouped_mm_wgrad, py::arg("x"), py::arg("y"), py::arg("offsets"),
        py::arg("out"), py::arg("num_threads"), py::arg("stream"),
        "out[e] = x[rows of e]^T @ y[rows of e] (the weight gradient of grouped_mm).");
  m.def("moe_gather", &moe_gather, py::arg("src"), py::arg("index"), py::arg("scale"),
        py::arg("out"), py::arg("num_threads"), py::arg("stream"),
        "out[r] = scale[r] * src[index[r]] (scale None: 1).");
  m.def("moe_combine", &moe_combine, py::arg("src"), py::arg("row_id_map"), py::arg("weights"),
        py::arg("out"), py::arg("num_threads"), py::arg("stream"),
        "out[t] = sum_j weights[t, j] * src[row_id_map[t, j]] (weights None: 1).");
  m.def("moe_combine_wgrad", &moe_combine_wgrad, py::arg("dy"), py::arg("src"),
        py::arg("row_id_map"), py::arg("dweights"), py::arg("num_threads"), py::arg("stream"),
        "dweights[t, j] = dy[t] . src[row_id_map[t, j]].");
  m.def("moe_sort", &moe_sort, py::arg("topk_ids"), py::arg("counts"), py::arg("row_id_map"),
        py::arg("source"), py::arg("num_threads"),
        "Stable counting sort of (token, slot) pairs by expert (CPU).");
}

}  // namespace nemocore::bindings
