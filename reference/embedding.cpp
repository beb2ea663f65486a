#include "reference/embedding.hpp"

#include <algorithm>


namespace dslab {

template <class T>
void embedding_forward(Tensor2<T>& x, const std::vector<int>& tokens, const Tensor2<T>& w) {
  const size_t N = tokens.size(), D = w.shape(1);
  ensure_shape(x, {N, D});
  for (size_t n = 0; n < N; ++n) {
    const T* row = w.data() + size_t(tokens[n]) * D;
    std::copy(row, row + D, x.data() + n * D);
  }
}

// Serial on purpose: tokens repeat, and adding rows in token order keeps the
// sum bitwise reproducible.
template <class T>
void embedding_backward(Tensor2<T>& dw, const Tensor2<T>& dx, const std::vector<int>& tokens) {
  const size_t N = tokens.size(), D = dw.shape(1);
  for (size_t n = 0; n < N; ++n) {
    T* row = dw.data() + size_t(tokens[n]) * D;
    const T* g = dx.data() + n * D;
    for (size_t d = 0; d < D; ++d) row[d] += g[d];
  }
}

template void embedding_forward<float>(Tensor2<float>&, const std::vector<int>&,
                                       const Tensor2<float>&);
template void embedding_forward<double>(Tensor2<double>&, const std::vector<int>&,
                                        const Tensor2<double>&);
template void embedding_backward<float>(Tensor2<float>&, const Tensor2<float>&,
                                        const std::vector<int>&);
template void embedding_backward<double>(Tensor2<double>&, const Tensor2<double>&,
                                         const std::vector<int>&);

}  // namespace dslab
