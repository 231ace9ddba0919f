// The installed token-verifier SDK: docs/tokens.md's example program, built
// against `cmake --install`'s output with find_package and with pkg-config,
// verifies a token the real broker issued to the real agent.
#include <gtest/gtest.h>
#include <httplib.h>

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "test/testing/broker_fixture.h"
#include "test/testing/process.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::ProcessResult;

TEST(SdkTest, ExampleBuildsAgainstTheInstalledPackageAndVerifies) {
  const std::string dir = testing::MakeTempDir();
  auto broker =
      BrokerProcess::Start(dir + "/broker", {"--http-listen", "127.0.0.1:0"});
  ASSERT_NE(broker, nullptr);
  const testing::TestSim sim = testing::RandomSim("001010000007301");
  broker->Import({sim});
  const std::string out = dir + "/device";
  ASSERT_EQ(broker->Bootstrap(testing::WriteSoftSim(dir, sim), out).exit_code,
            0);
  ProcessResult r = testing::RunProcess({testing::kAgentBin, "token",
                                         "--broker", broker->address(), "--out",
                                         out, "--audience", "billing"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string token(absl::StripAsciiWhitespace(r.out));
  const nlohmann::json bootstrap =
      nlohmann::json::parse(testing::ReadFileOrEmpty(out + "/bootstrap.json"));

  const std::string http(absl::StripAsciiWhitespace(
      testing::ReadFileOrEmpty(broker->data_dir() + "/http-address")));
  httplib::Client client("http://" + http);
  auto jwks = client.Get("/.well-known/jwks.json");
  ASSERT_TRUE(jwks);
  ASSERT_EQ(jwks->status, 200);
  testing::WriteFileOrDie(dir + "/jwks.json", jwks->body);

  r = testing::RunProcess(
      {"/bin/bash", SIMPROV_SOURCE_DIR "/test/integration/sdk_check.sh",
       SIMPROV_SOURCE_DIR, SIMPROV_BINARY_DIR, dir + "/jwks.json", "billing",
       token, bootstrap["device_id"].get<std::string>(), SIMPROV_SDK_FLAGS},
      absl::Minutes(5));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "ok   verify_token\nok   verify_token_pc\n") << r.err;
  testing::RemoveTree(dir);
}

}  // namespace
}  // namespace simprov
