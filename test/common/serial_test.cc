#include "common/serial.h"

#include <gtest/gtest.h>

#include <string>

namespace simprov {
namespace {

TEST(NormalizeSerial, AcceptsEveryFormOpensslPrints) {
  const std::string want = "5a3f00c1d2";
  for (const char* text :
       {"5a3f00c1d2", "5A3F00C1D2", "serial=5A3F00C1D2", "5a:3f:00:c1:d2",
        "00:5a:3f:00:c1:d2", "  5A:3F:00:C1:D2\n", "0x5a3f00c1d2",
        "5a 3f 00 c1 d2", "00005a3f00c1d2"}) {
    auto s = NormalizeSerial(text);
    ASSERT_TRUE(s.ok()) << text << ": " << s.status();
    EXPECT_EQ(*s, want) << text;
  }
}

TEST(NormalizeSerial, KeepsTheFormOfCertInfo) {
  EXPECT_EQ(*NormalizeSerial("00"), "00");
  EXPECT_EQ(*NormalizeSerial("0000"), "00");
  EXPECT_EQ(*NormalizeSerial("f"), "0f");
  EXPECT_EQ(*NormalizeSerial("80:01"), "8001");
}

TEST(NormalizeSerial, RefusesWhatIsNotASerial) {
  for (const char* text : {"", "serial=", "xyz", "5a-3f", "-5a", "5a;rm"}) {
    auto s = NormalizeSerial(text);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
  auto long_text = NormalizeSerial(std::string(kMaxSerialText + 1, 'a'));
  EXPECT_EQ(long_text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(long_text.status().message().find("longer than"),
            std::string::npos);
}

}  // namespace
}  // namespace simprov
