// dslab list [FOLDER]: the experiments in experiments/, one line each.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "experiments/commands.hpp"
#include "experiments/experiment.hpp"

namespace dslab {

namespace {

void list_experiments(const std::string& folder) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(folder))
    throw BadInput("'" + folder + "' is not a folder; give the experiments folder of a dslab checkout");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.is_regular_file() && entry.path().extension() == ".toml") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    char line[512];
    try {
      const Experiment e = load_experiment(f.string());
      if (e.runs.empty())  // a simulator sweep
        std::snprintf(line, sizeof line, "%-22s  sweep   %s", e.name.c_str(), e.description.c_str());
      else
        std::snprintf(line, sizeof line, "%-22s %4zu run%s  %s", e.name.c_str(), e.runs.size(),
                      e.runs.size() == 1 ? " " : "s", e.description.c_str());
    } catch (const ConfigError& err) {
      std::snprintf(line, sizeof line, "%-22s  invalid: %s", f.stem().c_str(), err.what());
    }
    std::cout << line << "\n";
  }
}

}  // namespace

void add_list_command(CLI::App& app) {
  auto folder = std::make_shared<std::string>("experiments");
  auto* cmd = app.add_subcommand("list", "List the experiments, one line each");
  cmd->add_option("folder", *folder, "Folder of experiment files")->capture_default_str();
  cmd->callback([folder] { list_experiments(*folder); });
}

}  // namespace dslab
