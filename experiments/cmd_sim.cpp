#include "experiments/commands.hpp"

namespace dslab {

void add_sim_commands(CLI::App& sim) {
  add_sim_pipeline_command(sim);
  add_sim_fp8_command(sim);
  add_sim_balance_command(sim);
}

}  // namespace dslab
