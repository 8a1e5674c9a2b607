// Tensors cross into _C as plain views: pointer, dtype, shape, strides, device. They are read
// from any torch.Tensor-like object through its Python attributes, so _C never links libtorch
// and one build serves every torch version.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nemocore/common.h"

namespace nemocore::bindings {

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape, strides;
  bool is_cuda = false;
  int device = -1;  // CUDA device index; -1 on the CPU

  int64_t dim() const { return static_cast<int64_t>(shape.size()); }
  int64_t size(int64_t i) const { return shape.at(static_cast<size_t>(i)); }
  int64_t stride(int64_t i) const { return strides.at(static_cast<size_t>(i)); }
  std::string describe() const;  // "(2, 3, 4) float32 on cuda:0"
};

// Reads a view of `obj` (a torch.Tensor). `name` is the argument's name, for errors.
TensorView view_of(const pybind11::handle& obj, const char* name);
// The same, but None gives an empty optional.
std::optional<TensorView> optional_view_of(const pybind11::handle& obj, const char* name);

// Argument checks: throw std::invalid_argument (ValueError in Python) naming the argument,
// the expectation and what was given.
void check(bool ok, const std::string& message);
void check_shape(const TensorView& t, const char* name, const std::vector<int64_t>& shape);
void check_dtype(const TensorView& t, const char* name, DType dtype);
void check_float_dtype(const TensorView& t, const char* name);  // float32/16, bfloat16, float64
void check_same_device(const TensorView& t, const char* name, const TensorView& ref,
                       const char* ref_name);
void check_contiguous(const TensorView& t, const char* name);

// Runs `fn` with the GIL released.
template <typename F>
void without_gil(const F& fn) {
  pybind11::gil_scoped_release release;
  fn();
}

}  // namespace nemocore::bindings
