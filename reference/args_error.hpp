// The error every XArgs::validate() throws: what() says which rule is broken
// and what is allowed, with the values; keys() are the run-config key paths
// the rule concerns ("model.n_expert_groups", "model.n_routed_experts"), so a
// config loader can say where each was set.
#pragma once

#include <charconv>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace dslab {

class ArgsError : public std::invalid_argument {
 public:
  ArgsError(std::vector<std::string> keys, const std::string& message)
      : std::invalid_argument(message), keys_(std::move(keys)) {}
  const std::vector<std::string>& keys() const { return keys_; }

 private:
  std::vector<std::string> keys_;
};

// Throws ArgsError(keys, message) unless `ok`.
inline void require(bool ok, std::vector<std::string> keys, const std::string& message) {
  if (!ok) throw ArgsError(std::move(keys), message);
}

// A value as the messages show it: integers in full, doubles in the shortest
// digits that read back to the same value (0.003, 1e-06).
template <class T> std::string value_text(T x) {
  if constexpr (std::is_floating_point_v<T>) {
    char buf[64];
    const auto end = std::to_chars(buf, buf + sizeof buf, double(x)).ptr;
    return std::string(buf, end);
  } else {
    return std::to_string(x);
  }
}

}  // namespace dslab
