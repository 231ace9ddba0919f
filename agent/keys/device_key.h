// Where the device's key lives and how it signs: a file (the default), a
// TPM 2.0, or the SIM's GSMA IoT SAFE applet (docs/agent.md, "Device keys
// in hardware").
//
// A KeyStore makes keys and loads the one DIR/device.key refers to; a
// DeviceKey signs. In every store but `file` the private key never exists
// outside the hardware: the CSR and the renewal's proof of possession are
// signed there, and DIR/device.key holds only a reference (a TPM's wrapped
// blob, useless without that TPM).
#ifndef SIMPROV_AGENT_KEYS_DEVICE_KEY_H_
#define SIMPROV_AGENT_KEYS_DEVICE_KEY_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/bytes.h"
#include "common/openssl_ptr.h"

namespace simprov {

// --key SPEC, parsed:
//   file                    DIR/device.key, PKCS#8 PEM (the default)
//   tpm2[:TCTI]             a TPM 2.0; TCTI default device:/dev/tpmrm0
//   iotsafe[:container=N]   the SIM's IoT SAFE applet, key container N
struct KeySpec {
  enum class Kind { kFile, kTpm2, kIotSafe };
  Kind kind = Kind::kFile;
  std::string tcti;   // tpm2
  int container = 1;  // iotsafe
};

inline constexpr const char* kDefaultTcti = "device:/dev/tpmrm0";

// InvalidArgument (one line naming the problem) for an unknown scheme or a
// malformed argument; `pkcs11:` is recognised and refused as not supported
// yet.
absl::StatusOr<KeySpec> ParseKeySpec(absl::string_view spec);

// The store's name as bootstrap.json records it: "file", "tpm2",
// "iotsafe".
std::string KeyStoreName(KeySpec::Kind kind);

class DeviceKey {
 public:
  virtual ~DeviceKey() = default;
  // The public half, in OpenSSL's default library context (comparisons,
  // certificate checks). For a file key, the key itself.
  virtual EVP_PKEY* public_key() const = 0;
  // An ECDSA P-256 signature (DER ECDSA-Sig-Value) over SHA-256(message),
  // made where the key lives.
  virtual absl::StatusOr<Bytes> Sign(const Bytes& message) = 0;
  // A DER PKCS#10 request with subject CN=common_name for this key, signed
  // by it (common/csr.h's shape).
  virtual absl::StatusOr<Bytes> MakeCsr(std::string_view common_name);
  // What DIR/device.key holds. A secret for a file key (wipe after use).
  virtual absl::StatusOr<std::string> Stored() const = 0;
  // True when gRPC's TLS can sign with the key itself: renewal and device
  // tokens then use mutual TLS, as they always have.
  virtual bool tls_capable() const { return false; }
};

class KeyStore {
 public:
  virtual ~KeyStore() = default;
  virtual KeySpec::Kind kind() const = 0;
  // bootstrap.json's "key" object (JSON): the store and where in it.
  virtual std::string DescribeJson() const = 0;
  // A new key pair, generated inside the store.
  virtual absl::StatusOr<std::unique_ptr<DeviceKey>> Generate() = 0;
  // The key DIR/device.key (`stored`) refers to.
  virtual absl::StatusOr<std::unique_ptr<DeviceKey>> Load(
      const std::string& stored) = 0;
  // Forgets a key the credential set no longer uses. For `file` and `tpm2`
  // the key is its file (a TPM's wrapped blob holds no TPM resources), so
  // removing the old generation destroys it; stores that keep keys on the
  // hardware free them here.
  virtual absl::Status Destroy(const std::string& stored) {
    (void)stored;
    return absl::OkStatus();
  }
};

// Opens the store SPEC names. For tpm2 this connects to the TPM:
// FailedPrecondition "TPM not reachable at TCTI ..." when it is not there.
// iotsafe: InvalidArgument, not supported yet.
absl::StatusOr<std::unique_ptr<KeyStore>> OpenKeyStore(const KeySpec& spec);

// The file store (today's behaviour): keys generated in software.
std::unique_ptr<KeyStore> NewFileKeyStore();

// The "store" member of a bootstrap.json "key" object; "file" when absent
// (sets written before key stores existed).
std::string StoreOfBootstrapJson(const std::string& json);

}  // namespace simprov

#endif  // SIMPROV_AGENT_KEYS_DEVICE_KEY_H_
