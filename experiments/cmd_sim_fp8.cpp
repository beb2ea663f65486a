// `dslab sim fp8 quantize ...` and `dslab sim fp8 gemm ...`: the FP8 error
// simulator (review Sec. 2.4.2). Each writes one JSON file (to a temporary
// name, then renamed) and prints a short summary.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <H5Cpp.h>
#include <nlohmann/json.hpp>

#include "experiments/commands.hpp"
#include "experiments/io.hpp"
#include "simulators/fp8/fp8_sim.hpp"

namespace dslab {
namespace {

using nlohmann::json;
namespace sim = fp8::sim;

[[noreturn]] void bad_input(const std::string& message) { exit_bad_input("sim fp8", message); }

// A 2-D float tensor from an HDF5 dataset; higher ranks fold their leading
// dimensions into rows, a 1-D dataset is one row.
Tensor2<float> read_hdf5_tensor(const std::string& path, const std::string& dataset) {
  if (!std::filesystem::exists(path)) bad_input("--input '" + path + "' does not exist");
  try {
    H5::Exception::dontPrint();
    H5::H5File file(path, H5F_ACC_RDONLY);
    if (!file.nameExists(dataset)) bad_input("--input '" + path + "' has no dataset '" + dataset + "'");
    H5::DataSet ds = file.openDataSet(dataset);
    if (ds.getTypeClass() != H5T_FLOAT && ds.getTypeClass() != H5T_INTEGER)
      bad_input("dataset '" + dataset + "' in '" + path + "' is not numeric");
    H5::DataSpace space = ds.getSpace();
    const int rank = space.getSimpleExtentNdims();
    if (rank < 1) bad_input("dataset '" + dataset + "' in '" + path + "' is a scalar; a tensor is needed");
    std::vector<hsize_t> dims(static_cast<size_t>(rank), 0);
    space.getSimpleExtentDims(dims.data());
    size_t rows = 1;
    for (int i = 0; i + 1 < rank; ++i) rows *= size_t(dims[size_t(i)]);
    const size_t cols = size_t(dims.back());
    if (rows * cols == 0) bad_input("dataset '" + dataset + "' in '" + path + "' is empty");
    Tensor2<float> x = Tensor2<float>::from_shape({rows, cols});
    ds.read(x.data(), H5::PredType::NATIVE_FLOAT);
    return x;
  } catch (const H5::Exception& e) {
    bad_input("cannot read dataset '" + dataset + "' from HDF5 file '" + path + "': " + e.getDetailMsg());
  }
}

json to_json(const sim::MatrixError& e) {
  return {{"max_rel_error", e.max_rel_error},
          {"normwise_rel_error", e.normwise_rel_error},
          {"deepgemm_diff", e.deepgemm_diff}};
}

// Options shared by both commands.
struct Common {
  std::string format = "e4m3";
  std::string scale = "auto";
  std::string dist = "normal";
  double outlier_rate = 0.01;
  double outlier_scale = 100.0;
  int dof = 3;
  uint64_t seed = 1;
  std::string json_path;
};

void add_common(CLI::App* cmd, Common& o) {
  cmd->add_option("--format", o.format, "e4m3 (fn, max 448), e5m2, or eXmY / eXmYfn such as e5m6")
      ->capture_default_str();
  cmd->add_option("--scale", o.scale, "exact (amax/max in fp32), pow2 (rounded up to 2^k), auto (pow2 for mx)")
      ->capture_default_str();
  cmd->add_option("--dist", o.dist, "")->capture_default_str();
  cmd->add_option("--outlier-rate", o.outlier_rate, "fraction of outlier channels (--dist outliers)")
      ->capture_default_str();
  cmd->add_option("--outlier-scale", o.outlier_scale, "their magnitude (--dist outliers)")->capture_default_str();
  cmd->add_option("--dof", o.dof, "Student-t degrees of freedom (--dist student-t)")->capture_default_str();
  cmd->add_option("--seed", o.seed, "random seed")->capture_default_str();
  cmd->add_option("--json", o.json_path, "write the results to this JSON file")->required();
}

// Parses the shared options; bad values exit with status 2.
struct Parsed {
  fp8::Format format;
  sim::DistConfig dist;
};
Parsed parse_common(const Common& o, const CLI::App* cmd, bool allow_hdf5) {
  Parsed p;
  try {
    p.format = fp8::parse_format(o.format);
  } catch (const std::invalid_argument& e) {
    bad_input(std::string("--format: ") + e.what());
  }
  try {
    if (!(allow_hdf5 && o.dist == "hdf5")) p.dist.dist = sim::parse_distribution(o.dist);
  } catch (const std::invalid_argument& e) {
    bad_input(std::string("--dist: ") + e.what() + (allow_hdf5 ? ", or hdf5 (with --input and --dataset)" : ""));
  }
  p.dist.outlier_rate = o.outlier_rate;
  p.dist.outlier_scale = o.outlier_scale;
  p.dist.dof = o.dof;
  try {
    sim::validate(p.dist);
  } catch (const std::invalid_argument& e) {
    bad_input(e.what());
  }
  const bool outliers = o.dist == "outliers";
  if (!outliers && (cmd->count("--outlier-rate") || cmd->count("--outlier-scale")))
    bad_input("--outlier-rate and --outlier-scale apply only to --dist outliers (got --dist " + o.dist + ")");
  if (o.dist != "student-t" && cmd->count("--dof"))
    bad_input("--dof applies only to --dist student-t (got --dist " + o.dist + ")");
  if (o.scale != "auto" && !parse_enum<fp8::ScaleRounding>(o.scale))
    bad_input("--scale '" + o.scale + "' is not allowed; allowed: " + names_text<fp8::ScaleRounding>() + ", auto");
  return p;
}

fp8::QuantConfig quant_config(const fp8::Format& format, const std::string& granularity, const std::string& scale,
                              const std::string& option) {
  fp8::QuantConfig cfg;
  cfg.format = format;
  try {
    cfg.granularity = fp8::parse_granularity(granularity);
  } catch (const std::invalid_argument& e) {
    bad_input(option + ": " + e.what());
  }
  // auto: power-of-two scales where the format needs them (mx's E8M0)
  cfg.scale_rounding = scale != "auto" ? *parse_enum<fp8::ScaleRounding>(scale)
                       : cfg.granularity == fp8::Granularity::Block1x32 ? fp8::ScaleRounding::PowerOfTwo
                                                                       : fp8::ScaleRounding::Exact;
  try {
    fp8::validate(cfg);
  } catch (const std::invalid_argument& e) {
    bad_input(option + " with --scale " + scale + ": " + e.what());
  }
  return cfg;
}

void add_quantize(CLI::App& fp8_cmd) {
  struct Options : Common {
    std::string granularity = "tile";
    std::string saturation = "finite";
    size_t rows = 512, cols = 1024;
    std::string input, dataset;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = fp8_cmd.add_subcommand("quantize", "Quantize a tensor and report SQNR, relative errors, "
                                                     "flushed and saturated fractions");
  add_common(cmd, *o);
  cmd->get_option("--dist")->description("normal, laplace, student-t, outliers (channel outliers), uniform, "
                                         "or hdf5 (a tensor from --input/--dataset)");
  cmd->add_option("--granularity", o->granularity, "tensor, row, tile (1x128), block (128x128), mx (1x32, E8M0)")
      ->capture_default_str();
  cmd->add_option("--saturation", o->saturation, "finite (__NV_SATFINITE) or none (__NV_NOSAT)")
      ->capture_default_str();
  cmd->add_option("--rows", o->rows, "rows (tokens) of a synthetic tensor")->capture_default_str();
  cmd->add_option("--cols", o->cols, "columns (channels) of a synthetic tensor")->capture_default_str();
  cmd->add_option("--input", o->input, "HDF5 file holding the tensor (--dist hdf5)");
  cmd->add_option("--dataset", o->dataset, "dataset path in --input");
  cmd->callback([o, cmd] {
    const Parsed p = parse_common(*o, cmd, true);
    fp8::QuantConfig cfg = quant_config(p.format, o->granularity, o->scale, "--granularity");
    const auto saturation = parse_enum<fp8::Saturation>(o->saturation);
    if (!saturation)
      bad_input("--saturation '" + o->saturation + "' is not allowed; allowed: " + names_text<fp8::Saturation>());
    cfg.saturation = *saturation;
    const bool from_file = o->dist == "hdf5";
    if (from_file != !o->input.empty() || from_file != !o->dataset.empty())
      bad_input("--input and --dataset go together with --dist hdf5, and only with it");
    if (from_file && (cmd->count("--rows") || cmd->count("--cols")))
      bad_input("--rows/--cols describe a synthetic tensor; with --dist hdf5 the dataset's shape is used");
    constexpr size_t kMaxElements = size_t(1) << 28;
    if (!from_file && (o->rows == 0 || o->cols == 0 || o->rows > kMaxElements || o->cols > kMaxElements ||
                       o->rows * o->cols > kMaxElements))
      bad_input("--rows and --cols must be positive with rows*cols at most 2^28");
    const Tensor2<float> x =
        from_file ? read_hdf5_tensor(o->input, o->dataset) : sim::sample(p.dist, o->rows, o->cols, o->seed);
    const sim::QuantizeReport r = sim::measure_quantization(x, cfg);

    json doc = provenance_json("quantize", o->seed);
    doc["format"] = p.format.name;
    doc["granularity"] = fp8::granularity_name(cfg.granularity);
    doc["scale"] = name_of(cfg.scale_rounding);
    doc["saturation"] = o->saturation;
    doc["dist"] = o->dist;
    if (from_file) {
      doc["input"] = o->input;
      doc["dataset"] = o->dataset;
    }
    if (o->dist == "outliers") {
      doc["outlier_rate"] = o->outlier_rate;
      doc["outlier_scale"] = o->outlier_scale;
    }
    if (o->dist == "student-t") doc["dof"] = o->dof;
    doc["rows"] = x.shape(0);
    doc["cols"] = x.shape(1);
    doc["groups"] = r.groups;
    doc["sqnr_db"] = r.sqnr_db;
    doc["group_sqnr_db"] = {{"count", r.group_sqnr_db.count}, {"min", r.group_sqnr_db.min},
                            {"median", r.group_sqnr_db.median}, {"mean", r.group_sqnr_db.mean},
                            {"max", r.group_sqnr_db.max}};
    doc["exact_groups"] = r.exact_groups;
    doc["normwise_rel_error"] = r.normwise_rel_error;
    doc["max_rel_error"] = r.max_rel_error;
    doc["flushed_fraction"] = r.flushed_fraction;
    doc["saturated_fraction"] = r.saturated_fraction;
    write_json(o->json_path, doc);
    std::printf("%s %s: SQNR %.2f dB (groups: min %.2f, median %.2f), normwise %.3e, max rel %.3e, "
                "flushed %.3e, saturated %.3e\n",
                p.format.name.c_str(), fp8::granularity_name(cfg.granularity).c_str(), r.sqnr_db,
                r.group_sqnr_db.min, r.group_sqnr_db.median, r.normwise_rel_error, r.max_rel_error,
                r.flushed_fraction, r.saturated_fraction);
  });
}

void add_gemm(CLI::App& fp8_cmd) {
  struct Options : Common {
    size_t m = 128, n = 128;
    std::vector<size_t> k = {4096};
    int accum_bits = 14;
    int promote_every = 128;
    int products_per_step = 32;
    std::string alignment = "floor";
    std::string a_granularity = "tile", b_granularity = "block";
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = fp8_cmd.add_subcommand(
      "gemm", "C = A B^T with FP8 inputs and the tensor-core accumulator model; errors for each K");
  add_common(cmd, *o);
  cmd->get_option("--dist")->description("normal, laplace, student-t, outliers, uniform (all positive)");
  cmd->add_option("--m", o->m, "rows of A and C")->capture_default_str();
  cmd->add_option("--n", o->n, "rows of B, columns of C")->capture_default_str();
  cmd->add_option("--k", o->k, "inner dimension; a comma-separated list sweeps it")->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--accum-bits", o->accum_bits, "mantissa bits the tensor-core accumulator keeps (FP32: 23)")
      ->capture_default_str();
  cmd->add_option("--promote-every", o->promote_every, "N_C: products between promotions into FP32 (0 = never)")
      ->capture_default_str();
  cmd->add_option("--products-per-step", o->products_per_step, "products aligned and added together (WGMMA K)")
      ->capture_default_str();
  cmd->add_option("--alignment", o->alignment, "how aligned terms are cut: truncate, floor, nearest")
      ->capture_default_str();
  cmd->add_option("--a-granularity", o->a_granularity, "scale groups of A: tensor, row, tile, block, mx")
      ->capture_default_str();
  cmd->add_option("--b-granularity", o->b_granularity, "scale groups of B: tensor, row, tile, block, mx")
      ->capture_default_str();
  cmd->callback([o, cmd] {
    const Parsed p = parse_common(*o, cmd, false);
    sim::GemmConfig cfg;
    cfg.m = o->m;
    cfg.n = o->n;
    cfg.dist = p.dist;
    cfg.a = quant_config(p.format, o->a_granularity, o->scale, "--a-granularity");
    cfg.b = quant_config(p.format, o->b_granularity, o->scale, "--b-granularity");
    cfg.model.mantissa_bits = o->accum_bits;
    cfg.model.promote_every = o->promote_every;
    cfg.model.products_per_step = o->products_per_step;
    try {
      cfg.model.alignment = fp8::parse_rounding(o->alignment);
    } catch (const std::invalid_argument& e) {
      bad_input(std::string("--alignment: ") + e.what());
    }
    if (o->m == 0 || o->n == 0 || o->m > 8192 || o->n > 8192) bad_input("--m and --n must be 1..8192");
    if (o->k.empty()) bad_input("--k needs at least one value");
    for (size_t k : o->k)
      if (k == 0 || k > (size_t(1) << 20) || std::max(o->m, o->n) * k > (size_t(1) << 26))
        bad_input("--k values must be 1..1048576 with max(m, n)*k at most 2^26, got k = " + std::to_string(k));

    json doc = provenance_json("gemm", o->seed);
    doc["format"] = p.format.name;
    doc["m"] = o->m;
    doc["n"] = o->n;
    doc["a_granularity"] = fp8::granularity_name(cfg.a.granularity);
    doc["b_granularity"] = fp8::granularity_name(cfg.b.granularity);
    doc["scale"] = name_of(cfg.a.scale_rounding);
    doc["dist"] = o->dist;
    doc["accum_bits"] = o->accum_bits;
    doc["promote_every"] = o->promote_every;
    doc["products_per_step"] = o->products_per_step;
    doc["alignment"] = fp8::rounding_name(cfg.model.alignment);
    doc["results"] = json::array();
    for (size_t k : o->k) {
      sim::GemmReport r;
      try {
        r = sim::measure_gemm(cfg, k, o->seed);
      } catch (const std::invalid_argument& e) {
        bad_input(std::string("gemm with K = ") + std::to_string(k) + ": " + e.what());
      }
      json row = to_json(r.accumulation);
      row["k"] = k;
      row["total"] = to_json(r.total);
      doc["results"].push_back(row);
      std::printf("K %6zu: max rel %.3e, normwise %.3e, deepgemm diff %.3e (incl. quantization: max rel %.3e)\n", k,
                  r.accumulation.max_rel_error, r.accumulation.normwise_rel_error, r.accumulation.deepgemm_diff,
                  r.total.max_rel_error);
      std::fflush(stdout);
    }
    write_json(o->json_path, doc);
  });
}

}  // namespace

void add_sim_fp8_command(CLI::App& sim) {
  CLI::App* fp8_cmd = sim.add_subcommand("fp8", "FP8 quantization and block-scaled GEMM error (Sec. 2.4.2)");
  fp8_cmd->require_subcommand(1);
  add_quantize(*fp8_cmd);
  add_gemm(*fp8_cmd);
}

}  // namespace dslab
