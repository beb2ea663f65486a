#include "reference/linear.hpp"

#include <type_traits>

#include "reference/fp8_linear.hpp"
#include "reference/gemm.hpp"

namespace dslab {

template <class T> void linear_forward(Tensor2<T>& y, const Tensor2<T>& x, const Tensor2<T>& w) {
  if constexpr (std::is_same_v<T, float>) {  // FP8 inside an fp8::Autocast scope
    const fp8::Recipe* recipe = fp8::active_recipe();
    fp8::notify_linear({x, w, nullptr, recipe != nullptr});
    if (recipe) return fp8::linear_forward(y, x, w, *recipe);
  }
  const int N = x.shape(0), in = x.shape(1), out = w.shape(0);
  ensure_shape(y, {size_t(N), size_t(out)});
  gemm<T>(false, true, N, out, in, T(1), x.data(), in, w.data(), in, T(0), y.data(), out);
}

template <class T>
void linear_backward(Tensor2<T>& dx, Tensor2<T>& dw, const Tensor2<T>& dy, const Tensor2<T>& x,
                     const Tensor2<T>& w) {
  if constexpr (std::is_same_v<T, float>) {
    const fp8::Recipe* recipe = fp8::active_recipe();
    fp8::notify_linear({x, w, &dy, recipe != nullptr});
    if (recipe) return fp8::linear_backward(dx, dw, dy, x, w, *recipe);
  }
  const int N = x.shape(0), in = x.shape(1), out = w.shape(0);
  ensure_shape(dx, {size_t(N), size_t(in)});
  gemm<T>(false, false, N, in, out, T(1), dy.data(), out, w.data(), in, T(0), dx.data(), in);
  gemm<T>(true, false, out, in, N, T(1), dy.data(), out, x.data(), in, T(1), dw.data(), in);
}

template void linear_forward<float>(Tensor2<float>&, const Tensor2<float>&, const Tensor2<float>&);
template void linear_forward<double>(Tensor2<double>&, const Tensor2<double>&,
                                     const Tensor2<double>&);
template void linear_backward<float>(Tensor2<float>&, Tensor2<float>&, const Tensor2<float>&,
                                     const Tensor2<float>&, const Tensor2<float>&);
template void linear_backward<double>(Tensor2<double>&, Tensor2<double>&, const Tensor2<double>&,
                                      const Tensor2<double>&, const Tensor2<double>&);

}  // namespace dslab
