#include "common/pkcs11/module.h"

#include <dlfcn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <map>

#include "absl/strings/str_cat.h"

namespace simprov::pkcs11 {
namespace {

CK_RV InitializeModule(CK_FUNCTION_LIST* f) {
  CK_C_INITIALIZE_ARGS args = {};
  args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = f->C_Initialize(&args);
  return rv == CKR_CRYPTOKI_ALREADY_INITIALIZED ? CKR_OK : rv;
}

}  // namespace

absl::StatusOr<std::shared_ptr<Module>> Module::Get(const std::string& path) {
  static std::mutex* mu = new std::mutex;
  static auto* modules = new std::map<std::string, std::shared_ptr<Module>>;
  std::lock_guard<std::mutex> lock(*mu);
  if (auto it = modules->find(path); it != modules->end()) return it->second;
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("PKCS#11 module ", path, " is not an absolute path"));
  }
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = dlerror();
    return absl::FailedPreconditionError(absl::StrCat(
        "PKCS#11 module ", path, " does not load: ", e ? e : "dlopen failed"));
  }
  auto get = reinterpret_cast<CK_C_GetFunctionList>(
      dlsym(handle, "C_GetFunctionList"));
  CK_FUNCTION_LIST* f = nullptr;
  if (get == nullptr || get(&f) != CKR_OK || f == nullptr) {
    dlclose(handle);
    return absl::FailedPreconditionError(absl::StrCat(
        "PKCS#11 module ", path, " has no usable C_GetFunctionList"));
  }
  if (CK_RV rv = InitializeModule(f); rv != CKR_OK) {
    dlclose(handle);
    return absl::FailedPreconditionError(
        absl::StrCat("PKCS#11 module ", path, ": C_Initialize: ", RvName(rv)));
  }
  auto m = std::shared_ptr<Module>(new Module(path, handle, f));
  (*modules)[path] = m;
  return m;
}

absl::Status Module::Reinitialize(uint64_t seen_generation,
                                  absl::Duration min_interval) {
  absl::MutexLock lock(&calls_);
  if (generation_.load() != seen_generation) return absl::OkStatus();
  const absl::Time now = absl::Now();
  if (now - last_reinit_ < min_interval) return absl::OkStatus();
  last_reinit_ = now;
  f_->C_Finalize(nullptr);
  CK_RV rv = InitializeModule(f_);
  generation_.fetch_add(1);
  if (rv != CKR_OK) {
    return absl::UnavailableError(
        absl::StrCat("PKCS#11 module ", path_, ": C_Initialize: ", RvName(rv)));
  }
  return absl::OkStatus();
}

std::string RvName(CK_RV rv) {
  switch (rv) {
#define SIMPROV_RV(x) \
  case x:             \
    return #x;
    SIMPROV_RV(CKR_OK)
    SIMPROV_RV(CKR_GENERAL_ERROR)
    SIMPROV_RV(CKR_HOST_MEMORY)
    SIMPROV_RV(CKR_FUNCTION_FAILED)
    SIMPROV_RV(CKR_ARGUMENTS_BAD)
    SIMPROV_RV(CKR_ATTRIBUTE_VALUE_INVALID)
    SIMPROV_RV(CKR_ATTRIBUTE_TYPE_INVALID)
    SIMPROV_RV(CKR_DEVICE_ERROR)
    SIMPROV_RV(CKR_DEVICE_MEMORY)
    SIMPROV_RV(CKR_DEVICE_REMOVED)
    SIMPROV_RV(CKR_KEY_HANDLE_INVALID)
    SIMPROV_RV(CKR_KEY_TYPE_INCONSISTENT)
    SIMPROV_RV(CKR_MECHANISM_INVALID)
    SIMPROV_RV(CKR_OBJECT_HANDLE_INVALID)
    SIMPROV_RV(CKR_OPERATION_ACTIVE)
    SIMPROV_RV(CKR_PIN_INCORRECT)
    SIMPROV_RV(CKR_PIN_LEN_RANGE)
    SIMPROV_RV(CKR_PIN_LOCKED)
    SIMPROV_RV(CKR_SESSION_CLOSED)
    SIMPROV_RV(CKR_SESSION_COUNT)
    SIMPROV_RV(CKR_SESSION_HANDLE_INVALID)
    SIMPROV_RV(CKR_TEMPLATE_INCOMPLETE)
    SIMPROV_RV(CKR_TEMPLATE_INCONSISTENT)
    SIMPROV_RV(CKR_TOKEN_NOT_PRESENT)
    SIMPROV_RV(CKR_TOKEN_NOT_RECOGNIZED)
    SIMPROV_RV(CKR_TOKEN_WRITE_PROTECTED)
    SIMPROV_RV(CKR_USER_ALREADY_LOGGED_IN)
    SIMPROV_RV(CKR_USER_NOT_LOGGED_IN)
    SIMPROV_RV(CKR_USER_PIN_NOT_INITIALIZED)
    SIMPROV_RV(CKR_USER_TYPE_INVALID)
    SIMPROV_RV(CKR_CRYPTOKI_NOT_INITIALIZED)
    SIMPROV_RV(CKR_CRYPTOKI_ALREADY_INITIALIZED)
    SIMPROV_RV(CKR_BUFFER_TOO_SMALL)
    SIMPROV_RV(CKR_SLOT_ID_INVALID)
    SIMPROV_RV(CKR_DATA_LEN_RANGE)
    SIMPROV_RV(CKR_CURVE_NOT_SUPPORTED)
#undef SIMPROV_RV
    default:
      return absl::StrCat("CKR_0x", absl::Hex(rv));
  }
}

bool ConnectionLost(CK_RV rv) {
  switch (rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_DEVICE_REMOVED:
    case CKR_DEVICE_ERROR:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    case CKR_SLOT_ID_INVALID:
    case CKR_GENERAL_ERROR:
      return true;
    default:
      return false;
  }
}

std::string Trimmed(const unsigned char* field, size_t len) {
  std::string s(reinterpret_cast<const char*>(field), len);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

std::string P256Params() {
  return std::string("\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07", 10);
}

std::string Ed25519Params() { return std::string("\x06\x03\x2b\x65\x70", 5); }

absl::StatusOr<EvpPkeyPtr> PublicKeyFromEcPoint(const std::string& params,
                                                const std::string& point,
                                                bool* ed25519) {
  // The point, unwrapped from its OCTET STRING when wrapped.
  std::string raw = point;
  if (raw.size() >= 2 && raw[0] == 0x04 &&
      static_cast<uint8_t>(raw[1]) == raw.size() - 2 &&
      (raw.size() - 2 == 65 || raw.size() - 2 == 32)) {
    raw = raw.substr(2);
  }
  // Ed25519 params may also be the PrintableString "edwards25519".
  const bool ed =
      params == Ed25519Params() || (params.size() > 2 && params[0] == 0x13 &&
                                    params.substr(2) == "edwards25519");
  *ed25519 = ed;
  if (ed) {
    if (raw.size() != 32) {
      return absl::FailedPreconditionError("bad Ed25519 public key in token");
    }
    EVP_PKEY* k = EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr,
        reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
    if (k == nullptr) {
      return absl::FailedPreconditionError("bad Ed25519 public key in token");
    }
    return EvpPkeyPtr(k);
  }
  if (params != P256Params()) {
    return absl::FailedPreconditionError(
        "the key in the token is neither P-256 nor Ed25519");
  }
  if (raw.size() != 65 || raw[0] != 0x04) {
    return absl::FailedPreconditionError("bad P-256 public key in token");
  }
  OSSL_PARAM p[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                       const_cast<char*>("prime256v1"), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, raw.data(),
                                        raw.size()),
      OSSL_PARAM_construct_end()};
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* k = nullptr;
  if (ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &k, EVP_PKEY_PUBLIC_KEY, p) != 1) {
    return absl::FailedPreconditionError("bad P-256 public key in token");
  }
  return EvpPkeyPtr(k);
}

}  // namespace simprov::pkcs11
