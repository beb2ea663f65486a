#include "reference/model_args.hpp"

namespace dslab {

MlaArgs ModelArgs::mla_args() const {
  MlaArgs m = mla;
  m.dim = dim;
  m.n_heads = n_heads;
  m.norm_eps = norm_eps;
  return m;
}

MoeArgs ModelArgs::moe_args() const {
  MoeArgs m = moe;
  m.dim = dim;
  return m;
}

}  // namespace dslab
