// dslab run EXPERIMENT.toml [--smoke] [--dry-run] [--jobs N] [--results DIR]
//
// Expands an experiment into its runs and runs each one as a child `dslab
// train` or `dslab rl` process (the run's command) writing
// <results>/<experiment>/<run>.h5. Complete results are skipped and unfinished
// ones resume from their checkpoints, so a killed sweep picks up where it
// stopped. A run that references others ("@NAME", experiment.hpp) starts only
// once they are complete, on disk or in this invocation, with each reference
// replaced by the result path; --jobs N runs up to N runs whose dependencies
// are complete at the same time, the threads split among the N as without
// references. A failed run leaves the runs that need it, directly or not, not
// run; the final error lists the failed runs and the runs not run.
// Ctrl-C or SIGTERM stops the sweep: no new run starts, the running ones stop
// after their step with a checkpoint, and dslab run exits 130; the same
// command resumes it. Killed outright (kill -9), dslab run takes its running
// children with it the same way (each child asks for SIGTERM on its parent's
// death).
// --dry-run lists each run's command, result file, state, overrides (references
// resolved) and the runs it needs. --smoke shrinks every run to
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
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
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

// A run as this invocation sees it: what to spawn, and how far it got.
struct PlannedRun {
  enum class State { Done, Pending, Running, Failed, NotRun, Stopped };  // Stopped: by SIGINT/SIGTERM, resumable
  std::string name, out;
  RunKind command;
  std::string config;
  std::vector<std::string> overrides;  // references resolved, smoke overrides appended
  std::vector<size_t> needs;           // indices of the runs it depends on
  struct Elsewhere {
    std::string experiment, run, path;  // "@EXPERIMENT/NAME" and its result file
  };
  std::vector<Elsewhere> needs_elsewhere;  // runs of other experiments, not run here
  State state = State::Pending;
  std::string why;                     // NotRun: "needs X, which failed"
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

// Starts run `r` as a child dslab process. The child asks the kernel for
// SIGTERM when this process dies (PR_SET_PDEATHSIG), so that a `dslab run`
// killed outright (kill -9) does not leave its runs going on unseen: each
// stops after its step in progress with a checkpoint, as on Ctrl-C.
pid_t spawn_run(const PlannedRun& r, int threads) {
  std::vector<std::string> args = {"/proc/self/exe", std::string(name_of(r.command)), r.config, "--out", r.out,
                                   "--resume", "--label", r.name, "--threads", std::to_string(threads)};
  for (const auto& s : r.overrides) {
    args.push_back("--set");
    args.push_back(s);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("could not start a child dslab process for run " + r.name);
  if (pid == 0) {  // only async-signal-safe calls until execv
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) _exit(127);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// SIGINT and SIGTERM while the runs go: the first one stops the sweep (no new
// runs start, the running ones get SIGTERM and checkpoint); the handler is
// installed without SA_RESTART so that waitpid returns to look at the flag.
class SweepSignals {
 public:
  SweepSignals() {
    struct sigaction sa {};
    sa.sa_handler = [](int) { stop_flag() = 1; };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
    stop_flag() = 0;
  }
  ~SweepSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  SweepSignals(const SweepSignals&) = delete;
  SweepSignals& operator=(const SweepSignals&) = delete;
  bool requested() const { return stop_flag() != 0; }

 private:
  static volatile std::sig_atomic_t& stop_flag() {
    static volatile std::sig_atomic_t stop = 0;
    return stop;
  }
  struct sigaction old_int_ {}, old_term_ {};
};

std::vector<PlannedRun> plan_runs(const Experiment& e, const std::filesystem::path& dir, bool smoke) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < e.runs.size(); ++i) index[e.runs[i].name] = i;
  std::vector<PlannedRun> plan;
  for (const auto& run : e.runs) {
    PlannedRun p{run.name, run_result_path(dir.string(), run.name), run.command, run.config_path,
                 resolved_overrides(run, dir.string()), {}, {}, PlannedRun::State::Pending, {}};
    if (smoke) p.overrides.insert(p.overrides.end(), run.smoke_overrides.begin(), run.smoke_overrides.end());
    for (const auto& n : run.needs) p.needs.push_back(index.at(n));
    for (const RunReference& ref : run.references)
      if (!ref.experiment.empty())
        p.needs_elsewhere.push_back({ref.experiment, ref.run, reference_path(ref, dir.string())});
    plan.push_back(std::move(p));
  }
  return plan;
}

// Runs the pending runs of `plan`, at most `jobs` at a time, each once the runs
// it needs are done; a run whose need failed or was not run is not run. On
// SIGINT or SIGTERM no run starts any more, the running ones are sent SIGTERM
// and waited for (each writes its checkpoint and exits 130: Stopped), and
// schedule returns false.
bool schedule(std::vector<PlannedRun>& plan, int jobs, int threads) {
  using State = PlannedRun::State;
  const SweepSignals signals;
  std::map<pid_t, size_t> running;
  bool forwarded = false;
  for (;;) {
    if (signals.requested() && !forwarded) {
      std::cerr << "dslab run: stopping; " << running.size() << " running run(s) write their checkpoints\n";
      for (const auto& [pid, i] : running) kill(pid, SIGTERM);
      forwarded = true;
    }
    for (bool changed = true; changed && !forwarded;) {
      changed = false;
      for (PlannedRun& p : plan) {
        if (p.state != State::Pending) continue;
        for (size_t n : p.needs) {
          const State s = plan[n].state;
          if (s != State::Failed && s != State::NotRun) continue;
          p.state = State::NotRun;
          p.why = "needs " + plan[n].name + ", which " + (s == State::Failed ? "failed" : "was not run");
          std::cerr << "[" << p.name << "] not run (" << p.why << ")\n";
          changed = true;
          break;
        }
      }
    }
    for (size_t i = 0; i < plan.size() && int(running.size()) < jobs && !forwarded; ++i) {
      PlannedRun& p = plan[i];
      const bool ready = p.state == State::Pending &&
                         std::all_of(p.needs.begin(), p.needs.end(), [&](size_t n) { return plan[n].state == State::Done; });
      if (!ready) continue;
      running[spawn_run(p, threads)] = i;
      p.state = State::Running;
    }
    if (running.empty()) break;  // without cycles (load_experiment), nothing is left pending
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;  // a signal: look at the flag
      throw std::runtime_error("waiting for the runs failed");
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    const bool stopped = forwarded && ((WIFEXITED(status) && WEXITSTATUS(status) == kStopped) ||
                                       (WIFSIGNALED(status) && (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGINT)));
    plan[it->second].state = ok ? State::Done : stopped ? State::Stopped : State::Failed;
    running.erase(it);
  }
  return !forwarded;
}

void run_runs(const Experiment& e, const std::filesystem::path& dir, const RunOptions& o) {
  using State = PlannedRun::State;
  std::vector<PlannedRun> plan = plan_runs(e, dir, o.smoke);
  size_t todo = 0;
  for (PlannedRun& p : plan) {
    const std::string state = run_state(p.out);
    if (o.dry_run) {
      std::cout << p.name << "  dslab " << name_of(p.command) << " " << p.config << "  " << p.out << "  [" << state
                << "]";
      for (const auto& s : p.overrides) std::cout << "  " << s;
      for (size_t i = 0; i < p.needs.size(); ++i) std::cout << (i ? ", " : "  needs ") << plan[p.needs[i]].name;
      std::cout << "\n";
      continue;
    }
    if (state == "complete") {
      std::cerr << "[" << p.name << "] complete, skipped\n";
      p.state = State::Done;
      continue;
    }
    for (const auto& n : p.needs_elsewhere)
      if (!result_complete(n.path))
        throw BadInput("run " + p.name + " needs " + n.experiment + "/" + n.run + " (" + n.path +
                       "), which is not complete: run `dslab run experiments/" + n.experiment +
                       ".toml` first, with the same --results" + (o.smoke ? " and --smoke" : ""));
    if (state.starts_with("blocked"))
      throw BadInput("'" + p.out + "' exists but is not a complete result; remove it to rerun " + p.name);
    ++todo;
  }
  if (o.dry_run || todo == 0) return;

  std::filesystem::create_directories(dir);
  const int jobs = std::min<int>(o.jobs, todo);
  const int threads = std::max(1, (o.threads > 0 ? o.threads : omp_get_max_threads()) / jobs);
  if (!schedule(plan, jobs, threads)) {
    size_t stopped = 0, done = 0;
    for (const PlannedRun& p : plan) stopped += p.state == State::Stopped, done += p.state == State::Done;
    throw Stopped("dslab run: stopped (" + std::to_string(done) + " of " + std::to_string(plan.size()) +
                  " runs complete, " + std::to_string(stopped) +
                  " stopped with a checkpoint); the same command resumes the sweep");
  }
  std::string failed, not_run;
  size_t n_failed = 0, n_not_run = 0;
  for (const PlannedRun& p : plan) {
    if (p.state == State::Failed) failed += " " + p.name, ++n_failed;
    if (p.state == State::NotRun) not_run += (n_not_run++ ? ", " : " ") + p.name + " (" + p.why + ")";
  }
  if (n_failed + n_not_run > 0)
    throw std::runtime_error(std::to_string(n_failed) + " run(s) did not finish:" + failed +
                             (n_not_run ? "; " + std::to_string(n_not_run) + " not run:" + not_run : ""));
  std::cerr << "all " << e.runs.size() << " runs of " << e.name << " complete in " << dir.string() << "\n";
}

void run_experiment(const RunOptions& o) {
  const Experiment e = load_experiment(o.experiment);
  const std::filesystem::path results = std::filesystem::path(o.results) / (o.smoke ? "smoke" : "");
  run_runs(e, results / e.name, o);
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
  cmd->add_flag("--dry-run", o->dry_run, "List the runs, their commands, files, states and dependencies; run nothing");
  cmd->add_flag("--no-notebook", o->no_notebook, "Do the runs but do not execute the notebook");
  cmd->add_option("--jobs", o->jobs, "Runs at the same time (each once the runs it references are complete)")->check(CLI::Range(1, 256));
  cmd->add_option("--threads", o->threads, "Threads in all, shared among the jobs")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--results", o->results,
                  "Results folder ($DSLAB_RESULTS, else runs/; the committed canonical runs: --results results)")
      ->capture_default_str();
  cmd->callback([o] { run_experiment(*o); });
}

}  // namespace dslab
