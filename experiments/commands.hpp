// The dslab subcommands. Each add_* registers one subcommand (or group) on
// the app; its callback runs the command and throws on failure.
#pragma once

#include <CLI/CLI.hpp>

namespace dslab {

// Exit status for bad input (config, options, files). Raised as CLI::RuntimeError(2)
// after the message has been printed.
inline constexpr int kBadInput = 2;

void add_train_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_list_command(CLI::App& app);
void add_sample_command(CLI::App& app);

// `dslab sim ...`: one function per simulator, each adding its subcommand to `sim`.
void add_sim_commands(CLI::App& sim);
void add_sim_fp8_command(CLI::App& sim);

}  // namespace dslab
