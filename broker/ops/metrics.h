// A small metrics registry rendered in the Prometheus text exposition
// format 0.0.4 (served on /metrics, see docs/operations.md).
//
// Hot path: Counter::Inc and Histogram::Observe are lock-free atomics.
// A labelled family looks its child up under a per-family reader lock;
// callers on hot paths keep the returned Counter& (children live as long
// as the registry). Gauges are callbacks run at scrape time, so a value
// such as the outbox depth is computed only when someone asks.
#ifndef SIMPROV_BROKER_OPS_METRICS_H_
#define SIMPROV_BROKER_OPS_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace simprov {

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A counter with label values; the label names are fixed at creation.
class CounterFamily {
 public:
  explicit CounterFamily(std::vector<std::string> label_names)
      : label_names_(std::move(label_names)) {}
  // The child for `values` (one per label name), created on first use.
  Counter& WithLabels(const std::vector<std::string>& values);
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Children in label order: (values, count).
  std::vector<std::pair<std::vector<std::string>, uint64_t>> Snapshot() const;

 private:
  const std::vector<std::string> label_names_;
  mutable std::shared_mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Counter>>
      children_;  // guarded by mu_
};

// Cumulative buckets of observed values (seconds for latencies).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double v);
  const std::vector<double>& upper_bounds() const { return bounds_; }
  // Per-bucket (non-cumulative) counts, the +Inf bucket last.
  std::vector<uint64_t> BucketCounts() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> bounds_;                  // ascending
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

// Default latency buckets, seconds: 100 us .. 10 s.
std::vector<double> LatencyBuckets();

class MetricsRegistry {
 public:
  // Names must be valid Prometheus metric names; registering a name twice
  // aborts (a programming error).
  Counter& AddCounter(const std::string& name, const std::string& help);
  CounterFamily& AddCounterFamily(const std::string& name,
                                  const std::string& help,
                                  std::vector<std::string> label_names);
  Histogram& AddHistogram(const std::string& name, const std::string& help,
                          std::vector<double> upper_bounds = LatencyBuckets());
  // A gauge computed by `fn` at every scrape (must be thread-safe).
  void AddGauge(const std::string& name, const std::string& help,
                std::function<double()> fn);

  // A labelled gauge whose samples `fn` computes at every scrape (must be
  // thread-safe): one (label values, value) per series, values in
  // `label_names` order. No samples: only HELP and TYPE are rendered.
  using GaugeSamples = std::vector<std::pair<std::vector<std::string>, double>>;
  void AddGaugeFamily(const std::string& name, const std::string& help,
                      std::vector<std::string> label_names,
                      std::function<GaugeSamples()> fn);

  // The whole registry in the text format, metrics in registration order.
  std::string Render() const;

 private:
  struct Entry {
    std::string name;
    std::string help;
    std::string type;  // counter, histogram, gauge
    std::unique_ptr<Counter> counter;
    std::unique_ptr<CounterFamily> family;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> gauge;
    std::vector<std::string> gauge_labels;
    std::function<GaugeSamples()> gauge_family;
  };
  Entry& Add(const std::string& name, const std::string& help,
             const std::string& type);

  mutable std::mutex mu_;  // guards entries_ (not the values)
  std::vector<std::unique_ptr<Entry>> entries_;
};

// Prometheus text escaping: label values escape \ " and newline; HELP
// text escapes \ and newline.
std::string EscapeLabelValue(absl::string_view v);
std::string EscapeHelp(absl::string_view v);
// A sample value: integers without a fraction, +Inf/-Inf/NaN spelled out.
std::string FormatSampleValue(double v);

}  // namespace simprov

#endif  // SIMPROV_BROKER_OPS_METRICS_H_
