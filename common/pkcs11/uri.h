// PKCS#11 URIs (RFC 7512) naming a token and an object in it, e.g.
// `pkcs11:token=simprov;object=issuing-ca;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/simprov/pin`.
//
// Understood path attributes: token, manufacturer, serial, model (the
// token's), object (CKA_LABEL), id (CKA_ID, percent-encoded bytes), type
// (private, public, cert, secret-key, data), slot-id; the library-* and
// slot-* ones are accepted and ignored, as are vendor attributes ("x-...").
// Query attributes: module-path (an absolute path), module-name (refused:
// name the module's path), pin-source (file:PATH or a plain path) and
// pin-value (parsed, so that callers can refuse it where the URI came from a
// command line). Values are percent-decoded; every other attribute, a
// repeated one, an empty name or a malformed escape is refused with one line
// that never echoes a pin-value.
#ifndef SIMPROV_COMMON_PKCS11_URI_H_
#define SIMPROV_COMMON_PKCS11_URI_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace simprov::pkcs11 {

// Longest URI accepted, in bytes.
inline constexpr size_t kMaxUriBytes = 4096;

struct Uri {
  std::string token;         // token label (CK_TOKEN_INFO.label, trimmed)
  std::string manufacturer;  // token manufacturerID
  std::string serial;        // token serialNumber
  std::string model;         // token model
  std::string object;        // CKA_LABEL
  std::string id;            // CKA_ID, raw bytes
  bool has_id = false;
  std::string type;         // "" or one of the RFC's object types
  std::string slot_id;      // decimal, or empty
  std::string module_path;  // query: the module (shared library)
  std::string pin_source;   // query: a file holding the PIN ("file:" removed)
  std::string pin_value;    // query: the PIN itself (callers refuse it)
  bool has_pin_value = false;
};

// Whether `text` is meant as a PKCS#11 URI (starts with "pkcs11:", any case).
bool IsPkcs11Uri(std::string_view text);

// Parses `text`; InvalidArgument with one line on anything malformed.
absl::StatusOr<Uri> ParseUri(std::string_view text);

// The URI again (attributes in a fixed order, percent-encoded where
// needed), without pin-value; ParseUri(FormatUri(u)) == u minus pin-value.
std::string FormatUri(const Uri& uri);

}  // namespace simprov::pkcs11

#endif  // SIMPROV_COMMON_PKCS11_URI_H_
