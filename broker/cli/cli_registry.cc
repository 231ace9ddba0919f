// simprov registry pending: what waits in the registry outbox and why
// (docs/registry.md).
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "broker/cli/cli_common.h"
#include "common/exit_codes.h"
#include "simprov/v1/registry.grpc.pb.h"

namespace simprov {
namespace {

struct PendingFlags {
  bool json = false;
  uint32_t limit = 0;
  std::string after;
};

std::string FormatMillis(int64_t unix_ms) { return FormatTime(unix_ms / 1000); }

int Pending(const CliContext& g, const PendingFlags& f) {
  int64_t after = 0;
  if (!f.after.empty() && !absl::SimpleAtoi(f.after, &after)) {
    return Fail(absl::InvalidArgumentError("--after must be an entry id"));
  }
  std::string where;
  auto channel = g.Channel(&where);
  if (!channel.ok()) return Fail(channel.status());
  auto stub = v1::RegistryAdmin::NewStub(*channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::ListPendingRequest req;
  req.set_after_id(after);
  req.set_limit(f.limit);
  auto reader = stub->ListPending(&ctx, req);
  if (!f.json) {
    std::cout << absl::StrFormat("%-6s %-12s %-8s %-18s %-16s %-8s %-20s %s\n",
                                 "ID", "REGISTRY", "KIND", "DEVICE", "IMSI",
                                 "ATTEMPTS", "NEXT", "WHY");
  }
  v1::PendingRegistration p;
  size_t rows = 0;
  int64_t last = 0;
  while (reader->Read(&p)) {
    ++rows;
    last = p.id();
    const std::string why =
        p.last_error().empty() ? "not attempted yet" : p.last_error();
    if (f.json) {
      std::cout << nlohmann::json{{"id", p.id()},
                                  {"registry", p.registry()},
                                  {"kind", p.kind()},
                                  {"serial", p.serial()},
                                  {"imsi", p.imsi()},
                                  {"device_id", p.device_id()},
                                  {"created", FormatTime(p.created_at_unix())},
                                  {"attempts", p.attempts()},
                                  {"next_attempt",
                                   FormatMillis(p.next_attempt_unix_ms())},
                                  {"last_error", p.last_error()}}
                       .dump()
                << "\n";
      continue;
    }
    std::cout << absl::StrFormat("%-6d %-12s %-8s %-18s %-16s %-8d %-20s %s\n",
                                 p.id(), p.registry(), p.kind(), p.device_id(),
                                 p.imsi(), p.attempts(),
                                 FormatMillis(p.next_attempt_unix_ms()), why);
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return Fail(Explain(st, where));
  if (f.limit != 0 && rows == f.limit) {
    std::cerr << "next page: --after " << last << "\n";
  }
  return kExitOk;
}

}  // namespace

void AddRegistryCommands(CLI::App& app, CliContext& ctx) {
  auto* registry =
      app.add_subcommand("registry", "IoT registry deliveries (the outbox)");
  registry->require_subcommand(1);
  auto flags = std::make_shared<PendingFlags>();
  auto* pending = registry->add_subcommand(
      "pending",
      "List registrations and removals that wait for delivery, and why");
  pending->add_flag("--json", flags->json, "One JSON object per line");
  pending->add_option("--limit", flags->limit,
                      "At most N rows (0: all); when the page is full the "
                      "cursor for the next page is printed on stderr");
  pending->add_option("--after", flags->after,
                      "Continue after this entry id (from the previous page)");
  pending->callback([&ctx, flags] { ctx.rc = Pending(ctx, *flags); });
}

}  // namespace simprov
