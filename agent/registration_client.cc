#include "agent/registration_client.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "simprov/v1/registry.grpc.pb.h"

namespace simprov {

absl::StatusOr<std::string> FetchRegistrationStatus(
    const BrokerEndpoint& broker, const std::string& dir,
    absl::Duration timeout) {
  auto channel = MakeDeviceChannel(broker, dir);
  if (!channel.ok()) return channel.status();
  auto stub = v1::DeviceRegistry::NewStub(*channel);
  v1::RegistrationStatusResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(timeout));
  grpc::Status st = stub->RegistrationStatus(&ctx, {}, &resp);
  if (!st.ok()) {
    absl::Status s = FromGrpcStatus(st);
    return absl::Status(s.code(),
                        absl::StrCat("registration status: ", s.message()));
  }
  return resp.registry_info_json();
}

namespace {

// Replaces the "registry" member of DIR/bootstrap.json (atomically).
absl::Status UpdateBootstrapJson(const std::string& dir,
                                 const nlohmann::json& registry) {
  const std::string path = dir + "/bootstrap.json";
  auto text = ReadFileToString(path, 1 << 20);
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object()) {
    return absl::FailedPreconditionError(path + " is not a JSON object");
  }
  if (j.contains("registry") && j["registry"] == registry) {
    return absl::OkStatus();
  }
  j["registry"] = registry;
  return WriteFileAtomic(path, j.dump(2) + "\n", 0644);
}

}  // namespace

absl::Status WaitRegistered(const BrokerEndpoint& broker,
                            const std::string& dir, absl::Duration wait,
                            absl::Duration rpc_timeout, absl::Duration poll) {
  const absl::Time deadline = absl::Now() + wait;
  std::string why = "no answer yet";
  absl::Duration delay = poll;
  while (true) {
    auto status = FetchRegistrationStatus(broker, dir, rpc_timeout);
    if (status.ok()) {
      nlohmann::json j = nlohmann::json::parse(*status, nullptr, false);
      if (j.is_object()) {
        if (absl::Status s = UpdateBootstrapJson(dir, j); !s.ok()) return s;
        const std::string state = j.value("status", "");
        if (state == "registered" || state == "none") return absl::OkStatus();
        why = "pending";
        if (j.contains("registries") && j["registries"].is_array()) {
          for (const auto& r : j["registries"]) {
            if (r.value("state", "") == "pending") {
              why =
                  absl::StrCat("registry ", r.value("registry", "?"),
                               " pending: ", r.value("last_error", "waiting"));
              break;
            }
          }
        }
      }
    } else if (status.status().code() == absl::StatusCode::kUnauthenticated ||
               status.status().code() ==
                   absl::StatusCode::kFailedPrecondition) {
      return status.status();
    } else {
      why = std::string(status.status().message());
    }
    LogDebug("waiting for registration: %s", why);
    if (absl::Now() + delay > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "not registered within ", absl::FormatDuration(wait), ": ", why));
    }
    absl::SleepFor(delay);
    delay = std::min(delay * 2, absl::Seconds(10));
  }
}

}  // namespace simprov
