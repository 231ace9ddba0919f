#include "broker/ops/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace simprov {
namespace {

bool IsValidName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string Labels(const std::vector<std::string>& names,
                   const std::vector<std::string>& values,
                   const std::string& extra = "") {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!out.empty()) out += ",";
    absl::StrAppend(&out, names[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  if (!extra.empty()) {
    if (!out.empty()) out += ",";
    out += extra;
  }
  return out.empty() ? out : absl::StrCat("{", out, "}");
}

}  // namespace

std::string EscapeLabelValue(absl::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(absl::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatSampleValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

Counter& CounterFamily::WithLabels(const std::vector<std::string>& values) {
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    auto it = children_.find(values);
    if (it != children_.end()) return *it->second;
  }
  if (values.size() != label_names_.size()) {
    LogError("metrics: %d label values for %d labels",
             static_cast<int>(values.size()),
             static_cast<int>(label_names_.size()));
    std::abort();
  }
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto& slot = children_[values];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

std::vector<std::pair<std::vector<std::string>, uint64_t>>
CounterFamily::Snapshot() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  std::vector<std::pair<std::vector<std::string>, uint64_t>> out;
  for (const auto& [values, c] : children_) out.push_back({values, c->Value()});
  return out;
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)),
      buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i] = 0;
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::BucketCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    out[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  return out;
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

MetricsRegistry::Entry& MetricsRegistry::Add(const std::string& name,
                                             const std::string& help,
                                             const std::string& type) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!IsValidName(name)) {
    LogError("metrics: invalid name %s", name);
    std::abort();
  }
  for (const auto& e : entries_) {
    if (e->name == name) {
      LogError("metrics: %s registered twice", name);
      std::abort();
    }
  }
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->help = help;
  e->type = type;
  entries_.push_back(std::move(e));
  return *entries_.back();
}

Counter& MetricsRegistry::AddCounter(const std::string& name,
                                     const std::string& help) {
  Entry& e = Add(name, help, "counter");
  e.counter = std::make_unique<Counter>();
  return *e.counter;
}

CounterFamily& MetricsRegistry::AddCounterFamily(
    const std::string& name, const std::string& help,
    std::vector<std::string> label_names) {
  Entry& e = Add(name, help, "counter");
  e.family = std::make_unique<CounterFamily>(std::move(label_names));
  return *e.family;
}

Histogram& MetricsRegistry::AddHistogram(const std::string& name,
                                         const std::string& help,
                                         std::vector<double> upper_bounds) {
  Entry& e = Add(name, help, "histogram");
  e.histogram = std::make_unique<Histogram>(std::move(upper_bounds));
  return *e.histogram;
}

void MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                               std::function<double()> fn) {
  Entry& e = Add(name, help, "gauge");
  e.gauge = std::move(fn);
}

void MetricsRegistry::AddGaugeFamily(const std::string& name,
                                     const std::string& help,
                                     std::vector<std::string> label_names,
                                     std::function<GaugeSamples()> fn) {
  Entry& e = Add(name, help, "gauge");
  e.gauge_labels = std::move(label_names);
  e.gauge_family = std::move(fn);
}

std::string MetricsRegistry::Render() const {
  std::vector<const Entry*> entries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& e : entries_) entries.push_back(e.get());
  }
  std::string out;
  for (const Entry* e : entries) {
    absl::StrAppend(&out, "# HELP ", e->name, " ", EscapeHelp(e->help), "\n");
    absl::StrAppend(&out, "# TYPE ", e->name, " ", e->type, "\n");
    if (e->counter) {
      absl::StrAppend(&out, e->name, " ", e->counter->Value(), "\n");
    } else if (e->family) {
      for (const auto& [values, n] : e->family->Snapshot()) {
        absl::StrAppend(&out, e->name, Labels(e->family->label_names(), values),
                        " ", n, "\n");
      }
    } else if (e->histogram) {
      const Histogram& h = *e->histogram;
      std::vector<uint64_t> counts = h.BucketCounts();
      uint64_t cumulative = 0;
      for (size_t i = 0; i < counts.size(); ++i) {
        cumulative += counts[i];
        std::string le = i < h.upper_bounds().size()
                             ? FormatSampleValue(h.upper_bounds()[i])
                             : "+Inf";
        absl::StrAppend(&out, e->name, "_bucket{le=\"", le, "\"} ", cumulative,
                        "\n");
      }
      // _count equals the +Inf bucket even when an Observe races the scrape.
      absl::StrAppend(&out, e->name, "_sum ", FormatSampleValue(h.Sum()), "\n");
      absl::StrAppend(&out, e->name, "_count ", cumulative, "\n");
    } else if (e->gauge) {
      absl::StrAppend(&out, e->name, " ", FormatSampleValue(e->gauge()), "\n");
    } else if (e->gauge_family) {
      for (const auto& [values, v] : e->gauge_family()) {
        if (values.size() != e->gauge_labels.size()) continue;
        absl::StrAppend(&out, e->name, Labels(e->gauge_labels, values), " ",
                        FormatSampleValue(v), "\n");
      }
    }
  }
  return out;
}

}  // namespace simprov
