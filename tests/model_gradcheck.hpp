// Whole-model gradient checks: every parameter of a Transformer<double>
// against finite differences of its own loss (tests/finite_difference.hpp).
#pragma once

#include <functional>

#include <gtest/gtest.h>

#include "reference/transformer.hpp"
#include "tests/finite_difference.hpp"

namespace dslab::test {

// RMSNorm gains 1 + 0.3 N(0, 1) drawn from rng, in parameter order: not all
// ones, so a gain that is dropped or misapplied shows.
template <class T> void randomize_gains(Transformer<T>& model, Rng& rng) {
  for (auto& p : model.params.refs())
    if (p.shape.size() == 1)
      for (size_t j = 0; j < p.size(); ++j) p.data[j] = T(1.0 + 0.3 * rng.normal());
}

// One forward and backward of `loss` (which runs model.forward), then each
// parameter tensor: max |numeric - analytic| <= tolerance * max |analytic|.
inline void expect_parameter_gradients(Transformer<double>& model, const std::function<double()>& loss,
                                       double tolerance) {
  model.zero_grad();
  loss();
  model.backward();
  const auto params = model.params.refs();
  const auto grads = model.grads.refs();
  for (size_t i = 0; i < params.size(); ++i) {
    ASSERT_EQ(params[i].name, grads[i].name);
    EXPECT_LE(gradient_error(loss, params[i].data, grads[i].data, params[i].size()), tolerance)
        << params[i].name;
  }
}

}  // namespace dslab::test
