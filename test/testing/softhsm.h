// A SoftHSM2 token for tests: its own configuration and token directory in
// a temporary directory (SOFTHSM2_CONF is set in this process, so the
// children it starts, the broker and pkcs11-tool, see the same token),
// initialised with softhsm2-util. Keys are made with pkcs11-tool (opensc),
// independently of the code under test.
#ifndef SIMPROV_TEST_TESTING_SOFTHSM_H_
#define SIMPROV_TEST_TESTING_SOFTHSM_H_

#include <memory>
#include <string>
#include <vector>

#include "test/testing/process.h"

namespace simprov::testing {

inline constexpr char kSoftHsmModule[] = "/usr/lib/softhsm/libsofthsm2.so";

class SoftHsm {
 public:
  // A new token `label` with user PIN `pin`. Null (after an ADD_FAILURE)
  // when softhsm2-util fails.
  static std::unique_ptr<SoftHsm> Create(const std::string& label = "simprov",
                                         const std::string& pin = "1234");
  ~SoftHsm();

  const std::string& dir() const { return dir_; }
  const std::string& label() const { return label_; }
  const std::string& pin() const { return pin_; }
  std::string module() const { return kSoftHsmModule; }
  std::string token_dir() const { return dir_ + "/tokens"; }
  // A 0600 file holding the PIN.
  std::string pin_file() const { return dir_ + "/pin"; }
  // pkcs11:token=LABEL;object=OBJECT;type=private
  std::string KeyUri(const std::string& object) const;

  // Runs pkcs11-tool on this token, logged in with the PIN.
  ProcessResult Tool(std::vector<std::string> args) const;
  // A P-256 key pair labelled `object` (CKA_ID `id_hex`) made by pkcs11-tool;
  // returns its public key as PEM ("" on failure).
  std::string GenerateEcKey(const std::string& object,
                            const std::string& id_hex) const;
  // The labels of the private keys in the token.
  std::vector<std::string> PrivateKeyLabels() const;
  // Moves the token's directory away (and back): to the module the token
  // is gone (works as root too, unlike chmod).
  void SetTokenPresent(bool present) const;

 private:
  SoftHsm(std::string dir, std::string label, std::string pin)
      : dir_(std::move(dir)), label_(std::move(label)), pin_(std::move(pin)) {}
  std::string dir_, label_, pin_;
};

}  // namespace simprov::testing

#endif  // SIMPROV_TEST_TESTING_SOFTHSM_H_
