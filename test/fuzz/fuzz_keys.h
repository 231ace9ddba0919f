// Fixed keys for the fuzz targets, so that the committed seeds (signed with
// them) verify in every run. Test keys only: they protect nothing.
#ifndef SIMPROV_TEST_FUZZ_FUZZ_KEYS_H_
#define SIMPROV_TEST_FUZZ_FUZZ_KEYS_H_

namespace simprov::fuzz {

inline constexpr char kRootKeyPem[] = R"(
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/IaBrCT9OX0EqFB5
9sZkv9ePKj/jC3NeHbJuc8Bs5EuhRANCAAR2Lbgw9eBViklm+gktLqp6eKd5ctWy
hZm07NtmigHQh8ECAM2/svjKPyZeWT1tJ6ptmtdgKi+bUxe6xrQDIPCE
-----END PRIVATE KEY-----)";

inline constexpr char kIssuingKeyPem[] = R"(
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRb2bC/h+kLdUboDO
O4ZW2KeawJkIXE/MYyGir3aMsiKhRANCAASJajnQYPJtDhtb+OEN9ZTk340/AK5R
q/FS4DKx7hejrU+kUnrnZ1MMFFtg64e+YiU1K5f6ZAh71YPb/VhoqoS9
-----END PRIVATE KEY-----)";

inline constexpr char kDeviceKeyPem[] = R"(
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSrnCxtdb7UBvLW3p
fB3iEdtY/oQkLvN3BfzMHtW/gUOhRANCAATORgZl+WiaT6ba2CWhKerM3hpPw9WQ
BEJ6LndPx/cJWjctT1LIUbusqMTdHPXO2it+02bcgOkRitfSbB1aIfdZ
-----END PRIVATE KEY-----)";

inline constexpr char kTokenKeyPem[] = R"(
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgvqqPU4aMYAN/2mw8
w7nq+3gJV7EjXqU7qQEdicKbFoGhRANCAARXT/OLmejwprnlr5cT1EjjIRIQqt8o
ITev57zkNhGU4VlNJgfcZt5Xxc+/ssvilEszD+FDKlrD3GyL+YXsuRYU
-----END PRIVATE KEY-----)";

inline constexpr char kEd25519KeyPem[] = R"(
-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIDL6izuFdOGiqx54GI09hFcuHg15kCMfgnxVI2IKlqBA
-----END PRIVATE KEY-----)";

}  // namespace simprov::fuzz

#endif  // SIMPROV_TEST_FUZZ_FUZZ_KEYS_H_
