#include <openssl/crypto.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/pkcs11/session.h"
#include "common/pkcs11/token.h"

namespace simprov::pkcs11 {

Key::Key(std::shared_ptr<Token> token, KeyType type, std::string label,
         std::string id, EvpPkeyPtr public_key)
    : token_(std::move(token)),
      type_(type),
      label_(std::move(label)),
      id_(std::move(id)),
      public_key_(std::move(public_key)),
      cache_(std::make_unique<Cache>()) {}

Key::~Key() = default;

absl::StatusOr<bool> Key::BoolAttribute(unsigned long attribute) const {
  auto session = Session::Acquire(*token_->s_);
  if (!session.ok()) return session.status();
  auto objs = FindObjects(*session, CKO_PRIVATE_KEY, &label_,
                          id_.empty() ? nullptr : &id_);
  if (!objs.ok()) return objs.status();
  if (objs->size() != 1) return absl::NotFoundError("key not in the token");
  auto v = Attribute(*session, objs->front(), attribute);
  if (!v.ok()) return v.status();
  return v->size() == 1 && (*v)[0] != 0;
}

absl::Status Key::Check() const {
  TokenState& s = *token_->s_;
  absl::Status last;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto session = Session::Acquire(s);
    if (!session.ok()) return session.status();
    auto objs = FindObjects(*session, CKO_PRIVATE_KEY, &label_,
                            id_.empty() ? nullptr : &id_);
    if (!objs.ok()) {
      last = objs.status();
      continue;
    }
    if (objs->size() == 1) return absl::OkStatus();
    last = absl::UnavailableError(absl::StrCat("PKCS#11 ", s.name, ": the key ",
                                               label_, " is not in the token"));
    session->KeyVanished();
  }
  return last;
}

absl::StatusOr<bool> Key::Extractable() const {
  return BoolAttribute(CKA_EXTRACTABLE);
}

absl::StatusOr<bool> Key::Sensitive() const {
  return BoolAttribute(CKA_SENSITIVE);
}

absl::StatusOr<std::string> Key::Sign(std::string_view input) const {
  if (type_ == KeyType::kEcP256 && input.size() != 32) {
    return absl::InvalidArgumentError("ECDSA P-256 signs a 32-byte digest");
  }
  TokenState& s = *token_->s_;
  absl::Status last;
  // Twice at most: a stale handle or a dropped connection gets one retry
  // on a fresh session.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto session = Session::Acquire(s);
    if (!session.ok()) return session.status();
    CK_OBJECT_HANDLE handle = 0;
    {
      std::lock_guard<std::mutex> lock(cache_->mu);
      if (cache_->epoch == session->epoch()) handle = cache_->handle;
    }
    if (handle == 0) {
      auto objs = FindObjects(*session, CKO_PRIVATE_KEY, &label_,
                              id_.empty() ? nullptr : &id_);
      if (!objs.ok()) {
        last = objs.status();
        continue;
      }
      if (objs->size() != 1) {
        last = absl::UnavailableError(absl::StrCat(
            "PKCS#11 ", s.name, ": the key ", label_, " is not in the token"));
        session->KeyVanished();
        continue;
      }
      handle = objs->front();
      std::lock_guard<std::mutex> lock(cache_->mu);
      cache_->epoch = session->epoch();
      cache_->handle = handle;
    }
    CK_MECHANISM mech = {type_ == KeyType::kEd25519 ? CKM_EDDSA : CKM_ECDSA,
                         nullptr, 0};
    CK_FUNCTION_LIST* f = session->f();
    CK_RV rv = f->C_SignInit(session->handle(), &mech, handle);
    unsigned char sig[128];
    CK_ULONG len = sizeof sig;
    if (rv == CKR_OK) {
      rv =
          f->C_Sign(session->handle(),
                    reinterpret_cast<CK_BYTE*>(const_cast<char*>(input.data())),
                    input.size(), sig, &len);
    }
    if (rv == CKR_OK && len == 64) {
      return std::string(reinterpret_cast<char*>(sig), len);
    }
    if (rv == CKR_OK) rv = CKR_FUNCTION_FAILED;
    last = Fail(s, "C_Sign", rv);
    if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID) {
      std::lock_guard<std::mutex> lock(cache_->mu);
      cache_->epoch = 0;  // look the key up again
    } else if (ConnectionLost(rv)) {
      session->Failed(rv);
    } else {
      break;
    }
  }
  return absl::UnavailableError(last.message());
}

}  // namespace simprov::pkcs11
