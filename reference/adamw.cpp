#include "reference/adamw.hpp"

#include <algorithm>
#include <cmath>

#include "reference/simd.hpp"

namespace dslab {

template <class T> std::vector<Segment<T>> segments(Arena<T>& arena) {
  std::vector<Segment<T>> s;
  for (const auto& slice : arena.slices()) s.push_back({arena.data() + slice.offset, slice.size, slice.rank});
  return s;
}

template <class T> std::vector<Segment<T>> segments(const std::vector<ParamRef<T>>& tensors) {
  std::vector<Segment<T>> s;
  for (const auto& t : tensors) s.push_back({t.data, t.size(), t.shape.size()});
  return s;
}

template <class T> AdamW<T>::AdamW(const std::vector<Segment<T>>& params) {
  size_t n = 0;
  for (const auto& p : params) offset.push_back(n), n += p.size;
  m.assign(n, T(0));
  v.assign(n, T(0));
}

namespace {

// The elementwise loops below run over fixed chunks of every tensor, in
// parallel: chunk boundaries depend on the tensor sizes alone, so a partial
// sum per chunk, added in chunk order, does not depend on the thread count.
constexpr long kChunk = 1 << 14;

struct Chunk {
  size_t tensor;
  long begin, end;
};

template <class T> std::vector<Chunk> chunks_of(const std::vector<Segment<T>>& tensors) {
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const long n = long(tensors[i].size);
    for (long b = 0; b < n; b += kChunk) chunks.push_back({i, b, std::min(n, b + kChunk)});
  }
  return chunks;
}

// sum_j x[j]^2 in double, as 8 interleaved partial sums (a fixed order).
template <class T> double sum_squares(const T* x, long n) {
  double s[8] = {};
  long j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) s[k] += double(x[j + k]) * double(x[j + k]);
  for (; j < n; ++j) s[0] += double(x[j]) * double(x[j]);
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

}  // namespace

template <class T>
void AdamW<T>::step(const std::vector<Segment<T>>& params, const std::vector<Segment<T>>& grads,
                    double lr, const AdamWArgs& a) {
  ++t;
  const T b1 = T(a.beta1), b2 = T(a.beta2);
  const T c1 = T(1.0 - std::pow(a.beta1, double(t)));
  const T c2 = T(1.0 - std::pow(a.beta2, double(t)));
  const T eps = T(a.eps), rate = T(lr);
  const std::vector<Chunk> chunks = chunks_of(params);
#pragma omp parallel for schedule(static) if (chunks.size() > 1)
  for (size_t c = 0; c < chunks.size(); ++c) {
    const size_t i = chunks[c].tensor;
    const long j0 = chunks[c].begin;
    const T decay = params[i].rank >= 2 ? T(a.weight_decay) : T(0);
    T* p = params[i].data + j0;
    const T* g = grads[i].data + j0;
    T* mi = m_of(i) + j0;
    T* vi = v_of(i) + j0;
    simd::for_each_batch<T>(chunks[c].end - j0, [&](long j, long w) {
      const auto gj = simd::load(g + j, w), pj = simd::load(p + j, w);
      const auto mj = b1 * simd::load(mi + j, w) + (T(1) - b1) * gj;
      const auto vj = b2 * simd::load(vi + j, w) + (T(1) - b2) * gj * gj;
      const auto update = (mj / c1) / (xsimd::sqrt(vj / c2) + eps);
      simd::store(mi + j, mj, w);
      simd::store(vi + j, vj, w);
      simd::store(p + j, pj - rate * (update + decay * pj), w);
    });
  }
}

template <class T> double global_grad_norm(const std::vector<Segment<T>>& grads) {
  const std::vector<Chunk> chunks = chunks_of(grads);
  std::vector<double> partial(chunks.size());
#pragma omp parallel for schedule(static) if (chunks.size() > 1)
  for (size_t c = 0; c < chunks.size(); ++c)
    partial[c] = sum_squares(grads[chunks[c].tensor].data + chunks[c].begin,
                             chunks[c].end - chunks[c].begin);
  double ss = 0;
  for (double s : partial) ss += s;
  return std::sqrt(ss);
}

template <class T>
void clip_grad_norm(const std::vector<Segment<T>>& grads, double norm, double max_norm) {
  if (max_norm <= 0 || norm <= max_norm) return;
  const T scale = T(max_norm / (norm + 1e-6));
  const std::vector<Chunk> chunks = chunks_of(grads);
#pragma omp parallel for schedule(static) if (chunks.size() > 1)
  for (size_t c = 0; c < chunks.size(); ++c) {
    T* g = grads[chunks[c].tensor].data;
    for (long j = chunks[c].begin; j < chunks[c].end; ++j) g[j] *= scale;
  }
}

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return lr * double(step + 1) / double(warmup_steps);
  const double span = double(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = std::min(1.0, double(step - warmup_steps) / span);
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

#define DSLAB_INSTANTIATE(T)                                                                   \
  template class AdamW<T>;                                                                     \
  template std::vector<Segment<T>> segments<T>(Arena<T>&);                                     \
  template std::vector<Segment<T>> segments<T>(const std::vector<ParamRef<T>>&);               \
  template double global_grad_norm<T>(const std::vector<Segment<T>>&);                         \
  template void clip_grad_norm<T>(const std::vector<Segment<T>>&, double, double);
DSLAB_INSTANTIATE(float)
DSLAB_INSTANTIATE(double)
#undef DSLAB_INSTANTIATE

}  // namespace dslab
