#include "broker/data_dir.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/x509.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/log.h"
#include "common/sealed_box.h"
#include "common/x509.h"

namespace simprov {

absl::StatusOr<std::unique_ptr<DataDirLock>> DataDirLock::Acquire(
    const std::string& dir) {
  const std::string path = DataDirPaths(dir).lock();
  bool created = true;
  int fd = open(path.c_str(),
                O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    created = false;
    fd = open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot open the data dir lock ", path, ": ", strerror(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    if (e != EWOULDBLOCK) {
      close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat("cannot lock ", path, ": ", strerror(e)));
    }
    // The holder writes its pid right after locking: give it a moment.
    std::string pid;
    for (int i = 0; i < 50 && pid.empty(); ++i) {
      char buf[32] = {};
      const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
      pid = std::string(absl::StripAsciiWhitespace(
          absl::string_view(buf, n > 0 ? static_cast<size_t>(n) : 0)));
      if (pid.empty())
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    close(fd);
    bool digits = !pid.empty() && pid.size() < 12;
    for (char c : pid) digits = digits && absl::ascii_isdigit(c);
    return absl::FailedPreconditionError(
        absl::StrCat("data dir ", dir, " is in use by pid ",
                     digits ? pid : std::string("(unknown)")));
  }
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) !=
                                   static_cast<ssize_t>(pid.size())) {
    const int e = errno;
    close(fd);
    return absl::InternalError(
        absl::StrCat("cannot write ", path, ": ", strerror(e)));
  }
  return std::unique_ptr<DataDirLock>(new DataDirLock(fd, path, created));
}

DataDirLock::~DataDirLock() { close(fd_); }

absl::StatusOr<std::unique_ptr<CertificateAuthority>> LoadOrCreateCa(
    const DataDirPaths& paths, Clock& clock, Random& random,
    const OperatorCaFiles& operator_ca, absl::Duration activate_after,
    const CaSignerFactory& signers,
    const CaKeyReferenceResolver& resolve_reference,
    const std::string& root_crl_url) {
  std::optional<CaMaterial> material;
  if (!operator_ca.empty()) {
    auto m = ReadOperatorCa(operator_ca, clock.Now(), resolve_reference);
    if (!m.ok()) return m.status();
    material = *std::move(m);
  }
  if (!PathExists(paths.ca_pem())) {
    if (!material) {
      LogInfo("creating a development CA in %s", paths.root);
      return CertificateAuthority::CreateDevelopment(paths.root, clock, random,
                                                     "simprov development",
                                                     signers, root_crl_url);
    }
    const std::string subject = DescribeCert(material->issuing.get()).subject;
    if (absl::Status s = CertificateAuthority::InstallOperatorCa(
            paths.root, *std::move(material));
        !s.ok()) {
      return s;
    }
    LogInfo("installed the operator's CA %s in %s", subject, paths.root);
    return CertificateAuthority::Load(paths.root, clock, random, signers);
  }
  auto ca = CertificateAuthority::Load(paths.root, clock, random, signers);
  if (!ca.ok() || !material) return ca;
  if (X509_cmp((*ca)->issuing_cert(), material->issuing.get()) == 0) {
    return ca;  // the CA in use: nothing to do
  }
  CaState state = (*ca)->State();
  const CertInfo given = DescribeCert(material->issuing.get());
  if (state.staged && state.staged_issuing.serial_hex == given.serial_hex &&
      state.staged_issuing.subject == given.subject) {
    return ca;  // already staged
  }
  const absl::Time at = clock.Now() + activate_after;
  if (absl::Status s = CertificateAuthority::StageOperatorCa(
          paths.root, *std::move(material), at);
      !s.ok()) {
    return s;
  }
  LogInfo("staged CA %s: served as a trust anchor now, signs from %s",
          given.subject, absl::FormatTime(at, absl::UTCTimeZone()));
  return CertificateAuthority::Load(paths.root, clock, random, signers);
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>> LoadOrCreateAdminCa(
    const DataDirPaths& paths, Clock& clock, Random& random) {
  if (PathExists(paths.admin_ca_dir() + "/ca.pem")) {
    return CertificateAuthority::Load(paths.admin_ca_dir(), clock, random);
  }
  LogInfo("creating the admin CA in %s", paths.admin_ca_dir());
  return CertificateAuthority::CreateDevelopment(paths.admin_ca_dir(), clock,
                                                 random, "simprov admin");
}

absl::StatusOr<TlsServerIdentity> IssueTlsIdentity(
    const DataDirPaths& paths, CertificateAuthority& ca,
    const std::vector<std::string>& names) {
  std::vector<std::string> dns, ips;
  for (const std::string& n : names) {
    unsigned char buf[16];
    if (inet_pton(AF_INET, n.c_str(), buf) == 1 ||
        inet_pton(AF_INET6, n.c_str(), buf) == 1) {
      ips.push_back(n);
    } else {
      dns.push_back(n);
    }
  }
  EvpPkeyPtr key = GenerateP256Key();
  auto cert =
      ca.IssueServerCertificate(key.get(), dns, ips, absl::Hours(24 * 90));
  if (!cert.ok()) return cert.status();
  TlsServerIdentity id;
  auto key_pem = PrivateKeyToPkcs8Pem(key.get());
  if (!key_pem.ok()) return key_pem.status();
  id.key_pem = *key_pem;
  id.chain_pem = CertToPem(cert->get()) + ca.ChainPem();
  if (absl::Status s = MakeDirectories(paths.tls_dir(), 0700); !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFileAtomic(paths.tls_key(), id.key_pem, 0600);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFileAtomic(paths.tls_chain(), id.chain_pem, 0644);
      !s.ok()) {
    return s;
  }
  return id;
}

}  // namespace simprov
