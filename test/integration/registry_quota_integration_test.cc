// Registry quotas end to end: the real simprov-broker with an aws-iot
// registry at its default rate (10 deliveries a second) in front of a local
// AWS IoT endpoint that checks SigV4 and throttles each API above 10 calls
// a second (a token bucket, as AWS does), and 500 real bootstraps from
// simprov-bench. The devices do not wait for their registration; every
// certificate is registered exactly once, no delivery fails, nothing is
// throttled, and the endpoint sees no API faster than the quota.
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "test/testing/broker_fixture.h"
#include "test/testing/fake_aws_iot.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using json = nlohmann::json;
using ::simprov::testing::BrokerProcess;
using ::simprov::testing::FakeAwsIot;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::ProcessResult;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::RunProcess;

constexpr int kDevices = 500;
constexpr double kQuota = 10;

std::vector<json> JsonLines(const std::string& out) {
  std::vector<json> rows;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    rows.push_back(json::parse(line, nullptr, false));
  }
  return rows;
}

TEST(RegistryQuotaIntegration, FiveHundredBootstrapsStayWithinTheQuota) {
  setenv("AWS_ACCESS_KEY_ID", testing::kFakeAwsAccessKey, 1);
  setenv("AWS_SECRET_ACCESS_KEY", testing::kFakeAwsSecretKey, 1);
  unsetenv("AWS_SESSION_TOKEN");
  FakeAwsIot aws;
  aws.SetQuota(kQuota);
  const std::string dir = MakeTempDir();
  // No rate=: aws-iot's default, 10 a second.
  auto broker = BrokerProcess::Start(
      dir + "/broker",
      {"--http-listen", "127.0.0.1:0", "--registry",
       absl::StrCat("aws-iot://eu-west-1?policy=devices&endpoint=", aws.url()),
       "--log-level", "warning"});
  ASSERT_NE(broker, nullptr);

  ProcessResult bench =
      RunProcess({SIMPROV_BENCH_BIN, "--broker", broker->address(),
                  "--data-dir", broker->data_dir(), "--devices",
                  absl::StrCat(kDevices), "--concurrency", "8"});
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  // The devices did not wait for the registry: most registrations are
  // still queued when every bootstrap has its certificate.
  ProcessResult pending = broker->Cli({"registry", "pending", "--json"});
  ASSERT_EQ(pending.exit_code, 0) << pending.err;
  EXPECT_GT(JsonLines(pending.out).size(), static_cast<size_t>(kDevices / 2));

  // 500 deliveries at 10 a second: about 50 s.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(240);
  while (std::chrono::steady_clock::now() < deadline) {
    pending = broker->Cli({"registry", "pending", "--json"});
    ASSERT_EQ(pending.exit_code, 0) << pending.err;
    if (pending.out.empty()) break;
    for (const json& p : JsonLines(pending.out)) {
      // A failed attempt would show here; a throttled one is not counted.
      ASSERT_EQ(p["attempts"], 0) << p.dump();
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  ASSERT_EQ(pending.out, "") << "registrations still pending";

  // Registered exactly once each, nothing throttled, no failed delivery.
  std::map<std::string, int> regs = aws.registrations();
  EXPECT_EQ(regs.size(), static_cast<size_t>(kDevices));
  for (const auto& [id, n] : regs) EXPECT_EQ(n, 1) << id;
  EXPECT_EQ(aws.throttled(), 0);
  EXPECT_EQ(aws.bad_signatures(), 0);
  ProcessResult devices = broker->Cli({"devices", "list", "--json"});
  ASSERT_EQ(devices.exit_code, 0) << devices.err;
  std::vector<json> rows = JsonLines(devices.out);
  EXPECT_EQ(rows.size(), static_cast<size_t>(kDevices));
  for (const json& d : rows) {
    EXPECT_EQ(d["registry_status"], "aws-iot:registered") << d.dump();
  }
  EXPECT_FALSE(absl::StrContains(broker->log(), "failed (attempt"))
      << broker->log();

  // The measured rate per API, counting every request that arrived: at
  // most the quota on average, and in any one second at most the quota
  // plus one (the deliveries leave 100 ms apart; a request's network delay
  // may differ from the one ten slots earlier by a millisecond, which can
  // put both ends of ten intervals into one second).
  std::map<std::string, std::vector<FakeAwsIot::SteadyTime>> by_api;
  for (const auto& a : aws.arrivals()) by_api[a.api].push_back(a.at);
  ASSERT_EQ(by_api["RegisterCertificate"].size(),
            static_cast<size_t>(kDevices));
  for (const auto& [api, times] : by_api) {
    size_t max_in_second = 0;
    size_t first = 0;
    for (size_t last = 0; last < times.size(); ++last) {
      while (times[last] - times[first] >= std::chrono::seconds(1)) ++first;
      max_in_second = std::max(max_in_second, last - first + 1);
    }
    EXPECT_LE(max_in_second, static_cast<size_t>(kQuota) + 1) << api;
    RecordProperty(api + "_max_in_one_second", absl::StrCat(max_in_second));
    const double span =
        std::chrono::duration<double>(times.back() - times.front()).count();
    const double rate = (times.size() - 1) / span;
    EXPECT_LE(rate, kQuota) << api;
    RecordProperty(api + "_per_second", absl::StrCat(rate));
  }

  // The throttling counter is exported, per registry.
  const std::string http(absl::StripAsciiWhitespace(
      ReadFileOrEmpty(broker->data_dir() + "/http-address")));
  httplib::Client client("http://" + http);
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_TRUE(absl::StrContains(
      metrics->body,
      "simprov_registry_throttled_total{registry=\"aws-iot\"} 0"))
      << metrics->body;
  broker.reset();
  RemoveTree(dir);
}

}  // namespace
}  // namespace simprov
