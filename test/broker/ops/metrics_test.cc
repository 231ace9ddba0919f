// The metrics registry renders the Prometheus text format 0.0.4 exactly,
// and the broker's metrics fold refusal reasons into few labels.
#include "broker/ops/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "broker/ops/broker_metrics.h"

namespace simprov {
namespace {

TEST(MetricsTest, RendersCountersFamiliesHistogramsAndGauges) {
  MetricsRegistry r;
  r.AddCounter("simprov_things_total", "Things.\nSecond \\ line").Inc(3);
  CounterFamily& f =
      r.AddCounterFamily("simprov_results_total", "Results", {"result"});
  f.WithLabels({"ok"}).Inc();
  f.WithLabels({"a\"b\\c\nd"}).Inc(2);
  Histogram& h = r.AddHistogram("simprov_latency_seconds", "Latency", {0.1, 1});
  h.Observe(0.05);
  h.Observe(0.1);  // le is inclusive
  h.Observe(0.5);
  h.Observe(7);
  r.AddGauge("simprov_depth", "Depth", [] { return 42.0; });
  r.AddGauge("simprov_age_seconds", "Age", [] { return 1.5; });
  EXPECT_EQ(r.Render(),
            "# HELP simprov_things_total Things.\\nSecond \\\\ line\n"
            "# TYPE simprov_things_total counter\n"
            "simprov_things_total 3\n"
            "# HELP simprov_results_total Results\n"
            "# TYPE simprov_results_total counter\n"
            "simprov_results_total{result=\"a\\\"b\\\\c\\nd\"} 2\n"
            "simprov_results_total{result=\"ok\"} 1\n"
            "# HELP simprov_latency_seconds Latency\n"
            "# TYPE simprov_latency_seconds histogram\n"
            "simprov_latency_seconds_bucket{le=\"0.1\"} 2\n"
            "simprov_latency_seconds_bucket{le=\"1\"} 3\n"
            "simprov_latency_seconds_bucket{le=\"+Inf\"} 4\n"
            "simprov_latency_seconds_sum 7.65\n"
            "simprov_latency_seconds_count 4\n"
            "# HELP simprov_depth Depth\n"
            "# TYPE simprov_depth gauge\n"
            "simprov_depth 42\n"
            "# HELP simprov_age_seconds Age\n"
            "# TYPE simprov_age_seconds gauge\n"
            "simprov_age_seconds 1.5\n");
}

TEST(MetricsTest, GaugesAreComputedAtEveryScrape) {
  MetricsRegistry r;
  int calls = 0;
  r.AddGauge("simprov_calls", "Calls", [&calls] { return ++calls; });
  EXPECT_NE(r.Render().find("simprov_calls 1\n"), std::string::npos);
  EXPECT_NE(r.Render().find("simprov_calls 2\n"), std::string::npos);
}

TEST(MetricsTest, GaugeFamiliesRenderEverySampleOfTheScrape) {
  MetricsRegistry r;
  int calls = 0;
  r.AddGaugeFamily("simprov_expiry_seconds", "Expiry", {"ca", "serial"},
                   [&calls]() -> MetricsRegistry::GaugeSamples {
                     if (++calls == 1) return {};
                     return {{{"root", "0a"}, 1.7e9},
                             {{"issuing", "b\"c"}, 42},
                             {{"only-one-label"}, 7}};  // dropped
                   });
  EXPECT_EQ(r.Render(),
            "# HELP simprov_expiry_seconds Expiry\n"
            "# TYPE simprov_expiry_seconds gauge\n");
  EXPECT_EQ(r.Render(),
            "# HELP simprov_expiry_seconds Expiry\n"
            "# TYPE simprov_expiry_seconds gauge\n"
            "simprov_expiry_seconds{ca=\"root\",serial=\"0a\"} 1700000000\n"
            "simprov_expiry_seconds{ca=\"issuing\",serial=\"b\\\"c\"} 42\n");
}

TEST(MetricsTest, ConcurrentIncrementsAreAllCounted) {
  MetricsRegistry r;
  CounterFamily& f = r.AddCounterFamily("simprov_x_total", "X", {"k"});
  Histogram& h = r.AddHistogram("simprov_h", "H");
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        f.WithLabels({t % 2 ? "odd" : "even"}).Inc();
        h.Observe(0.001);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(f.WithLabels({"odd"}).Value(), 40000u);
  EXPECT_EQ(f.WithLabels({"even"}).Value(), 40000u);
  EXPECT_EQ(h.Count(), 80000u);
}

TEST(MetricsTest, SampleValuesAreSpelledAsPrometheusExpects) {
  EXPECT_EQ(FormatSampleValue(0), "0");
  EXPECT_EQ(FormatSampleValue(12), "12");
  EXPECT_EQ(FormatSampleValue(0.00025), "0.00025");
  EXPECT_EQ(FormatSampleValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(FormatSampleValue(-1.0 / 0.0), "-Inf");
}

TEST(MetricsTest, RegisteringANameTwiceOrABadNameAborts) {
  MetricsRegistry r;
  r.AddCounter("simprov_a_total", "A");
  EXPECT_DEATH(r.AddCounter("simprov_a_total", "A"), "");
  EXPECT_DEATH(r.AddCounter("9bad", "B"), "");
}

TEST(BrokerMetricsTest, RefusalReasonsBecomeFewLabels) {
  EXPECT_EQ(BrokerMetrics::RefusalLabel("RES does not match"), "auth_failed");
  EXPECT_EQ(BrokerMetrics::RefusalLabel("request MAC does not verify"),
            "auth_failed");
  EXPECT_EQ(BrokerMetrics::RefusalLabel("unknown IMSI"), "unknown_imsi");
  EXPECT_EQ(BrokerMetrics::RefusalLabel("subscriber is suspended"), "inactive");
  EXPECT_EQ(BrokerMetrics::RefusalLabel("session expired"), "session");
  EXPECT_EQ(BrokerMetrics::RefusalLabel("something new"), "policy");
}

TEST(BrokerMetricsTest, CountsOutcomesAndRegistersTheOutbox) {
  MetricsRegistry r;
  BrokerMetrics m(r);
  m.Succeeded("bootstrap");
  m.Refused("bootstrap", "RES does not match");
  m.Refused("renew", "certificate revoked");
  m.TokenRequest(absl::PermissionDeniedError("no"));
  m.ObserveStoreWrite(absl::Milliseconds(2));
  m.RegisterOutbox([] { return 3.0; }, [] { return 12.0; });
  const std::string text = r.Render();
  for (const char* line : {
           "simprov_bootstraps_total{result=\"ok\"} 1\n",
           "simprov_bootstraps_total{result=\"auth_failed\"} 1\n",
           "simprov_challenge_failures_total{reason=\"mac\"} 1\n",
           "simprov_renewals_total{result=\"ok\"} 0\n",
           "simprov_renewals_total{result=\"revoked\"} 1\n",
           "simprov_tokens_total{result=\"denied\"} 1\n",
           "simprov_store_write_seconds_bucket{le=\"0.0025\"} 1\n",
           "simprov_store_write_seconds_count 1\n",
           "simprov_outbox_depth 3\n",
           "simprov_outbox_oldest_age_seconds 12\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
}

}  // namespace
}  // namespace simprov
