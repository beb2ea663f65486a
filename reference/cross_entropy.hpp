// Softmax cross-entropy, averaged over the tokens:
//   loss = -1/N sum_n log softmax(logits_n)[target_n]
//   logits [N, vocab]; cache probs [N, vocab]
//   backward: dlogits = (probs - onehot(target)) * dloss / N
#pragma once

#include "reference/tensor.hpp"

namespace dslab {

// Returns the mean loss; per-token losses go to `losses` [N].
template <class T>
T cross_entropy_forward(Tensor2<T>& probs, Tensor1<T>& losses, const Tensor2<T>& logits,
                        const std::vector<int>& targets);

template <class T>
void cross_entropy_backward(Tensor2<T>& dlogits, const Tensor2<T>& probs,
                            const std::vector<int>& targets, T dloss);

}  // namespace dslab
