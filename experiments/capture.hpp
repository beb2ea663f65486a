// Tensors a training run keeps for the simulators (train.capture = true),
// stored in the result file as /captured/<name>:
//   layers.<l>.ffn.router_logits  [windows, N, E]  every MoE layer's router logits
//                                  z = x W_g^T on the validation windows
//                                  (`dslab sim balance replay`)
//   layers.<L>.attn.wo.input/.weight/.output_grad, layers.<L>.ffn.w2.*
//                                  one middle block's GEMM operands on the next
//                                  training batch, in fp32 before any FP8
//                                  quantization (`dslab sim fp8 quantize --dist hdf5`)
// Taken after the last step; they change no weight and no metric.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "reference/trainer.hpp"

namespace dslab {

struct CapturedTensor {
  std::vector<size_t> shape;
  std::vector<float> data;  // row-major
};

using Captured = std::map<std::string, CapturedTensor>;

// The router logits of every MoE layer on trainer.args.eval_batches validation windows.
Captured capture_router_logits(Trainer& trainer);

// The operands of the middle block's attn.wo and ffn.w2 GEMMs (dense FFN) on
// the batch the next step would take: a forward and a backward whose weight
// gradients are queued (WeightGradQueue), read from the queue, and dropped.
Captured capture_gemm_inputs(Trainer& trainer);

// Both of the above.
Captured capture_tensors(Trainer& trainer);

}  // namespace dslab
