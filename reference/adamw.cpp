#include "reference/adamw.hpp"

#include <cmath>

namespace dslab {

template <class T> AdamW<T>::AdamW(const std::vector<ParamRef<T>>& params) {
  for (const auto& p : params) {
    m.push_back(xt::zeros<T>({p.size()}));
    v.push_back(xt::zeros<T>({p.size()}));
  }
}

template <class T>
void AdamW<T>::step(const std::vector<ParamRef<T>>& params, const std::vector<ParamRef<T>>& grads,
                    double lr, const AdamWArgs& a) {
  ++t;
  const T b1 = T(a.beta1), b2 = T(a.beta2);
  const T c1 = T(1.0 - std::pow(a.beta1, double(t)));
  const T c2 = T(1.0 - std::pow(a.beta2, double(t)));
  for (size_t i = 0; i < params.size(); ++i) {
    const long n = params[i].size();
    const T decay = params[i].shape.size() >= 2 ? T(a.weight_decay) : T(0);
    T* p = params[i].data;
    const T* g = grads[i].data;
    T* mi = m[i].data();
    T* vi = v[i].data();
#pragma omp parallel for schedule(static)
    for (long j = 0; j < n; ++j) {
      mi[j] = b1 * mi[j] + (T(1) - b1) * g[j];
      vi[j] = b2 * vi[j] + (T(1) - b2) * g[j] * g[j];
      const T update = (mi[j] / c1) / (std::sqrt(vi[j] / c2) + T(a.eps));
      p[j] -= T(lr) * (update + decay * p[j]);
    }
  }
}

template <class T> double global_grad_norm(const std::vector<ParamRef<T>>& grads) {
  double ss = 0;
  for (const auto& g : grads)
    for (size_t j = 0; j < g.size(); ++j) ss += double(g.data[j]) * double(g.data[j]);
  return std::sqrt(ss);
}

template <class T>
void clip_grad_norm(const std::vector<ParamRef<T>>& grads, double norm, double max_norm) {
  if (max_norm <= 0 || norm <= max_norm) return;
  const T scale = T(max_norm / (norm + 1e-6));
  for (const auto& g : grads)
    for (size_t j = 0; j < g.size(); ++j) g.data[j] *= scale;
}

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return lr * double(step + 1) / double(warmup_steps);
  const double span = double(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = std::min(1.0, double(step - warmup_steps) / span);
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

template class AdamW<float>;
template class AdamW<double>;
template double global_grad_norm<float>(const std::vector<ParamRef<float>>&);
template double global_grad_norm<double>(const std::vector<ParamRef<double>>&);
template void clip_grad_norm<float>(const std::vector<ParamRef<float>>&, double, double);
template void clip_grad_norm<double>(const std::vector<ParamRef<double>>&, double, double);

}  // namespace dslab
