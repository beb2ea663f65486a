// dslab: the command line. `dslab --help` lists the subcommands.
#include "experiments/commands.hpp"
#include "experiments/omp_wait.hpp"  // also makes OMP_WAIT_POLICY=passive the default (see there)

int main(int argc, char** argv) { return dslab::run_cli(argc, argv); }
