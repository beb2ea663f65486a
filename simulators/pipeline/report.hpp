// Outputs of a pipeline simulation, each as the whole text of its file: the
// JSON result, a Chrome trace (opens in Perfetto, 1 time unit = 1 ms) and an
// SVG Gantt chart. Writing them is the caller's (`dslab sim pipeline` writes
// each atomically).
#pragma once

#include <string>

#include "simulators/pipeline/simulator.hpp"

namespace dslab::pipeline {

std::string result_json(const Schedule& s, const Costs& costs, const SimResult& r);
std::string chrome_trace(const Schedule& s, const SimResult& r);
std::string gantt_svg(const Schedule& s, const SimResult& r);

}  // namespace dslab::pipeline
