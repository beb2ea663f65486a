// Tensors and random numbers shared by every reference layer.
//
// Tensors are xtensor containers, row-major. Activations are token-major:
// a batch of B sequences of T tokens is stored as N = B*T rows.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <xtensor/xtensor.hpp>

namespace dslab {

// The memory behind every Tensor: its own heap buffer (as xtensor's uvector:
// uninitialized on allocation), or a view of a slice of an Arena that it does
// not own. A view keeps its place: assigning to it copies values in, and
// resizing it to another size throws, so a parameter never leaves its arena.
template <class T> class Storage {
 public:
  using value_type = T;
  using allocator_type = std::allocator<T>;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using reference = T&;
  using const_reference = const T&;
  using pointer = T*;
  using const_pointer = const T*;
  using iterator = T*;
  using const_iterator = const T*;
  using reverse_iterator = std::reverse_iterator<T*>;
  using const_reverse_iterator = std::reverse_iterator<const T*>;

  Storage() = default;
  explicit Storage(size_t n) { allocate(n); }
  Storage(size_t n, const T& value) : Storage(n) { std::fill(begin(), end(), value); }
  template <class It, class = typename std::iterator_traits<It>::iterator_category>
  Storage(It first, It last) : Storage(size_t(std::distance(first, last))) { std::copy(first, last, begin()); }
  Storage(std::initializer_list<T> init) : Storage(init.begin(), init.end()) {}
  Storage(const Storage& o) : Storage(o.begin(), o.end()) {}  // always a buffer of its own
  Storage(Storage&& o) noexcept : data_(o.data_), size_(o.size_), owned_(o.owned_) {
    o.data_ = nullptr, o.size_ = 0, o.owned_ = true;
  }
  Storage& operator=(const Storage& o) {
    if (this != &o) {
      resize(o.size_);
      std::copy(o.begin(), o.end(), begin());
    }
    return *this;
  }
  Storage& operator=(Storage&& o) {
    if (this == &o) return *this;
    if (!owned_) return *this = static_cast<const Storage&>(o);  // a view keeps its slice
    release();
    data_ = o.data_, size_ = o.size_, owned_ = o.owned_;
    o.data_ = nullptr, o.size_ = 0, o.owned_ = true;
    return *this;
  }
  ~Storage() { release(); }

  void resize(size_t n) {
    if (n == size_) return;
    if (!owned_) throw std::logic_error("a tensor in an arena cannot change size");
    release();
    allocate(n);
  }
  // Becomes a view of n elements at p (its own buffer, if any, is freed).
  void view(T* p, size_t n) {
    release();
    data_ = p, size_ = n, owned_ = false;
  }
  bool is_view() const { return !owned_; }
  void swap(Storage& o) noexcept {
    std::swap(data_, o.data_), std::swap(size_, o.size_), std::swap(owned_, o.owned_);
  }

  size_t size() const { return size_; }
  size_t max_size() const { return size_t(-1) / sizeof(T); }
  bool empty() const { return size_ == 0; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T& front() { return data_[0]; }
  const T& front() const { return data_[0]; }
  T& back() { return data_[size_ - 1]; }
  const T& back() const { return data_[size_ - 1]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }
  const T* cbegin() const { return data_; }
  const T* cend() const { return data_ + size_; }
  reverse_iterator rbegin() { return reverse_iterator(end()); }
  reverse_iterator rend() { return reverse_iterator(begin()); }
  const_reverse_iterator rbegin() const { return const_reverse_iterator(end()); }
  const_reverse_iterator rend() const { return const_reverse_iterator(begin()); }
  const_reverse_iterator crbegin() const { return rbegin(); }
  const_reverse_iterator crend() const { return rend(); }

 private:
  void allocate(size_t n) {
    data_ = n ? static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kAlignment))) : nullptr;
    size_ = n, owned_ = true;
  }
  void release() {
    if (owned_ && data_) ::operator delete(data_, std::align_val_t(kAlignment));
    data_ = nullptr, size_ = 0, owned_ = true;
  }
  // Every buffer starts on a cache line, as the arena's slices do: the GEMMs'
  // packing and stores run measurably faster on 64-byte-aligned rows.
  static constexpr size_t kAlignment = 64;
  T* data_ = nullptr;
  size_t size_ = 0;
  bool owned_ = true;
};

template <class T, size_t R>
using Tensor = xt::xtensor_container<Storage<T>, R, xt::layout_type::row_major>;
template <class T> using Tensor1 = Tensor<T, 1>;
template <class T> using Tensor2 = Tensor<T, 2>;
template <class T> using Tensor3 = Tensor<T, 3>;
template <class T> using Tensor4 = Tensor<T, 4>;

// Loops over fewer numbers than this run on the calling thread (an OpenMP
// `if` clause): waking a team costs more than the work, most of all with
// OMP_WAIT_POLICY=passive, as in a decode step's few rows. The split never
// changes a result: such loops write independent outputs.
inline constexpr long kParallelMinWork = 1L << 15;

// Resizes t to `shape` when it differs; keeps the buffer otherwise.
template <class T, size_t R>
void ensure_shape(Tensor<T, R>& t, const std::array<size_t, R>& shape) {
  if (!std::equal(shape.begin(), shape.end(), t.shape().begin())) t.resize(shape);
}

// t = zeros(shape), in t's own buffer when the shape is unchanged (assigning
// an xt::zeros expression would build a new buffer and swap it in).
template <class T, size_t R>
void assign_zeros(Tensor<T, R>& t, const std::array<size_t, R>& shape) {
  ensure_shape(t, shape);
  std::fill(t.begin(), t.end(), T(0));
}

// A named view of one parameter (or its gradient, or an optimizer moment).
template <class T> struct ParamRef {
  std::string name;          // DeepSeek-style, e.g. "layers.0.attn.wq.weight"
  T* data;
  std::vector<size_t> shape;
  Storage<T>* storage = nullptr;  // the tensor's memory, for Arena::adopt
  size_t size() const {
    size_t n = 1;
    for (size_t d : shape) n *= d;
    return n;
  }
};

template <class E> ParamRef<typename E::value_type> param_ref(const std::string& name, E& t) {
  return {name, t.data(), std::vector<size_t>(t.shape().begin(), t.shape().end()), &t.storage()};
}

// One contiguous buffer holding a list of tensors, each a view of its slice,
// in list order (llm.c's single parameter memory): zeroing all gradients is
// one fill, and an all-reduce or a copy to a device is one call. Each slice
// starts on a 64-byte boundary; the padding between slices stays zero.
template <class T> class Arena {
 public:
  struct Slice {
    size_t offset, size;
    size_t rank;  // of the tensor: AdamW decays matrices (rank >= 2), not gains
  };
  Arena() = default;
  Arena(const Arena&) = delete;  // the tensors that view it decide how it is copied
  Arena& operator=(const Arena&) = delete;
  Arena(Arena&&) = default;       // a moved buffer keeps its address
  Arena& operator=(Arena&&) = default;

  // Copies the tensors' values into a new buffer and makes each tensor a view of its slice.
  void adopt(const std::vector<ParamRef<T>>& tensors) {
    constexpr size_t kAlign = 64 / sizeof(T);
    slices_.clear();
    size_t n = 0;
    for (const auto& t : tensors) {
      slices_.push_back({n, t.size(), t.shape.size()});
      n += (t.size() + kAlign - 1) / kAlign * kAlign;
    }
    Storage<T> buffer(n, T(0));
    for (size_t i = 0; i < tensors.size(); ++i) {
      std::copy(tensors[i].data, tensors[i].data + tensors[i].size(), buffer.data() + slices_[i].offset);
      tensors[i].storage->view(buffer.data() + slices_[i].offset, tensors[i].size());
    }
    buffer_ = std::move(buffer);
  }
  T* data() { return buffer_.data(); }
  const T* data() const { return buffer_.data(); }
  size_t size() const { return buffer_.size(); }  // padding included
  const std::vector<Slice>& slices() const { return slices_; }
  void fill(T value) { std::fill(buffer_.begin(), buffer_.end(), value); }

 private:
  Storage<T> buffer_;  // 64-byte aligned, so every slice is too
  std::vector<Slice> slices_;
};

// SplitMix64: a small, portable generator. Every random number in dslab comes
// from here, so a seed means the same numbers on every platform and library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  // An independent generator for stream `stream` of `seed` (e.g. the batch of
  // one step). The start state is hashed, so streams s and s+1 do not walk
  // the same sequence shifted by one draw.
  Rng(uint64_t seed, uint64_t stream) : state_(mix(seed ^ mix(stream + 0x632BE59BD9B4E019ull))) {}
  uint64_t next() { return mix(state_ += 0x9E3779B97F4A7C15ull); }
  double uniform() { return (next() >> 11) * 0x1.0p-53; }       // [0, 1)
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }  // [0, n)
  double normal();                                               // N(0, 1), Box-Muller
 private:
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

}  // namespace dslab
