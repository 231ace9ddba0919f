// P-256 signatures per second through simprov_pkcs11 (the broker's path to
// an HSM): one key generated in the token, THREADS threads signing SHA-256
// digests for SECONDS through the session pool, against OpenSSL in memory.
// Usage: simprov-pkcs11-bench MODULE TOKEN PIN_FILE [THREADS] [SECONDS]
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "common/digest.h"
#include "common/pkcs11/token.h"
#include "common/x509.h"

namespace {

template <typename F>
double Rate(int threads, double seconds, F sign) {
  std::atomic<bool> stop{false};
  std::atomic<long> done{0};
  std::vector<std::thread> ts;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      long n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        if (!sign()) std::abort();
        ++n;
      }
      done += n;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : ts) t.join();
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return static_cast<double>(done.load()) / s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: simprov-pkcs11-bench MODULE TOKEN PIN_FILE [THREADS] "
                 "[SECONDS]\n");
    return 2;
  }
  const int threads = argc > 4 ? std::atoi(argv[4]) : 1;
  const double seconds = argc > 5 ? std::atof(argv[5]) : 2;
  simprov::pkcs11::Uri uri;
  uri.token = argv[2];
  simprov::pkcs11::ModuleOptions mo;
  mo.module_path = argv[1];
  mo.pin_file = argv[3];
  auto token = simprov::pkcs11::Token::Open(uri, mo);
  if (!token.ok()) {
    std::fprintf(stderr, "%s\n", std::string(token.status().message()).c_str());
    return 1;
  }
  unsigned char r[4];
  RAND_bytes(r, sizeof r);
  const std::string label = "bench-" + std::to_string(r[0] * 65536 + r[1]);
  auto key = (*token)->GenerateKey(simprov::pkcs11::KeyType::kEcP256, label);
  if (!key.ok()) {
    std::fprintf(stderr, "%s\n", std::string(key.status().message()).c_str());
    return 1;
  }
  const simprov::Bytes d = simprov::Sha256(std::string("to be signed"));
  const std::string digest(d.begin(), d.end());
  const double hsm =
      Rate(threads, seconds, [&] { return (*key)->Sign(digest).ok(); });
  simprov::EvpPkeyPtr soft = simprov::GenerateP256Key();
  const double sw = Rate(threads, seconds, [&] {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(soft.get(), nullptr);
    unsigned char sig[80];
    size_t len = sizeof sig;
    bool ok =
        ctx != nullptr && EVP_PKEY_sign_init(ctx) == 1 &&
        EVP_PKEY_sign(ctx, sig, &len,
                      reinterpret_cast<const unsigned char*>(digest.data()),
                      digest.size()) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok;
  });
  (void)(*token)->DestroyKey(label);
  std::printf(
      "{\"threads\": %d, \"pkcs11_signs_per_s\": %.0f, "
      "\"openssl_signs_per_s\": %.0f}\n",
      threads, hsm, sw);
  return 0;
}
