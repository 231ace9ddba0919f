// Certificate serial numbers as operators type them. simprov writes a serial
// as lower-case big-endian hex without leading zero bytes (CertInfo's
// serial_hex); `openssl x509 -serial` prints "serial=5A3F..." in upper case
// and `openssl x509 -text` "5a:3f:..." with colons (and a leading "00:" when
// the top bit is set). Every command that takes a serial accepts all of them.
#ifndef SIMPROV_COMMON_SERIAL_H_
#define SIMPROV_COMMON_SERIAL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace simprov {

// Upper bound on a serial's text (RFC 5280 serials are at most 20 octets;
// with colons and a prefix this leaves room).
inline constexpr size_t kMaxSerialText = 128;
// Upper bound on the serial itself (twice RFC 5280's 20 octets: CAs outside
// simprov, such as the operator's, are not always strict).
inline constexpr size_t kMaxSerialOctets = 40;

// `text` in simprov's form: an optional "serial=" or "0x" prefix, hex digits
// in either case, optional ':' or ' ' between octets; leading zero octets
// dropped ("00" for zero), at most kMaxSerialOctets. INVALID_ARGUMENT
// naming what is wrong otherwise.
absl::StatusOr<std::string> NormalizeSerial(absl::string_view text);

}  // namespace simprov

#endif  // SIMPROV_COMMON_SERIAL_H_
