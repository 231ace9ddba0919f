#include "common/pkcs11/token.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/pkcs11/module.h"
#include "common/pkcs11/session.h"

namespace simprov::pkcs11 {

absl::Status Fail(const TokenState& s, absl::string_view what, CK_RV rv) {
  return absl::UnavailableError(
      absl::StrCat("PKCS#11 ", s.name, ": ", what, ": ", RvName(rv)));
}

namespace {

absl::StatusOr<std::string> ReadPinFile(absl::string_view source,
                                        const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " ", path, ": ", std::strerror(errno)));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, " ", path, " is readable by group or others: chmod 600 it"));
  }
  auto pin = ReadFileToString(path, 1024);
  if (!pin.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " ", path, ": ", pin.status().message()));
  }
  while (!pin->empty() && (pin->back() == '\n' || pin->back() == '\r')) {
    pin->pop_back();
  }
  if (pin->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " ", path, " is empty"));
  }
  return pin;
}

absl::StatusOr<std::string> ResolvePin(const Uri& uri,
                                       const ModuleOptions& options,
                                       const std::string& name) {
  if (uri.has_pin_value) {
    return absl::InvalidArgumentError(
        "pkcs11 URI: pin-value is refused (it would be visible to other "
        "users); use pin-source=file:PATH, --pkcs11-pin-file or "
        "SIMPROV_PKCS11_PIN");
  }
  if (!uri.pin_source.empty()) return ReadPinFile("pin-source", uri.pin_source);
  if (!options.pin_file.empty()) {
    return ReadPinFile("--pkcs11-pin-file", options.pin_file);
  }
  if (!options.pin_env.empty()) {
    if (const char* v = std::getenv(options.pin_env.c_str());
        v != nullptr && *v != '\0') {
      return std::string(v);
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "no PIN for PKCS#11 ", name,
      ": give pin-source=file:PATH in the URI, --pkcs11-pin-file or ",
      options.pin_env.empty() ? "a PIN" : options.pin_env));
}

bool Matches(const Uri& u, const CK_TOKEN_INFO& info) {
  if (!u.token.empty() && Trimmed(info.label, sizeof info.label) != u.token) {
    return false;
  }
  if (!u.manufacturer.empty() &&
      Trimmed(info.manufacturerID, sizeof info.manufacturerID) !=
          u.manufacturer) {
    return false;
  }
  if (!u.serial.empty() &&
      Trimmed(info.serialNumber, sizeof info.serialNumber) != u.serial) {
    return false;
  }
  if (!u.model.empty() && Trimmed(info.model, sizeof info.model) != u.model) {
    return false;
  }
  return true;
}

// Finds the token's slot. FailedPrecondition when none or several match.
absl::StatusOr<CK_SLOT_ID> FindSlot(TokenState& s, CK_RV* rv_out) {
  CK_FUNCTION_LIST* f = s.module->f();
  CK_ULONG n = 0;
  CK_RV rv = f->C_GetSlotList(CK_TRUE, nullptr, &n);
  *rv_out = rv;
  if (rv != CKR_OK) return Fail(s, "C_GetSlotList", rv);
  std::vector<CK_SLOT_ID> slots(n);
  rv = f->C_GetSlotList(CK_TRUE, slots.data(), &n);
  *rv_out = rv;
  if (rv != CKR_OK) return Fail(s, "C_GetSlotList", rv);
  slots.resize(n);
  std::vector<CK_SLOT_ID> found;
  for (CK_SLOT_ID id : slots) {
    if (!s.uri.slot_id.empty() && absl::StrCat(id) != s.uri.slot_id) continue;
    CK_TOKEN_INFO info;
    if (f->C_GetTokenInfo(id, &info) != CKR_OK) continue;
    if (Matches(s.uri, info)) found.push_back(id);
  }
  if (found.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PKCS#11 ", s.name, " not found in module ", s.module->path()));
  }
  if (found.size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("PKCS#11 URI matches ", found.size(), " tokens in module ",
                     s.module->path(), ": name one (token=, serial=)"));
  }
  return found.front();
}

}  // namespace

// Opens one session and logs it in (login is per application: later
// sessions of the same connection are logged in already).
absl::StatusOr<CK_SESSION_HANDLE> OpenSession(TokenState& s, CK_SLOT_ID slot,
                                              bool login, CK_RV* rv_out) {
  CK_FUNCTION_LIST* f = s.module->f();
  CK_SESSION_HANDLE h = 0;
  CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                              nullptr, nullptr, &h);
  *rv_out = rv;
  if (rv != CKR_OK) return Fail(s, "C_OpenSession", rv);
  if (login) {
    rv = f->C_Login(h, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(s.pin.data()),
                    s.pin.size());
    *rv_out = rv;
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
      f->C_CloseSession(h);
      if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE) {
        return absl::FailedPreconditionError(
            absl::StrCat("wrong PIN for PKCS#11 ", s.name));
      }
      if (rv == CKR_PIN_LOCKED) {
        return absl::FailedPreconditionError(
            absl::StrCat("the PIN of PKCS#11 ", s.name, " is locked"));
      }
      return Fail(s, "C_Login", rv);
    }
  }
  return h;
}

// Connects (again): finds the slot, opens the first session and logs in.
// Called with the module's reader lock and s.mu held. Sets *reinitialize
// when the module has to be initialized again first.
absl::Status ConnectLocked(TokenState& s, bool* reinitialize) {
  CK_RV rv = CKR_OK;
  auto slot = FindSlot(s, &rv);
  if (!slot.ok()) {
    *reinitialize = rv == CKR_CRYPTOKI_NOT_INITIALIZED || rv == CKR_OK;
    return slot.status();
  }
  auto h = OpenSession(s, *slot, true, &rv);
  if (!h.ok()) {
    *reinitialize = ConnectionLost(rv);
    return h.status();
  }
  s.slot = *slot;
  s.idle.assign(1, *h);
  s.open = 1;
  s.module_generation = s.module->generation();
  s.connected = true;
  return absl::OkStatus();
}

// Drops the pool of connection `epoch` (no-op if already dropped).
// Only this pool's own sessions are closed (another Token may use the same
// slot): the idle ones here, the lent ones when they come back.
void DropLocked(TokenState& s, uint64_t epoch) {
  if (epoch != s.epoch || !s.connected) return;
  if (s.module->generation() == s.module_generation) {
    for (CK_SESSION_HANDLE h : s.idle) s.module->f()->C_CloseSession(h);
  }
  s.idle.clear();
  s.open = 0;
  s.connected = false;
  ++s.epoch;
  s.retry_at = std::chrono::steady_clock::now();
  s.cv.notify_all();
}

// Every object of `cls` with the label and/or id (either may be absent).
absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> FindObjects(
    Session& session, CK_OBJECT_CLASS cls, const std::string* label,
    const std::string* id) {
  std::vector<CK_ATTRIBUTE> tmpl;
  tmpl.push_back({CKA_CLASS, &cls, sizeof cls});
  if (label != nullptr) {
    tmpl.push_back(
        {CKA_LABEL, const_cast<char*>(label->data()), label->size()});
  }
  if (id != nullptr) {
    tmpl.push_back({CKA_ID, const_cast<char*>(id->data()), id->size()});
  }
  CK_FUNCTION_LIST* f = session.f();
  CK_RV rv = f->C_FindObjectsInit(session.handle(), tmpl.data(), tmpl.size());
  if (rv != CKR_OK) {
    session.Failed(rv);
    return absl::UnavailableError(
        absl::StrCat("PKCS#11 C_FindObjectsInit: ", RvName(rv)));
  }
  std::vector<CK_OBJECT_HANDLE> out;
  for (;;) {
    CK_OBJECT_HANDLE batch[16];
    CK_ULONG n = 0;
    rv = f->C_FindObjects(session.handle(), batch, 16, &n);
    if (rv != CKR_OK || n == 0) break;
    out.insert(out.end(), batch, batch + n);
    if (out.size() > 64) break;
  }
  f->C_FindObjectsFinal(session.handle());
  if (rv != CKR_OK) {
    session.Failed(rv);
    return absl::UnavailableError(
        absl::StrCat("PKCS#11 C_FindObjects: ", RvName(rv)));
  }
  return out;
}

absl::StatusOr<std::string> Attribute(Session& session, CK_OBJECT_HANDLE obj,
                                      CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE a = {type, nullptr, 0};
  CK_FUNCTION_LIST* f = session.f();
  CK_RV rv = f->C_GetAttributeValue(session.handle(), obj, &a, 1);
  if (rv == CKR_OK && a.ulValueLen != CK_UNAVAILABLE_INFORMATION &&
      a.ulValueLen <= 4096) {
    std::string v(a.ulValueLen, '\0');
    a.pValue = v.data();
    rv = f->C_GetAttributeValue(session.handle(), obj, &a, 1);
    if (rv == CKR_OK) {
      v.resize(a.ulValueLen);
      return v;
    }
  }
  if (rv == CKR_OK) rv = CKR_ATTRIBUTE_VALUE_INVALID;
  session.Failed(rv);
  return absl::UnavailableError(
      absl::StrCat("PKCS#11 C_GetAttributeValue: ", RvName(rv)));
}

namespace {

// The public key of the key pair labelled `label` / with id `id`: from its
// public-key object.
absl::StatusOr<EvpPkeyPtr> PublicKeyOf(Session& session,
                                       const std::string& label,
                                       const std::string& id, bool* ed25519) {
  auto objs =
      FindObjects(session, CKO_PUBLIC_KEY, label.empty() ? nullptr : &label,
                  id.empty() ? nullptr : &id);
  if (!objs.ok()) return objs.status();
  if (objs->size() != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat(objs->empty() ? "no" : "more than one",
                     " public-key object for the key"));
  }
  auto params = Attribute(session, objs->front(), CKA_EC_PARAMS);
  if (!params.ok()) return params.status();
  auto point = Attribute(session, objs->front(), CKA_EC_POINT);
  if (!point.ok()) return point.status();
  return PublicKeyFromEcPoint(*params, *point, ed25519);
}

std::string IdForLabel(const std::string& label) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(label.data()), label.size(), d);
  return std::string(reinterpret_cast<char*>(d), 16);
}

}  // namespace

Token::Token(std::unique_ptr<TokenState> state) : s_(std::move(state)) {}

Token::~Token() {
  if (s_->module != nullptr) {
    absl::ReaderMutexLock calls(&s_->module->calls());
    std::lock_guard<std::mutex> lock(s_->mu);
    if (s_->connected && s_->module->generation() == s_->module_generation) {
      for (CK_SESSION_HANDLE h : s_->idle) s_->module->f()->C_CloseSession(h);
    }
  }
  OPENSSL_cleanse(s_->pin.data(), s_->pin.size());
}

const std::string& Token::name() const { return s_->name; }

std::string Token::KeyUri(const std::string& label) const {
  Uri u = s_->uri;
  u.module_path.clear();
  u.pin_source.clear();
  u.object = label;
  u.type = "private";
  return FormatUri(u);
}

absl::StatusOr<std::shared_ptr<Token>> Token::Open(const Uri& uri,
                                                   const ModuleOptions& options,
                                                   TokenOptions limits) {
  if (limits.max_sessions == 0) limits.max_sessions = 1;
  auto s = std::make_unique<TokenState>();
  s->uri.token = uri.token;
  s->uri.manufacturer = uri.manufacturer;
  s->uri.serial = uri.serial;
  s->uri.model = uri.model;
  s->uri.slot_id = uri.slot_id;
  s->name = absl::StrCat("token ", uri.token.empty() ? "(any)" : uri.token);
  s->limits = limits;
  const std::string module_path =
      !uri.module_path.empty() ? uri.module_path : options.module_path;
  if (module_path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no PKCS#11 module for ", s->name,
                     ": give --pkcs11-module PATH or module-path in the URI"));
  }
  auto pin = ResolvePin(uri, options, s->name);
  if (!pin.ok()) return pin.status();
  s->pin = *std::move(pin);
  // One Token per module and token in the process: one pool, one login.
  static std::mutex* registry_mu = new std::mutex;
  static auto* registry = new std::map<std::string, std::weak_ptr<Token>>;
  Uri key_uri = s->uri;
  key_uri.module_path = module_path;
  const std::string key = FormatUri(key_uri);
  std::lock_guard<std::mutex> registry_lock(*registry_mu);
  if (auto it = registry->find(key); it != registry->end()) {
    if (std::shared_ptr<Token> t = it->second.lock()) {
      OPENSSL_cleanse(s->pin.data(), s->pin.size());
      return t;
    }
  }
  auto module = Module::Get(module_path);
  if (!module.ok()) {
    OPENSSL_cleanse(s->pin.data(), s->pin.size());
    return module.status();
  }
  s->module = *std::move(module);
  std::shared_ptr<Token> token(new Token(std::move(s)));
  {
    absl::ReaderMutexLock calls(&token->s_->module->calls());
    std::lock_guard<std::mutex> lock(token->s_->mu);
    bool reinitialize = false;
    if (absl::Status c = ConnectLocked(*token->s_, &reinitialize); !c.ok()) {
      // At start a missing token or a wrong PIN is the operator's to fix.
      return absl::FailedPreconditionError(c.message());
    }
  }
  (*registry)[key] = token;
  return token;
}

absl::Status Token::Check() {
  auto session = Session::Acquire(*s_);
  if (!session.ok()) return session.status();
  CK_SESSION_INFO info;
  CK_RV rv = session->f()->C_GetSessionInfo(session->handle(), &info);
  if (rv == CKR_OK && info.state != CKS_RW_USER_FUNCTIONS &&
      info.state != CKS_RO_USER_FUNCTIONS) {
    rv = CKR_USER_NOT_LOGGED_IN;
  }
  if (rv != CKR_OK) {
    session->Failed(rv);
    return Fail(*s_, "C_GetSessionInfo", rv);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Key>> Token::FindKey(const Uri& key_uri) {
  if (key_uri.object.empty() && !key_uri.has_id) {
    return absl::InvalidArgumentError(
        "pkcs11 URI names no key: give object= (its label) or id=");
  }
  if (!key_uri.type.empty() && key_uri.type != "private") {
    return absl::InvalidArgumentError(
        "pkcs11 URI: a signing key is type=private");
  }
  const std::string what = absl::StrCat(
      "private key ", key_uri.object.empty() ? "(id)" : key_uri.object, " in ",
      s_->name);
  auto session = Session::Acquire(*s_);
  if (!session.ok()) return session.status();
  auto objs = FindObjects(*session, CKO_PRIVATE_KEY,
                          key_uri.object.empty() ? nullptr : &key_uri.object,
                          key_uri.has_id ? &key_uri.id : nullptr);
  if (!objs.ok()) return objs.status();
  if (objs->empty()) return absl::NotFoundError(absl::StrCat("no ", what));
  if (objs->size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("more than one ", what, ": give id= too"));
  }
  // The pair's public object shares its CKA_ID (and, usually, label).
  auto id = Attribute(*session, objs->front(), CKA_ID);
  if (!id.ok()) return id.status();
  auto label = Attribute(*session, objs->front(), CKA_LABEL);
  if (!label.ok()) return label.status();
  bool ed = false;
  auto pub =
      PublicKeyOf(*session, id->empty() ? *label : std::string(), *id, &ed);
  if (!pub.ok()) {
    return absl::Status(pub.status().code(),
                        absl::StrCat(what, ": ", pub.status().message()));
  }
  std::shared_ptr<Key> key(new Key(shared_from_this(),
                                   ed ? KeyType::kEd25519 : KeyType::kEcP256,
                                   *label, *id, *std::move(pub)));
  std::lock_guard<std::mutex> lock(key->cache_->mu);
  key->cache_->epoch = session->epoch();
  key->cache_->handle = objs->front();
  return key;
}

absl::StatusOr<std::shared_ptr<Key>> Token::GenerateKey(
    KeyType type, const std::string& label) {
  if (label.empty() || label.size() > 128) {
    return absl::InvalidArgumentError("PKCS#11 key label must be 1..128 bytes");
  }
  auto session = Session::Acquire(*s_);
  if (!session.ok()) return session.status();
  auto existing = FindObjects(*session, CKO_PRIVATE_KEY, &label, nullptr);
  if (!existing.ok()) return existing.status();
  if (!existing->empty()) {
    return absl::AlreadyExistsError(
        absl::StrCat("a key labelled ", label, " exists in ", s_->name));
  }
  const std::string id = IdForLabel(label);
  const std::string params =
      type == KeyType::kEd25519 ? Ed25519Params() : P256Params();
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ATTRIBUTE pub[] = {
      {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &no, sizeof no},
      {CKA_VERIFY, &yes, sizeof yes},
      {CKA_ENCRYPT, &no, sizeof no},
      {CKA_WRAP, &no, sizeof no},
      {CKA_DERIVE, &no, sizeof no},
      {CKA_EC_PARAMS, const_cast<char*>(params.data()), params.size()},
      {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
      {CKA_ID, const_cast<char*>(id.data()), id.size()},
  };
  CK_ATTRIBUTE priv[] = {
      {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &yes, sizeof yes},
      {CKA_EXTRACTABLE, &no, sizeof no},
      {CKA_SIGN, &yes, sizeof yes},
      {CKA_DECRYPT, &no, sizeof no},
      {CKA_UNWRAP, &no, sizeof no},
      {CKA_DERIVE, &no, sizeof no},
      {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
      {CKA_ID, const_cast<char*>(id.data()), id.size()},
  };
  CK_MECHANISM mech = {type == KeyType::kEd25519 ? CKM_EC_EDWARDS_KEY_PAIR_GEN
                                                 : CKM_EC_KEY_PAIR_GEN,
                       nullptr, 0};
  CK_OBJECT_HANDLE pub_h = 0, priv_h = 0;
  CK_RV rv = session->f()->C_GenerateKeyPair(
      session->handle(), &mech, pub, sizeof pub / sizeof pub[0], priv,
      sizeof priv / sizeof priv[0], &pub_h, &priv_h);
  if (rv != CKR_OK) {
    session->Failed(rv);
    if (rv == CKR_MECHANISM_INVALID || rv == CKR_CURVE_NOT_SUPPORTED) {
      return absl::FailedPreconditionError(absl::StrCat(
          "PKCS#11 ", s_->name, " cannot generate ",
          type == KeyType::kEd25519 ? "Ed25519" : "P-256", " keys"));
    }
    return Fail(*s_, "C_GenerateKeyPair", rv);
  }
  bool ed = false;
  auto params_v = Attribute(*session, pub_h, CKA_EC_PARAMS);
  if (!params_v.ok()) return params_v.status();
  auto point = Attribute(*session, pub_h, CKA_EC_POINT);
  if (!point.ok()) return point.status();
  auto pk = PublicKeyFromEcPoint(*params_v, *point, &ed);
  if (!pk.ok()) return pk.status();
  std::shared_ptr<Key> key(
      new Key(shared_from_this(), type, label, id, *std::move(pk)));
  std::lock_guard<std::mutex> lock(key->cache_->mu);
  key->cache_->epoch = session->epoch();
  key->cache_->handle = priv_h;
  return key;
}

absl::Status Token::RelabelKey(const std::string& from, const std::string& to) {
  if (to.empty() || to.size() > 128) {
    return absl::InvalidArgumentError("PKCS#11 key label must be 1..128 bytes");
  }
  auto session = Session::Acquire(*s_);
  if (!session.ok()) return session.status();
  size_t changed = 0;
  for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
    auto objs = FindObjects(*session, cls, &from, nullptr);
    if (!objs.ok()) return objs.status();
    for (CK_OBJECT_HANDLE h : *objs) {
      CK_ATTRIBUTE a = {CKA_LABEL, const_cast<char*>(to.data()), to.size()};
      CK_RV rv = session->f()->C_SetAttributeValue(session->handle(), h, &a, 1);
      if (rv != CKR_OK) {
        session->Failed(rv);
        return Fail(*s_, "C_SetAttributeValue", rv);
      }
      ++changed;
    }
  }
  if (changed == 0) {
    return absl::NotFoundError(
        absl::StrCat("no key labelled ", from, " in ", s_->name));
  }
  return absl::OkStatus();
}

absl::Status Token::DestroyKey(const std::string& label) {
  auto session = Session::Acquire(*s_);
  if (!session.ok()) return session.status();
  size_t destroyed = 0;
  for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
    auto objs = FindObjects(*session, cls, &label, nullptr);
    if (!objs.ok()) return objs.status();
    for (CK_OBJECT_HANDLE h : *objs) {
      CK_RV rv = session->f()->C_DestroyObject(session->handle(), h);
      if (rv != CKR_OK) {
        session->Failed(rv);
        return Fail(*s_, "C_DestroyObject", rv);
      }
      ++destroyed;
    }
  }
  if (destroyed == 0) {
    return absl::NotFoundError(
        absl::StrCat("no key labelled ", label, " in ", s_->name));
  }
  return absl::OkStatus();
}

}  // namespace simprov::pkcs11
