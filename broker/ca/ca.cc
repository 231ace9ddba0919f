#include "broker/ca/ca.h"

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/ca/crl.h"
#include "broker/ca/leaf_builder.h"
#include "common/x509.h"

namespace simprov {
namespace {

constexpr size_t kMaxServerNames = 100;

}  // namespace

struct CertificateAuthority::LeafProfile {
  EVP_PKEY* public_key = nullptr;
  std::vector<std::pair<std::string, std::string>> subject;
  std::string crl_url;
  std::string common_name;
  absl::Duration ttl;
  const char* ext_key_usage = nullptr;  // "clientAuth" or "serverAuth".
  std::vector<SanEntry> sans;
};

CertificateAuthority::CertificateAuthority(GenerationPtr active, Clock& clock,
                                           Random& random)
    : clock_(clock), random_(random), active_(std::move(active)) {
  absl::MutexLock lock(&mu_);
  RecomputeAnchorsLocked();
}

CertificateAuthority::~CertificateAuthority() = default;

absl::StatusOr<CertificateAuthority::GenerationPtr>
CertificateAuthority::MakeGeneration(X509Ptr root, X509Ptr issuing,
                                     std::vector<X509Ptr> intermediates,
                                     std::unique_ptr<CaSigner> signer,
                                     absl::Time now) {
  if (root == nullptr || issuing == nullptr) {
    return absl::InvalidArgumentError("missing root or issuing CA");
  }
  if (signer != nullptr &&
      !SamePublicKey(X509_get0_pubkey(issuing.get()), signer->public_key())) {
    return absl::FailedPreconditionError(
        "issuing CA key does not match the issuing CA certificate");
  }
  // Also caches each certificate's decoded extensions, so later concurrent
  // reads never race on OpenSSL's lazy caching.
  if (X509_check_ca(root.get()) == 0 || X509_check_ca(issuing.get()) == 0 ||
      !DescribeCert(issuing.get()).is_ca) {
    return absl::FailedPreconditionError(
        "root or issuing certificate is not a CA certificate");
  }
  std::vector<X509*> chain;
  for (const X509Ptr& c : intermediates) {
    if (X509_check_ca(c.get()) == 0) {
      return absl::FailedPreconditionError(
          "an intermediate certificate is not a CA certificate");
    }
    chain.push_back(c.get());
  }
  if (X509_get0_subject_key_id(issuing.get()) == nullptr) {
    return absl::FailedPreconditionError(
        "issuing CA certificate has no subjectKeyIdentifier");
  }
  if (signer != nullptr && X509_cmp(root.get(), issuing.get()) != 0) {
    if (absl::Status s =
            VerifyChain(issuing.get(), chain, {root.get()}, now, "");
        !s.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("issuing CA does not chain to the root: ", s.message()));
    }
  }
  auto g = std::make_shared<Generation>();
  g->not_before = DescribeCert(issuing.get()).not_before;
  g->not_after = DescribeCert(issuing.get()).not_after;
  g->ski = SkiOf(issuing.get());
  g->chain_der.push_back(CertToDer(issuing.get()));
  g->chain_pem = CertToPem(issuing.get());
  for (const X509Ptr& c : intermediates) {
    g->chain_der.push_back(CertToDer(c.get()));
    g->chain_pem += CertToPem(c.get());
  }
  g->root = std::move(root);
  g->issuing = std::move(issuing);
  g->intermediates = std::move(intermediates);
  g->signer = std::move(signer);
  return GenerationPtr(std::move(g));
}

void CertificateAuthority::RecomputeAnchorsLocked() {
  anchors_der_.clear();
  anchors_pem_.clear();
  auto add = [&](const GenerationPtr& g) {
    if (g == nullptr) return;
    Bytes der = CertToDer(g->root.get());
    if (std::find(anchors_der_.begin(), anchors_der_.end(), der) !=
        anchors_der_.end()) {
      return;
    }
    anchors_der_.push_back(std::move(der));
    anchors_pem_ += CertToPem(g->root.get());
  };
  add(active_);
  add(staged_);
  for (const GenerationPtr& g : retired_) add(g);
}

CertificateAuthority::GenerationPtr CertificateAuthority::Active() const {
  absl::MutexLock lock(&mu_);
  return active_;
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>>
CertificateAuthority::Create(X509Ptr root, X509Ptr issuing,
                             std::unique_ptr<CaSigner> signer, Clock& clock,
                             Random& random,
                             std::vector<X509Ptr> intermediates) {
  if (signer == nullptr) return absl::InvalidArgumentError("missing signer");
  auto g =
      MakeGeneration(std::move(root), std::move(issuing),
                     std::move(intermediates), std::move(signer), clock.Now());
  if (!g.ok()) return g.status();
  return std::unique_ptr<CertificateAuthority>(
      new CertificateAuthority(*std::move(g), clock, random));
}

CaState CertificateAuthority::State() const {
  absl::MutexLock lock(&mu_);
  CaState st;
  st.active = DescribeCert(active_->issuing.get());
  if (staged_ != nullptr) {
    st.staged = true;
    st.staged_issuing = DescribeCert(staged_->issuing.get());
    st.staged_root_subject = DescribeCert(staged_->root.get()).subject;
    st.activate_at = staged_activate_at_;
  }
  st.retired = retired_.size();
  return st;
}

std::vector<CaCertificateRole> CertificateAuthority::Certificates() const {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  std::vector<CaCertificateRole> out;
  auto add = [&out](const std::string& role, X509* cert) {
    CertInfo info = DescribeCert(cert);
    for (const CaCertificateRole& r : out) {
      if (r.role == role && r.info.serial_hex == info.serial_hex) return;
    }
    out.push_back({role, std::move(info), CertToDer(cert)});
  };
  auto add_generation = [&add](const std::string& prefix, const Generation& g) {
    add(prefix + "root", g.root.get());
    for (const X509Ptr& c : g.intermediates) {
      add(prefix + "intermediate", c.get());
    }
    add(prefix + "issuing", g.issuing.get());
  };
  add_generation("", *active_);
  if (staged_ != nullptr) add_generation("staged_", *staged_);
  for (const GenerationPtr& g : retired_) {
    if (g->not_after > now) add_generation("retired_", *g);
  }
  return out;
}

absl::Status CertificateAuthority::VerifyIssued(
    X509* leaf, absl::Time at, std::string_view purpose) const {
  std::vector<X509*> intermediates;
  std::vector<X509*> anchors;
  absl::MutexLock lock(&mu_);
  auto add = [&](const GenerationPtr& g) {
    if (X509_cmp(g->issuing.get(), g->root.get()) != 0) {
      intermediates.push_back(g->issuing.get());
    }
    for (const X509Ptr& c : g->intermediates) intermediates.push_back(c.get());
    anchors.push_back(g->root.get());
  };
  add(active_);
  for (const GenerationPtr& g : retired_) add(g);
  return VerifyChain(leaf, intermediates, anchors, at, purpose);
}

X509* CertificateAuthority::issuing_cert() const {
  return Active()->issuing.get();
}
X509* CertificateAuthority::root_cert() const { return Active()->root.get(); }

Bytes CertificateAuthority::NewSerial() const {
  absl::MutexLock lock(&random_mu_);
  return MakeSerial(random_);
}

absl::StatusOr<X509Ptr> CertificateAuthority::IssueLeaf(
    const LeafProfile& profile) const {
  if (profile.public_key == nullptr) {
    return absl::InvalidArgumentError("null public key");
  }
  if (absl::Status s = CheckCommonName(profile.common_name); !s.ok()) return s;
  for (const auto& rdn : profile.subject) {
    if (absl::Status s = CheckCommonName(rdn.second); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("subject ", rdn.first, ": ", s.message()));
    }
  }
  const GenerationPtr g = Active();
  absl::StatusOr<Validity> validity = ComputeValidity(
      clock_.Now(), profile.ttl, kBackdate, g->not_before, g->not_after);
  if (!validity.ok()) return validity.status();

  CertSpec spec;
  spec.public_key = profile.public_key;
  spec.common_name = profile.common_name;
  spec.serial = NewSerial();
  spec.not_before = validity->not_before;
  spec.not_after = validity->not_after;
  spec.issuer_name = X509_get_subject_name(g->issuing.get());
  spec.issuer_ski = &g->ski;
  spec.basic_constraints = "critical,CA:FALSE";
  spec.key_usage = "critical,digitalSignature";
  spec.ext_key_usage = profile.ext_key_usage;
  spec.sans = profile.sans;
  spec.subject = profile.subject;
  spec.crl_url = profile.crl_url;
  absl::StatusOr<X509Ptr> cert = BuildCertificate(spec);
  if (!cert.ok()) return cert.status();
  if (absl::Status s = g->signer->SignCertificate(cert->get()); !s.ok()) {
    return s;
  }
  return cert;
}

absl::StatusOr<X509Ptr> CertificateAuthority::IssueDeviceCertificate(
    const DeviceCertRequest& request) const {
  absl::StatusOr<IssuedCertificate> issued = IssueDevice(request);
  if (!issued.ok()) return issued.status();
  return CertFromDer(issued->der);
}

absl::StatusOr<IssuedCertificate> CertificateAuthority::IssueDevice(
    const DeviceCertRequest& request) const {
  LeafProfile profile;
  profile.public_key = request.public_key;
  profile.common_name = request.common_name;
  profile.ttl = request.ttl;
  profile.ext_key_usage = "clientAuth";
  if (!request.device_id_uri.empty()) {
    if (absl::Status s = CheckUri(request.device_id_uri); !s.ok()) return s;
    profile.sans.push_back({GEN_URI, request.device_id_uri});
  }
  for (const std::string& uri : request.uris) {
    if (absl::Status s = CheckUri(uri); !s.ok()) return s;
    profile.sans.push_back({GEN_URI, uri});
  }
  for (const std::string& name : request.dns_names) {
    if (absl::Status s = CheckDnsName(name); !s.ok()) return s;
    profile.sans.push_back({GEN_DNS, name});
  }
  if (!request.crl_url.empty()) {
    if (absl::Status s = CheckUri(request.crl_url); !s.ok()) return s;
    profile.crl_url = request.crl_url;
  }
  profile.subject = request.subject;
  if (!profile.subject.empty() && profile.common_name.empty()) {
    profile.common_name = profile.subject.front().second;  // for the check
  }
  absl::StatusOr<X509Ptr> cert = IssueLeaf(profile);
  if (!cert.ok()) return cert.status();
  // The in-memory object has no cached key (fast path): hand out bytes.
  return IssuedCertificate{CertToDer(cert->get()), DescribeCert(cert->get())};
}

absl::StatusOr<X509Ptr> CertificateAuthority::IssueServerCertificate(
    EVP_PKEY* public_key, const std::vector<std::string>& dns_names,
    const std::vector<std::string>& ip_addresses, absl::Duration ttl) const {
  if (dns_names.empty() && ip_addresses.empty()) {
    return absl::InvalidArgumentError("a server certificate needs a name");
  }
  if (dns_names.size() + ip_addresses.size() > kMaxServerNames) {
    return absl::InvalidArgumentError("too many server names");
  }
  LeafProfile profile;
  profile.public_key = public_key;
  profile.common_name =
      !dns_names.empty() ? dns_names.front() : ip_addresses.front();
  profile.ttl = ttl;
  profile.ext_key_usage = "serverAuth";
  for (const std::string& name : dns_names) {
    std::string ip;
    if (ParseIp(name, &ip)) {
      profile.sans.push_back({GEN_IPADD, std::move(ip)});
      continue;
    }
    if (absl::Status s = CheckDnsName(name); !s.ok()) return s;
    profile.sans.push_back({GEN_DNS, name});
  }
  for (const std::string& address : ip_addresses) {
    std::string ip;
    if (!ParseIp(address, &ip)) {
      return absl::InvalidArgumentError(
          absl::StrCat("not an IPv4/IPv6 address: \"", address, "\""));
    }
    profile.sans.push_back({GEN_IPADD, std::move(ip)});
  }
  absl::StatusOr<X509Ptr> cert = IssueLeaf(profile);
  if (!cert.ok()) return cert.status();
  return CertFromDer(CertToDer(cert->get()));  // a complete object
}

absl::StatusOr<Bytes> CertificateAuthority::IssueCrl(
    const std::vector<RevokedEntry>& revoked, uint64_t crl_number,
    absl::Time this_update, absl::Time next_update) const {
  const GenerationPtr g = Active();
  absl::StatusOr<X509CrlPtr> crl =
      BuildCrl(X509_get_subject_name(g->issuing.get()), g->ski, revoked,
               crl_number, this_update, next_update);
  if (!crl.ok()) return crl.status();
  if (absl::Status s = g->signer->SignCrl(crl->get()); !s.ok()) return s;
  return CrlToDer(crl->get());
}

absl::StatusOr<std::vector<IssuerCrl>> CertificateAuthority::IssueCrls(
    const std::vector<RevokedEntry>& revoked, uint64_t crl_number,
    absl::Time this_update, absl::Time next_update) const {
  std::vector<GenerationPtr> signing;
  {
    absl::MutexLock lock(&mu_);
    signing.push_back(active_);
    for (const GenerationPtr& g : retired_) {
      if (g->signer != nullptr && g->not_before <= this_update &&
          this_update < g->not_after) {
        signing.push_back(g);
      }
    }
  }
  std::vector<IssuerCrl> out;
  for (const GenerationPtr& g : signing) {
    absl::StatusOr<X509CrlPtr> crl =
        BuildCrl(X509_get_subject_name(g->issuing.get()), g->ski, revoked,
                 crl_number, this_update, next_update);
    if (!crl.ok()) return crl.status();
    if (absl::Status s = g->signer->SignCrl(crl->get()); !s.ok()) return s;
    auto der = CrlToDer(crl->get());
    if (!der.ok()) return der.status();
    out.push_back({DescribeCert(g->issuing.get()), HexEncode(g->ski),
                   g == signing.front(), *std::move(der)});
  }
  return out;
}

std::string CertificateAuthority::ChainPem() const {
  return Active()->chain_pem;
}
std::vector<Bytes> CertificateAuthority::ChainDer() const {
  return Active()->chain_der;
}
std::string CertificateAuthority::TrustAnchorsPem() const {
  absl::MutexLock lock(&mu_);
  return anchors_pem_;
}
std::vector<Bytes> CertificateAuthority::TrustAnchorsDer() const {
  absl::MutexLock lock(&mu_);
  return anchors_der_;
}

}  // namespace simprov
