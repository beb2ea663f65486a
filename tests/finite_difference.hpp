// Finite differences, the gradient oracle of the reference tests (double).
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>

#include <gtest/gtest.h>

namespace dslab::test {

// h of the central difference. Richardson extrapolation over h and h/2
// cancels the h^2 term: truncation O(h^4), rounding about eps*|f|/h.
inline constexpr double kFiniteDifferenceStep = 5e-4;

// d f() / d *x by Richardson-extrapolated central differences; *x is restored.
inline double numeric_derivative(const std::function<double()>& f, double* x,
                                 double h = kFiniteDifferenceStep) {
  const double x0 = *x;
  auto central = [&](double s) {
    *x = x0 + s;
    const double up = f();
    *x = x0 - s;
    const double down = f();
    *x = x0;
    return (up - down) / (2 * s);
  };
  return (4 * central(h / 2) - central(h)) / 3;
}

// max |numeric - analytic| / max |analytic| over every coordinate of x[n],
// whose analytic gradient is grad[n].
inline double gradient_error(const std::function<double()>& f, double* x, const double* grad,
                             size_t n) {
  double max_err = 0, max_grad = 0;
  for (size_t j = 0; j < n; ++j) {
    max_err = std::max(max_err, std::abs(numeric_derivative(f, x + j) - grad[j]));
    max_grad = std::max(max_grad, std::abs(grad[j]));
  }
  EXPECT_GT(max_grad, 0.0) << "an all-zero gradient checks nothing";
  return max_err / max_grad;
}

}  // namespace dslab::test
