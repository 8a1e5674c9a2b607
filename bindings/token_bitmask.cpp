// pybind11 glue for the token bitmask: unpack, check, release the GIL, launch. No logic.
#include <pybind11/pybind11.h>

#include <string>

#include "launch.h"
#include "nemocore/token_bitmask.h"
#include "tensor_view.h"

#ifdef NEMOCORE_WITH_CUDA
#define NEMOCORE_CUDA_FN(fn) (&::nemocore::cuda::fn)
#else
#define NEMOCORE_CUDA_FN(fn) nullptr
#endif

namespace py = pybind11;

namespace nemocore::bindings {
namespace {

// logits (batch, vocab) float, bitmask (batch, words) int32 with unit-stride rows, rows None or
// (n,) int64 of row numbers < batch (checked in Python, where the values are visible).
void apply_token_bitmask(const py::handle& logits_obj, const py::handle& bitmask_obj,
                         const py::handle& rows_obj, int num_threads, uintptr_t stream) {
  const TensorView logits = view_of(logits_obj, "logits");
  const TensorView mask = view_of(bitmask_obj, "bitmask");
  check(logits.dim() == 2, "logits: expected (batch, vocab), got " + logits.describe());
  check_float_dtype(logits, "logits");
  check(mask.dim() == 2 && mask.size(0) == logits.size(0),
        "bitmask: expected (batch, ceil(vocab / 32)) with batch = " +
            std::to_string(logits.size(0)) + ", got " + mask.describe());
  check_dtype(mask, "bitmask", DType::kInt32);
  check(mask.size(1) <= 1 || mask.stride(1) == 1, "bitmask: rows must be contiguous");
  check_same_device(mask, "bitmask", logits, "logits");
  TokenBitmaskParams p;
  p.logits = logits.data, p.dtype = logits.dtype, p.vocab = logits.size(1);
  p.logits_row_stride = logits.stride(0), p.logits_col_stride = logits.stride(1);
  p.bitmask = static_cast<const int32_t*>(mask.data);
  p.mask_words = mask.size(1), p.mask_row_stride = mask.stride(0);
  p.num_rows = logits.size(0);
  if (auto rows = optional_view_of(rows_obj, "indices")) {
    check(rows->dim() == 1, "indices: expected (n,), got " + rows->describe());
    check_dtype(*rows, "indices", DType::kInt64);
    check_contiguous(*rows, "indices");
    check_same_device(*rows, "indices", logits, "logits");
    p.rows = static_cast<const int64_t*>(rows->data);
    p.num_rows = rows->size(0);
  }
  p.num_threads = num_threads < 1 ? 1 : num_threads;
  p.stream = stream;
  if (p.num_rows == 0 || p.vocab == 0) return;
  launch(logits, "apply_token_bitmask", &cpu::apply_token_bitmask,
         NEMOCORE_CUDA_FN(apply_token_bitmask), p);
}

}  // namespace

void register_token_bitmask(py::module_& m) {
  m.def("apply_token_bitmask", &apply_token_bitmask, py::arg("logits"), py::arg("bitmask"),
        py::arg("indices"), py::arg("num_threads"), py::arg("stream"),
        "logits[r, t] = -inf unless bit t % 32 of bitmask[r, t // 32] is set (rows r of indices, "
        "or all); tokens past 32 * bitmask.shape[1] are disallowed.");
}

}  // namespace nemocore::bindings
