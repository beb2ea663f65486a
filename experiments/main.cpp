// dslab: the command line. `dslab --help` lists the subcommands.
#include <iostream>

#include <CLI/CLI.hpp>

#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/io.hpp"
#include "experiments/omp_wait.hpp"  // also makes OMP_WAIT_POLICY=passive the default (see there)

int main(int argc, char** argv) {
  CLI::App app{"dslab: the techniques of DeepSeek-V3 and R1 as exact CPU references and simulators"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "dslab " + dslab::provenance().dslab_version + " (git " +
                                        dslab::provenance().git_commit + ")\nOpenMP wait policy: " +
                                        dslab::omp_wait_policy());
  dslab::add_train_command(app);
  dslab::add_rl_command(app);
  dslab::add_eval_command(app);
  dslab::add_reward_command(app);
  dslab::add_run_command(app);
  dslab::add_list_command(app);
  dslab::add_sample_command(app);
  dslab::add_info_command(app);
  // Simulators register under `dslab sim <name>`.
  CLI::App* sim = app.add_subcommand("sim", "Simulators for what one machine cannot run for real");
  sim->require_subcommand(1);
  dslab::add_sim_commands(*sim);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : dslab::kBadInput;
  } catch (const CLI::Error& e) {
    return app.exit(e);
  } catch (const dslab::ConfigError& e) {
    std::cerr << "dslab: config error: " << e.what() << "\n";
    return dslab::kBadInput;
  } catch (const dslab::BadInput& e) {
    std::cerr << "dslab: " << e.what() << "\n";
    return dslab::kBadInput;
  } catch (const std::exception& e) {
    std::cerr << "dslab: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
