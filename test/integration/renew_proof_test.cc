// The broker's side of the renewal's in-band proof of possession, attacked
// with a real broker: a certificate without its key, a forged or foreign
// nonce, another broker's identity, a proof bound to another CSR, a replay,
// and a proof sent over mutual TLS. The honest proof (here made by a file
// key through the same DeviceKey interface the TPM uses) renews.
#include "common/renew_proof.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "agent/bootstrap_client.h"
#include "agent/keys/device_key.h"
#include "common/atomic_file.h"
#include "common/x509.h"
#include "test/testing/broker_fixture.h"

namespace simprov {
namespace {

using ::simprov::testing::BrokerProcess;
using ::simprov::testing::MakeTempDir;
using ::simprov::testing::RandomSim;
using ::simprov::testing::ReadFileOrEmpty;
using ::simprov::testing::RemoveTree;
using ::simprov::testing::TestSim;
using ::simprov::testing::WriteSoftSim;

class RenewProofTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    broker_ = BrokerProcess::Start(dir_ + "/broker");
    ASSERT_NE(broker_, nullptr);
    TestSim sim = RandomSim("001010000002311");
    imsi_ = sim.imsi;
    broker_->Import({sim});
    out_ = dir_ + "/device";
    ASSERT_EQ(broker_->Bootstrap(WriteSoftSim(dir_, sim), out_).exit_code, 0);
    auto endpoint = ParseBroker(broker_->address());
    ASSERT_TRUE(endpoint.ok());
    endpoint_ = *endpoint;
    ca_pem_ = ReadFileOrEmpty(out_ + "/ca.pem");
    auto leaf = CertFromPem(ReadFileOrEmpty(out_ + "/device.crt"));
    ASSERT_TRUE(leaf.ok());
    leaf_der_ = CertToDer(leaf->get());
    auto key = NewFileKeyStore()->Load(ReadFileOrEmpty(out_ + "/device.key"));
    ASSERT_TRUE(key.ok());
    key_ = std::move(*key);
    stub_ = v1::Bootstrap::NewStub(MakeBrokerChannel(endpoint_, ca_pem_));
  }
  void TearDown() override { RemoveTree(dir_); }

  std::string Nonce() {
    grpc::ClientContext ctx;
    v1::RenewNonceResponse resp;
    EXPECT_TRUE(stub_->RenewNonce(&ctx, v1::RenewNonceRequest(), &resp).ok());
    return resp.nonce();
  }

  // An honest request for a new key, proven by `signer`.
  v1::RenewRequest Request(DeviceKey& signer, const std::string& nonce,
                           const std::string& identity) {
    auto fresh = NewFileKeyStore()->Generate();
    auto csr = (*fresh)->MakeCsr(imsi_);
    v1::RenewRequest req;
    req.set_csr(ToString(*csr));
    req.set_certificate(ToString(leaf_der_));
    req.set_nonce(nonce);
    req.set_broker_identity(identity);
    auto sig = signer.Sign(
        RenewProofMessage(identity, ToBytes(nonce), leaf_der_, *csr));
    req.set_signature(ToString(*sig));
    return req;
  }

  grpc::Status Send(const v1::RenewRequest& req) {
    grpc::ClientContext ctx;
    v1::RenewResponse resp;
    return stub_->Renew(&ctx, req, &resp);
  }

  std::string dir_, imsi_, out_, ca_pem_;
  std::unique_ptr<BrokerProcess> broker_;
  BrokerEndpoint endpoint_;
  Bytes leaf_der_;
  std::unique_ptr<DeviceKey> key_;
  std::unique_ptr<v1::Bootstrap::Stub> stub_;
};

TEST_F(RenewProofTest, TheCertificateWithoutItsKeyIsRefused) {
  auto attacker = NewFileKeyStore()->Generate();
  ASSERT_TRUE(attacker.ok());
  grpc::Status s = Send(Request(**attacker, Nonce(), endpoint_.identity));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "does not verify"))
      << s.error_message();
  // No proof at all, certificate only: refused too.
  v1::RenewRequest bare = Request(*key_, Nonce(), endpoint_.identity);
  bare.clear_signature();
  EXPECT_EQ(Send(bare).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(RenewProofTest, ForgedNoncesAndOtherIdentitiesAreRefused) {
  std::string forged = Nonce();
  forged[20] ^= 1;
  grpc::Status s = Send(Request(*key_, forged, endpoint_.identity));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "not issued here"))
      << s.error_message();
  // A nonce from another broker does not verify here.
  auto other = BrokerProcess::Start(dir_ + "/other");
  ASSERT_NE(other, nullptr);
  auto other_endpoint = ParseBroker(other->address());
  ASSERT_TRUE(other_endpoint.ok());
  auto other_stub =
      v1::Bootstrap::NewStub(MakeBrokerChannel(*other_endpoint, ""));
  grpc::ClientContext ctx;
  v1::RenewNonceResponse foreign;
  ASSERT_TRUE(
      other_stub->RenewNonce(&ctx, v1::RenewNonceRequest(), &foreign).ok());
  s = Send(Request(*key_, foreign.nonce(), endpoint_.identity));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Signed for another broker identity.
  s = Send(Request(*key_, Nonce(), "evil.example"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "broker identity"))
      << s.error_message();
}

TEST_F(RenewProofTest, AProofIsBoundToItsCsrAndCannotBeReplayed) {
  v1::RenewRequest req = Request(*key_, Nonce(), endpoint_.identity);
  // The same proof with another CSR (an attacker's key).
  v1::RenewRequest swapped = req;
  auto attacker = NewFileKeyStore()->Generate();
  swapped.set_csr(ToString(*(*attacker)->MakeCsr(imsi_)));
  EXPECT_EQ(Send(swapped).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // The honest request renews.
  ASSERT_TRUE(Send(req).ok());
  // The renewed certificate cannot renew again, even with a valid proof
  // under a fresh nonce: it is superseded (a suspected clone).
  v1::RenewRequest again = Request(*key_, Nonce(), endpoint_.identity);
  grpc::Status s = Send(again);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "superseded"))
      << s.error_message();
}

TEST_F(RenewProofTest, MutualTlsAndAnInBandProofTogetherAreRefused) {
  auto channel = MakeDeviceChannel(endpoint_, out_);
  ASSERT_TRUE(channel.ok());
  auto stub = v1::Bootstrap::NewStub(*channel);
  grpc::ClientContext ctx;
  v1::RenewResponse resp;
  grpc::Status s =
      stub->Renew(&ctx, Request(*key_, Nonce(), endpoint_.identity), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "mutual TLS"))
      << s.error_message();
}

}  // namespace
}  // namespace simprov
