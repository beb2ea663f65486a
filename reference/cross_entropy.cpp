#include "reference/cross_entropy.hpp"

#include <cmath>

#include "reference/simd.hpp"

namespace dslab {

template <class T>
T cross_entropy_forward(Tensor2<T>& probs, Tensor1<T>& losses, const Tensor2<T>& logits,
                        const std::vector<int>& targets) {
  const long N = logits.shape(0), V = logits.shape(1);
  ensure_shape(probs, {size_t(N), size_t(V)});
  ensure_shape(losses, {size_t(N)});
#pragma omp parallel for schedule(static) if (N * V >= kParallelMinWork)
  for (long n = 0; n < N; ++n) {
    const T* z = logits.data() + n * V;
    T* p = probs.data() + n * V;
    const auto [m, sum] = simd::softmax_row(p, z, V, simd::SoftmaxArith::VectorDivide);
    losses(n) = std::log(sum) + m - z[targets[n]];  // log sum_v exp(z_v) - z_target
  }
  T total = 0;  // serial: a fixed summation order
  for (long n = 0; n < N; ++n) total += losses(n);
  return total / T(N);
}

template <class T>
void cross_entropy_backward(Tensor2<T>& dlogits, const Tensor2<T>& probs,
                            const std::vector<int>& targets, T dloss) {
  const long N = probs.shape(0), V = probs.shape(1);
  ensure_shape(dlogits, {size_t(N), size_t(V)});
  const T scale = dloss / T(N);
#pragma omp parallel for schedule(static) if (N * V >= kParallelMinWork)
  for (long n = 0; n < N; ++n) {
    const T* p = probs.data() + n * V;
    T* d = dlogits.data() + n * V;
    for (long v = 0; v < V; ++v) d[v] = p[v] * scale;
    d[targets[n]] -= scale;
  }
}

template float cross_entropy_forward<float>(Tensor2<float>&, Tensor1<float>&,
                                            const Tensor2<float>&, const std::vector<int>&);
template double cross_entropy_forward<double>(Tensor2<double>&, Tensor1<double>&,
                                              const Tensor2<double>&, const std::vector<int>&);
template void cross_entropy_backward<float>(Tensor2<float>&, const Tensor2<float>&,
                                            const std::vector<int>&, float);
template void cross_entropy_backward<double>(Tensor2<double>&, const Tensor2<double>&,
                                             const std::vector<int>&, double);

}  // namespace dslab
