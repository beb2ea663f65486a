// The dslab command line: run_cli (commands.hpp), which main() calls.
#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>

#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/io.hpp"
#include "experiments/mpi_parallel.hpp"
#include "experiments/omp_wait.hpp"

namespace dslab {

int run_cli(int argc, const char* const* argv) {
  // Under mpirun only `dslab train` shares its work out (docs/parallel.md);
  // any other command would run once per rank over the same files.
  if (const std::string command = argc > 1 ? argv[1] : ""; launched_by_mpirun() && !command.empty() &&
                                                           command != "train" && command[0] != '-') {
    const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
    if (!rank || std::string(rank) == "0")
      std::cerr << "dslab: '" << command << "' does not run under mpirun; only 'dslab train' is data parallel "
                << "(docs/parallel.md). Run it without mpirun.\n";
    return kBadInput;
  }
  CLI::App app{"dslab: the techniques of DeepSeek-V3 and R1 as exact CPU references and simulators"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "dslab " + provenance().dslab_version + " (git " +
                                        provenance().git_commit + ")\nOpenMP wait policy: " +
                                        omp_wait_policy() + "\nOpenBLAS kernels: " + provenance().blas_core +
                                        " (OPENBLAS_CORETYPE chooses; README, \"What reproduces where\")");
  add_train_command(app);
  add_rl_command(app);
  add_eval_command(app);
  add_reward_command(app);
  add_run_command(app);
  add_list_command(app);
  add_sample_command(app);
  add_export_command(app);
  add_info_command(app);
  // Simulators register under `dslab sim <name>`.
  CLI::App* sim = app.add_subcommand("sim", "Simulators for what one machine cannot run for real");
  sim->require_subcommand(1);
  add_sim_commands(*sim);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kBadInput;
  } catch (const CLI::Error& e) {
    return app.exit(e);
  } catch (const ConfigError& e) {
    std::cerr << "dslab: config error: " << e.what() << "\n";
    return kBadInput;
  } catch (const Stopped& e) {
    std::cerr << e.what() << "\n";
    return kStopped;
  } catch (const BadInput& e) {
    std::cerr << "dslab: " << e.what() << "\n";
    return kBadInput;
  } catch (const std::exception& e) {
    std::cerr << "dslab: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace dslab
