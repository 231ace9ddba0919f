#include "common/duration.h"

#include <gtest/gtest.h>

#include <string>

namespace simprov {
namespace {

void ExpectDuration(const std::string& text, absl::Duration want) {
  SCOPED_TRACE(text);
  auto d = ParseHumanDuration(text);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, want);
}

void ExpectBadDuration(const std::string& text) {
  SCOPED_TRACE("'" + text + "'");
  auto d = ParseHumanDuration(text);
  ASSERT_FALSE(d.ok()) << *d;
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseHumanDurationTest, SingleUnits) {
  ExpectDuration("90s", absl::Seconds(90));
  ExpectDuration("5m", absl::Minutes(5));
  ExpectDuration("2h", absl::Hours(2));
  ExpectDuration("30d", absl::Hours(24 * 30));
  ExpectDuration("250ms", absl::Milliseconds(250));
  ExpectDuration("1d", absl::Seconds(86400));
  ExpectDuration("0s", absl::ZeroDuration());
}

TEST(ParseHumanDurationTest, CombinedUnitsAddUp) {
  ExpectDuration("1h30m", absl::Minutes(90));
  ExpectDuration("1d2h3m4s5ms", absl::Hours(26) + absl::Minutes(3) +
                                    absl::Seconds(4) + absl::Milliseconds(5));
  ExpectDuration("1m1ms", absl::Minutes(1) + absl::Milliseconds(1));
}

TEST(ParseHumanDurationTest, MsIsNotMinutesThenSeconds) {
  ExpectDuration("5ms", absl::Milliseconds(5));
  EXPECT_NE(*ParseHumanDuration("5ms"), absl::Minutes(5) + absl::Seconds(0));
}

TEST(ParseHumanDurationTest, Rejects) {
  ExpectBadDuration("");
  ExpectBadDuration("10");  // a bare number: units are never guessed
  ExpectBadDuration("5x");
  ExpectBadDuration("-5s");
  ExpectBadDuration("s");
  ExpectBadDuration("1h30");  // last part without a unit
  ExpectBadDuration("5 s");
  ExpectBadDuration(" 5s");
  ExpectBadDuration("5s ");
  ExpectBadDuration("5S");
  ExpectBadDuration("5sec");
  ExpectBadDuration("1.5h");
  ExpectBadDuration("+5s");
  ExpectBadDuration("h1");
  ExpectBadDuration("99999999999999999999s");     // overflows int64
  ExpectBadDuration(std::string(40, '1') + "s");  // too long
}

TEST(ParseHumanDurationTest, ErrorGivesExamples) {
  auto d = ParseHumanDuration("5x");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("'5x'"), absl::string_view::npos);
  EXPECT_NE(d.status().message().find("90s"), absl::string_view::npos);
}

void ExpectHostPort(const std::string& text, const std::string& host,
                    int port) {
  SCOPED_TRACE(text);
  auto hp = ParseHostPort(text);
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, host);
  EXPECT_EQ(hp->port, port);
}

void ExpectBadHostPort(const std::string& text) {
  SCOPED_TRACE("'" + text + "'");
  auto hp = ParseHostPort(text);
  ASSERT_FALSE(hp.ok()) << hp->host << " " << hp->port;
  EXPECT_EQ(hp.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseHostPortTest, Accepts) {
  ExpectHostPort("127.0.0.1:7443", "127.0.0.1", 7443);
  ExpectHostPort("[::1]:80", "::1", 80);
  ExpectHostPort("host:0", "host", 0);
  ExpectHostPort("broker.example.net:65535", "broker.example.net", 65535);
  ExpectHostPort("[2001:db8::7]:443", "2001:db8::7", 443);
  ExpectHostPort("localhost:1", "localhost", 1);
}

TEST(ParseHostPortTest, Rejects) {
  ExpectBadHostPort("host");
  ExpectBadHostPort(":80");
  ExpectBadHostPort("::1:80");  // IPv6 needs brackets
  ExpectBadHostPort("h:70000");
  ExpectBadHostPort("h:65536");
  ExpectBadHostPort("h:abc");
  ExpectBadHostPort("h:");
  ExpectBadHostPort("h:-1");
  ExpectBadHostPort("");
  ExpectBadHostPort("[::1]");
  ExpectBadHostPort("[::1]80");
  ExpectBadHostPort("[::1:80");
  ExpectBadHostPort("[]:80");
  ExpectBadHostPort("[::1]:");
  ExpectBadHostPort("[::1]:x");
  ExpectBadHostPort("h:80x");
}

}  // namespace
}  // namespace simprov
