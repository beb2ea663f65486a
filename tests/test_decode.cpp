// Incremental decoding with per-layer caches (reference/decode.hpp): at every
// position, the logits decode_step (or prefill) returns must be the row of
// Transformer::forward_logits over the whole sequence, for MHA, GQA, MLA
// (absorbed latent cache; naive cache for rope = "full"), dense and MoE
// models, with sequences of different prompt and total lengths decoded in one
// batch (so the batch shrinks as sequences end).
//
// Both compute the same sums up to GEMM blocking and the absorbed MLA's
// reassociation: in double they agree to ~1e-15 relative (bound 1e-12), in
// float to ~1e-6 (bound 2e-5). A cache off by one position, a wrong RoPE
// position or a sequence reading another's cache gives O(1) differences.
#include <omp.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "reference/decode.hpp"
#include "tests/model_gradcheck.hpp"

namespace dslab {
namespace {

ModelArgs tiny(AttnKind attn, int n_kv_heads, bool moe) {
  ModelArgs a;
  a.vocab_size = 40;
  a.dim = 16;
  a.n_layers = 2;
  a.n_heads = 4;
  a.n_kv_heads = n_kv_heads;
  a.inter_dim = 24;
  a.max_seq_len = 16;
  a.init_std = 0.4;  // large weights: attention far from uniform
  a.attn = attn;
  a.mla = MlaArgs{.q_lora_rank = 6, .kv_lora_rank = 8, .qk_nope_head_dim = 4, .qk_rope_head_dim = 4,
                  .v_head_dim = 4};
  if (moe) {
    a.moe = MoeArgs{.moe_inter_dim = 8, .n_routed_experts = 4, .n_shared_experts = 1, .n_activated_experts = 2};
    a.n_dense_layers = 1;
  }
  return a;
}

template <class T> double max_rel(const T* ours, const T* ref, int n) {
  double err = 0, scale = 0;
  for (int i = 0; i < n; ++i) {
    err = std::max(err, std::abs(double(ours[i]) - double(ref[i])));
    scale = std::max(scale, std::abs(double(ref[i])));
  }
  return err / scale;
}

// Three sequences (prompt length, total length) decoded together, or n of
// them (n > kDecodeChunk: a step in several chunks).
template <class T> void check_decoding(const ModelArgs& args, double tol, int n = 3) {
  Transformer<T> model(args);
  model.init_weights(3);
  Rng rng(11);
  test::randomize_gains(model, rng);
  const int V = args.vocab_size;
  std::vector<std::pair<int, int>> shapes = {{1, 9}, {4, 16}, {7, 12}};
  for (int i = 3; i < n; ++i) shapes.push_back({1 + i % 7, 9 + i % 8});
  std::vector<std::vector<int>> seqs;
  std::vector<Tensor2<T>> full;
  for (auto [p, len] : shapes) {
    std::vector<int> s(len);
    for (int& t : s) t = int(rng.below(V));
    full.push_back(model.forward_logits(s, 1, len));
    seqs.push_back(s);
  }
  Decoder<T> dec(model);
  std::vector<DecodeState<T>> states;
  for (size_t i = 0; i < seqs.size(); ++i) {
    states.push_back(dec.new_state(shapes[i].second));
    const int p = shapes[i].first;
    const std::vector<T> row = dec.prefill(states[i], std::vector<int>(seqs[i].begin(), seqs[i].begin() + p));
    EXPECT_LE(max_rel(row.data(), &full[i](p - 1, 0), V), tol) << "prefill of sequence " << i;
  }
  for (;;) {
    std::vector<DecodeState<T>*> batch;
    std::vector<int> tokens, which;
    for (size_t i = 0; i < seqs.size(); ++i)
      if (states[i].pos < shapes[i].second) {
        batch.push_back(&states[i]);
        tokens.push_back(seqs[i][states[i].pos]);
        which.push_back(int(i));
      }
    if (batch.empty()) break;
    std::vector<int> pos;
    for (DecodeState<T>* s : batch) pos.push_back(s->pos);
    const Tensor2<T>& logits = dec.decode_step(batch, tokens);
    ASSERT_EQ(logits.shape(0), batch.size());
    for (size_t b = 0; b < batch.size(); ++b)
      EXPECT_LE(max_rel(&logits(b, 0), &full[which[b]](pos[b], 0), V), tol)
          << "sequence " << which[b] << " at position " << pos[b] << " in a batch of " << batch.size();
  }
  // Every sequence is full now: one more token must throw, not write past its caches.
  std::vector<DecodeState<T>*> one{&states[0]};
  EXPECT_THROW(dec.decode_step(one, {0}), std::invalid_argument);
}

TEST(Decode, MhaEqualsForwardDouble) { check_decoding<double>(tiny(AttnKind::Mha, 4, false), 1e-12); }
TEST(Decode, GqaEqualsForwardDouble) { check_decoding<double>(tiny(AttnKind::Mha, 2, false), 1e-12); }
TEST(Decode, MlaEqualsForwardDouble) { check_decoding<double>(tiny(AttnKind::Mla, 4, false), 1e-12); }
TEST(Decode, MlaFullRopeEqualsForwardDouble) {
  ModelArgs a = tiny(AttnKind::Mla, 4, false);
  a.mla.rope = MlaRope::Full;
  check_decoding<double>(a, 1e-12);
}
TEST(Decode, MlaDirectQueryEqualsForwardDouble) {
  ModelArgs a = tiny(AttnKind::Mla, 4, true);
  a.mla.q_lora_rank = 0;
  check_decoding<double>(a, 1e-12);
}
TEST(Decode, MoeEqualsForwardDouble) { check_decoding<double>(tiny(AttnKind::Mha, 2, true), 1e-12); }
TEST(Decode, MlaMoeEqualsForwardDouble) { check_decoding<double>(tiny(AttnKind::Mla, 4, true), 1e-12); }

TEST(Decode, MhaEqualsForwardFloat) { check_decoding<float>(tiny(AttnKind::Mha, 4, false), 2e-5); }
TEST(Decode, GqaMoeEqualsForwardFloat) { check_decoding<float>(tiny(AttnKind::Mha, 2, true), 2e-5); }
TEST(Decode, MlaMoeEqualsForwardFloat) { check_decoding<float>(tiny(AttnKind::Mla, 4, true), 2e-5); }

// Capacity dropping ranks a token among all tokens of a forward: the decoder
// cannot reproduce it and says so.
TEST(Decode, StepsInSeveralChunksEqualForward) {
  check_decoding<double>(tiny(AttnKind::Mha, 2, false), 1e-12, 2 * kDecodeChunk + 3);
  check_decoding<double>(tiny(AttnKind::Mla, 4, true), 1e-12, kDecodeChunk + 1);
  check_decoding<float>(tiny(AttnKind::Mha, 4, true), 2e-5, 2 * kDecodeChunk + 3);
}

// The chunks of a step depend on the batch alone: 1 and 2 threads give the same bits.
TEST(Decode, ChunkedStepIsTheSameOnAnyThreadCount) {
  const ModelArgs args = tiny(AttnKind::Mha, 2, true);
  Transformer<float> model(args);
  model.init_weights(5);
  const int n = 2 * kDecodeChunk + 5;
  std::vector<std::vector<float>> out;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    Decoder<float> dec(model);
    std::vector<DecodeState<float>> states;
    for (int i = 0; i < n; ++i) {
      states.push_back(dec.new_state(12));
      dec.prefill(states.back(), {1 + i % 5, 2, 3});
    }
    std::vector<DecodeState<float>*> batch;
    std::vector<int> tokens;
    for (int i = 0; i < n; ++i) batch.push_back(&states[i]), tokens.push_back(i % args.vocab_size);
    std::vector<float> all;
    for (int step = 0; step < 4; ++step) {
      const Tensor2<float>& logits = dec.decode_step(batch, tokens);
      all.insert(all.end(), logits.begin(), logits.end());
    }
    out.push_back(all);
  }
  omp_set_num_threads(2);
  EXPECT_EQ(out[0], out[1]);
}

TEST(Decode, RefusesMoeCapacityDropping) {
  ModelArgs a = tiny(AttnKind::Mha, 4, true);
  a.moe.capacity_factor = 1.0;
  Transformer<float> model(a);
  try {
    Decoder<float> dec(model);
    FAIL() << "a decoder for an MoE model with capacity_factor > 0";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("capacity_factor"), std::string::npos) << e.what();
  }
}

TEST(Decode, RejectsBadPrefillAndLengths) {
  Transformer<float> model(tiny(AttnKind::Mha, 4, false));
  Decoder<float> dec(model);
  EXPECT_THROW(dec.new_state(17), std::invalid_argument);  // beyond max_seq_len
  DecodeState<float> s = dec.new_state(4);
  EXPECT_THROW(dec.prefill(s, {1, 2, 3, 4, 5}), std::invalid_argument);
  EXPECT_THROW(dec.prefill(s, {}), std::invalid_argument);
  dec.prefill(s, {1, 2});
  EXPECT_THROW(dec.prefill(s, {1}), std::invalid_argument);  // not empty
  EXPECT_THROW(dec.decode_step({&s}, {40}), std::invalid_argument);  // token out of range
}

}  // namespace
}  // namespace dslab
