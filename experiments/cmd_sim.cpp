#include "experiments/commands.hpp"

namespace dslab {

void add_sim_commands(CLI::App& sim) {
  (void)sim;
}

}  // namespace dslab
