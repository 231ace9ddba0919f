#include "test/testing/softhsm.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace simprov::testing {

std::unique_ptr<SoftHsm> SoftHsm::Create(const std::string& label,
                                         const std::string& pin) {
  const std::string dir = MakeTempDir();
  ::mkdir((dir + "/tokens").c_str(), 0700);
  WriteFileOrDie(dir + "/softhsm2.conf",
                 absl::StrCat("directories.tokendir = ", dir,
                              "/tokens\nobjectstore.backend = file\n"
                              "log.level = ERROR\nslots.removable = false\n"));
  ::setenv("SOFTHSM2_CONF", (dir + "/softhsm2.conf").c_str(), 1);
  WriteFileOrDie(dir + "/pin", pin + "\n");
  ::chmod((dir + "/pin").c_str(), 0600);
  ProcessResult r =
      RunProcess({"/usr/bin/softhsm2-util", "--init-token", "--free", "--label",
                  label, "--pin", pin, "--so-pin", "87654321"});
  if (r.exit_code != 0) {
    ADD_FAILURE() << "softhsm2-util --init-token: " << r.out << r.err;
    RemoveTree(dir);
    return nullptr;
  }
  return std::unique_ptr<SoftHsm>(new SoftHsm(dir, label, pin));
}

SoftHsm::~SoftHsm() {
  SetTokenPresent(true);
  RemoveTree(dir_);
}

std::string SoftHsm::KeyUri(const std::string& object) const {
  return absl::StrCat("pkcs11:token=", label_, ";object=", object,
                      ";type=private");
}

ProcessResult SoftHsm::Tool(std::vector<std::string> args) const {
  std::vector<std::string> argv = {"/usr/bin/pkcs11-tool",
                                   "--module",
                                   module(),
                                   "--token-label",
                                   label_,
                                   "--login",
                                   "--pin",
                                   pin_};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProcess(argv);
}

std::string SoftHsm::GenerateEcKey(const std::string& object,
                                   const std::string& id_hex) const {
  ProcessResult r = Tool({"--keypairgen", "--key-type", "EC:prime256v1",
                          "--label", object, "--id", id_hex});
  if (r.exit_code != 0) {
    ADD_FAILURE() << "pkcs11-tool --keypairgen: " << r.out << r.err;
    return "";
  }
  const std::string der = dir_ + "/" + object + ".pub.der";
  r = Tool({"--read-object", "--type", "pubkey", "--label", object,
            "--output-file", der});
  if (r.exit_code != 0) {
    ADD_FAILURE() << "pkcs11-tool --read-object: " << r.out << r.err;
    return "";
  }
  r = RunProcess(
      {"/usr/bin/openssl", "pkey", "-pubin", "-inform", "DER", "-in", der});
  if (r.exit_code != 0) {
    ADD_FAILURE() << "openssl pkey: " << r.err;
    return "";
  }
  return r.out;
}

std::vector<std::string> SoftHsm::PrivateKeyLabels() const {
  ProcessResult r = Tool({"--list-objects", "--type", "privkey"});
  std::vector<std::string> labels;
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    line = absl::StripLeadingAsciiWhitespace(line);
    if (absl::ConsumePrefix(&line, "label:")) {
      labels.emplace_back(absl::StripAsciiWhitespace(line));
    }
  }
  return labels;
}

void SoftHsm::SetTokenPresent(bool present) const {
  const std::string away = dir_ + "/tokens.away";
  if (present) {
    ::rename(away.c_str(), token_dir().c_str());
  } else {
    ::rename(token_dir().c_str(), away.c_str());
  }
}

}  // namespace simprov::testing
