#include "reference/mtp.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "reference/args_error.hpp"
#include "reference/linear.hpp"
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
                       MtpProjCache<T>& c, const MtpProjWeights<T>& w) {
  const size_t N = c.e.shape(0), D = c.e.shape(1);
  Tensor2<T>& dcat = c.dcat;
  linear_backward(dcat, g.eh_proj, dx, c.cat, w.eh_proj);
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
                                     const MtpProjWeights<T>&);                               \
  template void take_positions<T>(Tensor2<T>&, const Tensor2<T>&, int, int);                  \
  template void take_positions_backward<T>(Tensor2<T>&, const Tensor2<T>&, int);
DSLAB_MTP(float)
DSLAB_MTP(double)
#undef DSLAB_MTP

}  // namespace dslab
