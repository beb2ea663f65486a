// Multi-Token Prediction (MTP), Sec. 2.3 of the review, Eq. (25)-(26), as in DeepSeek-V3.
//
// D sequential modules extend next-token prediction into a causal chain. Module
// k = 1..D at position i combines the previous depth's hidden state h^{k-1}_i
// (h^0 = the output of the main model's last block) with the embedding of the
// token k places ahead, runs its own transformer block, and predicts the token
// k+1 places ahead through the shared output head:
//   h'^k_i = M_k [ enorm(Emb(t_{i+k})) ; hnorm(h^{k-1}_i) ]     M_k = eh_proj [D, 2D]
//   h^k    = TRM_k(h'^k)                                       causal over its positions
//   P^k_i  = softmax(head(norm_k(h^k_i)))                      predicts t_{i+k+1}
//   L^k_MTP = -1/T sum_i log P^k_i[t_{i+k+1}]                  Eq. (25)
//   L_MTP   = lambda/D sum_k L^k_MTP                           Eq. (26)
// With positions 0..T-1 of a training window (tokens t_0..t_{T-1}, targets
// t_1..t_T), depth k has targets at positions i = 0..T-k-1; Eq. (25) divides
// their sum by T, not by T-k. The embedding Emb and the head are the main
// model's; enorm, hnorm, eh_proj, the block and norm_k ("shared_head.norm" in
// DeepSeek-V3's weights) are the module's own. The concatenation puts the
// embedding first, as DeepSeek-V3's published eh_proj does; the paper writes
// [h; e], the same map with M_k's column halves swapped.
//
// This file holds MTP's own parts: the input projection, the positions each
// depth keeps, the lambda schedule, and the chain of modules with its losses
// (mtp_forward / mtp_backward), which borrows the main model's embedding and
// head and runs each module's block (reference/block.hpp).
#pragma once

#include <cstdint>
#include <vector>

#include "reference/block.hpp"
#include "reference/tensor.hpp"

namespace dslab {

struct MtpArgs {
  int depth = 0;              // D modules; 0: next-token prediction only
  double lambda = 0.3;        // weight of L_MTP, Eq. (26)
  double lambda_final = 0.1;  // weight after the switch (V3: 0.3, then 0.1)
  double lambda_switch = 1.0; // fraction of the steps after which lambda_final holds; 1: never
  // lambda at step `step` (0-based) of `steps`.
  double lambda_at(int64_t step, int64_t steps) const;
  // depth >= 0, lambdas >= 0, lambda_switch in [0, 1]; throws ArgsError (mtp.* keys).
  void validate() const;
};

template <class T> struct MtpProjWeights {
  Tensor1<T> enorm, hnorm;  // [D]
  Tensor2<T> eh_proj;       // M_k [D, 2D]: columns 0..D-1 read the embedding, D..2D-1 the hidden state
};

template <class T> struct MtpProjCache {
  Tensor2<T> e, h, cat;      // inputs [N, D]; [enorm(e) ; hnorm(h)] [N, 2D]
  Tensor1<T> e_rstd, h_rstd;
  Tensor2<T> e_norm, h_norm, dcat;  // temporaries of forward and backward
};

// x [N, D] = eh_proj [enorm(e) ; hnorm(h)]; e = Emb(t_{i+k}), h = h^{k-1}_i, both [N, D].
template <class T>
void mtp_proj_forward(Tensor2<T>& x, MtpProjCache<T>& c, const Tensor2<T>& e, const Tensor2<T>& h,
                      const MtpProjWeights<T>& w, double eps);

// de, dh [N, D] are overwritten; weight gradients accumulate into g.
template <class T>
void mtp_proj_backward(Tensor2<T>& de, Tensor2<T>& dh, MtpProjWeights<T>& g, const Tensor2<T>& dx,
                       MtpProjCache<T>& c, const MtpProjWeights<T>& w,
                       WeightGradQueue<T>* defer = nullptr);

// The first `positions` rows of each of `batch` sequences:
//   x [batch*P_in, D] -> y [batch*positions, D], positions <= P_in.
template <class T>
void take_positions(Tensor2<T>& y, const Tensor2<T>& x, int batch, int positions);

// The transpose of take_positions: dx[b, i] += dy[b, i] for i < positions.
template <class T> void take_positions_backward(Tensor2<T>& dx, const Tensor2<T>& dy, int batch);

// ids[b, i + k] for i = 0..seq_len-k-1 of each sequence: the tokens (or
// targets) that depth k sees at its positions. ids [batch*seq_len].
std::vector<int> shift_positions(const std::vector<int>& ids, int batch, int seq_len, int k);

// ---------------------------------------------------------------------------
// The chain of D modules
// ---------------------------------------------------------------------------

// One module of depth k: its input projection, its own block and the norm
// before the shared head.
template <class T> struct MtpModuleParams {
  MtpProjWeights<T> proj;  // enorm, hnorm [D]; eh_proj [D, 2D]
  BlockParams<T> block;    // an MoE block in an MoE model, as V3's
  Tensor1<T> norm;         // [D]
  MtpModuleParams() = default;
  MtpModuleParams(const ModelArgs& a);  // zeros
};

// What module k keeps from forward to backward.
template <class T> struct MtpModuleCache {
  std::vector<int> tokens, targets;  // t_{i+k} and t_{i+k+1} at its positions
  int positions = 0;                 // per sequence
  MtpProjCache<T> proj;
  BlockCache<T> block;
  Tensor2<T> h, h_norm, logits, probs;  // h^k [N_k, D]
  Tensor1<T> rstd, losses;
};

// Temporaries of the chain, kept by the caller between calls.
template <class T> struct MtpScratch {
  Tensor2<T> e, h_prev, x, dlogits, dh_norm, dh, de, dprev;
};

// The main model's parts that the modules share (Emb, head) and read (h^0).
template <class T> struct MtpShared {
  const Tensor2<T>& embed;   // [V, D]
  const Tensor2<T>& head;    // [V, D]
};

// Module k on the first `positions` positions of each of `batch` sequences,
// reading h^{k-1} = h_prev and c.tokens; up to its logits c.logits.
template <class T>
void mtp_module_forward(MtpModuleCache<T>& c, const Tensor2<T>& h_prev, int batch, int positions,
                        const MtpModuleParams<T>& w, const MtpShared<T>& shared, const BlockContext<T>& ctx,
                        BlockScratch<T>& bs, MtpScratch<T>& s);

// Every module with its loss (Eq. (25)) on a training window: returns
// lambda/D sum_k L^k_MTP (Eq. (26)); depth_losses[k-1] = L^k_MTP; the MoE
// blocks' balance losses add into `parts`. x_final = h^0 [batch*seq_len, D].
template <class T>
T mtp_forward(std::vector<MtpModuleCache<T>>& caches, std::vector<double>& depth_losses,
              std::map<std::string, double>& parts, const Tensor2<T>& x_final, const std::vector<int>& tokens,
              const std::vector<int>& targets, int batch, int seq_len, double lambda,
              const std::vector<MtpModuleParams<T>>& w, const MtpShared<T>& shared, const BalanceArgs& balance,
              const BlockContext<T>& ctx, BlockScratch<T>& bs, MtpScratch<T>& s);

// The backward of mtp_forward: dx_final += what flows back into h^0;
// gradients accumulate into g (the modules), dembed and dhead; with `defer`
// the linear layers' weight gradients wait in the queue (after the main
// head's, so the shared head accumulates in the whole backward's order).
template <class T>
void mtp_backward(Tensor2<T>& dx_final, std::vector<MtpModuleParams<T>>& g, Tensor2<T>& dembed,
                  Tensor2<T>& dhead, std::vector<MtpModuleCache<T>>& caches, int batch, int seq_len,
                  double lambda, const std::vector<MtpModuleParams<T>>& w, const MtpShared<T>& shared,
                  const BlockContext<T>& ctx, BlockScratch<T>& bs, MtpScratch<T>& s,
                  WeightGradQueue<T>* defer = nullptr);

}  // namespace dslab
