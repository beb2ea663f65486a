#include "reference/ffn.hpp"

#include <cmath>

#include "reference/gemm.hpp"
#include "reference/linear.hpp"

namespace dslab {

namespace {
template <class T> T sigmoid(T a) { return T(1) / (T(1) + std::exp(-a)); }
}  // namespace

template <class T>
void ffn_forward(Tensor2<T>& y, FfnCache<T>& c, const Tensor2<T>& x, const FfnWeights<T>& w) {
  linear_forward(c.h1, x, w.w1);
  linear_forward(c.h3, x, w.w3);
  ensure_shape(c.gated, {c.h1.shape(0), c.h1.shape(1)});
  const long n = c.h1.size();
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; ++i) {
    const T a = c.h1.data()[i];
    c.gated.data()[i] = a * sigmoid(a) * c.h3.data()[i];
  }
  linear_forward(y, c.gated, w.w2);
}

template <class T>
void ffn_backward(Tensor2<T>& dx, FfnWeights<T>& dw, const Tensor2<T>& dy, const Tensor2<T>& x,
                  const FfnCache<T>& c, const FfnWeights<T>& w) {
  Tensor2<T> dgated, dh1, dh3;
  linear_backward(dgated, dw.w2, dy, c.gated, w.w2);
  dh1.resize(dgated.shape());
  dh3.resize(dgated.shape());
  const long n = dgated.size();
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; ++i) {
    const T a = c.h1.data()[i], sg = sigmoid(a), g = dgated.data()[i];
    dh3.data()[i] = g * a * sg;                                        // d/dh3 = silu(h1)
    dh1.data()[i] = g * c.h3.data()[i] * sg * (T(1) + a * (T(1) - sg));  // silu'(a)
  }
  // dx = dh1 w1 + dh3 w3
  Tensor2<T> dx3;
  linear_backward(dx, dw.w1, dh1, x, w.w1);
  linear_backward(dx3, dw.w3, dh3, x, w.w3);
  dx += dx3;
}

template void ffn_forward<float>(Tensor2<float>&, FfnCache<float>&, const Tensor2<float>&,
                                 const FfnWeights<float>&);
template void ffn_forward<double>(Tensor2<double>&, FfnCache<double>&, const Tensor2<double>&,
                                  const FfnWeights<double>&);
template void ffn_backward<float>(Tensor2<float>&, FfnWeights<float>&, const Tensor2<float>&,
                                  const Tensor2<float>&, const FfnCache<float>&,
                                  const FfnWeights<float>&);
template void ffn_backward<double>(Tensor2<double>&, FfnWeights<double>&, const Tensor2<double>&,
                                   const Tensor2<double>&, const FfnCache<double>&,
                                   const FfnWeights<double>&);

}  // namespace dslab
