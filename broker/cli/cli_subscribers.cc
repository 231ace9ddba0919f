// simprov subscribers import|list|show.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "broker/cli/cli_common.h"
#include "broker/cli/csv.h"
#include "broker/cli/import_progress.h"
#include "broker/cli/subscriber_importer.h"
#include "common/exit_codes.h"
#include "common/grpc_status.h"
#include "simprov/v1/admin.grpc.pb.h"

namespace simprov {
namespace {

struct ImportOptions {
  std::string file;  // "-": standard input
  bool skip_existing = false;
};

int Import(const CliContext& g, const ImportOptions& options) {
  const std::string& file = options.file;
  std::ifstream file_in;
  if (file != "-") {
    file_in.open(file, std::ios::binary);
    if (!file_in) {
      return Fail(
          absl::InvalidArgumentError(absl::StrCat("cannot open ", file)));
    }
  }
  std::istream& in = file == "-" ? std::cin : file_in;
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
  auto channel = g.Channel(&where);
  if (!channel.ok()) return Fail(channel.status());
  auto stub = v1::Admin::NewStub(*channel);
  SubscriberImporter importer(*stub, options.skip_existing);
  auto cell = [&](const std::vector<std::string>& f, const char* name) {
    auto it = col.find(name);
    return it == col.end() ? std::string() : f[it->second];
  };
  std::vector<std::string> fields;
  ImportProgress progress(in, file);
  while (true) {
    auto more = csv.Next(&fields);
    if (!more.ok()) return Fail(more.status());  // importer rolls back
    if (!*more) break;
    progress.Row();
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
  progress.Committing();
  auto imported = importer.Finish();
  progress.Done(imported.ok() ? *imported : 0);
  if (!imported.ok()) {
    return Fail(Explain(ToGrpcStatus(imported.status()), where));
  }
  if (g.json) {
    nlohmann::json j = {{"imported", *imported}};
    if (options.skip_existing) j["skipped"] = importer.skipped();
    PrintJson(j);
    return kExitOk;
  }
  std::cout << "imported " << *imported << " subscribers";
  if (options.skip_existing) {
    std::cout << " (skipped " << importer.skipped() << " already present)";
  }
  std::cout << "\n";
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

struct ListOptions {
  std::string group;
  bool json = false;
  uint32_t limit = 0;
  std::string after;
};

int List(const CliContext& g, const ListOptions& o) {
  std::string where;
  auto channel = g.Channel(&where);
  if (!channel.ok()) return Fail(channel.status());
  auto stub = v1::Admin::NewStub(*channel);
  grpc::ClientContext ctx;
  v1::ListSubscribersRequest req;
  req.set_group(o.group);
  req.set_after(o.after);
  req.set_limit(o.limit);
  auto reader = stub->ListSubscribers(&ctx, req);
  // Rows stream straight to stdout: a million subscribers need no memory.
  v1::Subscriber s;
  bool header = false;
  size_t rows = 0;
  std::string last;
  while (reader->Read(&s)) {
    ++rows;
    last = s.imsi();
    if (o.json) {
      std::cout << nlohmann::json{{"imsi", s.imsi()},
                                  {"group", s.group()},
                                  {"status", s.status()},
                                  {"device_id", s.device_id()},
                                  {"iccid", s.iccid()},
                                  {"msisdn", s.msisdn()},
                                  {"created", FormatTime(s.created_unix())}}
                       .dump()
                << "\n";
      continue;
    }
    if (!header) {
      PrintSubscriberHeader();
      header = true;
    }
    PrintSubscriberRow(s);
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return Fail(Explain(st, where));
  if (!header && !o.json) PrintSubscriberHeader();
  if (o.limit != 0 && rows == o.limit) {
    std::cerr << "next page: --after " << last << "\n";
  }
  return kExitOk;
}

int Show(const CliContext& g, const std::string& imsi) {
  std::string where;
  auto channel = g.Channel(&where);
  if (!channel.ok()) return Fail(channel.status());
  auto stub = v1::Admin::NewStub(*channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetSubscriberRequest req;
  req.set_imsi(imsi);
  v1::Subscriber s;
  grpc::Status st = stub->GetSubscriber(&ctx, req, &s);
  if (!st.ok()) return Fail(Explain(st, where));
  if (g.json) {
    nlohmann::json certs = nlohmann::json::array();
    for (const auto& c : s.certificates()) {
      certs.push_back({{"serial", c.serial()},
                       {"status", c.status()},
                       {"not_before", FormatTime(c.not_before_unix())},
                       {"not_after", FormatTime(c.not_after_unix())}});
    }
    PrintJson({{"imsi", s.imsi()},
               {"group", s.group()},
               {"status", s.status()},
               {"device_id", s.device_id()},
               {"iccid", s.iccid()},
               {"msisdn", s.msisdn()},
               {"amf", s.amf()},
               {"sqn", s.sqn()},
               {"created", FormatTime(s.created_unix())},
               {"certificates", certs}});
    return kExitOk;
  }
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

void AddSubscriberCommands(CLI::App& app, CliContext& ctx) {
  auto* subs = app.add_subcommand("subscribers", "Manage SIM subscribers");
  subs->require_subcommand(1);
  auto import_options = std::make_shared<ImportOptions>();
  auto imsi = std::make_shared<std::string>();
  auto* imp = subs->add_subcommand(
      "import", "Import subscribers from a CSV file (all or nothing)");
  imp->add_option("FILE", import_options->file,
                  "CSV with header (- for standard input); columns "
                  "imsi,ki,opc required, amf,sqn,group,iccid,msisdn optional")
      ->required();
  imp->add_flag("--skip-existing", import_options->skip_existing,
                "Import only IMSIs the broker does not hold yet (others are "
                "skipped and counted) instead of refusing the file");
  AddJsonFlag(imp, ctx);
  imp->callback(
      [&ctx, import_options] { ctx.rc = Import(ctx, *import_options); });
  auto* list = subs->add_subcommand("list", "List subscribers");
  auto list_options = std::make_shared<ListOptions>();
  list->add_option("--group", list_options->group, "Only this group");
  list->add_flag("--json", list_options->json, "One JSON object per line");
  list->add_option("--limit", list_options->limit,
                   "At most N rows (0: all); a full page prints the cursor "
                   "for the next one on stderr");
  list->add_option("--after", list_options->after,
                   "Continue after this IMSI (from the previous page)");
  list->callback([&ctx, list_options] { ctx.rc = List(ctx, *list_options); });
  auto* show = subs->add_subcommand("show", "Show one subscriber");
  show->add_option("IMSI", *imsi, "The subscriber's IMSI")->required();
  AddJsonFlag(show, ctx);
  show->callback([&ctx, imsi] { ctx.rc = Show(ctx, *imsi); });
}

}  // namespace simprov
