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
    losses(n) = targets[n] < 0 ? T(0) : std::log(sum) + m - z[targets[n]];  // log sum_v exp(z_v) - z_target
  }
  T total = 0;  // serial: a fixed summation order
  long counted = 0;
  for (long n = 0; n < N; ++n) {
    total += losses(n);
    counted += targets[n] >= 0;
  }
  return counted ? total / T(counted) : T(0);
}

template <class T>
void cross_entropy_backward(Tensor2<T>& dlogits, const Tensor2<T>& probs,
                            const std::vector<int>& targets, T dloss) {
  const long N = probs.shape(0), V = probs.shape(1);
  ensure_shape(dlogits, {size_t(N), size_t(V)});
  long counted = 0;
  for (long n = 0; n < N; ++n) counted += targets[n] >= 0;
  const T scale = counted ? dloss / T(counted) : T(0);
#pragma omp parallel for schedule(static) if (N * V >= kParallelMinWork)
  for (long n = 0; n < N; ++n) {
    const T* p = probs.data() + n * V;
    T* d = dlogits.data() + n * V;
    const T s = targets[n] < 0 ? T(0) : scale;
    for (long v = 0; v < V; ++v) d[v] = p[v] * s;
    if (targets[n] >= 0) d[targets[n]] -= s;
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
