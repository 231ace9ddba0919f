#include <gtest/gtest.h>

#include <string>

#include "common/pkcs11/uri.h"

namespace simprov::pkcs11 {
namespace {

TEST(Pkcs11Uri, ParsesPathAndQuery) {
  auto u = ParseUri(
      "pkcs11:token=simprov;object=issuing-ca;type=private;id=%01%02"
      "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->token, "simprov");
  EXPECT_EQ(u->object, "issuing-ca");
  EXPECT_EQ(u->type, "private");
  EXPECT_TRUE(u->has_id);
  EXPECT_EQ(u->id, std::string("\x01\x02", 2));
  EXPECT_EQ(u->module_path, "/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_EQ(u->pin_source, "/etc/pin");
  EXPECT_FALSE(u->has_pin_value);
}

TEST(Pkcs11Uri, SchemeIsCaseInsensitiveAndValuesPercentDecoded) {
  auto u = ParseUri("PKCS11:token=My%20Token;object=a%3Bb");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->token, "My Token");
  EXPECT_EQ(u->object, "a;b");
  EXPECT_TRUE(IsPkcs11Uri("pKcS11:"));
  EXPECT_FALSE(IsPkcs11Uri("/etc/key.pem"));
}

TEST(Pkcs11Uri, IgnoresLibraryAndVendorAttributes) {
  auto u = ParseUri(
      "pkcs11:library-manufacturer=SoftHSM;x-vendor=1;slot-id=3;token=t");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->slot_id, "3");
  EXPECT_EQ(u->token, "t");
}

TEST(Pkcs11Uri, PinValueIsParsedButNeverEchoed) {
  auto u = ParseUri("pkcs11:token=t?pin-value=s3cret");
  ASSERT_TRUE(u.ok());
  EXPECT_TRUE(u->has_pin_value);
  EXPECT_EQ(u->pin_value, "s3cret");
  EXPECT_EQ(FormatUri(*u), "pkcs11:token=t");
  auto bad = ParseUri("pkcs11:token=t?pin-value=s3cret%zz");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().find("s3cret"), std::string::npos);
}

TEST(Pkcs11Uri, RefusesMalformed) {
  for (const char* text : {
           "file:/x",
           "pkcs11:token",                       // no '='
           "pkcs11:=x",                          // empty name
           "pkcs11:token=a;token=b",             // twice
           "pkcs11:colour=red",                  // unknown path attribute
           "pkcs11:token=a?colour=red",          // unknown query attribute
           "pkcs11:token=a%4",                   // truncated escape
           "pkcs11:token=a%zz",                  // bad escape
           "pkcs11:token=a b",                   // space unescaped
           "pkcs11:type=secret",                 // bad type
           "pkcs11:slot-id=x",                   // not a number
           "pkcs11:token=a?module-path=lib.so",  // relative module
           "pkcs11:token=a?module-name=softhsm2",
           "pkcs11:token=a?pin-source=http://x",
           "pkcs11:token=a?pin-source=file:pin",  // relative PIN file
       }) {
    EXPECT_FALSE(ParseUri(text).ok()) << text;
  }
  EXPECT_FALSE(ParseUri("pkcs11:object=" + std::string(5000, 'a')).ok());
}

TEST(Pkcs11Uri, FormatRoundTrips) {
  Uri u;
  u.token = "simprov HSM";
  u.object = "ca;1=2&?";
  u.id = std::string("\x00\xff", 2);
  u.has_id = true;
  u.type = "private";
  u.module_path = "/opt/lib/p11.so";
  u.pin_source = "/run/pin";
  const std::string text = FormatUri(u);
  auto back = ParseUri(text);
  ASSERT_TRUE(back.ok()) << back.status() << " " << text;
  EXPECT_EQ(back->token, u.token);
  EXPECT_EQ(back->object, u.object);
  EXPECT_EQ(back->id, u.id);
  EXPECT_EQ(back->type, u.type);
  EXPECT_EQ(back->module_path, u.module_path);
  EXPECT_EQ(back->pin_source, u.pin_source);
  EXPECT_EQ(FormatUri(*back), text);
}

}  // namespace
}  // namespace simprov::pkcs11
