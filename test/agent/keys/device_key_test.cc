// --key parsing, the generic CSR a hardware key signs through Sign(), the
// file store, and the renewal proof's encoding and verification.
#include "agent/keys/device_key.h"

#include <gtest/gtest.h>

#include "common/csr.h"
#include "common/renew_proof.h"
#include "common/x509.h"

namespace simprov {
namespace {

TEST(ParseKeySpecTest, AcceptsTheDocumentedForms) {
  auto f = ParseKeySpec("file");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->kind, KeySpec::Kind::kFile);
  auto t = ParseKeySpec("tpm2");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->kind, KeySpec::Kind::kTpm2);
  EXPECT_EQ(t->tcti, "device:/dev/tpmrm0");
  t = ParseKeySpec("tpm2:swtpm:host=127.0.0.1,port=2321");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->tcti, "swtpm:host=127.0.0.1,port=2321");
  auto i = ParseKeySpec("iotsafe");
  ASSERT_TRUE(i.ok());
  EXPECT_EQ(i->kind, KeySpec::Kind::kIotSafe);
  EXPECT_EQ(i->container, 1);
  i = ParseKeySpec("iotsafe:container=7");
  ASSERT_TRUE(i.ok());
  EXPECT_EQ(i->container, 7);
}

TEST(ParseKeySpecTest, RefusesEverythingElseWithOneReason) {
  struct Case {
    const char* spec;
    const char* says;
  };
  for (const Case& c :
       {Case{"", "unknown key store ''"},
        Case{"TPM2", "unknown key store 'TPM2'"},
        Case{"file:x", "takes no argument"}, Case{"tpm2:", "empty TCTI"},
        Case{"iotsafe:container=0", "container=N"},
        Case{"iotsafe:container=255", "container=N"},
        Case{"iotsafe:slot=1", "container=N"},
        Case{"pkcs11:token=a", "not supported yet"}}) {
    auto s = ParseKeySpec(c.spec);
    ASSERT_FALSE(s.ok()) << c.spec;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(c.says), absl::string_view::npos)
        << c.spec << ": " << s.status().message();
  }
}

// A key that signs only through Sign(), as hardware does: the base
// class's CSR.
class SignOnly : public DeviceKey {
 public:
  explicit SignOnly(DeviceKey& inner) : inner_(inner) {}
  EVP_PKEY* public_key() const override { return inner_.public_key(); }
  absl::StatusOr<Bytes> Sign(const Bytes& m) override { return inner_.Sign(m); }
  absl::StatusOr<std::string> Stored() const override { return "ref"; }

 private:
  DeviceKey& inner_;
};

TEST(DeviceKeyTest, TheGenericCsrVerifiesAndCarriesTheKey) {
  auto key = NewFileKeyStore()->Generate();
  ASSERT_TRUE(key.ok());
  SignOnly hw(**key);
  auto csr = hw.MakeCsr("001010123456789");
  ASSERT_TRUE(csr.ok()) << csr.status();
  auto info = ParseAndVerifyCsr(*csr);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->key_type, "P-256");
  EXPECT_TRUE(SamePublicKey(info->public_key.get(), (*key)->public_key()));
  // One flipped bit in the signed part: the self-signature fails.
  Bytes bad = *csr;
  bad[bad.size() / 2] ^= 1;
  EXPECT_FALSE(ParseAndVerifyCsr(bad).ok());
}

TEST(DeviceKeyTest, TheFileStoreRoundTripsAndRefusesOtherBlobs) {
  auto store = NewFileKeyStore();
  auto key = store->Generate();
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE((*key)->tls_capable());
  auto pem = (*key)->Stored();
  ASSERT_TRUE(pem.ok());
  EXPECT_EQ(pem->rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);
  auto again = store->Load(*pem);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(SamePublicKey((*again)->public_key(), (*key)->public_key()));
  auto tss = store->Load("-----BEGIN TSS2 PRIVATE KEY-----\nAA==\n");
  EXPECT_EQ(tss.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(RenewProofTest, SignedTranscriptVerifiesAndNothingElseDoes) {
  auto key = NewFileKeyStore()->Generate();
  auto other = NewFileKeyStore()->Generate();
  ASSERT_TRUE(key.ok() && other.ok());
  const Bytes nonce(40, 7), leaf{1, 2, 3}, csr{4, 5, 6};
  const Bytes m = RenewProofMessage("broker.example", nonce, leaf, csr);
  // label, identity, nonce and two SHA-256s, each with a 4-byte length.
  EXPECT_EQ(m.size(),
            5 * 4 + kRenewProofLabel.size() + 14 + nonce.size() + 2 * 32);
  auto sig = (*key)->Sign(m);
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(VerifyRenewProof((*key)->public_key(), m, *sig).ok());
  EXPECT_FALSE(VerifyRenewProof((*other)->public_key(), m, *sig).ok());
  for (const Bytes& changed :
       {RenewProofMessage("broker.example2", nonce, leaf, csr),
        RenewProofMessage("broker.example", Bytes(40, 8), leaf, csr),
        RenewProofMessage("broker.example", nonce, Bytes{1, 2}, csr),
        RenewProofMessage("broker.example", nonce, leaf, Bytes{4, 5})}) {
    EXPECT_EQ(VerifyRenewProof((*key)->public_key(), changed, *sig).code(),
              absl::StatusCode::kUnauthenticated);
  }
}

}  // namespace
}  // namespace simprov
