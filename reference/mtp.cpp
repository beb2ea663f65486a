#include "reference/mtp.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "reference/cross_entropy.hpp"
#include "reference/embedding.hpp"
#include "reference/args_error.hpp"
#include "reference/linear.hpp"
#include "reference/model_args.hpp"
#include "reference/rmsnorm.hpp"

namespace dslab {

double MtpArgs::lambda_at(int64_t step, int64_t steps) const {
  return double(step) < lambda_switch * double(steps) ? lambda : lambda_final;
}

void MtpArgs::validate() const {
  const auto v = [](auto x) { return value_text(x); };
  require(depth >= 0, {"mtp.depth"}, "mtp.depth = " + v(depth) + " must be >= 0 (0: next-token prediction only)");
  require(lambda >= 0 && std::isfinite(lambda), {"mtp.lambda"}, "mtp.lambda = " + v(lambda) + " must be >= 0");
  require(lambda_final >= 0 && std::isfinite(lambda_final), {"mtp.lambda_final"},
          "mtp.lambda_final = " + v(lambda_final) + " must be >= 0");
  require(lambda_switch >= 0 && lambda_switch <= 1, {"mtp.lambda_switch"},
          "mtp.lambda_switch = " + v(lambda_switch) + " must be in [0, 1] (a fraction of train.steps)");
}

template <class T>
void mtp_proj_forward(Tensor2<T>& x, MtpProjCache<T>& c, const Tensor2<T>& e, const Tensor2<T>& h,
                      const MtpProjWeights<T>& w, double eps) {
  const size_t N = e.shape(0), D = e.shape(1);
  if (h.shape(0) != N || h.shape(1) != D) throw std::invalid_argument("mtp: e and h differ in shape");
  c.e = e;
  c.h = h;
  rmsnorm_forward(c.e_norm, c.e_rstd, e, w.enorm, eps);
  rmsnorm_forward(c.h_norm, c.h_rstd, h, w.hnorm, eps);
  ensure_shape(c.cat, {N, 2 * D});
  for (size_t n = 0; n < N; ++n) {
    std::copy_n(c.e_norm.data() + n * D, D, c.cat.data() + n * 2 * D);
    std::copy_n(c.h_norm.data() + n * D, D, c.cat.data() + n * 2 * D + D);
  }
  linear_forward(x, c.cat, w.eh_proj);
}

template <class T>
void mtp_proj_backward(Tensor2<T>& de, Tensor2<T>& dh, MtpProjWeights<T>& g, const Tensor2<T>& dx,
                       MtpProjCache<T>& c, const MtpProjWeights<T>& w, WeightGradQueue<T>* defer) {
  const size_t N = c.e.shape(0), D = c.e.shape(1);
  Tensor2<T>& dcat = c.dcat;
  linear_backward(dcat, g.eh_proj, dx, c.cat, w.eh_proj, {.fp8 = nullptr, .defer = defer});
  // Split d[enorm(e) ; hnorm(h)] into its halves (reusing the forward temporaries).
  for (size_t n = 0; n < N; ++n) {
    std::copy_n(dcat.data() + n * 2 * D, D, c.e_norm.data() + n * D);
    std::copy_n(dcat.data() + n * 2 * D + D, D, c.h_norm.data() + n * D);
  }
  rmsnorm_backward(de, g.enorm, c.e_norm, c.e, w.enorm, c.e_rstd);
  rmsnorm_backward(dh, g.hnorm, c.h_norm, c.h, w.hnorm, c.h_rstd);
}

template <class T>
void take_positions(Tensor2<T>& y, const Tensor2<T>& x, int batch, int positions) {
  const size_t D = x.shape(1), P_in = x.shape(0) / size_t(batch), P = positions;
  if (P > P_in || P_in * batch != x.shape(0))
    throw std::invalid_argument("take_positions: more positions than the input holds");
  ensure_shape(y, {size_t(batch) * P, D});
  for (size_t b = 0; b < size_t(batch); ++b)
    std::copy_n(x.data() + b * P_in * D, P * D, y.data() + b * P * D);
}

template <class T> void take_positions_backward(Tensor2<T>& dx, const Tensor2<T>& dy, int batch) {
  const size_t D = dx.shape(1), P_in = dx.shape(0) / size_t(batch), P = dy.shape(0) / size_t(batch);
  for (size_t b = 0; b < size_t(batch); ++b) {
    T* to = dx.data() + b * P_in * D;
    const T* from = dy.data() + b * P * D;
    for (size_t j = 0; j < P * D; ++j) to[j] += from[j];
  }
}

std::vector<int> shift_positions(const std::vector<int>& ids, int batch, int seq_len, int k) {
  if (k < 0 || k >= seq_len) throw std::invalid_argument("shift_positions: need 0 <= k < seq_len");
  std::vector<int> out;
  out.reserve(size_t(batch) * (seq_len - k));
  for (int b = 0; b < batch; ++b)
    for (int i = 0; i < seq_len - k; ++i) out.push_back(ids[size_t(b) * seq_len + i + k]);
  return out;
}

#define DSLAB_MTP(T)                                                                          \
  template void mtp_proj_forward<T>(Tensor2<T>&, MtpProjCache<T>&, const Tensor2<T>&,        \
                                    const Tensor2<T>&, const MtpProjWeights<T>&, double);      \
  template void mtp_proj_backward<T>(Tensor2<T>&, Tensor2<T>&, MtpProjWeights<T>&,            \
                                     const Tensor2<T>&, MtpProjCache<T>&,                     \
                                     const MtpProjWeights<T>&, WeightGradQueue<T>*);                               \
  template void take_positions<T>(Tensor2<T>&, const Tensor2<T>&, int, int);                  \
  template void take_positions_backward<T>(Tensor2<T>&, const Tensor2<T>&, int);
DSLAB_MTP(float)
DSLAB_MTP(double)
#undef DSLAB_MTP

template <class T> MtpModuleParams<T>::MtpModuleParams(const ModelArgs& a) {
  const size_t D = a.dim;
  proj.enorm = xt::zeros<T>({D});
  proj.hnorm = xt::zeros<T>({D});
  proj.eh_proj = xt::zeros<T>({D, 2 * D});
  block = BlockParams<T>(a, a.moe.n_routed_experts > 0);  // V3's MTP block is an MoE layer
  norm = xt::zeros<T>({D});
}

template <class T>
void mtp_module_forward(MtpModuleCache<T>& c, const Tensor2<T>& h_prev, int batch, int positions,
                        const MtpModuleParams<T>& w, const MtpShared<T>& shared, const BlockContext<T>& ctx,
                        BlockScratch<T>& bs, MtpScratch<T>& s) {
  c.positions = positions;
  // h'^k = eh_proj [enorm(Emb(t_{i+k})) ; hnorm(h^{k-1}_i)] at positions i < P
  embedding_forward(s.e, c.tokens, shared.embed);
  take_positions(s.h_prev, h_prev, batch, positions);
  mtp_proj_forward(s.x, c.proj, s.e, s.h_prev, w.proj, ctx.norm_eps);
  // h^k = TRM_k(h'^k), causal over the module's P positions
  block_forward(c.h, c.block, s.x, w.block, ctx, batch, positions, bs);
  // logits of t_{i+k+1} through the shared head
  rmsnorm_forward(c.h_norm, c.rstd, c.h, w.norm, ctx.norm_eps);
  linear_forward(c.logits, c.h_norm, shared.head);
}

template <class T>
T mtp_forward(std::vector<MtpModuleCache<T>>& caches, std::vector<double>& depth_losses,
              std::map<std::string, double>& parts, const Tensor2<T>& x_final, const std::vector<int>& tokens,
              const std::vector<int>& targets, int batch, int seq_len, double lambda,
              const std::vector<MtpModuleParams<T>>& w, const MtpShared<T>& shared, const BalanceArgs& balance,
              const BlockContext<T>& ctx, BlockScratch<T>& bs, MtpScratch<T>& s) {
  const int D = int(w.size());
  caches.resize(D);
  depth_losses.assign(D, 0.0);
  T sum = 0;
  for (int k = 1; k <= D; ++k) {
    MtpModuleCache<T>& c = caches[k - 1];
    c.tokens = shift_positions(tokens, batch, seq_len, k);
    c.targets = shift_positions(targets, batch, seq_len, k);
    mtp_module_forward(c, k == 1 ? x_final : caches[k - 2].h, batch, seq_len - k, w[k - 1], shared, ctx, bs, s);
    block_balance_losses(parts, c.block, balance);  // its MoE block is balanced as the others
    // Eq. (25): the mean over the B*(T-k) targets, times (T-k)/T.
    const T mean = cross_entropy_forward(c.probs, c.losses, c.logits, c.targets);
    const T loss = mean * T(seq_len - k) / T(seq_len);
    depth_losses[k - 1] = double(loss);
    sum += loss;
  }
  return T(lambda) / T(D) * sum;  // Eq. (26)
}

template <class T>
void mtp_backward(Tensor2<T>& dx_final, std::vector<MtpModuleParams<T>>& g, Tensor2<T>& dembed,
                  Tensor2<T>& dhead, std::vector<MtpModuleCache<T>>& caches, int batch, int seq_len,
                  double lambda, const std::vector<MtpModuleParams<T>>& w, const MtpShared<T>& shared,
                  const BlockContext<T>& ctx, BlockScratch<T>& bs, MtpScratch<T>& s, WeightGradQueue<T>* defer) {
  const int D = int(w.size());
  for (int k = D; k >= 1; --k) {
    MtpModuleCache<T>& c = caches[k - 1];
    // d L / d L^k = lambda/D; L^k = mean * (T-k)/T (Eq. (25)-(26)).
    const T dloss = T(lambda) / T(D) * T(c.positions) / T(seq_len);
    cross_entropy_backward(s.dlogits, c.probs, c.targets, dloss);
    linear_backward(s.dh_norm, dhead, s.dlogits, c.h_norm, shared.head, {.fp8 = nullptr, .defer = defer});
    rmsnorm_backward(s.dh, g[k - 1].norm, s.dh_norm, c.h, w[k - 1].norm, c.rstd);  // d h^k
    if (k < D) take_positions_backward(s.dh, s.dprev, batch);                   // from depth k+1's hnorm
    block_backward(s.dh, g[k - 1].block, c.block, w[k - 1].block, ctx, bs, defer);  // now d h'^k
    mtp_proj_backward(s.de, s.dprev, g[k - 1].proj, s.dh, c.proj, w[k - 1].proj, defer);
    embedding_backward(dembed, s.de, c.tokens);
  }
  take_positions_backward(dx_final, s.dprev, batch);  // depth 1 read the main model's h^0
}

#define DSLAB_MTP_CHAIN(T)                                                                               \
  template struct MtpModuleParams<T>;                                                                    \
  template void mtp_module_forward<T>(MtpModuleCache<T>&, const Tensor2<T>&, int, int,                  \
                                      const MtpModuleParams<T>&, const MtpShared<T>&,                    \
                                      const BlockContext<T>&, BlockScratch<T>&, MtpScratch<T>&);         \
  template T mtp_forward<T>(std::vector<MtpModuleCache<T>>&, std::vector<double>&,                      \
                            std::map<std::string, double>&, const Tensor2<T>&, const std::vector<int>&,  \
                            const std::vector<int>&, int, int, double,                                   \
                            const std::vector<MtpModuleParams<T>>&, const MtpShared<T>&,                 \
                            const BalanceArgs&, const BlockContext<T>&, BlockScratch<T>&,                \
                            MtpScratch<T>&);                                                             \
  template void mtp_backward<T>(Tensor2<T>&, std::vector<MtpModuleParams<T>>&, Tensor2<T>&, Tensor2<T>&, \
                                std::vector<MtpModuleCache<T>>&, int, int, double,                      \
                                const std::vector<MtpModuleParams<T>>&, const MtpShared<T>&,             \
                                const BlockContext<T>&, BlockScratch<T>&, MtpScratch<T>&,               \
                                WeightGradQueue<T>*);
DSLAB_MTP_CHAIN(float)
DSLAB_MTP_CHAIN(double)
#undef DSLAB_MTP_CHAIN

}  // namespace dslab
