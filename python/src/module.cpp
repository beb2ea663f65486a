// The dslab Python module: dslab's exact CPU reference on NumPy arrays.
// Each part registers itself from its own file (python/src/bind_*.cpp).
// Bad input raises: a wrong dtype TypeError, a wrong shape or value ValueError
// (the reference's ArgsError is a std::invalid_argument, which pybind11 maps to
// ValueError; dslab's config and input errors are mapped here).
#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "python/src/arrays.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "dslab's reference layers, losses and model on NumPy arrays (float64 or float32), forward and backward";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const dslab::ConfigError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const dslab::BadInput& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  dslab::python::bind_layers(m);
  dslab::python::bind_mla(m);
  dslab::python::bind_moe(m);
  dslab::python::bind_mtp(m);
  dslab::python::bind_grpo(m);
  dslab::python::bind_fp8(m);
  dslab::python::bind_model(m);
  dslab::python::bind_sim(m);
}
