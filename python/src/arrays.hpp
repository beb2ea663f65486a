// NumPy arrays in and out of the reference layers, with every check a caller
// needs to be told about: an array of the wrong dtype is a TypeError, one of the
// wrong shape a ValueError, each naming the function, the argument, what it got
// and what is allowed. Arrays are copied in and out (C order, the layers' own
// row-major layout), so nothing a layer keeps aliases a caller's array.
//
// A layer runs in float64 or float32, picked by the dtype of its first array
// argument; every other floating-point argument must have the same dtype.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "reference/enum_names.hpp"
#include "reference/tensor.hpp"

namespace dslab::python {

namespace py = pybind11;

enum class Dtype { Float64, Float32 };

inline std::string shape_text(const std::vector<long>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

inline std::vector<long> shape_of(const py::array& a) {
  std::vector<long> s(size_t(a.ndim()));
  for (size_t i = 0; i < s.size(); ++i) s[i] = long(a.shape(long(i)));
  return s;
}

// An argument as an array (lists and scalars are converted), or a TypeError.
inline py::array as_array(const py::handle& obj, const char* fn, const char* arg) {
  if (obj.is_none()) throw py::type_error(std::string(fn) + ": " + arg + " is None; an array is required");
  return py::array::ensure(obj);
}

// float64 or float32; anything else is a TypeError naming the argument.
inline Dtype dtype_of(const py::array& a, const char* fn, const char* arg) {
  if (a.dtype().is(py::dtype::of<double>())) return Dtype::Float64;
  if (a.dtype().is(py::dtype::of<float>())) return Dtype::Float32;
  throw py::type_error(std::string(fn) + ": " + arg + " has dtype " + std::string(py::str(a.dtype())) +
                       "; allowed: float64 or float32");
}

template <class T> const char* dtype_name() { return std::is_same_v<T, double> ? "float64" : "float32"; }

// One expected dimension: its size, or -1 for any; its name for the message.
struct Dim {
  long size;
  const char* name;
};

inline std::string expected_text(const std::vector<Dim>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) {
    s += i ? ", " : "";
    s += dims[i].name;
    if (dims[i].size >= 0) s += "=" + std::to_string(dims[i].size);
  }
  return s + (dims.size() == 1 ? ",)" : ")");
}

// The array's shape, checked against dims; a ValueError otherwise.
inline std::vector<long> check_shape(const py::array& a, const std::vector<Dim>& dims, const char* fn,
                                     const char* arg) {
  const std::vector<long> s = shape_of(a);
  bool ok = s.size() == dims.size();
  for (size_t i = 0; ok && i < s.size(); ++i) ok = dims[i].size < 0 || dims[i].size == s[i];
  if (!ok)
    throw py::value_error(std::string(fn) + ": " + arg + " has shape " + shape_text(s) + "; expected " +
                          expected_text(dims));
  return s;
}

// A copy of a float array of dtype T and the given dims, as a rank-R tensor of
// `shape` (the same number of elements: leading dims may be merged, e.g. a
// [B, T, D] array into [B*T, D] rows).
template <class T, size_t R>
Tensor<T, R> tensor_in(const py::handle& obj, const std::vector<Dim>& dims, const std::array<size_t, R>& shape,
                       const char* fn, const char* arg) {
  const py::array any = as_array(obj, fn, arg);
  const Dtype want = std::is_same_v<T, double> ? Dtype::Float64 : Dtype::Float32;
  if (dtype_of(any, fn, arg) != want)
    throw py::type_error(std::string(fn) + ": " + arg + " has dtype " + std::string(py::str(any.dtype())) +
                         "; expected " + dtype_name<T>() + ", as the first array argument");
  check_shape(any, dims, fn, arg);
  const auto a = py::array_t<T, py::array::c_style>::ensure(any);
  Tensor<T, R> t(shape);
  if (size_t(a.size()) != t.size()) throw std::logic_error(std::string(fn) + ": " + arg + ": shape mismatch");
  if (t.size()) std::memcpy(t.data(), a.data(), t.size() * sizeof(T));
  return t;
}

// The same for a rank-R array kept in its own shape.
template <class T, size_t R>
Tensor<T, R> tensor_in(const py::handle& obj, const std::vector<Dim>& dims, const char* fn, const char* arg) {
  if (dims.size() != R) throw std::logic_error("tensor_in: rank");
  // Free dims take the array's sizes.
  const std::vector<long> s = check_shape(as_array(obj, fn, arg), dims, fn, arg);
  std::array<size_t, R> shape;
  for (size_t i = 0; i < R; ++i) shape[i] = size_t(s[i]);
  return tensor_in<T, R>(obj, dims, shape, fn, arg);
}

// An argument that only float32 makes sense for (the FP8 quantizer's input,
// captured router logits), whatever the other arguments: any other dtype is a
// TypeError that says why (`why`).
template <size_t R>
Tensor<float, R> float32_in(const py::handle& obj, const std::vector<Dim>& dims, const char* fn, const char* arg,
                            const char* why) {
  const py::array a = as_array(obj, fn, arg);
  if (!a.dtype().is(py::dtype::of<float>()))
    throw py::type_error(std::string(fn) + ": " + arg + " has dtype " + std::string(py::str(a.dtype())) +
                         "; expected float32 (" + why + ")");
  return tensor_in<float, R>(a, dims, fn, arg);
}

// Integer arrays (token ids, targets, offsets): any integer dtype, values in [lo, hi).
inline std::vector<long> ints_in(const py::handle& obj, const std::vector<Dim>& dims, const char* fn,
                                 const char* arg, long lo, long hi, const char* allowed) {
  const py::array any = as_array(obj, fn, arg);
  if (any.dtype().kind() != 'i' && any.dtype().kind() != 'u')
    throw py::type_error(std::string(fn) + ": " + arg + " has dtype " + std::string(py::str(any.dtype())) +
                         "; expected an integer dtype");
  check_shape(any, dims, fn, arg);
  const auto a = py::array_t<long, py::array::c_style | py::array::forcecast>::ensure(any);
  std::vector<long> v(a.data(), a.data() + a.size());
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] < lo || v[i] >= hi)
      throw py::value_error(std::string(fn) + ": " + arg + "[" + std::to_string(i) + "] = " + std::to_string(v[i]) +
                            "; allowed: " + allowed);
  return v;
}

// A copy of n elements at p as an array of `shape`.
template <class T> py::array_t<T> array_out(const T* p, const std::vector<long>& shape) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  py::array_t<T> a(s);
  if (a.size()) std::memcpy(a.mutable_data(), p, size_t(a.size()) * sizeof(T));
  return a;
}
template <class T, size_t R> py::array_t<T> array_out(const Tensor<T, R>& t, const std::vector<long>& shape) {
  long n = 1;
  for (long d : shape) n *= d;
  if (size_t(n) != t.size()) throw std::logic_error("array_out: shape mismatch");
  return array_out(t.data(), shape);
}
template <class T, size_t R> py::array_t<T> array_out(const Tensor<T, R>& t) {
  return array_out(t.data(), std::vector<long>(t.shape().begin(), t.shape().end()));
}
template <class T> py::array_t<T> array_out(const std::vector<T>& v) { return array_out(v.data(), {long(v.size())}); }

inline std::string names_text(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// Fills the tensors behind refs from a dict {name: array}: every name must be
// there, with its shape and dtype T; a key that names no tensor is an error too
// (a misspelt name would otherwise leave a weight at zero).
template <class T>
void refs_in(const std::vector<ParamRef<T>>& refs, const py::handle& obj, const char* fn, const char* arg) {
  if (!py::isinstance<py::dict>(obj))
    throw py::type_error(std::string(fn) + ": " + arg + " must be a dict of arrays by name, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  const py::dict d = py::reinterpret_borrow<py::dict>(obj);
  std::vector<std::string> names;
  for (const ParamRef<T>& r : refs) names.push_back(r.name);
  for (const auto& [key, value] : d) {
    const std::string k = py::str(key);
    if (std::find(names.begin(), names.end(), k) == names.end())
      throw py::value_error(std::string(fn) + ": " + arg + " has '" + k + "', which names no tensor; allowed: " +
                            names_text(names));
  }
  for (const ParamRef<T>& r : refs) {
    if (!d.contains(r.name))
      throw py::value_error(std::string(fn) + ": " + arg + " lacks '" + r.name + "'; required: " + names_text(names));
    const std::string what = std::string(arg) + "['" + r.name + "']";
    std::vector<Dim> dims;
    for (size_t s : r.shape) dims.push_back({long(s), "d"});
    const py::array any = as_array(d[py::str(r.name)], fn, what.c_str());
    const Dtype want = std::is_same_v<T, double> ? Dtype::Float64 : Dtype::Float32;
    if (dtype_of(any, fn, what.c_str()) != want)
      throw py::type_error(std::string(fn) + ": " + what + " has dtype " + std::string(py::str(any.dtype())) +
                           "; expected " + dtype_name<T>() + ", as the first array argument");
    const std::vector<long> s = shape_of(any);
    if (s != std::vector<long>(r.shape.begin(), r.shape.end()))
      throw py::value_error(std::string(fn) + ": " + what + " has shape " + shape_text(s) + "; expected " +
                            shape_text(std::vector<long>(r.shape.begin(), r.shape.end())));
    const auto a = py::array_t<T, py::array::c_style>::ensure(any);
    if (r.size()) std::memcpy(r.data, a.data(), r.size() * sizeof(T));
  }
}

// {name: a copy of the tensor} for every ref, in refs' order.
template <class T> py::dict refs_out(const std::vector<ParamRef<T>>& refs) {
  py::dict d;
  for (const ParamRef<T>& r : refs)
    d[py::str(r.name)] = array_out(r.data, std::vector<long>(r.shape.begin(), r.shape.end()));
  return d;
}

// Runs f(T{}, array) with T the C++ type of `first`'s dtype (float64: double,
// float32: float); any other dtype is a TypeError naming the argument.
template <class R> py::object to_object(R&& r) {
  if constexpr (std::is_base_of_v<py::handle, std::decay_t<R>>) return std::forward<R>(r);
  else return py::cast(std::forward<R>(r));
}
template <class F> py::object dispatch(const py::handle& first, const char* fn, const char* arg, F&& f) {
  const py::array a = as_array(first, fn, arg);
  if (dtype_of(a, fn, arg) == Dtype::Float64) return to_object(f(double{}, a));
  return to_object(f(float{}, a));
}

// The registration functions of the module's parts (one file each).
void bind_layers(py::module_& m);
void bind_mla(py::module_& m);
void bind_moe(py::module_& m);
void bind_mtp(py::module_& m);
void bind_grpo(py::module_& m);
void bind_fp8(py::module_& m);
void bind_model(py::module_& m);
void bind_sim(py::module_& m);

}  // namespace dslab::python

namespace dslab::python {

// The argument structs (MlaArgs, MoeArgs, GrpoArgs, ...) as Python classes
// built from keywords: MlaArgs(dim=64, n_heads=4, ...). An unknown keyword is a
// TypeError listing the fields; each field's own setter checks its value.
template <class C, class... Extra>
void kwargs_init(py::class_<C, Extra...>& cls, const std::vector<std::string>& fields) {
  const std::string name = py::str(cls.attr("__name__"));
  cls.def(py::init([fields, name](const py::kwargs& kw) {
    py::object o = py::cast(C{});
    for (const auto& [k, v] : kw) {
      const std::string key = py::str(k);
      if (std::find(fields.begin(), fields.end(), key) == fields.end())
        throw py::type_error(name + "() has no field '" + key + "'; fields: " + names_text(fields));
      o.attr(k) = v;
    }
    return o.cast<C>();
  }));
  cls.def("__repr__", [fields, name](const py::object& self) {
    std::string s = name + "(";
    for (size_t i = 0; i < fields.size(); ++i)
      s += (i ? ", " : "") + fields[i] + "=" + std::string(py::repr(self.attr(py::str(fields[i]))));
    return s + ")";
  });
  cls.def_property_readonly_static("fields", [fields](const py::object&) { return fields; });
}

// A closed set (an enum with EnumNames) as a string property; a name outside
// the set is a ValueError listing the allowed ones.
template <NamedEnum E, class C, class... Extra>
void enum_property(py::class_<C, Extra...>& cls, const char* name, E C::*member) {
  const std::string what = std::string(py::str(cls.attr("__name__"))) + "." + name;
  cls.def_property(
      name, [member](const C& c) { return std::string(name_of(c.*member)); },
      [member, what](C& c, const std::string& s) {
        const std::optional<E> e = parse_enum<E>(s);
        if (!e) throw py::value_error(what + " = '" + s + "'; allowed: " + dslab::names_text<E>());
        c.*member = *e;
      });
}

}  // namespace dslab::python
