#include "broker/tokens/token_keys.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/log.h"
#include "common/openssl_ptr.h"

namespace simprov {
namespace {

constexpr absl::Duration kRetireLeeway = absl::Minutes(2);

absl::StatusOr<std::string> PrivatePem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || !PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0,
                                        nullptr, nullptr)) {
    return absl::InternalError("cannot encode a token key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

absl::StatusOr<std::string> SignTokenClaims(const TokenKey& key,
                                            const std::string& claims_json) {
  std::string input = key.header_b64;
  input += '.';
  input += jose::Base64UrlEncode(claims_json);
  absl::StatusOr<std::string> sig = key.signer->Sign(input);
  if (!sig.ok()) return sig.status();
  input += '.';
  input += jose::Base64UrlEncode(*sig);
  return input;
}

absl::StatusOr<jose::PkeyPtr> GenerateTokenKey(const std::string& alg) {
  EVP_PKEY* key = nullptr;
  if (alg == jose::kAlgEs256) {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  } else if (alg == jose::kAlgEdDsa) {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("token alg must be ES256 or EdDSA, not ", alg));
  }
  if (!key) return absl::InternalError("token key generation failed");
  return jose::PkeyPtr(key);
}

TokenKeyManager::TokenKeyManager(TokenKeyOptions options, Clock& clock)
    : options_(std::move(options)),
      lead_(std::min(options_.rotation_period / 4, absl::Hours(1))),
      clock_(clock),
      keys_(std::make_shared<KeyList>()),
      next_check_(absl::InfinitePast()) {}

absl::StatusOr<std::unique_ptr<TokenKeyManager>> TokenKeyManager::Open(
    TokenKeyOptions options, Clock& clock) {
  if (options.alg != jose::kAlgEs256 && options.alg != jose::kAlgEdDsa) {
    return absl::InvalidArgumentError(
        absl::StrCat("token alg must be ES256 or EdDSA, not ", options.alg));
  }
  if (options.rotation_period < absl::Seconds(4)) {
    return absl::InvalidArgumentError("token key rotation period too short");
  }
  std::unique_ptr<TokenKeyManager> m(
      new TokenKeyManager(std::move(options), clock));
  if (!m->options_.path.empty() && PathExists(m->options_.path)) {
    if (absl::Status s = m->Load(); !s.ok()) return s;
  }
  if (absl::Status s = m->Maintain(); !s.ok()) return s;
  return m;
}

absl::Duration TokenKeyManager::jwks_max_age() const {
  return std::min(lead_ / 4, absl::Minutes(5));
}

absl::Time TokenKeyManager::DropTime(const TokenKey& k) const {
  return k.sign_until + options_.max_token_lifetime + kRetireLeeway;
}

std::vector<std::shared_ptr<const TokenKey>> TokenKeyManager::Keys() {
  std::lock_guard<std::mutex> lock(mu_);
  if (keys_ == nullptr) return {};
  return *keys_;
}

absl::StatusOr<std::shared_ptr<TokenKey>> TokenKeyManager::MakeKey(
    jose::PkeyPtr pkey) const {
  auto k = std::make_shared<TokenKey>();
  k->pkey = std::shared_ptr<EVP_PKEY>(pkey.release(), EVP_PKEY_free);
  auto signer = options_.make_signer ? options_.make_signer(k->pkey)
                                     : MakeSoftwareTokenSigner(k->pkey);
  if (!signer.ok()) return signer.status();
  if (*signer == nullptr) return absl::InternalError("no token signer");
  k->signer = std::move(*signer);
  k->alg = k->signer->alg();
  k->kid = k->signer->kid();
  nlohmann::json header = {{"alg", k->alg}, {"kid", k->kid}, {"typ", "at+jwt"}};
  k->header_b64 = jose::Base64UrlEncode(header.dump());
  return k;
}

std::shared_ptr<TokenKey> TokenKeyManager::KeyFor(
    std::shared_ptr<TokenSigner> signer) {
  auto k = std::make_shared<TokenKey>();
  k->signer = std::move(signer);
  k->alg = k->signer->alg();
  k->kid = k->signer->kid();
  nlohmann::json header = {{"alg", k->alg}, {"kid", k->kid}, {"typ", "at+jwt"}};
  k->header_b64 = jose::Base64UrlEncode(header.dump());
  return k;
}

absl::StatusOr<std::shared_ptr<TokenKey>> TokenKeyManager::NewKey() const {
  if (options_.store != nullptr) {
    auto signer = options_.store->Generate(options_.alg);
    if (!signer.ok()) return signer.status();
    return KeyFor(*std::move(signer));
  }
  auto pkey = GenerateTokenKey(options_.alg);
  if (!pkey.ok()) return pkey.status();
  return MakeKey(std::move(*pkey));
}

absl::Status TokenKeyManager::Load() {
  auto text = ReadFileToString(options_.path, 1 << 20);
  if (!text.ok()) return text.status();
  nlohmann::json doc = nlohmann::json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("keys") ||
      !doc["keys"].is_array()) {
    return absl::DataLossError(
        absl::StrCat(options_.path, ": not a token key file"));
  }
  auto list = std::make_shared<KeyList>();
  for (const auto& e : doc["keys"]) {
    const std::string pem = e.value("private_pem", "");
    std::shared_ptr<TokenKey> k;
    if (pem.empty() && options_.store != nullptr) {
      // A key in the store: found by its kid.
      auto signer = options_.store->Find(e.value("kid", ""));
      if (!signer.ok()) {
        return absl::Status(
            signer.status().code(),
            absl::StrCat(options_.path, ": token key ", e.value("kid", ""),
                         ": ", signer.status().message()));
      }
      k = KeyFor(*std::move(signer));
    }
    BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    EVP_PKEY* raw =
        (k == nullptr && bio)
            ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)
            : nullptr;
    if (k == nullptr) {
      if (!raw || jose::AlgForKey(raw).empty()) {
        EVP_PKEY_free(raw);
        return absl::DataLossError(
            absl::StrCat(options_.path, ": a token key does not load"));
      }
      auto made = MakeKey(jose::PkeyPtr(raw));
      if (!made.ok()) return made.status();
      k = std::move(*made);
    }
    k->publish_at = absl::FromUnixSeconds(e.value("publish_at", int64_t{0}));
    k->sign_from = absl::FromUnixSeconds(e.value("sign_from", int64_t{0}));
    k->sign_until = absl::FromUnixSeconds(e.value("sign_until", int64_t{0}));
    list->push_back(std::move(k));
  }
  std::lock_guard<std::mutex> lock(mu_);
  keys_ = std::move(list);
  return absl::OkStatus();
}

absl::Status TokenKeyManager::Save(const KeyList& keys) const {
  if (options_.path.empty()) return absl::OkStatus();
  nlohmann::json doc;
  doc["keys"] = nlohmann::json::array();
  for (const auto& k : keys) {
    nlohmann::json e = {{"kid", k->kid},
                        {"alg", k->alg},
                        {"publish_at", absl::ToUnixSeconds(k->publish_at)},
                        {"sign_from", absl::ToUnixSeconds(k->sign_from)},
                        {"sign_until", absl::ToUnixSeconds(k->sign_until)}};
    if (k->pkey == nullptr) {
      e["public_jwk"] = k->signer->PublicJwk();  // the key is in the store
    } else {
      auto pem = PrivatePem(k->pkey.get());
      if (!pem.ok()) return pem.status();
      e["private_pem"] = *pem;
    }
    doc["keys"].push_back(std::move(e));
  }
  return WriteFileAtomic(options_.path, doc.dump(2) + "\n", 0600);
}

absl::Status TokenKeyManager::Maintain() {
  std::lock_guard<std::mutex> lock(mu_);
  return MaintainLocked(clock_.Now());
}

absl::Status TokenKeyManager::MaintainLocked(absl::Time now) {
  // Whole seconds: what the key file and the tokens hold.
  now = absl::FromUnixSeconds(absl::ToUnixSeconds(now));
  KeyList next;
  std::vector<std::string> destroy;  // retired keys in the store
  bool changed = false;
  for (const auto& k : *keys_) {
    if (DropTime(*k) <= now) {
      changed = true;  // every token it signed has expired
      if (k->pkey == nullptr && options_.store) destroy.push_back(k->kid);
      continue;
    }
    next.push_back(k);
  }
  std::sort(next.begin(), next.end(), [](const auto& a, const auto& b) {
    return a->sign_from < b->sign_from;
  });
  if (next.empty()) {
    // First start (or after a very long downtime): nothing can have cached
    // a key, so the first one signs at once.
    auto made = NewKey();
    if (!made.ok()) return made.status();
    std::shared_ptr<TokenKey> k = std::move(*made);
    k->publish_at = k->sign_from = now;
    k->sign_until = now + options_.rotation_period;
    next.push_back(std::move(k));
    changed = true;
  } else if (now >= next.back()->sign_until - lead_) {
    auto made = NewKey();
    if (!made.ok()) return made.status();
    std::shared_ptr<TokenKey> k = std::move(*made);
    const TokenKey& latest = *next.back();
    k->publish_at = now;
    k->sign_from = std::max(latest.sign_until, now + lead_);
    k->sign_until = k->sign_from + options_.rotation_period;
    if (k->sign_from != latest.sign_until) {
      // Overdue: the old key signs on until the new one is published.
      auto extended = std::make_shared<TokenKey>(latest);
      extended->sign_until = k->sign_from;
      next.back() = std::move(extended);
    }
    LogInfo("token keys: published %s (%s), signs from %s", k->kid, k->alg,
            absl::FormatTime(k->sign_from));
    next.push_back(std::move(k));
    changed = true;
  }
  if (changed) {
    // Durable before any token is signed with a new key.
    if (absl::Status s = Save(next); !s.ok()) {
      LogError("token keys: cannot save %s: %s", options_.path, s.message());
      return s;
    }
    nlohmann::json jwks;
    jwks["keys"] = nlohmann::json::array();
    for (const auto& k : next) {
      jwks["keys"].push_back(k->signer->PublicJwk());
    }
    jwks_ = jwks.dump();
    keys_ = std::make_shared<KeyList>(std::move(next));
    // No longer listed anywhere: gone from the store too.
    for (const std::string& kid : destroy) {
      if (absl::Status s = options_.store->Destroy(kid); !s.ok()) {
        LogWarning("token keys: cannot destroy retired key %s: %s", kid,
                   s.message());
      } else {
        LogInfo("token keys: destroyed retired key %s", kid);
      }
    }
  } else if (jwks_.empty()) {
    nlohmann::json jwks;
    jwks["keys"] = nlohmann::json::array();
    for (const auto& k : *keys_) {
      jwks["keys"].push_back(k->signer->PublicJwk());
    }
    jwks_ = jwks.dump();
  }
  absl::Time check = absl::InfiniteFuture();
  for (const auto& k : *keys_) {
    check = std::min(check, DropTime(*k));
    check = std::min(check, k->sign_until - lead_);
    if (k->sign_from > now) check = std::min(check, k->sign_from);
  }
  next_check_ = check;
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const TokenKey>> TokenKeyManager::Current() {
  const absl::Time now = clock_.Now();
  std::lock_guard<std::mutex> lock(mu_);
  if (now >= next_check_) {
    if (absl::Status s = MaintainLocked(now); !s.ok()) {
      // Keep signing with what is durable; retry at the next call.
      LogWarning("token keys: rotation failed: %s", s.message());
    }
  }
  std::shared_ptr<const TokenKey> best;
  for (const auto& k : *keys_) {
    if (k->sign_from <= now && (!best || k->sign_from > best->sign_from)) {
      best = k;
    }
  }
  if (!best) return absl::UnavailableError("no token signing key");
  return best;
}

std::string TokenKeyManager::JwksJson() {
  std::lock_guard<std::mutex> lock(mu_);
  if (clock_.Now() >= next_check_) {
    (void)MaintainLocked(clock_.Now());
  }
  return jwks_;
}

}  // namespace simprov
