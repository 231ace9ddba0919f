// The broker's data directory: what it holds and how it is initialised.
//
//   DIR/simprov.db        SQLite store (WAL)
//   DIR/kek               key-encryption key, 32 random bytes, hex, 0600
//   DIR/ca.pem            trust anchor (root CA certificate)
//   DIR/ca/               CA keys (0600) and certificates
//   DIR/tls/server.{key,pem}  TLS server key and chain (leaf + issuing CA),
//                         reissued at every start for the current names
//   DIR/admin-ca/         admin CA (remote admin, docs/broker.md): ca.pem,
//                         ca/{root,issuing}.key, ca/{issuing,chain}.pem,
//                         revoked (revoked admin certificate serials)
//   DIR/admin.sock        admin API (created under umask 077)
//   DIR/listen-address    "HOST:PORT" actually bound, written when ready
//   DIR/http-address      "HOST:PORT" of --http-listen, when given
//   DIR/admin-address     "HOST:PORT" of --admin-listen, when given
//   DIR/broker.lock       the data dir's lock (DataDirLock): the pid of the
//                         process holding it; never removed
#ifndef SIMPROV_BROKER_DATA_DIR_H_
#define SIMPROV_BROKER_DATA_DIR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "broker/ca/ca.h"
#include "broker/ca/operator_ca.h"
#include "broker/ops/backup.h"
#include "common/bytes.h"
#include "common/clock.h"

namespace simprov {

struct DataDirPaths {
  explicit DataDirPaths(std::string dir) : root(std::move(dir)) {}
  std::string root;
  std::string store() const { return root + "/simprov.db"; }
  std::string kek() const { return root + "/kek"; }
  std::string ca_pem() const { return root + "/ca.pem"; }
  std::string tls_dir() const { return root + "/tls"; }
  std::string tls_key() const { return root + "/tls/server.key"; }
  std::string tls_chain() const { return root + "/tls/server.pem"; }
  std::string admin_socket() const { return root + "/admin.sock"; }
  std::string admin_ca_dir() const { return root + "/admin-ca"; }
  std::string listen_address() const { return root + "/listen-address"; }
  std::string http_address() const { return root + "/http-address"; }
  std::string metrics_address() const { return root + "/metrics-address"; }
  std::string admin_address() const { return root + "/admin-address"; }
  std::string lock() const { return root + "/" + kBackupLockName; }
};

// An exclusive lock on a data dir, held while the object lives: flock(2)
// on DIR/broker.lock, which then holds the holder's pid. The kernel drops
// the lock when the process ends however it ends, so a stale file never
// blocks a start. Every process that writes a data dir (the broker,
// `simprov-broker restore`) holds it: two brokers never share one store,
// CA or admin socket.
class DataDirLock {
 public:
  // Takes the lock of the existing directory `dir` without waiting.
  // FailedPrecondition "data dir DIR is in use by pid N" when another
  // process holds it.
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(
      const std::string& dir);
  ~DataDirLock();
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

  // Whether Acquire created the lock file (a restore into a new directory
  // removes it again when it fails).
  bool created() const { return created_; }
  const std::string& path() const { return path_; }

 private:
  DataDirLock(int fd, std::string path, bool created)
      : fd_(fd), path_(std::move(path)), created_(created) {}
  int fd_;
  std::string path_;
  bool created_;
};

// Loads the CA. In an empty data dir: installs the operator's CA when
// `operator_ca` names one, else creates a development CA. In a data dir
// with a CA: an `operator_ca` equal to the active or staged CA changes
// nothing (the flags may stay in the config); another one is staged for
// rollover, activating `activate_after` from now (see docs/broker.md).
// Bad operator files are refused before anything is written. Every
// generation's signer comes from `signers`; `resolve_reference` checks a
// --ca-key that names a key in a token (ReadOperatorCa). A new
// development CA's issuing certificate names `root_crl_url` (if any) as
// its CRL Distribution Point.
absl::StatusOr<std::unique_ptr<CertificateAuthority>> LoadOrCreateCa(
    const DataDirPaths& paths, Clock& clock, Random& random,
    const OperatorCaFiles& operator_ca = {},
    absl::Duration activate_after = absl::ZeroDuration(),
    const CaSignerFactory& signers = SoftwareCaSigners(),
    const CaKeyReferenceResolver& resolve_reference = nullptr,
    const std::string& root_crl_url = "");

// The admin CA (DIR/admin-ca/, created at first start): signs remote admin
// client certificates and the admin listener's server certificate only.
absl::StatusOr<std::unique_ptr<CertificateAuthority>> LoadOrCreateAdminCa(
    const DataDirPaths& paths, Clock& clock, Random& random);

struct TlsServerIdentity {
  std::string key_pem;
  std::string chain_pem;  // leaf + issuing CA
};

// Issues a fresh TLS server certificate for `names` (an IP address becomes
// an IP SAN) and writes it to DIR/tls.
absl::StatusOr<TlsServerIdentity> IssueTlsIdentity(
    const DataDirPaths& paths, CertificateAuthority& ca,
    const std::vector<std::string>& names);

}  // namespace simprov

#endif  // SIMPROV_BROKER_DATA_DIR_H_
