#include "agent/credential_dir.h"

#include <dirent.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/x509.h"

namespace simprov {

namespace {

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// Atomically points `link` at `target`.
absl::Status ReplaceSymlink(const std::string& target,
                            const std::string& link) {
  std::string tmp = absl::StrCat(link, ".tmp.", getpid());
  unlink(tmp.c_str());
  if (symlink(target.c_str(), tmp.c_str()) != 0) {
    return Errno("cannot create symlink", tmp);
  }
  if (rename(tmp.c_str(), link.c_str()) != 0) {
    unlink(tmp.c_str());
    return Errno("cannot rename", tmp);
  }
  return absl::OkStatus();
}

void (*g_step_hook)(const char* step) = nullptr;

// A point where a crash must leave the old or the new complete set.
void Step(const char* step) {
  if (g_step_hook != nullptr) g_step_hook(step);
}

}  // namespace

void SetCredentialWriteStepHookForTesting(void (*hook)(const char* step)) {
  g_step_hook = hook;
}

std::string BootstrapJson(const Credentials& c, const std::string& broker) {
  nlohmann::json j;
  j["device_id"] = c.device_id;
  j["imsi"] = c.imsi;
  j["broker"] = broker;
  j["serial"] = c.leaf.serial_hex;
  j["subject"] = c.leaf.subject;
  j["issuer"] = c.leaf.issuer;
  j["not_before"] = Rfc3339(c.leaf.not_before);
  j["not_after"] = Rfc3339(c.leaf.not_after);
  j["server_time"] = Rfc3339(c.server_time);
  // The server's time is at most one round trip old when it arrives.
  j["server_time_uncertainty_ms"] = absl::ToInt64Milliseconds(c.round_trip);
  // Where the key lives (sets from before key stores: a file).
  nlohmann::json key = nlohmann::json::parse(
      c.key_json.empty() ? R"({"store":"file","file":"device.key"})"
                         : c.key_json,
      nullptr, false);
  if (!key.is_discarded()) j["key"] = key;
  if (!c.registry_info_json.empty()) {
    nlohmann::json reg =
        nlohmann::json::parse(c.registry_info_json, nullptr, false);
    if (!reg.is_discarded()) j["registry"] = reg;
  }
  return j.dump(2) + "\n";
}

absl::StatusOr<std::string> ImsiFromBootstrapJson(const std::string& json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (!j.is_object() || !j.contains("imsi") || !j["imsi"].is_string()) {
    return absl::FailedPreconditionError(
        "bootstrap.json has no imsi: bootstrap again");
  }
  return j["imsi"].get<std::string>();
}

absl::Status WriteCredentialSet(const std::string& dir, const Credentials& c,
                                const std::string& broker, Random& random) {
  if (absl::Status s = MakeDirectories(dir, 0700); !s.ok()) return s;
  const std::string gen_name = ".gen-" + HexEncode(random.Generate(4));
  const std::string gen = dir + "/" + gen_name;
  if (mkdir(gen.c_str(), 0700) != 0) return Errno("cannot create", gen);
  Step("generation created");
  struct File {
    const char* name;
    std::string data;
    mode_t mode;
  };
  const File files[] = {
      {"device.key", c.key_pem, 0600},
      {"device.crt", c.cert_pem, 0644},
      {"chain.pem", c.chain_pem, 0644},
      {"ca.pem", c.ca_pem, 0644},
      {"bootstrap.json", BootstrapJson(c, broker), 0644},
  };
  for (const File& f : files) {
    if (absl::Status s = WriteFileAtomic(gen + "/" + f.name, f.data, f.mode);
        !s.ok()) {
      return s;
    }
    Step(f.name);
  }
  // The stable names: symlinks through .current (created once).
  for (const File& f : files) {
    const std::string link = dir + "/" + f.name;
    const std::string target = std::string(".current/") + f.name;
    char buf[256];
    ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
    if (n >= 0 && std::string(buf, n) == target) continue;
    if (absl::Status s = ReplaceSymlink(target, link); !s.ok()) return s;
    Step("stable link");
  }
  // The switch: one atomic rename.
  if (absl::Status s = ReplaceSymlink(gen_name, dir + "/.current"); !s.ok()) {
    return s;
  }
  Step("switched");
  if (absl::Status s = FsyncDirectory(dir); !s.ok()) return s;
  Step("synced");
  // Old generations are garbage now.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, ".gen-") && name != gen_name) {
      std::filesystem::remove_all(entry.path(), ec);
      Step("old generation removed");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckExistingCredentials(const std::string& dir, absl::Time now,
                                      KeyStore* keys) {
  for (const char* name : kCredentialFiles) {
    struct stat st;
    if (stat((dir + "/" + name).c_str(), &st) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("no credentials (", name, " missing)"));
    }
  }
  auto cert_pem = ReadFileToString(dir + "/device.crt", 1 << 20);
  auto key_pem = ReadFileToString(dir + "/device.key", 1 << 20);
  if (!cert_pem.ok() || !key_pem.ok()) {
    return absl::FailedPreconditionError("credentials unreadable");
  }
  std::unique_ptr<KeyStore> file_store;
  if (keys == nullptr) {
    file_store = NewFileKeyStore();
    keys = file_store.get();
  }
  auto cert = CertFromPem(*cert_pem);
  auto key = keys->Load(*key_pem);
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  if (!cert.ok() || !key.ok()) {
    return absl::FailedPreconditionError(
        !cert.ok() || keys->kind() == KeySpec::Kind::kFile
            ? "credentials do not parse"
            : absl::StrCat("credentials do not parse: ",
                           key.status().message()));
  }
  if (!SamePublicKey(X509_get0_pubkey(cert->get()), (*key)->public_key())) {
    return absl::FailedPreconditionError(
        "device.crt does not match device.key");
  }
  CertInfo info = DescribeCert(cert->get());
  if (now >= info.not_after) {
    return absl::FailedPreconditionError("certificate has expired");
  }
  return absl::OkStatus();
}

}  // namespace simprov
