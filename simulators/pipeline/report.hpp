// Outputs of a pipeline simulation: the JSON result, a Chrome trace (opens in
// Perfetto, 1 time unit = 1 ms) and an SVG Gantt chart.
#pragma once

#include <string>

#include "simulators/pipeline/simulator.hpp"

namespace dslab::pipeline {

std::string result_json(const Schedule& s, const Costs& costs, const SimResult& r);
std::string chrome_trace(const Schedule& s, const SimResult& r);
std::string gantt_svg(const Schedule& s, const SimResult& r);

// Writes `text` to path.tmp-<pid> and renames it to `path`, so a file exists
// whole or not at all. Throws std::runtime_error naming the file on failure.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace dslab::pipeline
