// The whole reference model (reference/transformer.hpp) from Python: its
// arguments (from keywords, a run config, or DeepSeek's inference config.json),
// its parameters as a state dict by DeepSeek's names ("embed.weight",
// "layers.0.attn.wkv_a.weight", "layers.1.ffn.experts.3.w1.weight", ...), the
// forward with its loss parts, the backward, and a trained model read from a
// dslab result file. Also the results loader: a result file's metrics.
#include <variant>

#include <H5Cpp.h>

#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/deepseek_config.hpp"
#include "experiments/hf_checkpoint.hpp"
#include "experiments/safetensors.hpp"
#include "experiments/results.hpp"
#include "python/src/arrays.hpp"
#include "reference/transformer.hpp"

namespace dslab::python {
namespace {

constexpr const char* kModelFields[] = {"vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "inter_dim",
                                        "max_seq_len", "rope_theta", "norm_eps", "init_std", "attn", "mla", "moe",
                                        "n_dense_layers", "balance", "mtp"};
constexpr const char* kBalanceFields[] = {"aux_alpha", "seq_aux_alpha", "device_alpha", "comm_alpha", "n_devices",
                                          "max_devices_per_token", "bias_update", "bias_gamma"};
constexpr const char* kMtpFields[] = {"depth", "lambda_", "lambda_final", "lambda_switch"};

// The MTP chain run on its own (Model.mtp_forward / mtp_backward): what its
// forward keeps for its backward, apart from the model's own activations.
template <class T> struct MtpRun {
  std::vector<MtpModuleCache<T>> caches;
  std::vector<double> depth_losses;
  std::map<std::string, double> parts;
  int batch = 0, seq_len = 0;
  BlockScratch<T> block;
  MtpScratch<T> scratch;
};

template <class T> T elem_of(const Transformer<T>&);

struct Model {
  template <class T> explicit Model(Transformer<T>&& t) : m(std::move(t)) {}
  std::variant<Transformer<double>, Transformer<float>> m;
  MtpRun<double> mtp64;
  MtpRun<float> mtp32;
  template <class T> MtpRun<T>& mtp() {
    if constexpr (std::is_same_v<T, double>) return mtp64;
    else return mtp32;
  }
};

template <class T> std::vector<int> ids_in(const py::handle& obj, const std::vector<Dim>& dims, int vocab,
                                           const char* fn, const char* arg) {
  const std::vector<long> v = ints_in(obj, dims, fn, arg, 0, vocab, "0 <= id < vocab_size");
  return {v.begin(), v.end()};
}

Model make_model(const ModelArgs& a, const std::string& dtype, uint64_t seed) {
  a.validate();
  if (dtype != "float64" && dtype != "float32")
    throw py::value_error("dslab.Model: dtype = '" + dtype + "'; allowed: float64, float32");
  Model model = dtype == "float64" ? Model{Transformer<double>(a)} : Model{Transformer<float>(a)};
  std::visit([&](auto& t) { t.init_weights(seed); }, model.m);
  return model;
}

template <class T> py::object forward_py(Transformer<T>& t, const py::handle& tokens_in, const py::handle& targets_in) {
  const char* fn = "dslab.Model.forward";
  const std::vector<long> s = check_shape(as_array(tokens_in, fn, "tokens"), {{-1, "batch"}, {-1, "seq_len"}}, fn, "tokens");
  if (s[0] == 0 || s[1] == 0) throw py::value_error(std::string(fn) + ": tokens is empty, shape " + shape_text(s));
  if (s[1] > t.args.max_seq_len)
    throw py::value_error(std::string(fn) + ": seq_len " + std::to_string(s[1]) + " exceeds max_seq_len " +
                          std::to_string(t.args.max_seq_len));
  const std::vector<int> tokens = ids_in<T>(tokens_in, {{s[0], "batch"}, {s[1], "seq_len"}}, t.args.vocab_size, fn, "tokens");
  const long V = t.args.vocab_size;
  if (targets_in.is_none()) {
    const Tensor2<T>& logits = t.forward_logits(tokens, int(s[0]), int(s[1]));
    return array_out(logits, {s[0], s[1], V});
  }
  const std::vector<int> targets = ids_in<T>(targets_in, {{s[0], "batch"}, {s[1], "seq_len"}}, t.args.vocab_size, fn, "targets");
  return py::float_(double(t.forward(tokens, targets, int(s[0]), int(s[1]))));
}

// Tokens [batch, seq_len] of a forward: their ids and shape, checked.
template <class T>
std::vector<int> tokens_in(const Transformer<T>& t, const py::handle& obj, const char* fn, const char* arg,
                           std::vector<long>& s) {
  s = check_shape(as_array(obj, fn, arg), {{-1, "batch"}, {-1, "seq_len"}}, fn, arg);
  if (s[0] == 0 || s[1] == 0) throw py::value_error(std::string(fn) + ": " + arg + " is empty, shape " + shape_text(s));
  return ids_in<T>(obj, {{s[0], "batch"}, {s[1], "seq_len"}}, t.args.vocab_size, fn, arg);
}

// The MTP chain (Eq. (25)-(26)) on h^0 = hidden [batch, seq_len, dim], with the
// model's modules, embedding and head and its current lambda.
template <class T>
double mtp_forward_py(Transformer<T>& t, MtpRun<T>& r, const py::handle& hidden_in, const py::handle& tokens_in_,
                      const py::handle& targets_in) {
  const char* fn = "dslab.Model.mtp_forward";
  if (t.args.mtp.depth == 0) throw py::value_error(std::string(fn) + ": the model has no MTP modules (mtp.depth = 0)");
  std::vector<long> s, st;
  const std::vector<int> tokens = tokens_in(t, tokens_in_, fn, "tokens", s);
  const std::vector<int> targets = tokens_in(t, targets_in, fn, "targets", st);
  if (st != s) throw py::value_error(std::string(fn) + ": targets has shape " + shape_text(st) + "; expected " + shape_text(s));
  if (s[1] <= t.args.mtp.depth)
    throw py::value_error(std::string(fn) + ": seq_len " + std::to_string(s[1]) + " must exceed mtp.depth " +
                          std::to_string(t.args.mtp.depth) + " (depth k predicts k+1 tokens ahead)");
  const long D = t.args.dim;
  const Tensor2<T> hidden = tensor_in<T, 2>(hidden_in, {{s[0], "batch"}, {s[1], "seq_len"}, {D, "dim"}},
                                            {size_t(s[0] * s[1]), size_t(D)}, fn, "hidden");
  r.batch = int(s[0]), r.seq_len = int(s[1]);
  r.parts.clear();
  const T loss = mtp_forward(r.caches, r.depth_losses, r.parts, hidden, tokens, targets, r.batch, r.seq_len,
                             t.mtp_lambda, t.params.mtp, MtpShared<T>{t.params.embed, t.params.head}, t.args.balance,
                             t.block_context(), r.block, r.scratch);
  return double(loss);
}

template <class T> py::object mtp_backward_py(Transformer<T>& t, MtpRun<T>& r) {
  if (r.batch == 0) throw py::value_error("dslab.Model.mtp_backward: call mtp_forward first");
  Tensor2<T> dhidden = xt::zeros<T>({size_t(r.batch) * size_t(r.seq_len), size_t(t.args.dim)});
  mtp_backward(dhidden, t.grads.mtp, t.grads.embed, t.grads.head, r.caches, r.batch, r.seq_len, t.mtp_lambda,
               t.params.mtp, MtpShared<T>{t.params.embed, t.params.head}, t.block_context(), r.block, r.scratch);
  return array_out(dhidden, {long(r.batch), long(r.seq_len), long(t.args.dim)});
}

}  // namespace

void bind_model(py::module_& m) {
  py::class_<BalanceArgs> bal(m, "BalanceArgs", "How the MoE layers are balanced: loss weights and Eq. (24)'s bias.");
  bal.def_readwrite("aux_alpha", &BalanceArgs::aux_alpha)
      .def_readwrite("seq_aux_alpha", &BalanceArgs::seq_aux_alpha)
      .def_readwrite("device_alpha", &BalanceArgs::device_alpha)
      .def_readwrite("comm_alpha", &BalanceArgs::comm_alpha)
      .def_readwrite("n_devices", &BalanceArgs::n_devices)
      .def_readwrite("max_devices_per_token", &BalanceArgs::max_devices_per_token)
      .def_readwrite("bias_gamma", &BalanceArgs::bias_gamma);
  enum_property(bal, "bias_update", &BalanceArgs::bias_update);
  kwargs_init(bal, {std::begin(kBalanceFields), std::end(kBalanceFields)});

  py::class_<MtpArgs> mtp(m, "MtpArgs", "Multi-Token Prediction: depth D and the weight lambda of Eq. (26).");
  mtp.def_readwrite("depth", &MtpArgs::depth)
      .def_readwrite("lambda_", &MtpArgs::lambda)
      .def_readwrite("lambda_final", &MtpArgs::lambda_final)
      .def_readwrite("lambda_switch", &MtpArgs::lambda_switch);
  kwargs_init(mtp, {std::begin(kMtpFields), std::end(kMtpFields)});

  py::class_<ModelArgs> args(m, "ModelArgs",
                             "The model (model.py's ModelArgs, plus dslab's): attn 'mha' or 'mla'; mla, moe, "
                             "balance, mtp hold each technique's own arguments.");
  args.def_readwrite("vocab_size", &ModelArgs::vocab_size)
      .def_readwrite("dim", &ModelArgs::dim)
      .def_readwrite("n_layers", &ModelArgs::n_layers)
      .def_readwrite("n_heads", &ModelArgs::n_heads)
      .def_readwrite("n_kv_heads", &ModelArgs::n_kv_heads)
      .def_readwrite("inter_dim", &ModelArgs::inter_dim)
      .def_readwrite("max_seq_len", &ModelArgs::max_seq_len)
      .def_readwrite("rope_theta", &ModelArgs::rope_theta)
      .def_readwrite("norm_eps", &ModelArgs::norm_eps)
      .def_readwrite("init_std", &ModelArgs::init_std)
      .def_readwrite("mla", &ModelArgs::mla)
      .def_readwrite("moe", &ModelArgs::moe)
      .def_readwrite("n_dense_layers", &ModelArgs::n_dense_layers)
      .def_readwrite("balance", &ModelArgs::balance)
      .def_readwrite("mtp", &ModelArgs::mtp)
      .def("validate", &ModelArgs::validate, "Raises ValueError for the first broken rule, naming its config keys.");
  enum_property(args, "attn", &ModelArgs::attn);
  kwargs_init(args, {std::begin(kModelFields), std::end(kModelFields)});
  args.def_static("from_config", [](const std::string& path, const std::vector<std::string>& overrides) {
          return load_run_config(path, overrides).model;
        }, py::arg("path"), py::arg("overrides") = std::vector<std::string>{},
        "The [model] of a dslab run config (TOML), after `extends` and overrides such as 'model.dim=64'.");
  args.def_static("from_deepseek_json", &model_args_from_deepseek_json, py::arg("path"),
                  "DeepSeek's inference config (inference/configs/config_671B.json and its kin), read as model.py reads it.");
  args.def_static("from_hf_config", &model_args_from_hf_config, py::arg("path"),
                  "A Hugging Face DeepseekV3 config.json (transformers' DeepseekV3Config).");
  args.def("hf_config_json", &hf_config_json, "This model's DeepseekV3 config.json text (ValueError if it has none).");

  py::class_<Model>(m, "Model",
                    "The reference transformer: embed, blocks (attention + dense FFN or MoE), norm, head, and the MTP "
                    "modules; parameters in one arena, named as DeepSeek's.")
      .def(py::init(&make_model), py::arg("args"), py::arg("dtype") = "float64", py::arg("seed") = 0,
           "A model with init_weights(seed): N(0, init_std) matrices, output projections scaled by 1/sqrt(2 n_layers).")
      .def_static("from_result", [](const std::string& path) {
             try {
               const RunConfig c = parse_run_config_text(read_config_text(path));
               Model model{Transformer<float>(c.model)};
               read_model(path, std::get<Transformer<float>>(model.m));
               return model;
             } catch (const H5::Exception& e) {
               throw py::value_error("dslab.Model.from_result: cannot read " + path + ": " + e.getDetailMsg());
             } catch (const std::runtime_error& e) {
               throw py::value_error(std::string("dslab.Model.from_result: ") + e.what());
             }
           }, py::arg("path"), "The trained float32 model of a dslab result (or checkpoint) file.")
      .def_static("from_hf", [](const std::string& path, const std::string& dtype) {
             Model model = make_model(hf_checkpoint_args(path), dtype, 0);
             std::visit([&](auto& t) { read_hf_checkpoint(path, t); }, model.m);
             return model;
           }, py::arg("path"), py::arg("dtype") = "float64",
           "A Hugging Face DeepseekV3 checkpoint: a folder with config.json and model.safetensors (or shards "
           "with model.safetensors.index.json); BF16 and FP8 (weight_scale_inv) tensors are dequantized.")
      .def("save_hf", [](Model& s, const std::string& dir, const std::string& dtype) {
             std::visit([&](auto& t) { write_hf_checkpoint(dir, t, parse_st_dtype(dtype, "dtype")); }, s.m);
           }, py::arg("dir"), py::arg("dtype") = "F32",
           "Writes dir/config.json and dir/model.safetensors (F32, F64 or BF16) with the published tensor names.")
      .def_property_readonly("args", [](const Model& s) { return std::visit([](auto& t) { return t.args; }, s.m); })
      .def_property_readonly("dtype", [](const Model& s) {
             return std::holds_alternative<Transformer<double>>(s.m) ? "float64" : "float32";
           })
      .def("num_parameters", [](Model& s) { return std::visit([](auto& t) { return t.num_parameters(); }, s.m); })
      .def("state_dict", [](Model& s) {
             return std::visit([](auto& t) {
               py::dict d = refs_out(t.params.refs());
               for (const auto& [k, v] : refs_out(t.params.buffers())) d[k] = v;
               return d;
             }, s.m);
           }, "{name: a copy of the parameter}, the expert biases ('layers.<l>.ffn.gate.bias') included.")
      .def("load_state_dict", [](Model& s, const py::dict& d) {
             std::visit([&](auto& t) {
               auto refs = t.params.refs();
               for (auto& b : t.params.buffers()) refs.push_back(b);
               refs_in(refs, d, "dslab.Model.load_state_dict", "state_dict");
             }, s.m);
           }, py::arg("state_dict"), "Sets every parameter (and expert bias); each must be there, with its shape and dtype.")
      .def("forward", [](Model& s, const py::handle& tokens, const py::handle& targets) {
             return std::visit([&](auto& t) { return forward_py(t, tokens, targets); }, s.m);
           }, py::arg("tokens"), py::arg("targets") = py::none(),
           "tokens [batch, seq_len] -> the objective (with targets; loss_parts() has its terms) or the logits "
           "[batch, seq_len, vocab_size] (without).")
      .def("backward", [](Model& s) { std::visit([](auto& t) { t.backward(); }, s.m); },
           "Adds the gradients of the last forward's objective into grads().")
      .def("zero_grad", [](Model& s) { std::visit([](auto& t) { t.zero_grad(); }, s.m); })
      .def("grads", [](Model& s) { return std::visit([](auto& t) { return refs_out(t.grads.refs()); }, s.m); },
           "{name: a copy of the gradient}.")
      .def("logits", [](Model& s) {
             return std::visit([](auto& t) -> py::object {
               const long B = t.acts.batch, T_ = t.acts.seq_len, V = t.args.vocab_size;
               return array_out(t.logits(), {B, T_, V});
             }, s.m);
           }, "The last forward's logits [batch, seq_len, vocab_size].")
      .def("loss_parts", [](Model& s) { return std::visit([](auto& t) { return t.loss_parts(); }, s.m); },
           "The last objective's terms: main, and aux, seq_aux, device, comm, mtp where configured.")
      .def("mtp_losses", [](Model& s) { return std::visit([](auto& t) { return t.mtp_losses(); }, s.m); },
           "L^k_MTP of Eq. (25) for k = 1..D, of the last forward (or of mtp_forward, after it).")
      .def("hidden", [](Model& s) {
             return std::visit([](auto& t) -> py::object {
               if (t.acts.x_final.size() == 0) throw py::value_error("dslab.Model.hidden: call forward first");
               return array_out(t.acts.x_final, {long(t.acts.batch), long(t.acts.seq_len), long(t.args.dim)});
             }, s.m);
           }, "h^0 of the last forward: the last block's output [batch, seq_len, dim], before the final norm; "
              "what the first MTP module reads.")
      .def("mtp_forward", [](Model& s, const py::handle& hidden, const py::handle& tokens, const py::handle& targets) {
             return std::visit([&](auto& t) {
               using T = decltype(elem_of(t));
               auto& r = s.mtp<T>();
               const double loss = mtp_forward_py(t, r, hidden, tokens, targets);
               t.acts.mtp_losses = r.depth_losses;
               return loss;
             }, s.m);
           }, py::arg("hidden"), py::arg("tokens"), py::arg("targets"),
           "The MTP modules alone on h^0 = hidden [batch, seq_len, dim] (e.g. hidden() of a forward on tokens): "
           "lambda/D sum_k L^k_MTP (Eq. (25)-(26)), module k reading t_{i+k} and predicting t_{i+k+1} = "
           "targets[i+k]; mtp_losses() then has each L^k. Equals loss_parts()['mtp'] of forward(tokens, targets).")
      .def("mtp_backward", [](Model& s) {
             return std::visit([&](auto& t) {
               using T = decltype(elem_of(t));
               return mtp_backward_py(t, s.mtp<T>());
             }, s.m);
           }, "The backward of the last mtp_forward: returns d/d hidden [batch, seq_len, dim]; the modules', the "
              "embedding's and the head's gradients add into grads().")
      .def("mtp_logits", [](Model& s, int k, const py::handle& tokens_obj) {
             return std::visit([&](auto& t) -> py::object {
               const char* fn = "dslab.Model.mtp_logits";
               const std::vector<long> v =
                   ints_in(tokens_obj, {{-1, "positions"}}, fn, "tokens", 0, t.args.vocab_size, "0 <= id < vocab_size");
               if (k < 1 || k > t.args.mtp.depth)
                 throw py::value_error(std::string(fn) + ": k = " + std::to_string(k) + "; allowed: 1.." +
                                       std::to_string(t.args.mtp.depth) + " (mtp.depth)");
               if (t.acts.batch != 1)
                 throw py::value_error(std::string(fn) + ": needs a forward on one sequence (batch 1) first");
               const std::vector<int> ids(v.begin(), v.end());
               const auto& logits = t.mtp_logits(k, ids);
               return array_out(logits, {long(ids.size()), long(t.args.vocab_size)});
             }, s.m);
           }, py::arg("k"), py::arg("tokens"),
           "Drafting (speculative decoding): after forward(tokens) on one sequence, call for k = 1, 2, ... in turn; "
           "MTP module k reads the first P positions of depth k-1's hidden state with tokens = t_{k..k+P-1} and "
           "returns logits [P, vocab_size]; row i predicts t_{i+k+1}.");

  m.def("hf_name", &hf_name, py::arg("name"), py::arg("n_layers"),
        "The Hugging Face name of a dslab parameter ('layers.0.attn.wq_a.weight' -> "
        "'model.layers.0.self_attn.q_a_proj.weight'); n_layers places the MTP modules.");
  m.def("load_safetensors", [](const std::string& path) {
          const SafetensorsFile f(path);
          py::dict d;
          for (const auto& [name, e] : f.entries()) {
            const std::vector<long> shape(e.shape.begin(), e.shape.end());
            if (e.dtype == StDtype::F64) d[py::str(name)] = array_out(f.doubles(name).data(), shape);
            else d[py::str(name)] = array_out(f.floats(name).data(), shape);
          }
          return d;
        }, py::arg("path"),
        "{name: array} of a safetensors file's floating-point tensors, decoded exactly (F64 as float64, the rest "
        "as float32); ValueError naming the file for a malformed one.");
  m.def("load_metrics", [](const std::string& path) {
          Metrics metrics;
          try {
            metrics = read_metrics(path);
          } catch (const H5::Exception& e) {
            throw py::value_error("dslab.load_metrics: cannot read " + path + ": " + e.getDetailMsg());
          } catch (const std::runtime_error& e) {
            throw py::value_error(std::string("dslab.load_metrics: ") + e.what());
          }
          py::dict d;
          for (const auto& [k, v] : metrics) d[py::str(k)] = array_out(v);
          return d;
        }, py::arg("path"), "The /metrics of a dslab result file: {name: float64 array}.");
}

}  // namespace dslab::python
