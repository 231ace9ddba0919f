// simprov: the operator's command line. Talks to the broker's admin API on
// its Unix socket (DIR/admin.sock, or --admin-socket).
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "broker/csv.h"
#include "broker/subscriber_importer.h"
#include "common/exit_codes.h"
#include "common/grpc_status.h"
#include "simprov/v1/admin.grpc.pb.h"

namespace simprov {
namespace {

struct Globals {
  std::string data_dir;
  std::string admin_socket;
};

int Fail(const absl::Status& s) {
  std::cerr << "simprov: " << s.message() << "\n";
  int rc = ExitCodeFor(s);
  return rc == kExitOk ? kExitError : rc;
}

absl::StatusOr<std::unique_ptr<v1::Admin::Stub>> Connect(const Globals& g,
                                                         std::string* where) {
  std::string path = g.admin_socket;
  if (path.empty() && !g.data_dir.empty()) path = g.data_dir + "/admin.sock";
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "say where the broker is: --data-dir DIR or --admin-socket PATH");
  }
  *where = path;
  auto channel =
      grpc::CreateChannel("unix:" + path, grpc::InsecureChannelCredentials());
  return v1::Admin::NewStub(channel);
}

absl::Status Explain(const grpc::Status& s, const std::string& where) {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach the broker's admin socket ", where,
                     " (is simprov-broker running with this --data-dir?)"));
  }
  return FromGrpcStatus(s);
}

std::string FormatTime(int64_t unix_seconds) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                          absl::FromUnixSeconds(unix_seconds),
                          absl::UTCTimeZone());
}

int Import(const Globals& g, const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("cannot open ", file)));
  }
  CsvReader csv(in);
  std::vector<std::string> header;
  auto got = csv.Next(&header);
  if (!got.ok()) return Fail(got.status());
  if (!*got) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(file, ": empty file (expected a header imsi,ki,opc)")));
  }
  static const std::set<std::string> kKnown = {
      "imsi", "ki", "opc", "amf", "sqn", "group", "iccid", "msisdn"};
  std::map<std::string, size_t> col;
  for (size_t i = 0; i < header.size(); ++i) {
    std::string name = absl::AsciiStrToLower(header[i]);
    if (!kKnown.contains(name)) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("line ", csv.line(), ": unknown column '", header[i],
                       "' (known: imsi,ki,opc,amf,sqn,group,iccid,msisdn)")));
    }
    if (!col.emplace(name, i).second) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "line ", csv.line(), ": column '", name, "' appears twice")));
    }
  }
  for (const char* required : {"imsi", "ki", "opc"}) {
    if (!col.contains(required)) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "line ", csv.line(), ": missing required column '", required, "'")));
    }
  }

  std::string where;
  auto stub = Connect(g, &where);
  if (!stub.ok()) return Fail(stub.status());
  SubscriberImporter importer(**stub);
  auto cell = [&](const std::vector<std::string>& f, const char* name) {
    auto it = col.find(name);
    return it == col.end() ? std::string() : f[it->second];
  };
  std::vector<std::string> fields;
  while (true) {
    auto more = csv.Next(&fields);
    if (!more.ok()) return Fail(more.status());  // importer rolls back
    if (!*more) break;
    if (fields.size() != header.size()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("line ", csv.line(), ": expected ", header.size(),
                       " fields, found ", fields.size())));
    }
    v1::ImportRow row;
    row.set_line(csv.line());
    row.set_imsi(cell(fields, "imsi"));
    row.set_ki(cell(fields, "ki"));
    row.set_opc(cell(fields, "opc"));
    row.set_amf(cell(fields, "amf"));
    row.set_sqn(cell(fields, "sqn"));
    row.set_group(cell(fields, "group"));
    row.set_iccid(cell(fields, "iccid"));
    row.set_msisdn(cell(fields, "msisdn"));
    if (!importer.Add(std::move(row))) break;  // refused; Finish says why
  }
  auto imported = importer.Finish();
  if (!imported.ok()) {
    return Fail(Explain(ToGrpcStatus(imported.status()), where));
  }
  std::cout << "imported " << *imported << " subscribers\n";
  return kExitOk;
}

void PrintSubscriberHeader() {
  std::cout << absl::StrFormat("%-16s %-12s %-10s %-16s %s\n", "IMSI", "GROUP",
                               "STATUS", "DEVICE_ID", "ICCID");
}

void PrintSubscriberRow(const v1::Subscriber& s) {
  std::cout << absl::StrFormat("%-16s %-12s %-10s %-16s %s\n", s.imsi(),
                               s.group(), s.status(),
                               s.device_id().empty() ? "-" : s.device_id(),
                               s.iccid().empty() ? "-" : s.iccid());
}

int List(const Globals& g, const std::string& group) {
  std::string where;
  auto stub = Connect(g, &where);
  if (!stub.ok()) return Fail(stub.status());
  grpc::ClientContext ctx;
  v1::ListSubscribersRequest req;
  req.set_group(group);
  auto reader = (*stub)->ListSubscribers(&ctx, req);
  // Rows stream straight to stdout: a million subscribers need no memory.
  v1::Subscriber s;
  bool header = false;
  while (reader->Read(&s)) {
    if (!header) {
      PrintSubscriberHeader();
      header = true;
    }
    PrintSubscriberRow(s);
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return Fail(Explain(st, where));
  if (!header) PrintSubscriberHeader();
  return kExitOk;
}

int Show(const Globals& g, const std::string& imsi) {
  std::string where;
  auto stub = Connect(g, &where);
  if (!stub.ok()) return Fail(stub.status());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetSubscriberRequest req;
  req.set_imsi(imsi);
  v1::Subscriber s;
  grpc::Status st = (*stub)->GetSubscriber(&ctx, req, &s);
  if (!st.ok()) return Fail(Explain(st, where));
  std::cout << "imsi:       " << s.imsi() << "\n"
            << "group:      " << s.group() << "\n"
            << "status:     " << s.status() << "\n"
            << "device_id:  " << (s.device_id().empty() ? "-" : s.device_id())
            << "\n"
            << "iccid:      " << (s.iccid().empty() ? "-" : s.iccid()) << "\n"
            << "msisdn:     " << (s.msisdn().empty() ? "-" : s.msisdn()) << "\n"
            << "amf:        " << s.amf() << "\n"
            << "sqn:        " << s.sqn() << "\n"
            << "created:    " << FormatTime(s.created_unix()) << "\n"
            << "certificates: " << s.certificates_size() << "\n";
  for (const auto& c : s.certificates()) {
    std::cout << "  serial " << c.serial() << "  " << c.status() << "  "
              << FormatTime(c.not_before_unix()) << " .. "
              << FormatTime(c.not_after_unix()) << "\n";
  }
  return kExitOk;
}

}  // namespace
}  // namespace simprov

int main(int argc, char** argv) {
  simprov::RouteGrpcLogging();
  simprov::Globals g;
  CLI::App app{"simprov: operate a simprov broker (subscribers, ...)"};
  app.require_subcommand(1);
  app.add_option(
      "--data-dir", g.data_dir,
      "The broker's data directory (its admin socket is DIR/admin.sock)");
  app.add_option("--admin-socket", g.admin_socket,
                 "Path of the broker's admin socket (overrides --data-dir)");

  auto* subs = app.add_subcommand("subscribers", "Manage SIM subscribers");
  subs->require_subcommand(1);
  std::string file, group, imsi;
  int rc = 0;
  auto* imp = subs->add_subcommand(
      "import", "Import subscribers from a CSV file (all or nothing)");
  imp->add_option("FILE", file,
                  "CSV with header; columns imsi,ki,opc required, "
                  "amf,sqn,group,iccid,msisdn optional")
      ->required();
  imp->callback([&] { rc = simprov::Import(g, file); });
  auto* list = subs->add_subcommand("list", "List subscribers");
  list->add_option("--group", group, "Only this group");
  list->callback([&] { rc = simprov::List(g, group); });
  auto* show = subs->add_subcommand("show", "Show one subscriber");
  show->add_option("IMSI", imsi, "The subscriber's IMSI")->required();
  show->callback([&] { rc = simprov::Show(g, imsi); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : simprov::kExitUsage;
  }
  return rc;
}
