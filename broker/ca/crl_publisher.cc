#include "broker/ca/crl_publisher.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/ca/leaf_builder.h"
#include "common/atomic_file.h"
#include "common/log.h"
#include "common/x509.h"

namespace simprov {
namespace {

// DIR/ca.crl -> DIR/crl-chain.pem.
std::string ChainPath(const std::string& path) {
  const size_t slash = path.rfind('/');
  return (slash == std::string::npos ? std::string()
                                     : path.substr(0, slash + 1)) +
         "crl-chain.pem";
}

std::string CrlDerToPem(const Bytes& der) {
  const unsigned char* p = der.data();
  X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (crl == nullptr || bio == nullptr ||
      PEM_write_bio_X509_CRL(bio.get(), crl.get()) != 1) {
    return "";
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

absl::StatusOr<int> CrlReasonCode(absl::string_view name) {
  static const std::pair<const char*, int> kReasons[] = {
      {"unspecified", 0},        {"keyCompromise", 1},
      {"cACompromise", 2},       {"affiliationChanged", 3},
      {"superseded", 4},         {"cessationOfOperation", 5},
      {"privilegeWithdrawn", 9}, {"aACompromise", 10},
  };
  for (const auto& [n, code] : kReasons) {
    if (name == n) return code;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown revocation reason \"", name,
                   "\" (RFC 5280: unspecified, keyCompromise, cACompromise, "
                   "affiliationChanged, superseded, cessationOfOperation, "
                   "privilegeWithdrawn, aACompromise)"));
}

CrlPublisher::CrlPublisher(Store& store, const CertificateAuthority& ca,
                           Clock& clock, std::string path,
                           absl::Duration validity)
    : store_(store),
      ca_(ca),
      clock_(clock),
      path_(std::move(path)),
      validity_(validity) {}

absl::Status CrlPublisher::Regenerate() {
  std::lock_guard<std::mutex> one(regenerate_mu_);
  const absl::Time now =
      absl::FromUnixSeconds(absl::ToUnixSeconds(clock_.Now()));
  auto revoked = store_.RevokedCertificates(now);
  if (!revoked.ok()) return revoked.status();
  std::vector<RevokedEntry> entries;
  for (const CertificateRecord& c : *revoked) {
    auto code = CrlReasonCode(c.revocation_reason);
    entries.push_back({c.serial, c.revoked_at, code.ok() ? *code : 0});
  }
  auto number = store_.NextCrlNumber();
  if (!number.ok()) return number.status();
  auto crls = ca_.IssueCrls(entries, *number, now, now + validity_);
  if (!crls.ok()) return crls.status();
  std::vector<Bytes> roots;
  if (root_signer_ != nullptr) {
    auto root = SignRootCrl(*number, now);
    if (!root.ok()) return root.status();
    if (!root->empty()) roots.push_back(*std::move(root));
  }
  if (!root_crl_file_.empty()) {
    auto read = ReadRootCrlFile();
    if (!read.ok()) return read.status();
    roots.insert(roots.end(), read->begin(), read->end());
  }
  const Bytes& der = crls->front().der;
  std::string chain;
  for (const Bytes& r : roots) chain += CrlDerToPem(r);
  for (const IssuerCrl& c : *crls) chain += CrlDerToPem(c.der);
  if (!path_.empty()) {
    if (absl::Status s = WriteFileAtomic(path_, ToString(der), 0644); !s.ok()) {
      return s;
    }
    if (absl::Status s = WriteFileAtomic(ChainPath(path_), chain, 0644);
        !s.ok()) {
      return s;
    }
  }
  LogInfo("CRL %d: %d revoked certificates, next update %s (%d issuing CAs%s)",
          *number, entries.size(), absl::FormatTime(now + validity_),
          crls->size(), roots.empty() ? "" : " and the root");
  std::lock_guard<std::mutex> lock(mu_);
  der_ = der;
  issuer_crls_ = *std::move(crls);
  root_crls_ = std::move(roots);
  this_update_ = now;
  return absl::OkStatus();
}

absl::StatusOr<Bytes> CrlPublisher::SignRootCrl(uint64_t number,
                                                absl::Time now) const {
  // The root the key belongs to: the active one, or after a rollover to
  // an operator's CA the retired development root.
  X509Ptr root;
  for (const CaCertificateRole& c : ca_.Certificates()) {
    if (!absl::EndsWith(c.role, "root")) continue;
    const unsigned char* p = c.der.data();
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(c.der.size())));
    if (cert != nullptr && SamePublicKey(X509_get0_pubkey(cert.get()),
                                         root_signer_->public_key())) {
      root = std::move(cert);
      break;
    }
  }
  if (root == nullptr) return Bytes();
  auto crl = BuildCrl(X509_get_subject_name(root.get()), SkiOf(root.get()), {},
                      number, now, now + validity_);
  if (!crl.ok()) return crl.status();
  if (absl::Status s = root_signer_->SignCrl(crl->get()); !s.ok()) return s;
  return CrlToDer(crl->get());
}

absl::StatusOr<std::vector<Bytes>> CrlPublisher::ReadRootCrlFile() const {
  auto text = ReadFileToString(root_crl_file_, 1024 * 1024);
  if (!text.ok()) return text.status();
  std::vector<X509CrlPtr> crls;
  if (absl::StrContains(*text, "-----BEGIN X509 CRL-----")) {
    BioPtr bio(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
    while (X509_CRL* c =
               PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
      crls.emplace_back(c);
    }
    ERR_clear_error();
  } else {
    const unsigned char* p =
        reinterpret_cast<const unsigned char*>(text->data());
    X509_CRL* c = d2i_X509_CRL(nullptr, &p, static_cast<long>(text->size()));
    if (c != nullptr) crls.emplace_back(c);
  }
  if (crls.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("--ca-root-crl ", root_crl_file_, ": no CRL in it"));
  }
  // Each CRL must be signed by a CA above an issuing CA: a root or an
  // intermediate of the active, staged or a retired generation.
  std::vector<X509Ptr> above;
  for (const CaCertificateRole& c : ca_.Certificates()) {
    if (absl::EndsWith(c.role, "issuing")) continue;
    const unsigned char* p = c.der.data();
    above.emplace_back(d2i_X509(nullptr, &p, static_cast<long>(c.der.size())));
  }
  std::vector<Bytes> out;
  for (const X509CrlPtr& c : crls) {
    bool verified = false;
    for (const X509Ptr& s : above) {
      if (s != nullptr &&
          X509_NAME_cmp(X509_CRL_get_issuer(c.get()),
                        X509_get_subject_name(s.get())) == 0 &&
          X509_CRL_verify(c.get(), X509_get0_pubkey(s.get())) == 1) {
        verified = true;
        break;
      }
    }
    ERR_clear_error();
    if (!verified) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--ca-root-crl ", root_crl_file_,
          ": a CRL is not signed by a root or an intermediate of the CA"));
    }
    auto der = CrlToDer(c.get());
    if (!der.ok()) return der.status();
    out.push_back(*std::move(der));
  }
  return out;
}

void CrlPublisher::SetRootCrlSource(std::unique_ptr<CaSigner> root_signer,
                                    std::string root_crl_file) {
  root_signer_ = std::move(root_signer);
  root_crl_file_ = std::move(root_crl_file);
}

Bytes CrlPublisher::RootDer() const {
  X509_NAME* root = X509_get_subject_name(ca_.root_cert());
  std::lock_guard<std::mutex> lock(mu_);
  for (const Bytes& der : root_crls_) {
    const unsigned char* p = der.data();
    X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
    if (crl != nullptr &&
        X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), root) == 0) {
      return der;
    }
  }
  return {};
}

Bytes CrlPublisher::IssuerDer(const std::string& key_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const IssuerCrl& c : issuer_crls_) {
    if (c.key_id == key_id) return c.der;
  }
  return {};
}

std::string CrlPublisher::ChainPem() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string chain;
  for (const Bytes& r : root_crls_) chain += CrlDerToPem(r);
  for (const IssuerCrl& c : issuer_crls_) chain += CrlDerToPem(c.der);
  return chain;
}

absl::Status CrlPublisher::MaybeRefresh() {
  bool due = false;
  std::vector<Bytes> roots;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A CA activation: the new issuing CA's CRL is due at once.
    due = der_.empty() || clock_.Now() >= this_update_ + validity_ / 2 ||
          issuer_crls_.empty() ||
          issuer_crls_.front().key_id != HexEncode(SkiOf(ca_.issuing_cert()));
    roots = root_crls_;
  }
  if (due) return Regenerate();
  if (root_crl_file_.empty()) return absl::OkStatus();
  // The operator's root CRL file may have been replaced: publish it.
  auto read = ReadRootCrlFile();
  if (!read.ok()) return read.status();
  if (roots.size() >= read->size() &&
      std::equal(read->begin(), read->end(), roots.end() - read->size())) {
    return absl::OkStatus();
  }
  return Regenerate();
}

Bytes CrlPublisher::Der() const {
  std::lock_guard<std::mutex> lock(mu_);
  return der_;
}

absl::Time CrlPublisher::NextUpdate() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (der_.empty()) return absl::InfinitePast();
  return this_update_ + validity_;
}

void CrlPublisher::SetUrl(std::string url) {
  std::lock_guard<std::mutex> lock(mu_);
  url_ = std::move(url);
}

std::string CrlPublisher::Url() const {
  std::lock_guard<std::mutex> lock(mu_);
  return url_;
}

}  // namespace simprov
