#include "broker/ca/ca_files.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "broker/ca/ca.h"
#include "broker/ca/leaf_builder.h"
#include "common/atomic_file.h"
#include "common/x509.h"

namespace simprov {
namespace {

// Bound on files read by Load(), in bytes.
constexpr size_t kMaxFileBytes = 1024 * 1024;

absl::Status ErrnoError(std::string_view what, const std::string& path,
                        int err) {
  std::string msg =
      absl::StrCat(std::string(what), " ", path, ": ", std::strerror(err));
  if (err == EEXIST) return absl::AlreadyExistsError(msg);
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

// Writes a secret (0600) and wipes the in-memory copy.
absl::Status WriteSecretFile(const std::string& path, std::string& secret) {
  absl::Status s = WriteFileAtomic(path, secret, 0600);
  OPENSSL_cleanse(secret.data(), secret.size());
  secret.clear();
  return s;
}

// Creates directory `path` with `mode` unless it exists; an existing
// directory is left as is unless `force_mode`, which chmods it to `mode`.
absl::Status MakeDir(const std::string& path, mode_t mode, bool force_mode) {
  if (::mkdir(path.c_str(), mode) == 0) {
    // mkdir's mode is filtered by the umask; make it exact.
    if (::chmod(path.c_str(), mode) != 0) {
      return ErrnoError("chmod", path, errno);
    }
    return absl::OkStatus();
  }
  if (errno != EEXIST) return ErrnoError("mkdir", path, errno);
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return ErrnoError("stat", path, errno);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " exists and is not a directory"));
  }
  if (force_mode && (st.st_mode & 07777) != mode &&
      ::chmod(path.c_str(), mode) != 0) {
    return ErrnoError("chmod", path, errno);
  }
  return absl::OkStatus();
}

// Writes files in order; each atomically.
struct PendingFile {
  std::string path;
  std::string data;
  mode_t mode;
};
absl::Status WriteAll(std::vector<PendingFile>& files) {
  for (PendingFile& f : files) {
    absl::Status s = f.mode == 0600 ? WriteSecretFile(f.path, f.data)
                                    : WriteFileAtomic(f.path, f.data, f.mode);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string ChainPemOf(const CaMaterial& m) {
  std::string pem = CertToPem(m.issuing.get());
  for (const X509Ptr& c : m.intermediates) pem += CertToPem(c.get());
  return pem;
}

bool IsSelfSigned(X509* cert) {
  return X509_check_issued(cert, cert) == X509_V_OK;
}

// Wipes a string holding key material when it goes out of scope.
class WipeOnExit {
 public:
  explicit WipeOnExit(std::string& s) : s_(s) {}
  WipeOnExit(const WipeOnExit&) = delete;
  WipeOnExit& operator=(const WipeOnExit&) = delete;
  ~WipeOnExit() { OPENSSL_cleanse(s_.data(), s_.size()); }

 private:
  std::string& s_;
};

absl::StatusOr<X509Ptr> ReadCert(const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFileToString(path, kMaxFileBytes);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<X509Ptr> cert = CertFromPem(*pem);
  if (!cert.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": ", cert.status().message()));
  }
  return cert;
}

// Where a retired issuing CA's key file is kept, by the CA's key id
// (subjectKeyIdentifier, hex: serials are only unique per issuer).
std::string RetiredKeyPath(const std::string& dir, const std::string& key_id) {
  return absl::StrCat(dir, "/ca/retired/", key_id, ".key");
}

// Copies the active issuing CA's key file to its retired path (0600).
absl::Status KeepRetiredKey(const std::string& dir, const std::string& key_id) {
  if (absl::Status s = MakeDir(dir + "/ca/retired", 0700, /*force_mode=*/true);
      !s.ok()) {
    return s;
  }
  auto key = ReadFileToString(dir + "/ca/issuing.key", kMaxFileBytes);
  if (!key.ok()) return key.status();
  return WriteSecretFile(RetiredKeyPath(dir, key_id), *key);
}

}  // namespace

absl::StatusOr<GenerationFiles> ReadGeneration(const std::string& root_path,
                                               const std::string& dir,
                                               const CaSignerFactory& signers) {
  GenerationFiles g;
  auto root = ReadCert(root_path);
  if (!root.ok()) return root.status();
  g.root = *std::move(root);
  auto issuing = ReadCert(dir + "/issuing.pem");
  if (!issuing.ok()) return issuing.status();
  g.issuing = *std::move(issuing);
  // chain.pem: the issuing CA, then intermediates (absent in old dirs).
  if (PathExists(dir + "/chain.pem")) {
    auto pem = ReadFileToString(dir + "/chain.pem", kMaxFileBytes);
    if (!pem.ok()) return pem.status();
    auto certs = CertsFromPem(*pem);
    if (!certs.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, "/chain.pem: ", certs.status().message()));
    }
    for (X509Ptr& c : *certs) {
      if (X509_cmp(c.get(), g.issuing.get()) == 0) continue;
      if (X509_cmp(c.get(), g.root.get()) == 0) continue;
      g.intermediates.push_back(std::move(c));
    }
  }
  absl::StatusOr<std::unique_ptr<CaSigner>> signer =
      signers.Load(dir + "/issuing.key");
  if (!signer.ok()) return signer.status();
  if (*signer == nullptr) {
    return absl::InternalError(
        absl::StrCat(dir, "/issuing.key: the signer factory made no signer"));
  }
  g.signer = *std::move(signer);
  return g;
}

absl::Status FinishActivation(const std::string& dir) {
  const std::string ca_dir = dir + "/ca";
  const std::string next = ca_dir + "/next";
  const std::string journal = next + "/activating";
  if (!PathExists(journal)) return absl::OkStatus();
  // The clean-up below starts with root.pem: if it (or the key or the
  // certificate) is gone, every write was done and only clean-up is left.
  const bool writes_left = PathExists(next + "/root.pem") &&
                           PathExists(next + "/issuing.key") &&
                           PathExists(next + "/issuing.pem");
  auto retired = ReadFileToString(journal, kMaxFileBytes);
  if (!retired.ok()) return retired.status();
  std::vector<PendingFile> files = {{ca_dir + "/retired.pem", *retired, 0644}};
  std::vector<std::tuple<std::string, std::string, mode_t>> copies;
  if (writes_left) {
    copies = {{next + "/issuing.key", ca_dir + "/issuing.key", 0600},
              {next + "/issuing.pem", ca_dir + "/issuing.pem", 0644},
              {next + "/chain.pem", ca_dir + "/chain.pem", 0644},
              {next + "/root.pem", dir + "/ca.pem", 0644}};
  }
  for (const auto& [from, to, mode] : copies) {
    auto data = ReadFileToString(from, kMaxFileBytes);
    // A chain.pem-less staging (issuing CA signed by the root): the chain
    // is the issuing CA alone.
    if (!data.ok() && absl::EndsWith(from, "/chain.pem")) {
      data = ReadFileToString(next + "/issuing.pem", kMaxFileBytes);
    }
    if (!data.ok()) return data.status();
    files.push_back({to, *std::move(data), mode});
  }
  if (writes_left) {
    if (absl::Status s = WriteAll(files); !s.ok()) return s;
  }
  for (PendingFile& f : files) OPENSSL_cleanse(f.data.data(), f.data.size());
  // Clean-up, root.pem first (see writes_left); the journal goes last.
  for (const char* f :
       {"root.pem", "activate-at", "issuing.key", "issuing.pem", "chain.pem"}) {
    ::unlink((next + "/" + f).c_str());
  }
  ::unlink(journal.c_str());
  ::rmdir(next.c_str());
  return FsyncDirectory(ca_dir);
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>>
CertificateAuthority::CreateDevelopment(const std::string& dir, Clock& clock,
                                        Random& random, const std::string& name,
                                        const CaSignerFactory& signers,
                                        const std::string& root_crl_url) {
  const std::string ca_dir = dir + "/ca";
  const std::string root_pem_path = dir + "/ca.pem";
  const std::string root_key_path = ca_dir + "/root.key";
  const std::string issuing_key_path = ca_dir + "/issuing.key";
  const std::string issuing_pem_path = ca_dir + "/issuing.pem";
  const std::string chain_pem_path = ca_dir + "/chain.pem";

  if (absl::Status s = MakeDir(dir, 0700, /*force_mode=*/false); !s.ok()) {
    return s;
  }
  for (const std::string& path :
       {root_pem_path, root_key_path, issuing_key_path}) {
    if (PathExists(path)) {
      return absl::AlreadyExistsError(absl::StrCat(
          path, " already exists; refusing to overwrite an existing CA"));
    }
  }
  if (absl::Status s = MakeDir(ca_dir, 0700, /*force_mode=*/true); !s.ok()) {
    return s;
  }

  const absl::Time now = clock.Now();
  absl::StatusOr<GeneratedCaKey> root_key = signers.Generate();
  if (!root_key.ok()) return root_key.status();
  const WipeOnExit wipe_root_key(root_key->key_file);
  absl::StatusOr<GeneratedCaKey> issuing_key = signers.Generate();
  if (!issuing_key.ok()) return issuing_key.status();
  const WipeOnExit wipe_issuing_key(issuing_key->key_file);
  if (root_key->signer == nullptr || issuing_key->signer == nullptr) {
    return absl::InternalError("the signer factory made no signer");
  }
  const CaSigner& root_signer = *root_key->signer;

  // Root: self-signed.
  absl::StatusOr<Validity> root_validity =
      ComputeValidity(now, kRootValidity, kBackdate, absl::InfinitePast(),
                      absl::InfiniteFuture());
  if (!root_validity.ok()) return root_validity.status();
  CertSpec root_spec;
  root_spec.public_key = root_signer.public_key();
  root_spec.common_name = name + " root CA";
  root_spec.serial = MakeSerial(random);
  root_spec.not_before = root_validity->not_before;
  root_spec.not_after = root_validity->not_after;
  root_spec.basic_constraints = "critical,CA:TRUE";
  root_spec.key_usage = "critical,keyCertSign,cRLSign";
  absl::StatusOr<X509Ptr> root = BuildCertificate(root_spec);
  if (!root.ok()) return root.status();
  if (absl::Status s = root_signer.SignCertificate(root->get()); !s.ok()) {
    return s;
  }
  const Bytes root_ski = SkiOf(root->get());

  // Issuing CA: signed by the root, never valid beyond it.
  absl::StatusOr<Validity> issuing_validity =
      ComputeValidity(now, kIssuingValidity, kBackdate,
                      absl::FromUnixSeconds(root_validity->not_before),
                      absl::FromUnixSeconds(root_validity->not_after));
  if (!issuing_validity.ok()) return issuing_validity.status();
  CertSpec issuing_spec;
  issuing_spec.public_key = issuing_key->signer->public_key();
  issuing_spec.common_name = name + " issuing CA";
  issuing_spec.serial = MakeSerial(random);
  issuing_spec.not_before = issuing_validity->not_before;
  issuing_spec.not_after = issuing_validity->not_after;
  issuing_spec.issuer_name = X509_get_subject_name(root->get());
  issuing_spec.issuer_ski = &root_ski;
  issuing_spec.basic_constraints = "critical,CA:TRUE,pathlen:0";
  issuing_spec.key_usage = "critical,keyCertSign,cRLSign,digitalSignature";
  issuing_spec.crl_url = root_crl_url;
  absl::StatusOr<X509Ptr> issuing = BuildCertificate(issuing_spec);
  if (!issuing.ok()) return issuing.status();
  if (absl::Status s = root_signer.SignCertificate(issuing->get()); !s.ok()) {
    return s;
  }

  // Keys first, certificates next, DIR/ca.pem last: its presence marks a
  // complete CA.
  if (absl::Status s = WriteSecretFile(root_key_path, root_key->key_file);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteSecretFile(issuing_key_path, issuing_key->key_file);
      !s.ok()) {
    return s;
  }
  const std::string issuing_pem = CertToPem(issuing->get());
  const std::string root_pem = CertToPem(root->get());
  for (const std::string* path : {&issuing_pem_path, &chain_pem_path}) {
    if (absl::Status s = WriteFileAtomic(*path, issuing_pem, 0644); !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = WriteFileAtomic(root_pem_path, root_pem, 0644);
      !s.ok()) {
    return s;
  }

  auto ca = Create(*std::move(root), *std::move(issuing),
                   std::move(issuing_key->signer), clock, random);
  if (ca.ok()) (*ca)->dir_ = dir;
  return ca;
}

absl::Status CertificateAuthority::InstallOperatorCa(const std::string& dir,
                                                     CaMaterial m) {
  const std::string ca_dir = dir + "/ca";
  if (absl::Status s = MakeDir(dir, 0700, /*force_mode=*/false); !s.ok()) {
    return s;
  }
  for (const std::string& path :
       {dir + "/ca.pem", ca_dir + "/issuing.key", ca_dir + "/root.key"}) {
    if (PathExists(path)) {
      return absl::AlreadyExistsError(absl::StrCat(
          path, " already exists; refusing to overwrite an existing CA"));
    }
  }
  if (absl::Status s = MakeDir(ca_dir, 0700, /*force_mode=*/true); !s.ok()) {
    return s;
  }
  // DIR/ca.pem last: its presence marks a complete CA.
  std::vector<PendingFile> files = {
      {ca_dir + "/issuing.key", std::move(m.key_pem), 0600},
      {ca_dir + "/issuing.pem", CertToPem(m.issuing.get()), 0644},
      {ca_dir + "/chain.pem", ChainPemOf(m), 0644},
      {dir + "/ca.pem", CertToPem(m.root.get()), 0644},
  };
  return WriteAll(files);
}

absl::Status CertificateAuthority::StageOperatorCa(const std::string& dir,
                                                   CaMaterial m,
                                                   absl::Time activate_at) {
  const std::string next = dir + "/ca/next";
  if (PathExists(next + "/root.pem")) {
    return absl::AlreadyExistsError(
        absl::StrCat("another CA is already staged in ", next,
                     "; activate it first (simprov ca activate)"));
  }
  if (absl::Status s = MakeDir(next, 0700, /*force_mode=*/true); !s.ok()) {
    return s;
  }
  // root.pem last: its presence marks a complete staged CA.
  std::vector<PendingFile> files = {
      {next + "/issuing.key", std::move(m.key_pem), 0600},
      {next + "/issuing.pem", CertToPem(m.issuing.get()), 0644},
      {next + "/chain.pem", ChainPemOf(m), 0644},
      {next + "/activate-at",
       absl::StrCat(absl::ToUnixSeconds(activate_at), "\n"), 0644},
      {next + "/root.pem", CertToPem(m.root.get()), 0644},
  };
  return WriteAll(files);
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>>
CertificateAuthority::Load(const std::string& dir, Clock& clock, Random& random,
                           const CaSignerFactory& signers) {
  if (absl::Status s = FinishActivation(dir); !s.ok()) {
    return absl::Status(
        s.code(),
        absl::StrCat("finishing an interrupted CA activation: ", s.message()));
  }
  auto files = ReadGeneration(dir + "/ca.pem", dir + "/ca", signers);
  if (!files.ok()) return files.status();
  auto ca = Create(std::move(files->root), std::move(files->issuing),
                   std::move(files->signer), clock, random,
                   std::move(files->intermediates));
  if (!ca.ok()) return ca.status();
  CertificateAuthority& self = **ca;
  self.dir_ = dir;
  absl::MutexLock lock(&self.mu_);
  const std::string next = dir + "/ca/next";
  if (PathExists(next + "/root.pem")) {
    // The staged generation's signer is made (and checked against its
    // certificate) now, so a bad staged key fails the start, not the
    // activation; it signs once MaybeActivateStaged makes it active.
    auto staged = ReadGeneration(next + "/root.pem", next, signers);
    if (!staged.ok()) return staged.status();
    auto g = MakeGeneration(std::move(staged->root), std::move(staged->issuing),
                            std::move(staged->intermediates),
                            std::move(staged->signer), clock.Now());
    if (!g.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("staged CA in ", next, ": ", g.status().message()));
    }
    auto at = ReadFileToString(next + "/activate-at", 64);
    int64_t seconds = 0;
    if (!at.ok() || !absl::SimpleAtoi(*at, &seconds)) {
      return absl::FailedPreconditionError(
          absl::StrCat(next, "/activate-at does not hold Unix seconds"));
    }
    self.staged_ = *std::move(g);
    self.staged_activate_at_ = absl::FromUnixSeconds(seconds);
  }
  // Retired generations: issuing CAs, intermediates and roots in one bundle;
  // each self-signed certificate starts a new generation's root.
  if (PathExists(dir + "/ca/retired.pem")) {
    auto pem = ReadFileToString(dir + "/ca/retired.pem", kMaxFileBytes);
    if (!pem.ok()) return pem.status();
    auto certs = CertsFromPem(*pem);
    if (!certs.ok()) return certs.status();
    // Layout: per generation, chain (issuing first) then root.
    std::vector<X509Ptr> chain;
    for (X509Ptr& c : *certs) {
      if (!IsSelfSigned(c.get())) {
        chain.push_back(std::move(c));
        continue;
      }
      if (chain.empty()) chain.push_back(X509Ptr(X509_dup(c.get())));
      X509Ptr issuing = std::move(chain.front());
      chain.erase(chain.begin());
      // Its key, if kept at activation, signs its CRL while it is valid.
      std::unique_ptr<CaSigner> signer;
      const CertInfo info = DescribeCert(issuing.get());
      const std::string key =
          RetiredKeyPath(dir, HexEncode(SkiOf(issuing.get())));
      if (info.not_before <= clock.Now() && clock.Now() < info.not_after &&
          PathExists(key)) {
        auto loaded = signers.Load(key);
        if (!loaded.ok()) return loaded.status();
        signer = *std::move(loaded);
      }
      auto g = MakeGeneration(std::move(c), std::move(issuing),
                              std::move(chain), std::move(signer), clock.Now());
      chain.clear();
      if (!g.ok()) return g.status();
      self.retired_.push_back(*std::move(g));
    }
  }
  self.RecomputeAnchorsLocked();
  return ca;
}

absl::StatusOr<bool> CertificateAuthority::MaybeActivateStaged(bool force) {
  absl::MutexLock lock(&mu_);
  if (staged_ == nullptr) {
    if (force) {
      return absl::FailedPreconditionError(
          "no CA is staged: start the broker with a new --ca-cert/--ca-key "
          "first");
    }
    return false;
  }
  if (!force && clock_.Now() < staged_activate_at_) return false;
  if (!dir_.empty()) {
    // Retire the active generation first: if we stop half-way, the next
    // start still verifies its devices' renewals.
    const std::string ca_dir = dir_ + "/ca";
    const std::string next = ca_dir + "/next";
    std::string retired;
    if (PathExists(ca_dir + "/retired.pem")) {
      auto old = ReadFileToString(ca_dir + "/retired.pem", kMaxFileBytes);
      if (!old.ok()) return old.status();
      retired = *old;
    }
    retired += active_->chain_pem + CertToPem(active_->root.get());
    // The retiring CA's key is kept: it signs the CA's CRL until the
    // certificates it issued have expired (IssueCrls).
    if (absl::Status s = KeepRetiredKey(dir_, HexEncode(active_->ski));
        !s.ok()) {
      return s;
    }
    // next/ already holds the new generation's files (as staged); the
    // journal makes the switch redoable after a crash (FinishActivation).
    if (absl::Status s = WriteFileAtomic(next + "/activating", retired, 0644);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = FinishActivation(dir_); !s.ok()) return s;
  }
  retired_.push_back(std::move(active_));
  active_ = std::move(staged_);
  staged_ = nullptr;
  staged_activate_at_ = absl::InfiniteFuture();
  RecomputeAnchorsLocked();
  return true;
}

}  // namespace simprov
