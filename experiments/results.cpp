// HDF5 run files and checkpoints; the layout is described in results.hpp.
#include "experiments/results.hpp"

#include <H5Cpp.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/io.hpp"

namespace dslab {
namespace {

namespace fs = std::filesystem;

// Runs `f`, turning HDF5's exceptions into a std::runtime_error naming the
// file. HDF5's own printing of its error stack is switched off: the message
// we throw is the report.
template <class F> decltype(auto) with_hdf5(const std::string& path, F&& f) {
  H5::Exception::dontPrint();
  try {
    return f();
  } catch (const H5::Exception& e) {
    throw std::runtime_error("cannot read " + path + " (not a dslab HDF5 file?): " +
                             e.getFuncName() + ": " + e.getDetailMsg());
  }
}

std::string shape_text(const std::vector<size_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// ---- writing ---------------------------------------------------------------

H5::StrType utf8_string_type() {
  H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
  type.setCset(H5T_CSET_UTF8);
  return type;
}

void set_attr(H5::H5Object& obj, const char* name, int64_t value) {
  obj.createAttribute(name, H5::PredType::STD_I64LE, H5::DataSpace())
      .write(H5::PredType::NATIVE_INT64, &value);
}
void set_attr(H5::H5Object& obj, const char* name, uint64_t value) {
  obj.createAttribute(name, H5::PredType::STD_U64LE, H5::DataSpace())
      .write(H5::PredType::NATIVE_UINT64, &value);
}
void set_attr(H5::H5Object& obj, const char* name, double value) {
  obj.createAttribute(name, H5::PredType::IEEE_F64LE, H5::DataSpace())
      .write(H5::PredType::NATIVE_DOUBLE, &value);
}
void set_attr(H5::H5Object& obj, const char* name, const std::string& value) {
  const H5::StrType type = utf8_string_type();
  obj.createAttribute(name, type, H5::DataSpace()).write(type, value);
}

void write_text(H5::Group& g, const char* name, const std::string& text) {
  const H5::StrType type = utf8_string_type();
  g.createDataSet(name, type, H5::DataSpace()).write(text, type);
}

void write_doubles(H5::Group& g, const std::string& name, const std::vector<double>& x) {
  const hsize_t n = x.size();
  H5::DataSet ds = g.createDataSet(name, H5::PredType::IEEE_F64LE, H5::DataSpace(1, &n));
  if (n > 0) ds.write(x.data(), H5::PredType::NATIVE_DOUBLE);
}

void write_floats(H5::Group& g, const std::string& name, const std::vector<size_t>& shape,
                  const float* data) {
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  H5::DataSet ds = g.createDataSet(name, H5::PredType::IEEE_F32LE,
                                   H5::DataSpace(int(dims.size()), dims.data()));
  ds.write(data, H5::PredType::NATIVE_FLOAT);
}

// What /model holds: the trained weights and the untrained state (expert biases).
std::vector<ParamRef<float>> model_state(Transformer<float>& model) {
  std::vector<ParamRef<float>> refs = model.params.refs();
  for (auto& b : model.params.buffers()) refs.push_back(b);
  return refs;
}

// A 1-D dataset of variable-length UTF-8 strings.
void write_strings(H5::Group& g, const std::string& name, const std::vector<std::string>& texts) {
  const H5::StrType type = utf8_string_type();
  const hsize_t n = texts.size();
  std::vector<const char*> ptrs;
  for (const std::string& t : texts) ptrs.push_back(t.c_str());
  H5::DataSet ds = g.createDataSet(name, type, H5::DataSpace(1, &n));
  if (n > 0) ds.write(ptrs.data(), type);
}

// What a result file and a checkpoint share: config, attributes, metrics, weights.
void write_run(H5::Group& root, const RunInfo& info, int64_t steps, const Metrics& run_metrics,
               Transformer<float>& run_model, bool complete) {
  write_text(root, "config", info.config_text);
  set_attr(root, "dslab_version", provenance().dslab_version);
  set_attr(root, "git_commit", provenance().git_commit);
  set_attr(root, "blas_core", provenance().blas_core);
  set_attr(root, "seed", info.seed);
  set_attr(root, "threads", int64_t(info.threads));
  set_attr(root, "wall_seconds", info.wall_seconds);
  set_attr(root, "steps", steps);
  set_attr(root, "num_parameters", int64_t(run_model.num_parameters()));
  set_attr(root, "complete", int64_t(complete ? 1 : 0));

  H5::Group metrics = root.createGroup("metrics");
  for (const auto& [name, column] : run_metrics) write_doubles(metrics, name, column);
  H5::Group model = root.createGroup("model");
  for (const auto& p : model_state(run_model)) write_floats(model, p.name, p.shape, p.data);
}

void write_run(H5::Group& root, const RunInfo& info, Trainer& trainer, bool complete) {
  write_run(root, info, trainer.step, trainer.metrics, trainer.model, complete);
}

// Tensors kept for the simulators; result files only.
void write_captured(H5::Group& root, const Captured& captured) {
  if (captured.empty()) return;
  H5::Group group = root.createGroup("captured");
  for (const auto& [name, t] : captured) write_floats(group, name, t.shape, t.data.data());
}

// AdamW's step count (attribute adamw_t of `root`) and moments (root/optimizer/m
// and /v), each moment named and shaped as its parameter in `refs`.
void write_optimizer(H5::Group& root, const std::vector<ParamRef<float>>& refs, AdamW<float>& opt) {
  if (opt.offset.size() != refs.size())
    throw std::logic_error("optimizer state does not line up with the model parameters");
  set_attr(root, "adamw_t", opt.t);
  H5::Group group = root.createGroup("optimizer");
  H5::Group m = group.createGroup("m"), v = group.createGroup("v");
  for (size_t i = 0; i < refs.size(); ++i) {
    write_floats(m, refs[i].name, refs[i].shape, opt.m_of(i));
    write_floats(v, refs[i].name, refs[i].shape, opt.v_of(i));
  }
}

// Writes through `fill` a new HDF5 file that appears under PATH only when it
// is complete (write_atomically). The parent folder is created when missing.
// On any failure nothing is left behind and a runtime_error names PATH.
//
// The file is built in memory (HDF5's core driver, no backing store) and its
// image is then written with plain file writes. A disk that fills up, or a
// file-size limit, then fails one write call with a clear errno; HDF5 1.10
// writing to the disk itself crashes in H5Fclose after such a failure.
void write_whole(const std::string& path, const std::function<void(H5::Group&)>& fill) {
  H5::Exception::dontPrint();
  std::vector<char> image;
  try {
    H5::FileAccPropList in_memory;
    in_memory.setCore(size_t(1) << 20, false);
    static std::atomic<uint64_t> serial{0};  // distinct in-memory file names within the process
    H5::H5File file(path + ".in-memory-" + std::to_string(serial++), H5F_ACC_TRUNC,
                    H5::FileCreatPropList::DEFAULT, in_memory);
    {
      H5::Group root = file.openGroup("/");
      fill(root);
    }
    file.flush(H5F_SCOPE_GLOBAL);
    const ssize_t size = H5Fget_file_image(file.getId(), nullptr, 0);
    if (size < 0) throw std::runtime_error("HDF5 could not size the file image");
    image.resize(size_t(size));
    if (H5Fget_file_image(file.getId(), image.data(), image.size()) != size)
      throw std::runtime_error("HDF5 could not copy the file image");
    file.close();
  } catch (const H5::Exception& e) {  // not a std::exception: say what HDF5 said
    throw std::runtime_error("cannot write " + path + ": " + e.getFuncName() + ": " + e.getDetailMsg());
  }
  try {
    const fs::path parent = fs::path(path).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
  } catch (const fs::filesystem_error& e) {
    throw std::runtime_error("cannot write " + path + ": " + e.what());
  }
  write_file_atomically(path, [&](std::ostream& out) { out.write(image.data(), std::streamsize(image.size())); });
}

// ---- reading ---------------------------------------------------------------

H5::H5File open_for_reading(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw std::runtime_error(path + ": no such file");
  return H5::H5File(path, H5F_ACC_RDONLY);
}

int64_t get_int_attr(const H5::H5Object& obj, const char* name) {
  int64_t value = 0;
  obj.openAttribute(name).read(H5::PredType::NATIVE_INT64, &value);
  return value;
}

std::string read_text(const H5::Group& g, const char* name) {
  H5::DataSet ds = g.openDataSet(name);
  std::string text;
  ds.read(text, ds.getStrType());
  return text;
}

std::set<std::string> member_names(const H5::Group& g) {
  std::set<std::string> names;
  for (hsize_t i = 0; i < g.getNumObjs(); ++i) names.insert(g.getObjnameByIdx(i));
  return names;
}

// Reads the float32 tensors of `group` named and shaped as `refs`, into new
// buffers; throws naming the first missing, extra or misshapen tensor.
std::vector<std::vector<float>> read_tensors(const std::string& path, const H5::H5File& file,
                                             const std::string& group,
                                             const std::vector<ParamRef<float>>& refs) {
  if (!file.nameExists(group)) throw std::runtime_error(path + ": has no " + group);
  const H5::Group g = file.openGroup(group);
  std::set<std::string> extra = member_names(g);
  for (const auto& p : refs) {
    if (!extra.erase(p.name))
      throw std::runtime_error(path + ": " + group + " has no " + p.name +
                               ", which the model has (a different model config?)");
  }
  if (!extra.empty())
    throw std::runtime_error(path + ": " + group + "/" + *extra.begin() +
                             " is not a parameter of the model (a different model config?)");

  std::vector<std::vector<float>> values;
  for (const auto& p : refs) {
    H5::DataSet ds = g.openDataSet(p.name);
    const H5::DataSpace space = ds.getSpace();
    std::vector<hsize_t> dims(size_t(space.getSimpleExtentNdims()));
    space.getSimpleExtentDims(dims.data());
    const std::vector<size_t> shape(dims.begin(), dims.end());
    if (shape != p.shape)
      throw std::runtime_error(path + ": " + group + "/" + p.name + " has shape " +
                               shape_text(shape) + ", the model expects " + shape_text(p.shape));
    values.emplace_back(p.size());
    ds.read(values.back().data(), H5::PredType::NATIVE_FLOAT);
  }
  return values;
}

void copy_into(const std::vector<std::vector<float>>& values, const std::vector<ParamRef<float>>& refs) {
  for (size_t i = 0; i < refs.size(); ++i) std::copy(values[i].begin(), values[i].end(), refs[i].data);
}

Metrics read_metrics_group(const std::string& path, const H5::H5File& file) {
  if (!file.nameExists("metrics")) throw std::runtime_error(path + ": has no /metrics");
  const H5::Group g = file.openGroup("metrics");
  Metrics metrics;
  for (const std::string& name : member_names(g)) {
    H5::DataSet ds = g.openDataSet(name);
    const H5::DataSpace space = ds.getSpace();
    if (space.getSimpleExtentNdims() != 1)
      throw std::runtime_error(path + ": /metrics/" + name + " is not a 1-D dataset");
    std::vector<double>& column = metrics[name];
    column.resize(size_t(space.getSimpleExtentNpoints()));
    if (!column.empty()) ds.read(column.data(), H5::PredType::NATIVE_DOUBLE);
  }
  return metrics;
}

// The tensors of `group` named and shaped as `refs`, and a function that
// copies them in (read first, stored later: a failure leaves nothing changed).
std::function<void()> read_into(const std::string& path, const H5::H5File& file, const std::string& group,
                                const std::vector<ParamRef<float>>& refs) {
  auto values = read_tensors(path, file, group, refs);
  return [refs, values = std::move(values)] { copy_into(values, refs); };
}

// What write_optimizer wrote under `group` ("" for the root), for `opt`.
std::function<void()> read_optimizer(const std::string& path, const H5::H5File& file, const std::string& group,
                                     const std::vector<ParamRef<float>>& refs, AdamW<float>& opt) {
  auto m = read_tensors(path, file, group + "/optimizer/m", refs);
  auto v = read_tensors(path, file, group + "/optimizer/v", refs);
  const int64_t t = get_int_attr(group.empty() ? file.openGroup("/") : file.openGroup(group), "adamw_t");
  if (t < 0) throw std::runtime_error(path + ": adamw_t = " + std::to_string(t) + " (AdamW's step count) is negative");
  return [&opt, t, m = std::move(m), v = std::move(v)] {
    for (size_t i = 0; i < m.size(); ++i) {
      std::copy(m[i].begin(), m[i].end(), opt.m_of(i));
      std::copy(v[i].begin(), v[i].end(), opt.v_of(i));
    }
    opt.t = t;
  };
}

// Reads weights, AdamW's state, the step and the metrics of a checkpoint; the
// returned function stores them (so a failure to read leaves everything unchanged).
std::function<void()> read_training_state(const std::string& path, const H5::H5File& file,
                                          Transformer<float>& model, AdamW<float>& opt, int64_t& step,
                                          Metrics& metrics, int64_t total_steps) {
  auto store_weights = read_into(path, file, "/model", model_state(model));
  auto store_optimizer = read_optimizer(path, file, "", model.params.refs(), opt);
  auto stored_metrics = read_metrics_group(path, file);
  const int64_t stored_step = get_int_attr(file, "steps");
  if (stored_step < 0 || stored_step > total_steps)
    throw std::runtime_error(path + ": steps = " + std::to_string(stored_step) + " is outside [0, " +
                             std::to_string(total_steps) + "], the steps of its config");
  return [=, &step, &metrics, stored_metrics = std::move(stored_metrics)] {
    store_weights();
    store_optimizer();
    step = stored_step;
    metrics = stored_metrics;
  };
}

std::vector<std::string> read_strings(const H5::Group& g, const std::string& name) {
  H5::DataSet ds = g.openDataSet(name);
  const H5::DataSpace space = ds.getSpace();
  const size_t n = size_t(space.getSimpleExtentNpoints());
  std::vector<char*> ptrs(n, nullptr);
  const H5::StrType type = utf8_string_type();
  if (n > 0) ds.read(ptrs.data(), type);
  std::vector<std::string> texts;
  for (char* p : ptrs) texts.emplace_back(p ? p : "");
  if (n > 0) H5::DataSet::vlenReclaim(ptrs.data(), type, space);
  return texts;
}

std::vector<double> read_doubles(const H5::Group& g, const std::string& name) {
  H5::DataSet ds = g.openDataSet(name);
  std::vector<double> x(size_t(ds.getSpace().getSimpleExtentNpoints()));
  if (!x.empty()) ds.read(x.data(), H5::PredType::NATIVE_DOUBLE);
  return x;
}

// Sampled bytes as text a UTF-8 string dataset can hold and h5py can decode:
// printable ASCII, '\n' and '\t' as they are, '\\' as "\\\\", any other byte as "\\xHH".
std::string escape_bytes(const std::string& bytes) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (const unsigned char c : bytes) {
    if (c == '\\') out += "\\\\";
    else if ((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t') out += char(c);
    else out += {'\\', 'x', hex[c >> 4], hex[c & 15]};
  }
  return out;
}

std::string unescape_bytes(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 >= text.size()) {
      out += text[i];
    } else if (text[i + 1] == '\\') {
      out += '\\';
      ++i;
    } else if (text[i + 1] == 'x' && i + 3 < text.size()) {
      out += char(std::stoi(text.substr(i + 2, 2), nullptr, 16));
      i += 3;
    } else {
      out += text[i];
    }
  }
  return out;
}

// /samples: step [n], prompt [n], completions and rewards [n * G] (G per sample).
void write_samples(H5::Group& root, const std::vector<RlSample>& samples) {
  H5::Group g = root.createGroup("samples");
  std::vector<double> steps, rewards, counts;
  std::vector<std::string> prompts, completions;
  for (const RlSample& s : samples) {
    steps.push_back(double(s.step));
    prompts.push_back(escape_bytes(s.prompt));
    counts.push_back(double(s.completions.size()));
    for (const std::string& c : s.completions) completions.push_back(escape_bytes(c));
    rewards.insert(rewards.end(), s.rewards.begin(), s.rewards.end());
  }
  write_doubles(g, "step", steps);
  write_doubles(g, "n_completions", counts);
  write_strings(g, "prompt", prompts);
  write_strings(g, "completions", completions);
  write_doubles(g, "rewards", rewards);
}

std::vector<RlSample> read_samples(const H5::H5File& file) {
  const H5::Group g = file.openGroup("samples");
  const auto steps = read_doubles(g, "step"), counts = read_doubles(g, "n_completions");
  const auto rewards = read_doubles(g, "rewards");
  const auto prompts = read_strings(g, "prompt"), completions = read_strings(g, "completions");
  std::vector<RlSample> samples;
  size_t at = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    RlSample s;
    s.step = int64_t(steps[i]);
    s.prompt = unescape_bytes(prompts.at(i));
    for (size_t j = 0; j < size_t(counts.at(i)); ++j, ++at) {
      s.completions.push_back(unescape_bytes(completions.at(at)));
      s.rewards.push_back(rewards.at(at));
    }
    samples.push_back(std::move(s));
  }
  return samples;
}

// "" when equal; otherwise where the two texts first differ, line by line.
std::string first_difference(const std::string& stored, const std::string& given) {
  std::istringstream a(stored), b(given);
  std::string la, lb;
  for (int line = 1;; ++line) {
    const bool has_a = bool(std::getline(a, la)), has_b = bool(std::getline(b, lb));
    if (!has_a && !has_b) return stored == given ? "" : "they differ in line endings";
    if (!has_a) la = "(end of text)";
    if (!has_b) lb = "(end of text)";
    if (!has_a || !has_b || la != lb)
      return "line " + std::to_string(line) + " is `" + la + "` in the checkpoint and `" + lb +
             "` in the given config";
  }
}

}  // namespace

std::string checkpoint_path(const std::string& result_path) {
  const std::string ext = ".h5";
  if (result_path.size() >= ext.size() &&
      result_path.compare(result_path.size() - ext.size(), ext.size(), ext) == 0)
    return result_path.substr(0, result_path.size() - ext.size()) + ".ckpt.h5";
  return result_path + ".ckpt.h5";
}

void write_result(const std::string& path, const RunInfo& info, Trainer& trainer, const Captured& captured) {
  write_whole(path, [&](H5::Group& root) {
    write_run(root, info, trainer, true);
    write_captured(root, captured);
  });
}

void write_checkpoint(const std::string& path, const RunInfo& info, Trainer& trainer) {
  write_whole(path, [&](H5::Group& root) {
    write_run(root, info, trainer, false);
    write_optimizer(root, trainer.model.params.refs(), trainer.optimizer);
  });
}

void read_checkpoint(const std::string& path, const std::string& config_text, Trainer& trainer) {
  with_hdf5(path, [&] {
    const H5::H5File file = open_for_reading(path);
    const std::string stored = read_text(file, "config");
    const std::string difference = first_difference(stored, config_text);
    if (!difference.empty())
      throw std::runtime_error("checkpoint " + path +
                               " was written for a different config than the one given: " +
                               difference);
    if (!file.attrExists("adamw_t"))
      throw std::runtime_error(path + ": has no optimizer state (not a checkpoint)");

    read_training_state(path, file, trainer.model, trainer.optimizer, trainer.step, trainer.metrics,
                        trainer.args.steps)();
  });
}

bool result_complete(const std::string& path) {
  H5::Exception::dontPrint();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  try {
    const H5::H5File file(path, H5F_ACC_RDONLY);
    return file.attrExists("complete") && get_int_attr(file, "complete") == 1;
  } catch (const H5::Exception&) {
    return false;
  }
}

std::string read_config_text(const std::string& path) {
  return with_hdf5(path, [&] { return read_text(open_for_reading(path), "config"); });
}

void read_model(const std::string& path, Transformer<float>& model) {
  with_hdf5(path, [&] {
    const auto state = model_state(model);
    copy_into(read_tensors(path, open_for_reading(path), "/model", state), state);
  });
}

Metrics read_metrics(const std::string& path) {
  return with_hdf5(path, [&] { return read_metrics_group(path, open_for_reading(path)); });
}

// ---- RL runs ----------------------------------------------------------------

// PPO's value head (written for GRPO runs too, where it stays 0).
void write_value_head(H5::Group& root, RlTrainer& trainer) {
  H5::Group g = root.createGroup("value_head");
  for (const auto& p : trainer.value_head_refs(trainer.value_head)) write_floats(g, p.name, p.shape, p.data);
}

void write_rl_result(const std::string& path, const RunInfo& info, RlTrainer& trainer) {
  write_whole(path, [&](H5::Group& root) {
    write_run(root, info, trainer.step, trainer.metrics, trainer.policy, true);
    write_samples(root, trainer.samples);
    write_value_head(root, trainer);
  });
}

void write_rl_checkpoint(const std::string& path, const RunInfo& info, RlTrainer& trainer) {
  write_whole(path, [&](H5::Group& root) {
    write_run(root, info, trainer.step, trainer.metrics, trainer.policy, false);
    write_samples(root, trainer.samples);
    write_optimizer(root, trainer.policy.params.refs(), trainer.optimizer);
    H5::Group ref = root.createGroup("reference");
    for (const auto& p : model_state(trainer.reference)) write_floats(ref, p.name, p.shape, p.data);
    write_value_head(root, trainer);
    H5::Group value_optimizer = root.createGroup("value_optimizer");
    write_optimizer(value_optimizer, trainer.value_head_refs(trainer.value_head), trainer.value_optimizer);
    if (trainer.critic) {
      H5::Group critic = root.createGroup("critic");
      for (const auto& p : model_state(*trainer.critic)) write_floats(critic, p.name, p.shape, p.data);
      H5::Group critic_optimizer = root.createGroup("critic_optimizer");
      write_optimizer(critic_optimizer, trainer.critic->params.refs(), trainer.critic_optimizer);
    }
  });
}

void read_rl_checkpoint(const std::string& path, const std::string& config_text, RlTrainer& trainer) {
  with_hdf5(path, [&] {
    const H5::H5File file = open_for_reading(path);
    const std::string difference = first_difference(read_text(file, "config"), config_text);
    if (!difference.empty())
      throw std::runtime_error("checkpoint " + path +
                               " was written for a different config than the one given: " + difference);
    if (!file.attrExists("adamw_t") || !file.nameExists("reference") || !file.nameExists("samples"))
      throw std::runtime_error(path + ": has no optimizer state or reference model (not an RL checkpoint)");
    const auto store = read_training_state(path, file, trainer.policy, trainer.optimizer, trainer.step,
                                           trainer.metrics, trainer.setup.rl.steps);
    const auto head_refs = trainer.value_head_refs(trainer.value_head);
    std::vector<std::function<void()>> stores = {
        store, read_into(path, file, "/reference", model_state(trainer.reference)),
        read_into(path, file, "/value_head", head_refs),
        read_optimizer(path, file, "/value_optimizer", head_refs, trainer.value_optimizer)};
    if (trainer.critic) {
      if (!file.nameExists("critic"))
        throw std::runtime_error(path + ": has no /critic (written with another rl.value_model?)");
      stores.push_back(read_into(path, file, "/critic", model_state(*trainer.critic)));
      stores.push_back(read_optimizer(path, file, "/critic_optimizer", trainer.critic->params.refs(),
                                      trainer.critic_optimizer));
    }
    std::vector<RlSample> samples = read_samples(file);
    for (const auto& s : stores) s();
    trainer.samples = std::move(samples);
  });
}

// ---- reward-model runs ----------------------------------------------------------

void write_reward_head(H5::Group& root, LearnedRewardModel<float>& model) {
  H5::Group g = root.createGroup("reward_head");
  for (const auto& p : model.head_refs(model.head)) write_floats(g, p.name, p.shape, p.data);
}

void write_reward_result(const std::string& path, const RunInfo& info, RewardModelTrainer& trainer) {
  write_whole(path, [&](H5::Group& root) {
    write_run(root, info, trainer.step, trainer.metrics, trainer.model.trunk, true);
    write_reward_head(root, trainer.model);
  });
}

void write_reward_checkpoint(const std::string& path, const RunInfo& info, RewardModelTrainer& trainer) {
  write_whole(path, [&](H5::Group& root) {
    write_run(root, info, trainer.step, trainer.metrics, trainer.model.trunk, false);
    write_optimizer(root, trainer.model.trunk.params.refs(), trainer.optimizer);
    write_reward_head(root, trainer.model);
    H5::Group head_optimizer = root.createGroup("head_optimizer");
    write_optimizer(head_optimizer, trainer.model.head_refs(trainer.model.head), trainer.head_optimizer);
  });
}

void read_reward_checkpoint(const std::string& path, const std::string& config_text, RewardModelTrainer& trainer) {
  with_hdf5(path, [&] {
    const H5::H5File file = open_for_reading(path);
    const std::string difference = first_difference(read_text(file, "config"), config_text);
    if (!difference.empty())
      throw std::runtime_error("checkpoint " + path +
                               " was written for a different config than the one given: " + difference);
    if (!file.attrExists("adamw_t") || !file.nameExists("head_optimizer"))
      throw std::runtime_error(path + ": has no optimizer state or reward head (not a dslab reward checkpoint)");
    const auto head_refs = trainer.model.head_refs(trainer.model.head);
    const std::vector<std::function<void()>> stores = {
        read_training_state(path, file, trainer.model.trunk, trainer.optimizer, trainer.step, trainer.metrics,
                            trainer.args.steps),
        read_into(path, file, "/reward_head", head_refs),
        read_optimizer(path, file, "/head_optimizer", head_refs, trainer.head_optimizer)};
    for (const auto& s : stores) s();
  });
}

LearnedRewardModel<float> read_reward_model(const std::string& path) {
  if (!result_complete(path))
    throw std::runtime_error(path + ": not a complete dslab result (missing, unreadable or still a checkpoint)");
  return with_hdf5(path, [&] {
    const H5::H5File file = open_for_reading(path);
    if (!file.nameExists("reward_head"))
      throw std::runtime_error(path + ": has no /reward_head (not a dslab reward result)");
    RunConfig cfg;
    try {
      cfg = parse_reward_config_text(read_text(file, "config"));
    } catch (const ConfigError& e) {
      throw std::runtime_error(path + ": its config is not a reward-model config: " + e.what());
    }
    LearnedRewardModel<float> model(cfg.model);
    read_into(path, file, "/model", model_state(model.trunk))();
    read_into(path, file, "/reward_head", model.head_refs(model.head))();
    return model;
  });
}

// ---- eval runs ----------------------------------------------------------------

void write_eval_result(const std::string& path, const RunInfo& info, const EvalResult& r, int64_t num_parameters,
                       std::optional<double> val_loss) {
  const auto doubles = [](const auto& xs) { return std::vector<double>(xs.begin(), xs.end()); };
  write_whole(path, [&](H5::Group& root) {
    write_text(root, "config", info.config_text);
    set_attr(root, "dslab_version", provenance().dslab_version);
    set_attr(root, "git_commit", provenance().git_commit);
    set_attr(root, "blas_core", provenance().blas_core);
    set_attr(root, "seed", info.seed);
    set_attr(root, "threads", int64_t(info.threads));
    set_attr(root, "wall_seconds", info.wall_seconds);
    set_attr(root, "steps", int64_t(0));
    set_attr(root, "num_parameters", num_parameters);
    set_attr(root, "complete", int64_t(1));
    H5::Group m = root.createGroup("metrics");
    write_doubles(m, "k", doubles(r.k));
    write_doubles(m, "pass_at_k", r.pass_at_k);
    write_doubles(m, "maj_at_k", r.maj_at_k);
    const double n_samples = double(r.correct.size()) * double(r.k.empty() ? 0 : r.k.back());
    const std::vector<std::pair<const char*, double>> scalars = {
        {"accuracy", r.accuracy},
        {"format_rate", r.format_rate},
        {"language_consistency", r.language},
        {"response_length", r.response_length},
        {"reflection_words", r.reflection_words},
        {"stopped", r.stopped},
        {"yield", n_samples > 0 ? double(r.pairs.size()) / n_samples : 0.0},
        {"tokens_per_second", r.sample_seconds > 0 ? double(r.tokens) / r.sample_seconds : 0.0},
        {"sample_seconds", r.sample_seconds},
        {"peak_rss_mib", peak_rss_mib()},
    };
    for (const auto& [name, value] : scalars) write_doubles(m, name, {value});
    if (val_loss) write_doubles(m, "val_loss", {*val_loss});
    H5::Group problems = root.createGroup("problems");
    write_strings(problems, "prompt", r.prompts);
    write_doubles(problems, "correct", doubles(r.correct));
    H5::Group pairs = root.createGroup("pairs");
    std::vector<std::string> prompts, responses;
    for (const SftPair& p : r.pairs) prompts.push_back(escape_bytes(p.prompt)), responses.push_back(escape_bytes(p.response));
    write_strings(pairs, "prompt", prompts);
    write_strings(pairs, "response", responses);
    write_doubles(pairs, "problem", doubles(r.pair_problem));
  });
}

namespace {

std::vector<SftPair> read_jsonl_pairs(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot be read");
  std::vector<SftPair> pairs;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto fail = [&](const std::string& why) {
      throw std::runtime_error(path + ":" + std::to_string(n) + ": " + why +
                               " (each line of a pairs file is {\"prompt\": \"...\", \"response\": \"...\"})");
    };
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      fail(std::string("not JSON: ") + e.what());
    }
    if (!j.is_object()) fail("not a JSON object");
    for (const char* key : {"prompt", "response"})
      if (!j.contains(key) || !j[key].is_string()) fail(std::string("no string \"") + key + "\"");
    pairs.push_back({j["prompt"].get<std::string>(), j["response"].get<std::string>()});
  }
  return pairs;
}

}  // namespace

std::vector<SftPair> read_pairs(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw std::runtime_error(path + ": no such file");
  std::vector<SftPair> pairs;
  if (H5::H5File::isHdf5(path)) {
    pairs = with_hdf5(path, [&] {
      const H5::H5File file = open_for_reading(path);
      if (!file.exists("pairs")) throw std::runtime_error(path + ": has no /pairs (not a dslab eval result)");
      const H5::Group g = file.openGroup("pairs");
      const std::vector<std::string> prompts = read_strings(g, "prompt"), responses = read_strings(g, "response");
      if (prompts.size() != responses.size()) throw std::runtime_error(path + ": /pairs/prompt and /pairs/response differ in length");
      std::vector<SftPair> out;
      for (size_t i = 0; i < prompts.size(); ++i) out.push_back({unescape_bytes(prompts[i]), unescape_bytes(responses[i])});
      return out;
    });
  } else {
    pairs = read_jsonl_pairs(path);
  }
  if (pairs.empty()) throw std::runtime_error(path + ": holds no prompt -> response pair");
  return pairs;
}

}  // namespace dslab
