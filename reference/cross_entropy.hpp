// Softmax cross-entropy, averaged over the counted tokens:
//   loss = -1/C sum_{n counted} log softmax(logits_n)[target_n]
//   logits [N, vocab]; cache probs [N, vocab]
//   backward: dlogits_n = (probs_n - onehot(target_n)) * dloss / C, 0 for a row not counted
// A target of -1 (kIgnoreTarget, data.hpp) is not counted (PyTorch's
// ignore_index with mean reduction); C is the number of counted tokens, N when
// every target is counted. With C = 0 the loss and its gradient are 0.
#pragma once

#include "reference/tensor.hpp"

namespace dslab {

// Returns the mean loss; per-token losses go to `losses` [N] (0 where not counted).
template <class T>
T cross_entropy_forward(Tensor2<T>& probs, Tensor1<T>& losses, const Tensor2<T>& logits,
                        const std::vector<int>& targets);

template <class T>
void cross_entropy_backward(Tensor2<T>& dlogits, const Tensor2<T>& probs,
                            const std::vector<int>& targets, T dloss);

}  // namespace dslab
