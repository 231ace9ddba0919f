// Shared by the operator CA, remote admin and broker configuration suites:
// a fixture with a fresh temporary directory, and an operator PKI made with
// the openssl CLI.
#ifndef SIMPROV_TEST_INTEGRATION_OPS_ADMIN_TESTING_H_
#define SIMPROV_TEST_INTEGRATION_OPS_ADMIN_TESTING_H_

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test/testing/broker_fixture.h"

namespace simprov::testing {

class OpsAdminTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override { RemoveTree(dir_); }
  std::string dir_;
};

// Runs argv and fails the test unless it exits 0.
void RunOk(const std::vector<std::string>& argv);

// An operator PKI made with the openssl CLI: root -> intermediate -> issuing
// (the broker's CA), plus a non-CA certificate under the root. DIR/openssl.cnf
// also has a section v3_forged_admin: a client certificate claiming
// urn:simprov:admin:admin:mallory.
struct OperatorPki {
  std::string dir;
  std::string root_pem, chain_pem;  // chain: intermediate + root
  std::string issuing_pem, issuing_key;
  std::string int_key;             // a key that does not match issuing_pem
  std::string leaf_pem, leaf_key;  // not a CA
};

// Makes one in `dir`; `name` prefixes the subjects ("NAME Root", ...).
OperatorPki MakePki(const std::string& dir, const std::string& name);

}  // namespace simprov::testing

#endif  // SIMPROV_TEST_INTEGRATION_OPS_ADMIN_TESTING_H_
