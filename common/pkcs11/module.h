// Internal to simprov_pkcs11: a loaded PKCS#11 module, its return codes as
// text, and the conversions between token attributes and OpenSSL keys.
#ifndef SIMPROV_COMMON_PKCS11_MODULE_H_
#define SIMPROV_COMMON_PKCS11_MODULE_H_

#include <p11-kit/pkcs11.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/openssl_ptr.h"

namespace simprov::pkcs11 {

// One module (shared library), loaded and initialized once per process and
// never unloaded: every Token on it shares it.
class Module {
 public:
  // The module at `path` (absolute), loading and initializing it once.
  static absl::StatusOr<std::shared_ptr<Module>> Get(const std::string& path);
  CK_FUNCTION_LIST* f() const { return f_; }
  const std::string& path() const { return path_; }
  // Finalizes and initializes the module again (after
  // CKR_CRYPTOKI_NOT_INITIALIZED, or a token whose objects vanished: some
  // modules, SoftHSM2 among them, only see a returned token after that);
  // bumps generation(), so every Token on it drops its sessions and
  // handles. Waits until no call is in flight (calls()); at most once per
  // `min_interval`, and not at all if generation() moved past
  // `seen_generation` meanwhile. The caller holds no reader lock.
  absl::Status Reinitialize(uint64_t seen_generation,
                            absl::Duration min_interval);
  uint64_t generation() const { return generation_.load(); }
  // Held as a reader around every sequence of calls into the module (a
  // lent Session holds it), as a writer by Reinitialize: C_Finalize never
  // runs while another thread is inside the module.
  absl::Mutex& calls() { return calls_; }

 private:
  Module(std::string path, void* handle, CK_FUNCTION_LIST* f)
      : path_(std::move(path)), handle_(handle), f_(f) {}
  const std::string path_;
  // The dlopen handle: the module stays loaded for the process's life.
  [[maybe_unused]] void* const handle_;
  CK_FUNCTION_LIST* const f_;
  absl::Mutex calls_;
  absl::Time last_reinit_ = absl::InfinitePast();  // guarded by calls_
  std::atomic<uint64_t> generation_{0};
};

// "CKR_PIN_INCORRECT" etc. (hex for codes not named here).
std::string RvName(CK_RV rv);

// Whether `rv` means the session, the login or the module is gone (the
// pool is dropped and the token found again), rather than a bad request.
bool ConnectionLost(CK_RV rv);

// The token label / manufacturer / serial / model fields: fixed-width,
// blank-padded.
std::string Trimmed(const unsigned char* field, size_t len);

// DER of the P-256 and Ed25519 CKA_EC_PARAMS.
std::string P256Params();
std::string Ed25519Params();

// The public key from CKA_EC_PARAMS and CKA_EC_POINT (a DER OCTET STRING
// around the point, or the bare point).
absl::StatusOr<EvpPkeyPtr> PublicKeyFromEcPoint(const std::string& params,
                                                const std::string& point,
                                                bool* ed25519);

}  // namespace simprov::pkcs11

#endif  // SIMPROV_COMMON_PKCS11_MODULE_H_
