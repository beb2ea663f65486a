// dslab run EXPERIMENT.toml [--smoke] [--dry-run] [--jobs N] [--results DIR]
//
// Expands an experiment into its runs and trains each one as a child
// `dslab train` process writing <results>/<experiment>/<run>.h5. Complete
// results are skipped and unfinished ones resume from their checkpoints, so a
// killed sweep picks up where it stopped. --smoke shrinks every run to
// seconds and writes under <results>/smoke/ so it never stands in for a real run.
// Then the experiment's notebook, if it names one, is executed headlessly to
// draw the figures (into <results>/figures, or <results>/smoke/figures). A
// simulator sweep is its notebook alone.
// <results> is --results, else $DSLAB_RESULTS, else runs/: a user's runs never
// meet the canonical ones committed in results/, which only `--results results`
// writes (and which the notebooks draw beside the user's where they can).
#include <omp.h>
#include <cstdlib>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>

#include "experiments/commands.hpp"
#include "experiments/experiment.hpp"
#include "experiments/results.hpp"

extern char** environ;

namespace dslab {

namespace {

// $DSLAB_RESULTS, else "runs".
std::string default_results() {
  const char* env = std::getenv("DSLAB_RESULTS");
  return env && *env ? env : "runs";
}

struct RunOptions {
  std::string experiment, results;  // empty: default_results()
  bool smoke = false, dry_run = false, no_notebook = false;
  int jobs = 1, threads = 0;
};

struct PlannedRun {
  std::string name, out;
  std::vector<std::string> overrides;
};

std::string run_state(const std::string& out) {
  if (result_complete(out)) return "complete";
  if (std::filesystem::exists(checkpoint_path(out))) return "resumable";
  if (std::filesystem::exists(out)) return "blocked (a file that is not a complete result)";
  return "new";
}

int wait_for(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Executes the notebook with jupyter nbconvert; the notebook finds the results
// and the dslab program through DSLAB_RESULTS, DSLAB_FIGURES and DSLAB.
void execute_notebook(const std::string& notebook, const std::filesystem::path& results, bool smoke) {
  namespace fs = std::filesystem;
  const fs::path out = fs::temp_directory_path() / ("dslab-notebook-" + std::to_string(getpid()));
  std::vector<std::string> args = {"jupyter", "nbconvert", "--to", "notebook", "--execute",
                                   "--ExecutePreprocessor.kernel_name=python3",
                                   "--ExecutePreprocessor.timeout=1800", "--output-dir",
                                   out.string(), notebook};
  std::vector<std::string> env_strings = {
      "DSLAB_RESULTS=" + fs::absolute(results).string(),
      "DSLAB_FIGURES=" + fs::absolute(results / "figures").string(),
      "DSLAB=" + fs::read_symlink("/proc/self/exe").string(), "MPLBACKEND=Agg",
      "PYDEVD_DISABLE_FILE_VALIDATION=1", std::string("DSLAB_SMOKE=") + (smoke ? "1" : "0")};
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  for (char** e = environ; *e; ++e) {
    const std::string var = *e;
    const bool replaced = std::any_of(env_strings.begin(), env_strings.end(), [&](const auto& s) {
      return var.compare(0, s.find('=') + 1, s, 0, s.find('=') + 1) == 0;
    });
    if (!replaced) envp.push_back(*e);
  }
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::cerr << "executing " << notebook << " (figures in " << (results / "figures").string() << ")\n";
  pid_t pid = 0;
  if (posix_spawnp(&pid, "jupyter", nullptr, nullptr, argv.data(), envp.data()) != 0)
    throw std::runtime_error("could not start jupyter to execute " + notebook +
                             " (install jupyter-nbconvert, or run scripts/quickstart, which does)");
  const int rc = wait_for(pid);
  fs::remove_all(out);
  if (rc != 0) throw std::runtime_error("notebook " + notebook + " failed (jupyter exit status " +
                                        std::to_string(rc) + ")");
}

pid_t spawn_train(const Experiment& e, const PlannedRun& r, int threads) {
  std::vector<std::string> args = {"/proc/self/exe", "train", e.config_path, "--out", r.out,
                                   "--resume", "--label", r.name, "--threads",
                                   std::to_string(threads)};
  for (const auto& s : r.overrides) {
    args.push_back("--set");
    args.push_back(s);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0)
    throw std::runtime_error("could not start a child dslab process for run " + r.name);
  return pid;
}

void train_runs(const Experiment& e, const std::filesystem::path& dir, const RunOptions& o) {
  std::vector<PlannedRun> todo;
  for (const auto& run : e.runs) {
    PlannedRun p{run.name, (dir / (run.name + ".h5")).string(), run.overrides};
    if (o.smoke) p.overrides.insert(p.overrides.end(), e.smoke_overrides.begin(), e.smoke_overrides.end());
    const std::string state = run_state(p.out);
    if (o.dry_run) {
      std::cout << p.name << "  " << p.out << "  [" << state << "]";
      for (const auto& s : p.overrides) std::cout << "  " << s;
      std::cout << "\n";
      continue;
    }
    if (state == "complete") {
      std::cerr << "[" << p.name << "] complete, skipped\n";
      continue;
    }
    if (state.starts_with("blocked"))
      throw BadInput("'" + p.out + "' exists but is not a complete result; remove it to rerun " + p.name);
    todo.push_back(std::move(p));
  }
  if (o.dry_run || todo.empty()) return;

  std::filesystem::create_directories(dir);
  const int jobs = std::min<int>(o.jobs, todo.size());
  const int threads = std::max(1, (o.threads > 0 ? o.threads : omp_get_max_threads()) / jobs);
  std::map<pid_t, std::string> running;
  std::vector<std::string> failed;
  size_t next = 0;
  while (next < todo.size() || !running.empty()) {
    while (next < todo.size() && int(running.size()) < jobs) {
      running[spawn_train(e, todo[next], threads)] = todo[next].name;
      ++next;
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) break;
    auto it = running.find(pid);
    if (it == running.end()) continue;
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) failed.push_back(it->second);
    running.erase(it);
  }
  if (!failed.empty()) {
    std::string list;
    for (const auto& f : failed) list += " " + f;
    throw std::runtime_error(std::to_string(failed.size()) + " run(s) did not finish:" + list);
  }
  std::cerr << "all " << e.runs.size() << " runs of " << e.name << " complete in " << dir.string()
            << "\n";
}

void run_experiment(const RunOptions& o) {
  const Experiment e = load_experiment(o.experiment);
  const std::filesystem::path results = std::filesystem::path(o.results) / (o.smoke ? "smoke" : "");
  train_runs(e, results / e.name, o);
  if (e.notebook.empty() || o.no_notebook) return;
  if (o.dry_run) {
    std::cout << "then notebook " << e.notebook << "\n";
    return;
  }
  execute_notebook(e.notebook, results, o.smoke);
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  o->results = default_results();
  auto* cmd = app.add_subcommand("run", "Run every run of an experiment (skipping complete ones)");
  cmd->add_option("experiment", o->experiment, "Experiment file (TOML), e.g. experiments/quickstart.toml")
      ->required();
  cmd->add_flag("--smoke", o->smoke, "Shrink every run to seconds (results go under <results>/smoke/)");
  cmd->add_flag("--dry-run", o->dry_run, "List the runs, their files and states; run nothing");
  cmd->add_flag("--no-notebook", o->no_notebook, "Train the runs but do not execute the notebook");
  cmd->add_option("--jobs", o->jobs, "Runs trained at the same time")->check(CLI::Range(1, 256));
  cmd->add_option("--threads", o->threads, "Threads in all, shared among the jobs")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--results", o->results,
                  "Results folder ($DSLAB_RESULTS, else runs/; the committed canonical runs: --results results)")
      ->capture_default_str();
  cmd->callback([o] { run_experiment(*o); });
}

}  // namespace dslab
