#include "tensor_view.h"

#include <pybind11/stl.h>

#include <stdexcept>

namespace py = pybind11;

namespace nemocore::bindings {
namespace {

DType parse_dtype(const std::string& s, const char* name) {
  static const std::pair<const char*, DType> table[] = {
      {"torch.float32", DType::kFloat32},
      {"torch.float16", DType::kFloat16},
      {"torch.bfloat16", DType::kBFloat16},
      {"torch.float64", DType::kFloat64},
      {"torch.int32", DType::kInt32},
      {"torch.int64", DType::kInt64},
      {"torch.uint8", DType::kUInt8},
      {"torch.int8", DType::kInt8},
      {"torch.float8_e4m3fn", DType::kFloat8E4M3},
      {"torch.float8_e5m2", DType::kFloat8E5M2},
      {"torch.bool", DType::kBool},
  };
  for (const auto& [text, dtype] : table) {
    if (s == text) return dtype;
  }
  throw std::invalid_argument(std::string(name) + ": unsupported dtype " + s);
}

std::string join(const std::vector<int64_t>& v) {
  std::string out = "(";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
  return out + (v.size() == 1 ? ",)" : ")");
}

}  // namespace

std::string TensorView::describe() const {
  return join(shape) + " " + dtype_name(dtype) + " on " +
         (is_cuda ? "cuda:" + std::to_string(device) : std::string("cpu"));
}

// torch dtypes are interned singletons: remember each one's DType by identity, so the common
// case costs one dict lookup instead of building and comparing a string.
DType dtype_of(const py::handle& dtype, const char* name) {
  static py::dict* cache = new py::dict();  // leaked on purpose: outlives interpreter teardown
  if (PyObject* hit = PyDict_GetItem(cache->ptr(), dtype.ptr())) {
    return static_cast<DType>(PyLong_AsLong(hit));
  }
  const DType parsed = parse_dtype(py::str(dtype), name);
  (*cache)[dtype] = static_cast<int>(parsed);
  return parsed;
}

namespace {

// The attribute names, interned once: a decode step crosses here a few hundred times, and
// pybind11's generic attribute and sequence casts cost microseconds each.
struct Names {
  py::str data_ptr{"data_ptr"}, dtype{"dtype"}, shape{"shape"}, stride{"stride"},
      is_cuda{"is_cuda"}, is_cpu{"is_cpu"}, get_device{"get_device"}, device{"device"};
};
const Names& names() {
  static const Names* n = new Names();  // leaked on purpose: outlives interpreter teardown
  return *n;
}

// obj.<attr>, or obj.<attr>() for a method; nullptr (with the Python error cleared) if absent.
py::object get(const py::handle& obj, const py::str& attr, bool call) {
  PyObject* a = PyObject_GetAttr(obj.ptr(), attr.ptr());
  if (a == nullptr) {
    PyErr_Clear();
    return py::object();
  }
  py::object value = py::reinterpret_steal<py::object>(a);
  if (!call) return value;
  PyObject* r = PyObject_CallNoArgs(value.ptr());
  if (r == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}

// A tuple of ints (torch.Size is a tuple subclass) as a vector.
std::vector<int64_t> int_tuple(const py::object& t, const char* name, const char* what) {
  if (!t || !PyTuple_Check(t.ptr()))
    throw std::invalid_argument(std::string(name) + ": its " + what + " is not a tuple of ints");
  const Py_ssize_t n = PyTuple_GET_SIZE(t.ptr());
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    out[static_cast<size_t>(i)] = PyLong_AsLongLong(PyTuple_GET_ITEM(t.ptr(), i));
  }
  if (PyErr_Occurred()) throw py::error_already_set();
  return out;
}

}  // namespace

TensorView view_of(const py::handle& obj, const char* name) {
  if (obj.is_none())
    throw std::invalid_argument(std::string(name) + ": expected a tensor, got None");
  const Names& n = names();
  py::object data_ptr = get(obj, n.data_ptr, true), is_cuda = get(obj, n.is_cuda, false);
  if (!data_ptr || !is_cuda) {
    throw std::invalid_argument(std::string(name) + ": expected a torch.Tensor, got " +
                                std::string(py::str(py::type::of(obj))));
  }
  TensorView v;
  v.data =
      reinterpret_cast<void*>(static_cast<uintptr_t>(PyLong_AsUnsignedLongLong(data_ptr.ptr())));
  if (PyErr_Occurred()) throw py::error_already_set();
  v.dtype = dtype_of(get(obj, n.dtype, false), name);
  v.shape = int_tuple(get(obj, n.shape, false), name, "shape");
  v.strides = int_tuple(get(obj, n.stride, true), name, "stride()");
  if (PyObject_IsTrue(is_cuda.ptr()) == 1) {
    v.is_cuda = true;
    v.device = get(obj, n.get_device, true).cast<int>();
  } else if (PyObject_IsTrue(get(obj, n.is_cpu, false).ptr()) != 1) {
    throw std::invalid_argument(std::string(name) + ": tensors on " +
                                std::string(py::str(get(obj, n.device, false))) +
                                " are not supported (use cpu or cuda)");
  }
  return v;
}

std::optional<TensorView> optional_view_of(const py::handle& obj, const char* name) {
  if (obj.is_none()) return std::nullopt;
  return view_of(obj, name);
}

void check(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

void check_shape(const TensorView& t, const char* name, const std::vector<int64_t>& shape) {
  check(t.shape == shape,
        std::string(name) + ": expected shape " + join(shape) + ", got " + t.describe());
}

void check_dtype(const TensorView& t, const char* name, DType dtype) {
  check(t.dtype == dtype,
        std::string(name) + ": expected dtype " + dtype_name(dtype) + ", got " + t.describe());
}

void check_float_dtype(const TensorView& t, const char* name) {
  const bool ok = t.dtype == DType::kFloat32 || t.dtype == DType::kFloat16 ||
                  t.dtype == DType::kBFloat16 || t.dtype == DType::kFloat64;
  check(ok, std::string(name) + ": expected a float32, float16, bfloat16 or float64 tensor, got " +
                t.describe());
}

void check_same_device(const TensorView& t, const char* name, const TensorView& ref,
                       const char* ref_name) {
  check(t.is_cuda == ref.is_cuda && t.device == ref.device,
        std::string(name) + ": expected a tensor on the device of " + ref_name + ", got " +
            t.describe() + " vs " + ref.describe());
}

void check_contiguous(const TensorView& t, const char* name) {
  int64_t expected = 1;
  for (int64_t i = t.dim() - 1; i >= 0; --i) {
    if (t.size(i) != 1) {
      check(t.stride(i) == expected,
            std::string(name) + ": expected a contiguous tensor, got " + t.describe());
    }
    expected *= t.size(i);
  }
}

}  // namespace nemocore::bindings
