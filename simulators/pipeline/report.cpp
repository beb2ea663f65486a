#include "simulators/pipeline/report.hpp"

#include <algorithm>
#include <charconv>

namespace dslab::pipeline {

namespace {

// Shortest decimal that reads back as the same double.
std::string num(double x) {
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, res.ptr);
}

std::string num_list(const std::vector<double>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + num(v[i]);
  return out + "]";
}

void append_op(std::string& out, const Schedule& s, const Op& op, const OpTime& t) {
  const ChunkRef& c = op.kind == OpKind::F || op.kind == OpKind::FB ? op.f : op.b;
  out += "{\"op\": \"";
  out += op_name(op.kind);
  out += "\", \"dir\": " + std::to_string(s.dir(c)) + ", \"mb\": " + std::to_string(c.mb) +
         ", \"stage\": " + std::to_string(c.stage);
  if (op.kind == OpKind::B) out += std::string(", \"split\": ") + (op.split ? "true" : "false");
  if (op.kind == OpKind::FB)
    out += ", \"bdir\": " + std::to_string(s.dir(op.b)) + ", \"bmb\": " + std::to_string(op.b.mb) +
           ", \"bstage\": " + std::to_string(op.b.stage);
  out += ", \"start\": " + num(t.start) + ", \"end\": " + num(t.end) + "}";
}

std::string op_label(const Schedule& s, const Op& op) {
  const ChunkRef& c = op.kind == OpKind::F || op.kind == OpKind::FB ? op.f : op.b;
  std::string label = op_name(op.kind);
  if (op.kind == OpKind::B && op.split) label = "B(input)";
  label += " d" + std::to_string(s.dir(c)) + " mb" + std::to_string(c.mb);
  if (op.kind == OpKind::FB)
    label += " + B d" + std::to_string(s.dir(op.b)) + " mb" + std::to_string(op.b.mb);
  return label;
}

// Colours as in the DualPipe figure: forward light, backward darker, the two
// directions in two hues, W blue, overlapped pairs yellow.
const char* op_colour(const Schedule& s, const Op& op) {
  const int d = s.dir(op.kind == OpKind::F || op.kind == OpKind::FB ? op.f : op.b);
  switch (op.kind) {
    case OpKind::F: return d == 0 ? "#f9c98f" : "#d5c3ee";
    case OpKind::B:
      if (op.split) return d == 0 ? "#b7e4a8" : "#a8d8de";
      return d == 0 ? "#6cbf5a" : "#4aa8b3";
    case OpKind::W: return "#8eaadb";
    case OpKind::FB: return "#f2e46b";
  }
  return "#cccccc";
}

}  // namespace

std::string result_json(const Schedule& s, const Costs& c, const SimResult& r) {
  std::string out = "{\n";
  out += "  \"schedule\": \"" + schedule_name(s.spec.kind) + "\",\n";
  out += "  \"pp\": " + std::to_string(s.spec.pp) + ",\n";
  out += "  \"devices\": " + std::to_string(s.ranks) + ",\n";
  out += "  \"microbatches\": " + std::to_string(s.spec.microbatches) + ",\n";
  if (s.spec.kind == ScheduleKind::Interleaved)
    out += "  \"chunks\": " + std::to_string(s.spec.chunks) + ",\n";
  out += "  \"costs\": {\"f\": " + num_list(c.f) + ", \"b\": " + num_list(c.b) +
         ", \"w\": " + num_list(c.w) + ", \"fb\": " + (c.fb >= 0 ? num(c.fb) : "null") +
         ", \"p2p_latency\": " + num(c.p2p_latency) + ", \"p2p_bandwidth\": " +
         num(c.p2p_bandwidth) + ", \"p2p_bytes\": " + num(c.p2p_bytes) + ", \"comm\": " +
         num(c.comm.a2a) + ", \"attn_share\": " + num(c.comm.attn_share) +
         ", \"sms\": " + std::to_string(c.comm.sms) +
         ", \"comm_sms\": " + std::to_string(c.comm.comm_sms) + "},\n";
  out += "  \"makespan\": " + num(r.makespan) + ",\n";
  out += "  \"ideal\": " + num(r.ideal) + ",\n";
  out += "  \"bubble\": {\"time\": " + num(r.bubble) + ", \"actual_vs_ideal\": " +
         num(r.bubble_ratio) + ", \"idle_share\": " + num(r.idle_share) + "},\n";
  out += "  \"exposed_comm\": " + num(r.exposed_comm) + ",\n";
  out += "  \"ranks\": [\n";
  for (int k = 0; k < s.ranks; ++k) {
    const RankResult& rr = r.ranks[k];
    out += "    {\"rank\": " + std::to_string(k) + ", \"busy\": " + num(rr.busy) +
           ", \"idle\": " + num(rr.idle) + ", \"exposed_comm\": " + num(rr.exposed_comm) +
           ", \"peak_activations\": " + num(rr.peak_activations) +
           ", \"parameters\": " + num(rr.parameters) + ",\n     \"ops\": [";
    for (size_t i = 0; i < s.ops[k].size(); ++i) {
      out += i ? ",\n       " : "\n       ";
      append_op(out, s, s.ops[k][i], rr.times[i]);
    }
    out += "]}";
    out += k + 1 < s.ranks ? ",\n" : "\n";
  }
  out += "  ]\n}\n";
  return out;
}

std::string chrome_trace(const Schedule& s, const SimResult& r) {
  constexpr double kMicrosPerUnit = 1000;  // 1 time unit shows as 1 ms
  std::string out = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n";
  bool first = true;
  auto sep = [&] {
    out += first ? "  " : ",\n  ";
    first = false;
  };
  for (int k = 0; k < s.ranks; ++k) {
    sep();
    out += "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": 0, \"tid\": " + std::to_string(k) +
           ", \"args\": {\"name\": \"rank " + std::to_string(k) + "\"}}";
  }
  for (int k = 0; k < s.ranks; ++k)
    for (size_t i = 0; i < s.ops[k].size(); ++i) {
      const OpTime& t = r.ranks[k].times[i];
      sep();
      out += "{\"name\": \"" + op_label(s, s.ops[k][i]) + "\", \"cat\": \"" +
             op_name(s.ops[k][i].kind) + "\", \"ph\": \"X\", \"pid\": 0, \"tid\": " +
             std::to_string(k) + ", \"ts\": " + num(t.start * kMicrosPerUnit) +
             ", \"dur\": " + num((t.end - t.start) * kMicrosPerUnit) +
             ", \"args\": {\"exposed_comm\": " + num(t.end - t.start - t.compute) + "}}";
    }
  out += "\n]}\n";
  return out;
}

std::string gantt_svg(const Schedule& s, const SimResult& r) {
  const double left = 70, top = 30, row = 26, width = 1200;
  const double scale = r.makespan > 0 ? width / r.makespan : 1;
  const double height = top + row * s.ranks + 40;
  std::string out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(left + width + 20) +
                    "\" height=\"" + num(height) + "\" font-family=\"sans-serif\" font-size=\"10\">\n";
  out += "<text x=\"" + num(left) + "\" y=\"18\" font-size=\"13\">" + schedule_name(s.spec.kind) +
         ": pp " + std::to_string(s.spec.pp) + ", " + std::to_string(s.ranks) + " devices, " +
         std::to_string(s.spec.microbatches) + " micro-batches; makespan " + num(r.makespan) +
         ", bubble " + num(r.bubble) + "</text>\n";
  for (int k = 0; k < s.ranks; ++k) {
    const double y = top + row * k;
    out += "<text x=\"4\" y=\"" + num(y + row * 0.65) + "\">rank " + std::to_string(k) + "</text>\n";
    for (size_t i = 0; i < s.ops[k].size(); ++i) {
      const Op& op = s.ops[k][i];
      const OpTime& t = r.ranks[k].times[i];
      const double x = left + t.start * scale, w = (t.end - t.start) * scale;
      out += "<rect x=\"" + num(x) + "\" y=\"" + num(y + 2) + "\" width=\"" + num(w) +
             "\" height=\"" + num(row - 4) + "\" fill=\"" + op_colour(s, op) +
             "\" stroke=\"#333\" stroke-width=\"0.4\"><title>" + op_label(s, op) + " [" +
             num(t.start) + ", " + num(t.end) + "]</title></rect>\n";
      const ChunkRef& c = op.kind == OpKind::F || op.kind == OpKind::FB ? op.f : op.b;
      std::string text = std::to_string(c.mb);
      if (op.kind == OpKind::FB) text += "/" + std::to_string(op.b.mb);
      if (w >= 7.0 * text.size())
        out += "<text x=\"" + num(x + w / 2) + "\" y=\"" + num(y + row * 0.65) +
               "\" text-anchor=\"middle\">" + text + "</text>\n";
    }
  }
  // Legend.
  const std::pair<const char*, const char*> legend[] = {
      {"#f9c98f", "F dir 0"}, {"#d5c3ee", "F dir 1"}, {"#6cbf5a", "B dir 0"},
      {"#4aa8b3", "B dir 1"}, {"#b7e4a8", "B input only"}, {"#8eaadb", "W"},
      {"#f2e46b", "F&B overlapped"}};
  double x = left;
  const double y = top + row * s.ranks + 12;
  for (const auto& [colour, name] : legend) {
    out += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"12\" height=\"12\" fill=\"" +
           colour + "\" stroke=\"#333\" stroke-width=\"0.4\"/><text x=\"" + num(x + 16) +
           "\" y=\"" + num(y + 10) + "\">" + name + "</text>\n";
    x += 110;
  }
  out += "</svg>\n";
  return out;
}

}  // namespace dslab::pipeline
