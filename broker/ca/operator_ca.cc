#include "broker/ca/operator_ca.h"

#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/pkcs11/uri.h"
#include "common/x509.h"

namespace simprov {
namespace {

constexpr size_t kMaxFileBytes = 1024 * 1024;

absl::StatusOr<std::vector<X509Ptr>> ReadCerts(const char* flag,
                                               const std::string& path) {
  auto pem = ReadFileToString(path, kMaxFileBytes);
  if (!pem.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": ", pem.status().message()));
  }
  auto certs = CertsFromPem(*pem);
  if (!certs.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": no PEM certificate (",
                     certs.status().message(), ")"));
  }
  return certs;
}

bool SelfSigned(X509* c) { return X509_check_issued(c, c) == X509_V_OK; }

absl::Status CheckIssuingCert(const OperatorCaFiles& files, X509* issuing) {
  if (X509_check_ca(issuing) == 0 || !DescribeCert(issuing).is_ca) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ca-cert ", files.cert,
                     " is not a CA certificate (needs basicConstraints "
                     "CA:TRUE and keyUsage keyCertSign)"));
  }
  if (X509_get0_subject_key_id(issuing) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--ca-cert ", files.cert, " has no subjectKeyIdentifier extension"));
  }
  return absl::OkStatus();
}

absl::StatusOr<CaMaterial> ReadOperatorCaChain(const OperatorCaFiles& files,
                                               absl::Time now, CaMaterial m);

// --ca-key names a key in a token: the token's key must be --ca-cert's.
absl::StatusOr<CaMaterial> ReadOperatorCaWithReference(
    const OperatorCaFiles& files, absl::Time now,
    const CaKeyReferenceResolver& resolve_reference);

}  // namespace

namespace {

absl::StatusOr<CaMaterial> ReadOperatorCaWithReference(
    const OperatorCaFiles& files, absl::Time now,
    const CaKeyReferenceResolver& resolve_reference) {
  CaMaterial m;
  auto certs = ReadCerts("--ca-cert", files.cert);
  if (!certs.ok()) return certs.status();
  m.issuing = std::move(certs->front());
  if (absl::Status s = CheckIssuingCert(files, m.issuing.get()); !s.ok()) {
    return s;
  }
  // Named without any pin-value it may carry (which is then refused).
  auto parsed = pkcs11::ParseUri(files.key);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ca-key: ", parsed.status().message()));
  }
  const std::string shown = pkcs11::FormatUri(*parsed);
  auto key = resolve_reference(files.key);
  if (!key.ok()) {
    return absl::Status(
        key.status().code(),
        absl::StrCat("--ca-key ", shown, ": ", key.status().message()));
  }
  if (!SamePublicKey(key->get(), X509_get0_pubkey(m.issuing.get()))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--ca-key ", shown, " does not match --ca-cert ", files.cert));
  }
  m.key_pem = files.key + "\n";
  return ReadOperatorCaChain(files, now, std::move(m));
}

}  // namespace

absl::StatusOr<CaMaterial> ReadOperatorCa(
    const OperatorCaFiles& files, absl::Time now,
    const CaKeyReferenceResolver& resolve_reference) {
  if (files.cert.empty() || files.key.empty()) {
    return absl::InvalidArgumentError(
        "--ca-cert and --ca-key go together (and --ca-chain needs both)");
  }
  if (resolve_reference != nullptr &&
      absl::StartsWithIgnoreCase(files.key, "pkcs11:")) {
    return ReadOperatorCaWithReference(files, now, resolve_reference);
  }
  // The key's mode first: never read a key that others could read too.
  struct stat st;
  if (::stat(files.key.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ca-key ", files.key, ": ", std::strerror(errno)));
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o",
                  static_cast<unsigned>(st.st_mode & 07777));
    return absl::InvalidArgumentError(
        absl::StrCat("--ca-key ", files.key,
                     " is readable by group or others"
                     " (mode ",
                     mode, "): chmod 600 it"));
  }
  CaMaterial m;
  auto certs = ReadCerts("--ca-cert", files.cert);
  if (!certs.ok()) return certs.status();
  m.issuing = std::move(certs->front());
  if (absl::Status s = CheckIssuingCert(files, m.issuing.get()); !s.ok()) {
    return s;
  }
  auto key_pem = ReadFileToString(files.key, kMaxFileBytes);
  if (!key_pem.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ca-key ", files.key, ": ", key_pem.status().message()));
  }
  auto key = PrivateKeyFromPem(*key_pem);
  if (!key.ok()) {
    OPENSSL_cleanse(key_pem->data(), key_pem->size());
    return absl::InvalidArgumentError(
        absl::StrCat("--ca-key ", files.key, " holds no private key"));
  }
  if (!SamePublicKey(key->get(), X509_get0_pubkey(m.issuing.get()))) {
    OPENSSL_cleanse(key_pem->data(), key_pem->size());
    return absl::InvalidArgumentError(absl::StrCat(
        "--ca-key ", files.key, " does not match --ca-cert ", files.cert));
  }
  // Stored as PKCS#8 whatever the operator's format was.
  auto pkcs8 = PrivateKeyToPkcs8Pem(key->get());
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  if (!pkcs8.ok()) return pkcs8.status();
  m.key_pem = *std::move(pkcs8);
  return ReadOperatorCaChain(files, now, std::move(m));
}

namespace {

// The walk up to the root, for either kind of key.
absl::StatusOr<CaMaterial> ReadOperatorCaChain(const OperatorCaFiles& files,
                                               absl::Time now, CaMaterial m) {
  // Walk from the issuing CA up to a self-signed root through the chain.
  std::vector<X509Ptr> pool;
  if (!files.chain.empty()) {
    auto chain = ReadCerts("--ca-chain", files.chain);
    if (!chain.ok()) return chain.status();
    pool = *std::move(chain);
  }
  X509* cur = m.issuing.get();
  while (!SelfSigned(cur)) {
    auto it = std::find_if(pool.begin(), pool.end(), [&](const X509Ptr& c) {
      return c != nullptr && X509_check_issued(c.get(), cur) == X509_V_OK;
    });
    if (it == pool.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          files.chain.empty() ? "--ca-cert is not self-signed: give --ca-chain"
                              : "--ca-chain " + files.chain,
          " with the certificates up to the operator's root (no issuer for ",
          DescribeCert(cur).subject, ")"));
    }
    X509Ptr next = std::move(*it);
    pool.erase(it);
    cur = next.get();
    if (SelfSigned(cur)) {
      m.root = std::move(next);
    } else {
      m.intermediates.push_back(std::move(next));
    }
    if (m.intermediates.size() > 8) {
      return absl::InvalidArgumentError("--ca-chain is longer than 8 CAs");
    }
  }
  if (m.root == nullptr) m.root = X509Ptr(X509_dup(m.issuing.get()));
  std::vector<X509*> mids;
  for (const X509Ptr& c : m.intermediates) mids.push_back(c.get());
  if (absl::Status s =
          VerifyChain(m.issuing.get(), mids, {m.root.get()}, now, "");
      !s.ok() && X509_cmp(m.issuing.get(), m.root.get()) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--ca-cert does not verify to the root in --ca-chain: ", s.message()));
  }
  return m;
}

}  // namespace

}  // namespace simprov
