#include "reference/rmsnorm.hpp"

#include <algorithm>
#include <cmath>

#include "reference/simd.hpp"

namespace dslab {

template <class T>
void rmsnorm_forward(Tensor2<T>& y, Tensor1<T>& rstd, const Tensor2<T>& x, const Tensor1<T>& g,
                     double eps) {
  const long N = x.shape(0), D = x.shape(1);
  ensure_shape(y, {size_t(N), size_t(D)});
  ensure_shape(rstd, {size_t(N)});
#pragma omp parallel for schedule(static) if (N * D >= kParallelMinWork)
  for (long n = 0; n < N; ++n) {
    const T* xn = x.data() + n * D;
    const T ss = simd::dot(xn, xn, D);
    const T r = T(1) / std::sqrt(ss / T(D) + T(eps));
    rstd(n) = r;
    T* yn = y.data() + n * D;
    for (long d = 0; d < D; ++d) yn[d] = xn[d] * r * g(d);
  }
}

template <class T>
void rmsnorm_backward(Tensor2<T>& dx, Tensor1<T>& dg, const Tensor2<T>& dy, const Tensor2<T>& x,
                      const Tensor1<T>& g, const Tensor1<T>& rstd) {
  const long N = x.shape(0), D = x.shape(1);
  ensure_shape(dx, {size_t(N), size_t(D)});
#pragma omp parallel for schedule(static) if (N * D >= kParallelMinWork)
  for (long n = 0; n < N; ++n) {
    const T* xn = x.data() + n * D;
    const T* dyn = dy.data() + n * D;
    T* dxn = dx.data() + n * D;
    const T r = rstd(n);
    const T dot = simd::dot(g.data(), dyn, xn, D);  // sum_d g*dy*x
    const T c = dot * r * r * r / T(D);
    for (long d = 0; d < D; ++d) dxn[d] = r * g(d) * dyn[d] - c * xn[d];
  }
  // Gain gradient: a sum over tokens, taken in token order for every feature;
  // threads share out the features.
  constexpr long kCols = 64;
#pragma omp parallel for schedule(static) if (N * D >= kParallelMinWork)
  for (long d0 = 0; d0 < D; d0 += kCols) {
    const long d1 = std::min(D, d0 + kCols);
    for (long n = 0; n < N; ++n) {
      const T* xn = x.data() + n * D;
      const T* dyn = dy.data() + n * D;
      const T r = rstd(n);
      for (long d = d0; d < d1; ++d) dg(d) += dyn[d] * xn[d] * r;
    }
  }
}

template void rmsnorm_forward<float>(Tensor2<float>&, Tensor1<float>&, const Tensor2<float>&,
                                     const Tensor1<float>&, double);
template void rmsnorm_forward<double>(Tensor2<double>&, Tensor1<double>&, const Tensor2<double>&,
                                      const Tensor1<double>&, double);
template void rmsnorm_backward<float>(Tensor2<float>&, Tensor1<float>&, const Tensor2<float>&,
                                      const Tensor2<float>&, const Tensor1<float>&,
                                      const Tensor1<float>&);
template void rmsnorm_backward<double>(Tensor2<double>&, Tensor1<double>&, const Tensor2<double>&,
                                       const Tensor2<double>&, const Tensor1<double>&,
                                       const Tensor1<double>&);

}  // namespace dslab
