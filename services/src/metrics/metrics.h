// Server metrics in the Prometheus text format: counters and histograms updated by the
// server, and gauges read when scraped. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace tome::services {

class Metrics {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  // counter += value
  void Add(const std::string& name, const Labels& labels, double value = 1);
  // One observation of a histogram with the given bucket bounds (seconds, tokens, ...).
  void Observe(const std::string& name, const Labels& labels, double value,
               const std::vector<double>& bounds);
  // A gauge evaluated at every scrape; `read` returns (labels, value) samples.
  void Gauge(const std::string& name, const std::string& help,
             std::function<std::vector<std::pair<Labels, double>>()> read);
  void Help(const std::string& name, const std::string& help, const std::string& type);

  // The exposition text (https://prometheus.io/docs/instrumenting/exposition_formats/).
  std::string Render();

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // per bucket, cumulative at render
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string help, type;
    std::map<std::string, double> counters;       // key: rendered labels
    std::map<std::string, Histogram> histograms;  // key: rendered labels
    std::function<std::vector<std::pair<Labels, double>>()> gauge;
  };
  static std::string RenderLabels(const Labels& labels, const std::string& extra = "");

  std::mutex mu_;
  std::map<std::string, Family> families_;
};

}  // namespace tome::services
