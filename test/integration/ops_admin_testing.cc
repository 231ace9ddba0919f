#include "test/integration/ops_admin_testing.h"

#include <sys/stat.h>

#include <filesystem>

namespace simprov::testing {
namespace {

constexpr char kOpensslConf[] = R"([req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_int]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_iss]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_forged_admin]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:urn:simprov:admin:admin:mallory
)";

}  // namespace

void RunOk(const std::vector<std::string>& argv) {
  ProcessResult r = RunProcess(argv);
  ASSERT_EQ(r.exit_code, 0) << argv[0] << " " << argv[1] << ": " << r.err;
}

OperatorPki MakePki(const std::string& dir, const std::string& name) {
  OperatorPki p;
  p.dir = dir;
  std::filesystem::create_directories(dir);
  const std::string conf = dir + "/openssl.cnf";
  WriteFileOrDie(conf, kOpensslConf);
  auto key_args = [](const std::string& key) {
    return std::vector<std::string>{
        "-newkey", "ec",      "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes",  "-keyout", key};
  };
  auto req = [&](const std::string& base, const std::string& cn) {
    std::vector<std::string> argv = {"/usr/bin/openssl", "req", "-new",
                                     "-config", conf};
    for (auto& a : key_args(dir + "/" + base + ".key")) argv.push_back(a);
    argv.insert(argv.end(),
                {"-out", dir + "/" + base + ".csr", "-subj", "/CN=" + cn});
    RunOk(argv);
  };
  auto sign = [&](const std::string& base, const std::string& ca,
                  const std::string& ext, const std::string& serial) {
    RunOk({"/usr/bin/openssl", "x509", "-req", "-in", dir + "/" + base + ".csr",
           "-CA", dir + "/" + ca + ".pem", "-CAkey", dir + "/" + ca + ".key",
           "-set_serial", serial, "-days", "365", "-extfile", conf,
           "-extensions", ext, "-out", dir + "/" + base + ".pem"});
  };
  std::vector<std::string> root = {"/usr/bin/openssl", "req",   "-x509",
                                   "-config",          conf,    "-extensions",
                                   "v3_root",          "-days", "3650"};
  for (auto& a : key_args(dir + "/root.key")) root.push_back(a);
  root.insert(root.end(),
              {"-out", dir + "/root.pem", "-subj", "/CN=" + name + " Root"});
  RunOk(root);
  req("int", name + " Intermediate");
  sign("int", "root", "v3_int", "2");
  req("iss", name + " Issuing");
  sign("iss", "int", "v3_iss", "3");
  req("leaf", name + " Not A CA");
  sign("leaf", "root", "v3_leaf", "4");
  for (const char* k : {"root.key", "int.key", "iss.key", "leaf.key"}) {
    chmod((dir + "/" + k).c_str(), 0600);
  }
  p.root_pem = dir + "/root.pem";
  p.chain_pem = dir + "/chain.pem";
  WriteFileOrDie(p.chain_pem, ReadFileOrEmpty(dir + "/int.pem") +
                                  ReadFileOrEmpty(dir + "/root.pem"));
  p.issuing_pem = dir + "/iss.pem";
  p.issuing_key = dir + "/iss.key";
  p.int_key = dir + "/int.key";
  p.leaf_pem = dir + "/leaf.pem";
  p.leaf_key = dir + "/leaf.key";
  return p;
}

}  // namespace simprov::testing
