#include "reference/linear.hpp"

#include <type_traits>

#include "reference/gemm.hpp"

namespace dslab {

namespace {
// The recipe a GEMM in T runs under: FP8 exists for float only.
template <class T> const fp8::Recipe* fp8_for(const fp8::Recipe* r) {
  if constexpr (std::is_same_v<T, float>)
    return r && r->enabled ? r : nullptr;
  else
    return nullptr;
}
}  // namespace

template <class T>
void linear_forward(Tensor2<T>& y, const Tensor2<T>& x, const Tensor2<T>& w, const LinearPolicy<T>& policy) {
  if constexpr (std::is_same_v<T, float>)
    if (const fp8::Recipe* r = fp8_for<T>(policy.fp8)) return fp8::linear_forward(y, x, w, *r);
  const int N = x.shape(0), in = x.shape(1), out = w.shape(0);
  ensure_shape(y, {size_t(N), size_t(out)});
  gemm<T>(false, true, N, out, in, T(1), x.data(), in, w.data(), in, T(0), y.data(), out);
}

template <class T>
void linear_backward_input(Tensor2<T>& dx, const Tensor2<T>& dy, const Tensor2<T>& w, const fp8::Recipe* fp8) {
  if constexpr (std::is_same_v<T, float>)
    if (const fp8::Recipe* r = fp8_for<T>(fp8)) return fp8::linear_backward_input(dx, dy, w, *r);
  const int N = dy.shape(0), out = w.shape(0), in = w.shape(1);
  ensure_shape(dx, {size_t(N), size_t(in)});
  gemm<T>(false, false, N, in, out, T(1), dy.data(), out, w.data(), in, T(0), dx.data(), in);
}

template <class T>
void linear_backward_weight(Tensor2<T>& dw, const Tensor2<T>& dy, const Tensor2<T>& x, const fp8::Recipe* fp8) {
  if constexpr (std::is_same_v<T, float>)
    if (const fp8::Recipe* r = fp8_for<T>(fp8)) return fp8::linear_backward_weight(dw, dy, x, *r);
  const int N = x.shape(0), in = x.shape(1), out = dy.shape(1);
  gemm<T>(true, false, out, in, N, T(1), dy.data(), out, x.data(), in, T(1), dw.data(), in);
}

template <class T>
void linear_backward(Tensor2<T>& dx, Tensor2<T>& dw, const Tensor2<T>& dy, const Tensor2<T>& x,
                     const Tensor2<T>& w, const LinearPolicy<T>& policy) {
  linear_backward_input(dx, dy, w, policy.fp8);
  if (policy.defer)
    policy.defer->push(dw, dy, x, fp8_for<T>(policy.fp8));
  else
    linear_backward_weight(dw, dy, x, policy.fp8);
}

#define DSLAB_INSTANTIATE(T)                                                                          \
  template void linear_forward<T>(Tensor2<T>&, const Tensor2<T>&, const Tensor2<T>&,                 \
                                  const LinearPolicy<T>&);                                            \
  template void linear_backward<T>(Tensor2<T>&, Tensor2<T>&, const Tensor2<T>&, const Tensor2<T>&,  \
                                   const Tensor2<T>&, const LinearPolicy<T>&);                        \
  template void linear_backward_input<T>(Tensor2<T>&, const Tensor2<T>&, const Tensor2<T>&,          \
                                         const fp8::Recipe*);                                         \
  template void linear_backward_weight<T>(Tensor2<T>&, const Tensor2<T>&, const Tensor2<T>&,         \
                                          const fp8::Recipe*);
DSLAB_INSTANTIATE(float)
DSLAB_INSTANTIATE(double)
#undef DSLAB_INSTANTIATE

}  // namespace dslab
