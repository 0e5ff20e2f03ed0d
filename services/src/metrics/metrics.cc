#include "metrics/metrics.h"

#include <algorithm>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace tome::services {

std::string Metrics::RenderLabels(const Labels& labels, const std::string& extra) {
  std::string out;
  for (const auto& [k, v] : labels) {
    const std::string escaped =
        absl::StrReplaceAll(v, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
    absl::StrAppend(&out, out.empty() ? "" : ",", k, "=\"", escaped, "\"");
  }
  if (!extra.empty()) absl::StrAppend(&out, out.empty() ? "" : ",", extra);
  return out.empty() ? "" : absl::StrCat("{", out, "}");
}

void Metrics::Help(const std::string& name, const std::string& help, const std::string& type) {
  std::lock_guard<std::mutex> lock(mu_);
  families_[name].help = help;
  families_[name].type = type;
}

void Metrics::Add(const std::string& name, const Labels& labels, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& f = families_[name];
  if (f.type.empty()) f.type = "counter";
  f.counters[RenderLabels(labels)] += value;
}

void Metrics::Observe(const std::string& name, const Labels& labels, double value,
                      const std::vector<double>& bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& f = families_[name];
  if (f.type.empty()) f.type = "histogram";
  Histogram& h = f.histograms[RenderLabels(labels)];
  if (h.bounds.empty()) {
    h.bounds = bounds;
    h.counts.assign(bounds.size(), 0);
  }
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    if (value <= h.bounds[i]) {
      ++h.counts[i];
      break;
    }
  }
  h.sum += value;
  ++h.count;
}

void Metrics::Gauge(const std::string& name, const std::string& help,
                    std::function<std::vector<std::pair<Labels, double>>()> read) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& f = families_[name];
  f.help = help;
  f.type = "gauge";
  f.gauge = std::move(read);
}

std::string Metrics::Render() {
  // Gauges are read outside the lock: they call into the server.
  std::map<std::string, std::function<std::vector<std::pair<Labels, double>>()>> gauges;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, f] : families_) {
      if (f.gauge) gauges[name] = f.gauge;
    }
  }
  std::map<std::string, std::vector<std::pair<Labels, double>>> gauge_values;
  for (const auto& [name, read] : gauges) gauge_values[name] = read();

  std::ostringstream out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, f] : families_) {
    if (!f.help.empty()) out << "# HELP " << name << " " << f.help << "\n";
    out << "# TYPE " << name << " " << f.type << "\n";
    for (const auto& [labels, value] : f.counters) out << name << labels << " " << value << "\n";
    for (const auto& [labels, h] : f.histograms) {
      const std::string base = labels.empty() ? "" : labels.substr(1, labels.size() - 2);
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.bounds.size(); ++i) {
        cumulative += h.counts[i];
        out << name << "_bucket{" << base << (base.empty() ? "" : ",") << "le=\"" << h.bounds[i]
            << "\"} " << cumulative << "\n";
      }
      out << name << "_bucket{" << base << (base.empty() ? "" : ",") << "le=\"+Inf\"} " << h.count
          << "\n";
      out << name << "_sum" << labels << " " << h.sum << "\n";
      out << name << "_count" << labels << " " << h.count << "\n";
    }
    if (auto it = gauge_values.find(name); it != gauge_values.end()) {
      for (const auto& [labels, value] : it->second) {
        out << name << RenderLabels(labels) << " " << value << "\n";
      }
    }
  }
  return out.str();
}

}  // namespace tome::services
