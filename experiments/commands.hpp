// The dslab subcommands. Each add_* registers one subcommand (or group) on
// the app; its callback runs the command.
//
// Errors: a command throws BadInput (or ConfigError) for anything the user
// can fix: a bad option, config or file. main() prints the message and exits
// with status 2. Anything else that goes wrong exits with status 1.
#pragma once

#include <iostream>
#include <stdexcept>
#include <string>

#include <CLI/CLI.hpp>

namespace dslab {

inline constexpr int kBadInput = 2;

class BadInput : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Exit status 130 (as a shell reports a command ended by Ctrl-C): a run or a
// sweep stopped by SIGINT or SIGTERM after saying where it stopped.
inline constexpr int kStopped = 130;

class Stopped : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The same exit for a command that prints its own message: "dslab <command>:
// <message>" on stderr, then exit status 2 (through CLI11's exit path).
[[noreturn]] inline void exit_bad_input(const std::string& command, const std::string& message) {
  std::cerr << "dslab " << command << ": " << message << "\n";
  throw CLI::RuntimeError(kBadInput);
}

// The whole command line: parses argv, runs the command and returns the exit
// status: 0, kBadInput (a bad option, config or input file, with a message
// naming it), kStopped, or 1 (any other failure, e.g. a full disk).
int run_cli(int argc, const char* const* argv);

void add_train_command(CLI::App& app);
void add_rl_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_reward_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_list_command(CLI::App& app);
void add_sample_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_info_command(CLI::App& app);

// `dslab sim ...`: one function per simulator, each adding its subcommand to `sim`.
void add_sim_commands(CLI::App& sim);
void add_sim_pipeline_command(CLI::App& sim);
void add_sim_fp8_command(CLI::App& sim);
void add_sim_balance_command(CLI::App& sim);

}  // namespace dslab
