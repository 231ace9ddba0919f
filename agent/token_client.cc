#include "agent/token_client.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "simprov/v1/token.grpc.pb.h"

namespace simprov {

absl::StatusOr<DeviceToken> RequestDeviceToken(const BrokerEndpoint& broker,
                                               const std::string& dir,
                                               const TokenRequestSpec& spec,
                                               absl::Duration timeout) {
  auto channel = MakeDeviceChannel(broker, dir);
  if (!channel.ok()) return channel.status();
  auto stub = v1::Tokens::NewStub(*channel);
  v1::IssueTokenRequest req;
  for (const std::string& a : spec.audiences) req.add_audience(a);
  for (const std::string& s : spec.scopes) req.add_scope(s);
  req.set_ttl_seconds(absl::ToInt64Seconds(spec.ttl));
  v1::IssueTokenResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(timeout));
  grpc::Status st = stub->IssueToken(&ctx, req, &resp);
  if (!st.ok()) {
    absl::Status s = FromGrpcStatus(st);
    return absl::Status(s.code(), absl::StrCat("token: ", s.message()));
  }
  DeviceToken t;
  t.token = resp.token();
  t.jti = resp.jti();
  t.issued_at = absl::FromUnixSeconds(resp.issued_at_unix());
  t.expires_at = absl::FromUnixSeconds(resp.expires_at_unix());
  return t;
}

absl::Time TokenRefreshTime(absl::Time issued, absl::Time expires) {
  return issued + (expires - issued) * 2 / 3;
}

TokenFileKeeper::TokenFileKeeper(BrokerEndpoint broker, std::string dir,
                                 std::string path, TokenRequestSpec spec,
                                 absl::Duration timeout, Clock& clock)
    : broker_(std::move(broker)),
      dir_(std::move(dir)),
      path_(std::move(path)),
      spec_(std::move(spec)),
      timeout_(timeout),
      clock_(clock) {}

TokenFileKeeper::~TokenFileKeeper() { Stop(); }

void TokenFileKeeper::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void TokenFileKeeper::Renewed() {
  std::lock_guard<std::mutex> lock(mu_);
  renewed_ = true;
  cv_.notify_all();
}

void TokenFileKeeper::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void TokenFileKeeper::Loop() {
  absl::Duration backoff = absl::Seconds(1);
  while (true) {
    absl::Time next;
    auto token = RequestDeviceToken(broker_, dir_, spec_, timeout_);
    if (token.ok()) {
      absl::Status s = WriteFileAtomic(path_, token->token + "\n", 0600);
      if (s.ok()) {
        LogInfo("token %s in %s, valid until %s", token->jti, path_,
                absl::FormatTime(token->expires_at));
        backoff = absl::Seconds(1);
        // The broker's clock set iat/exp; refresh after 2/3 of the life
        // as measured here.
        next = clock_.Now() + (token->expires_at - token->issued_at) * 2 / 3;
      } else {
        LogWarning("cannot write %s: %s", path_, s.message());
        next = clock_.Now() + backoff;
        backoff = std::min(backoff * 2, absl::Minutes(1));
      }
    } else {
      LogWarning("%s; retrying in %s", token.status().message(),
                 absl::FormatDuration(backoff));
      next = clock_.Now() + backoff;
      backoff = std::min(backoff * 2, absl::Minutes(1));
    }
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_ && !renewed_ && clock_.Now() < next) {
      const absl::Duration wait =
          std::min(next - clock_.Now(), absl::Seconds(1));
      cv_.wait_for(lock, absl::ToChronoMilliseconds(wait));
    }
    if (stop_) return;
    renewed_ = false;
  }
}

}  // namespace simprov
