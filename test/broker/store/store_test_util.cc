#include "test/broker/store/store_test_util.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "common/sealed_box.h"

namespace simprov {

TempDir::TempDir() {
  std::string tmpl = ::testing::TempDir() + "simprov_store_XXXXXX";
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

const Bytes kTestKek(32, 0x5a);

std::string Imsi(int n) { return std::to_string(1010000000000LL + n); }

Bytes PlainKeys(int n) {
  Bytes k(32);
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = static_cast<uint8_t>(0x80 + 3 * i + 17 * n);
  }
  return k;
}

NewSubscriber MakeSubscriber(int n, Random& random, const std::string& group) {
  NewSubscriber s;
  s.imsi = Imsi(n);
  s.sealed_keys = SealBox(kTestKek, PlainKeys(n), ToBytes(s.imsi), random);
  s.amf = {0x80, 0x00};
  s.group = group;
  s.iccid = "89440000000000" + std::to_string(n);
  s.msisdn = "4477000" + std::to_string(n);
  return s;
}

CertificateRecord Cert(const std::string& serial, const std::string& imsi,
                       const std::string& device, absl::Time issued) {
  CertificateRecord c;
  c.serial = serial;
  c.imsi = imsi;
  c.device_id = device;
  c.not_before = issued;
  c.not_after = issued + absl::Hours(24 * 30);
  c.der = {0x30, 0x82, 0x01, 0x00, static_cast<uint8_t>(serial.size())};
  c.issued_at = issued;
  return c;
}

AuditEvent Event(const std::string& imsi, const std::string& detail,
                 absl::Time at) {
  return {at, imsi, "bootstrap", imsi, "ok", detail};
}

AuditEvent AdminEvent(const std::string& action, const std::string& target,
                      absl::Time at) {
  return {at, "local", action, target, "ok", ""};
}

RegistrationIntent Intent(const std::string& registry, const std::string& kind,
                          const std::string& serial, const std::string& imsi,
                          absl::Time at) {
  RegistrationIntent r;
  r.registry = registry;
  r.kind = kind;
  r.serial = serial;
  r.imsi = imsi;
  r.device_id = "dev-" + imsi;
  r.payload = R"({"thing":")" + serial + R"("})";
  r.created_at = at;
  r.next_attempt_at = at;
  return r;
}

}  // namespace simprov
