#include "reference/ffn.hpp"

#include "reference/linear.hpp"
#include "reference/simd.hpp"

namespace dslab {

namespace {
template <class B> B sigmoid(const B& a) { return B(1) / (B(1) + xsimd::exp(-a)); }
}  // namespace

template <class T>
void ffn_forward(Tensor2<T>& y, FfnCache<T>& c, const Tensor2<T>& x, const FfnWeights<T>& w,
                 const LinearPolicy<T>& linears) {
  linear_forward(c.h1, x, w.w1, linears);
  linear_forward(c.h3, x, w.w3, linears);
  ensure_shape(c.gated, {c.h1.shape(0), c.h1.shape(1)});
  const long N = c.h1.shape(0), F = c.h1.shape(1);
#pragma omp parallel for schedule(static) if (N * F >= kParallelMinWork)
  for (long n = 0; n < N; ++n) {
    const T* h1 = c.h1.data() + n * F;
    const T* h3 = c.h3.data() + n * F;
    T* gated = c.gated.data() + n * F;
    simd::for_each_batch<T>(F, [&](long i, long w) {
      const auto a = simd::load(h1 + i, w);
      simd::store(gated + i, a * sigmoid(a) * simd::load(h3 + i, w), w);
    });
  }
  linear_forward(y, c.gated, w.w2, linears);
}

template <class T>
void ffn_backward(Tensor2<T>& dx, FfnWeights<T>& dw, const Tensor2<T>& dy, const Tensor2<T>& x,
                  const FfnCache<T>& c, const FfnWeights<T>& w, FfnScratch<T>& s,
                  const LinearPolicy<T>& linears) {
  Tensor2<T>& dgated = s.dgated;
  Tensor2<T>& dh1 = s.dh1;
  linear_backward(dgated, dw.w2, dy, c.gated, w.w2, linears);
  Tensor2<T>& dh3 = dgated;  // overwritten in place
  ensure_shape(dh1, {dgated.shape(0), dgated.shape(1)});
  const long N = dgated.shape(0), F = dgated.shape(1);
#pragma omp parallel for schedule(static) if (N * F >= kParallelMinWork)
  for (long n = 0; n < N; ++n) {
    const long row = n * F;
    simd::for_each_batch<T>(F, [&](long i, long w) {
      const auto a = simd::load(c.h1.data() + row + i, w), sg = sigmoid(a);
      const auto g = simd::load(dgated.data() + row + i, w);
      const auto h3 = simd::load(c.h3.data() + row + i, w);
      simd::store(dh3.data() + row + i, g * a * sg, w);                          // d/dh3 = silu(h1)
      simd::store(dh1.data() + row + i, g * h3 * sg * (T(1) + a * (T(1) - sg)), w);  // silu'(a)
    });
  }
  // dx = dh1 w1 + dh3 w3
  linear_backward(dx, dw.w1, dh1, x, w.w1, linears);
  linear_backward(s.dx3, dw.w3, dh3, x, w.w3, linears);
  dx += s.dx3;
}

#define DSLAB_INSTANTIATE(T)                                                                         \
  template void ffn_forward<T>(Tensor2<T>&, FfnCache<T>&, const Tensor2<T>&, const FfnWeights<T>&,    \
                               const LinearPolicy<T>&);                                              \
  template void ffn_backward<T>(Tensor2<T>&, FfnWeights<T>&, const Tensor2<T>&, const Tensor2<T>&,   \
                                const FfnCache<T>&, const FfnWeights<T>&, FfnScratch<T>&,          \
                                const LinearPolicy<T>&);
DSLAB_INSTANTIATE(float)
DSLAB_INSTANTIATE(double)
#undef DSLAB_INSTANTIATE

}  // namespace dslab
