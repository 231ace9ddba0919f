#include "common/openssl_ptr.h"

#include <openssl/err.h>

namespace simprov {

std::string OpenSslErrorString() {
  unsigned long code = ERR_get_error();
  std::string text;
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    text = buf;
  } else {
    text = "unknown OpenSSL error";
  }
  ERR_clear_error();
  return text;
}

}  // namespace simprov
