// simprov-microbench: Google Benchmark micro-benchmarks of the crypto and
// encoding steps on the bootstrap path (see docs/BENCHMARKS.md).
//
// Broker side of one bootstrap: OpenBox + Milenage::Create + GenerateVector
// (Challenge); DeriveSessionKeys, EncodeTranscript + TranscriptMac,
// ParseAndVerifyCsr (one ECDSA verify), IssueDeviceCertificate (one ECDSA
// sign), DescribeCert, CertToDer, SealAnswer (Enrol).
// Agent side: GenerateP256Key, CreateCsr (one sign), UsimAuthenticate,
// DeriveSessionKeys, TranscriptMac, OpenAnswer, VerifyChain (two verifies).
// BM_BrokerBootstrapInProcess: the broker's whole Challenge + Enrol with a
// real SQLite store, without gRPC and TLS.
//
// Run: simprov-microbench --benchmark_repetitions=5
//        --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "broker/admin/admin_service.h"
#include "broker/ca/ca.h"
#include "broker/enrol/bootstrap_service.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "broker/tokens/token_keys.h"
#include "broker/tokens/token_service.h"
#include "common/aka.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/csr.h"
#include "common/kdf.h"
#include "common/leaf_check.h"
#include "common/log.h"
#include "common/milenage.h"
#include "common/sealed_box.h"
#include "common/sqn.h"
#include "common/transcript.h"
#include "common/x509.h"

namespace simprov {
namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "simprov-microbench: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T Must(absl::StatusOr<T> v, const char* what) {
  if (!v.ok())
    Die(std::string(what) + ": " + std::string(v.status().message()));
  return std::move(*v);
}

// Deterministic inputs (DeterministicRandom): the figures do not depend on
// the key or RAND values, only on their sizes.
Random& Rng() {
  static DeterministicRandom* r = new DeterministicRandom(42);
  return *r;
}

const Bytes& K() {
  static const Bytes* k = new Bytes(Rng().Generate(16));
  return *k;
}
const Bytes& Opc() {
  static const Bytes* opc = new Bytes(Rng().Generate(16));
  return *opc;
}
const Bytes kAmf = {0x80, 0x00};
const std::string kImsi = "999990000000001";
const std::string kBrokerIdentity = "broker.example.net";

// A transcript of realistic size (a P-256 CSR is ~230 bytes DER).
EnrolTranscript MakeTranscript() {
  EnrolTranscript t;
  t.broker_identity = kBrokerIdentity;
  t.session_id = Rng().Generate(16);
  t.imsi = kImsi;
  t.rand = Rng().Generate(16);
  t.autn = Rng().Generate(16);
  t.res = Rng().Generate(8);
  t.nonce = Rng().Generate(kNonceSize);
  EvpPkeyPtr key = GenerateP256Key();
  t.csr_der = Must(CreateCsr(key.get(), kImsi), "CreateCsr");
  t.imei = "490154203237518";
  t.iccid = "8988211000000000001";
  return t;
}

// A development CA in a temporary directory, removed at exit.
struct TempCa {
  std::string dir;
  std::unique_ptr<CertificateAuthority> ca;
  TempCa() {
    char tmpl[] = "/tmp/simprov-microbench.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) Die("mkdtemp failed");
    dir = tmpl;
    ca = Must(CertificateAuthority::CreateDevelopment(dir + "/ca-data",
                                                      Clock::Real(), Rng()),
              "CreateDevelopment");
  }
  ~TempCa() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

TempCa* g_ca = nullptr;  // created on first use, deleted by main()

TempCa& Ca() {
  if (g_ca == nullptr) g_ca = new TempCa;
  return *g_ca;
}

DeviceCertRequest DeviceRequest(EVP_PKEY* key) {
  DeviceCertRequest r;
  r.public_key = key;
  r.common_name = kImsi;
  r.device_id_uri = "urn:simprov:device:" + kImsi;
  r.ttl = absl::Hours(24 * 30);
  return r;
}

// ---- AKA (Challenge) --------------------------------------------------------

void BM_MilenageCreate(benchmark::State& state) {
  for (auto _ : state) {
    auto m = Milenage::Create(K(), Opc());
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(BM_MilenageCreate);

// The broker unseals K||OPc (AES-256-GCM) for every challenge.
void BM_OpenBox(benchmark::State& state) {
  const Bytes kek = Rng().Generate(kKekSize);
  Bytes keys = K();
  keys.insert(keys.end(), Opc().begin(), Opc().end());
  const Bytes box = SealBox(kek, keys, ToBytes(kImsi), Rng());
  for (auto _ : state) {
    auto plain = OpenBox(kek, box, ToBytes(kImsi));
    benchmark::DoNotOptimize(plain);
  }
}
BENCHMARK(BM_OpenBox);

void BM_GenerateVector(benchmark::State& state) {
  Milenage m = Must(Milenage::Create(K(), Opc()), "Milenage::Create");
  const Bytes rand = Rng().Generate(16);
  uint64_t sqn = 32;
  for (auto _ : state) {
    AuthVector v = GenerateVector(m, rand, sqn, kAmf);
    benchmark::DoNotOptimize(v);
    sqn += 32;
  }
}
BENCHMARK(BM_GenerateVector);

void BM_UsimAuthenticate(benchmark::State& state) {
  Milenage m = Must(Milenage::Create(K(), Opc()), "Milenage::Create");
  const Bytes rand = Rng().Generate(16);
  // Vectors with increasing SQN, made outside the timed region in batches
  // (PauseTiming costs about a microsecond: too much per iteration).
  constexpr size_t kBatch = 4096;
  std::vector<Bytes> autns;
  UsimSqnWindow window;
  uint64_t sqn = 0;
  size_t next = kBatch;
  for (auto _ : state) {
    if (next == kBatch) {
      state.PauseTiming();
      autns.clear();
      for (size_t i = 0; i < kBatch; ++i) {
        sqn += 32;  // next SEQ, IND 0
        autns.push_back(GenerateVector(m, rand, sqn, kAmf).autn);
      }
      next = 0;
      state.ResumeTiming();
    }
    UsimResult r = UsimAuthenticate(m, rand, autns[next++], window);
    if (r.kind != UsimResult::Kind::kSuccess) {
      state.SkipWithError("USIM rejected the vector");
      break;
    }
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_UsimAuthenticate);

// ---- Transcript (Enrol) -----------------------------------------------------

void BM_DeriveSessionKeys(benchmark::State& state) {
  const Bytes ck = Rng().Generate(16), ik = Rng().Generate(16);
  const Bytes rand = Rng().Generate(16);
  for (auto _ : state) {
    SessionKeys keys = DeriveSessionKeys(ck, ik, rand, kImsi, kBrokerIdentity);
    benchmark::DoNotOptimize(keys);
  }
}
BENCHMARK(BM_DeriveSessionKeys);

void BM_EncodeTranscriptAndMac(benchmark::State& state) {
  const EnrolTranscript t = MakeTranscript();
  const SessionKeys keys = DeriveSessionKeys(
      Rng().Generate(16), Rng().Generate(16), t.rand, kImsi, kBrokerIdentity);
  for (auto _ : state) {
    Bytes encoded = EncodeTranscript(t);
    Bytes mac = TranscriptMac(keys, encoded);
    benchmark::DoNotOptimize(mac);
  }
}
BENCHMARK(BM_EncodeTranscriptAndMac);

// The answer: leaf + issuing CA + root, DER, plus a few fields (~1.5 KB).
void BM_SealAnswer(benchmark::State& state) {
  const SessionKeys keys =
      DeriveSessionKeys(Rng().Generate(16), Rng().Generate(16),
                        Rng().Generate(16), kImsi, kBrokerIdentity);
  const Bytes request_hash = Rng().Generate(32);
  const Bytes plain = Rng().Generate(static_cast<size_t>(state.range(0)));
  Random& random = Random::Real();
  for (auto _ : state) {
    Bytes box = SealAnswer(keys, request_hash, plain, random);
    benchmark::DoNotOptimize(box);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          state.range(0));
}
BENCHMARK(BM_SealAnswer)->Arg(1536);

void BM_OpenAnswer(benchmark::State& state) {
  const SessionKeys keys =
      DeriveSessionKeys(Rng().Generate(16), Rng().Generate(16),
                        Rng().Generate(16), kImsi, kBrokerIdentity);
  const Bytes request_hash = Rng().Generate(32);
  const Bytes box =
      SealAnswer(keys, request_hash, Rng().Generate(1536), Random::Real());
  for (auto _ : state) {
    auto plain = OpenAnswer(keys, request_hash, box);
    benchmark::DoNotOptimize(plain);
  }
}
BENCHMARK(BM_OpenAnswer);

// ---- Keys, CSRs, certificates -----------------------------------------------

void BM_GenerateP256Key(benchmark::State& state) {
  for (auto _ : state) {
    EvpPkeyPtr key = GenerateP256Key();
    if (key == nullptr) {
      state.SkipWithError("key generation failed");
      break;
    }
    benchmark::DoNotOptimize(key);
  }
}
BENCHMARK(BM_GenerateP256Key);

void BM_CreateCsr(benchmark::State& state) {
  EvpPkeyPtr key = GenerateP256Key();
  for (auto _ : state) {
    auto csr = CreateCsr(key.get(), kImsi);
    benchmark::DoNotOptimize(csr);
  }
}
BENCHMARK(BM_CreateCsr);

void BM_ParseAndVerifyCsr(benchmark::State& state) {
  EvpPkeyPtr key = GenerateP256Key();
  const Bytes csr = Must(CreateCsr(key.get(), kImsi), "CreateCsr");
  for (auto _ : state) {
    auto info = ParseAndVerifyCsr(csr);
    if (!info.ok()) {
      state.SkipWithError("CSR does not verify");
      break;
    }
    benchmark::DoNotOptimize(info);
  }
}
BENCHMARK(BM_ParseAndVerifyCsr);

// Issues device certificates for one key with `issue(ca, request)`.
template <typename Issue>
void IssueLoop(benchmark::State& state, Issue issue) {
  CertificateAuthority& ca = *Ca().ca;
  EvpPkeyPtr key = GenerateP256Key();
  const DeviceCertRequest req = DeviceRequest(key.get());
  for (auto _ : state) {
    auto cert = issue(ca, req);
    if (!cert.ok()) {
      state.SkipWithError("issuing failed");
      break;
    }
    benchmark::DoNotOptimize(cert);
  }
}

void BM_IssueDeviceCertificate(benchmark::State& state) {
  IssueLoop(state, [](CertificateAuthority& ca, const DeviceCertRequest& r) {
    return ca.IssueDeviceCertificate(r);
  });
}
BENCHMARK(BM_IssueDeviceCertificate);

// What the broker's bootstrap does: the certificate as DER plus its
// description, no parse.
void BM_BrokerIssueDevice(benchmark::State& state) {
  IssueLoop(state, [](CertificateAuthority& ca, const DeviceCertRequest& r) {
    return ca.IssueDevice(r);
  });
}
BENCHMARK(BM_BrokerIssueDevice);

// What the broker does with the new leaf before answering.
void BM_DescribeCertAndToDer(benchmark::State& state) {
  CertificateAuthority& ca = *Ca().ca;
  EvpPkeyPtr key = GenerateP256Key();
  X509Ptr leaf =
      Must(ca.IssueDeviceCertificate(DeviceRequest(key.get())), "issue");
  for (auto _ : state) {
    CertInfo info = DescribeCert(leaf.get());
    Bytes der = CertToDer(leaf.get());
    benchmark::DoNotOptimize(info);
    benchmark::DoNotOptimize(der);
  }
}
BENCHMARK(BM_DescribeCertAndToDer);

void BM_VerifyChain(benchmark::State& state) {
  CertificateAuthority& ca = *Ca().ca;
  EvpPkeyPtr key = GenerateP256Key();
  X509Ptr leaf =
      Must(ca.IssueDeviceCertificate(DeviceRequest(key.get())), "issue");
  const std::vector<X509*> intermediates = {ca.issuing_cert()};
  const std::vector<X509*> anchors = {ca.root_cert()};
  for (auto _ : state) {
    absl::Status s = VerifyChain(leaf.get(), intermediates, anchors,
                                 absl::Now(), "sslclient");
    if (!s.ok()) {
      state.SkipWithError("chain does not verify");
      break;
    }
  }
}
BENCHMARK(BM_VerifyChain);

// The agent's side of an answer: parse the leaf and encode the new key.
void BM_AgentLeafFromDer(benchmark::State& state) {
  CertificateAuthority& ca = *Ca().ca;
  EvpPkeyPtr key = GenerateP256Key();
  X509Ptr leaf =
      Must(ca.IssueDeviceCertificate(DeviceRequest(key.get())), "issue");
  const Bytes der = CertToDer(leaf.get());
  for (auto _ : state) {
    auto parsed = CertFromDer(der);
    benchmark::DoNotOptimize(parsed);
  }
}
BENCHMARK(BM_AgentLeafFromDer);

// What the agent does instead for the shape simprov's CA issues: the leaf
// checked against the (remembered) issuer without decoding its key.
void BM_AgentLeafFastCheck(benchmark::State& state) {
  CertificateAuthority& ca = *Ca().ca;
  EvpPkeyPtr key = GenerateP256Key();
  X509Ptr leaf =
      Must(ca.IssueDeviceCertificate(DeviceRequest(key.get())), "issue");
  const Bytes der = CertToDer(leaf.get());
  const absl::Time now = absl::Now();
  for (auto _ : state) {
    auto info = VerifyP256LeafFast(der, key.get(), ca.issuing_cert(),
                                   {ca.root_cert()}, now);
    if (!info.has_value()) {
      state.SkipWithError("fast check refused");
      break;
    }
    benchmark::DoNotOptimize(info);
  }
}
BENCHMARK(BM_AgentLeafFastCheck);

void BM_PrivateKeyToPkcs8Pem(benchmark::State& state) {
  EvpPkeyPtr key = GenerateP256Key();
  for (auto _ : state) {
    auto pem = PrivateKeyToPkcs8Pem(key.get());
    benchmark::DoNotOptimize(pem);
  }
}
BENCHMARK(BM_PrivateKeyToPkcs8Pem);

// Reference points: one raw ECDSA P-256 sign and verify over a SHA-256
// digest through EVP (what `openssl speed ecdsap256` measures, plus EVP).
void BM_EcdsaP256SignRaw(benchmark::State& state) {
  EvpPkeyPtr key = GenerateP256Key();
  const Bytes msg = Rng().Generate(256);
  unsigned char sig[80];
  for (auto _ : state) {
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    size_t len = sizeof sig;
    if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                           key.get()) != 1 ||
        EVP_DigestSign(ctx.get(), sig, &len, msg.data(), msg.size()) != 1) {
      state.SkipWithError("sign failed");
      break;
    }
    benchmark::DoNotOptimize(sig);
  }
}
BENCHMARK(BM_EcdsaP256SignRaw);

void BM_EcdsaP256VerifyRaw(benchmark::State& state) {
  EvpPkeyPtr key = GenerateP256Key();
  const Bytes msg = Rng().Generate(256);
  unsigned char sig[80];
  size_t len = sizeof sig;
  {
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                           key.get()) != 1 ||
        EVP_DigestSign(ctx.get(), sig, &len, msg.data(), msg.size()) != 1) {
      Die("sign failed");
    }
  }
  for (auto _ : state) {
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    if (EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                             key.get()) != 1 ||
        EVP_DigestVerify(ctx.get(), sig, len, msg.data(), msg.size()) != 1) {
      state.SkipWithError("verify failed");
      break;
    }
  }
}
BENCHMARK(BM_EcdsaP256VerifyRaw);

// ---- The broker's whole bootstrap, in process -------------------------------

// Bootstrapper::Challenge + Enrol exactly as the gRPC service calls them,
// with a real SqliteStore (WAL, synchronous=FULL, group commit) in a
// temporary directory, but no gRPC and no TLS. The agent's part (AKA on a
// soft SIM, transcript MAC) is done in the loop too but is a few
// microseconds; the CSR is made once. Process CPU time: includes the store's
// writer thread. Wall time includes two fsyncs per bootstrap (one for the
// SQN advance, one for the issuance record), unbatched at concurrency 1.
// Each repetition imports fresh subscribers (the rate limiter is per IMSI).
void BM_BrokerBootstrapInProcess(benchmark::State& state) {
  TempCa& ca = Ca();
  static std::unique_ptr<SqliteStore> store = [&] {
    return Must(SqliteStore::Open(ca.dir + "/store.db"), "SqliteStore::Open");
  }();
  static const Bytes kek = Rng().Generate(kKekSize);
  static uint64_t next_imsi = 0;
  BootstrapOptions options;
  options.names = {kBrokerIdentity};
  Bootstrapper broker(options, *store, *ca.ca, kek, Clock::Real(),
                      Random::Real());

  const size_t n = static_cast<size_t>(state.max_iterations);
  struct Sub {
    std::string imsi;
    std::unique_ptr<Milenage> m;
    UsimSqnWindow window;
  };
  std::vector<Sub> subs(n);
  {
    auto import = Must(store->BeginImport(), "BeginImport");
    for (size_t i = 0; i < n; ++i) {
      char imsi[16];
      std::snprintf(imsi, sizeof imsi, "99998%010llu",
                    static_cast<unsigned long long>(next_imsi++));
      const Bytes k = Rng().Generate(16), opc = Rng().Generate(16);
      v1::ImportRow row;
      row.set_line(i + 2);
      row.set_imsi(imsi);
      row.set_ki(HexEncode(k));
      row.set_opc(HexEncode(opc));
      NewSubscriber ns = Must(ValidateImportRow(row, kek, Rng()), "row");
      if (!import->Add(ns).ok()) Die("import: Add failed");
      subs[i].imsi = imsi;
      subs[i].m = std::make_unique<Milenage>(
          Must(Milenage::Create(k, opc), "Milenage::Create"));
    }
    if (!import->Commit().ok()) Die("import: Commit failed");
  }
  EvpPkeyPtr key = GenerateP256Key();
  const Bytes csr = Must(CreateCsr(key.get(), kImsi), "CreateCsr");

  size_t i = 0;
  for (auto _ : state) {
    Sub& sub = subs[i++];
    v1::ChallengeRequest creq;
    creq.set_imsi(sub.imsi);
    auto ch = broker.Challenge(creq);
    if (!ch.ok()) {
      state.SkipWithError("Challenge failed");
      break;
    }
    UsimResult r = UsimAuthenticate(*sub.m, ToBytes(ch->rand()),
                                    ToBytes(ch->autn()), sub.window);
    if (r.kind != UsimResult::Kind::kSuccess) {
      state.SkipWithError("the SIM rejected the challenge");
      break;
    }
    EnrolTranscript t;
    t.broker_identity = kBrokerIdentity;
    t.session_id = ToBytes(ch->session_id());
    t.imsi = sub.imsi;
    t.rand = ToBytes(ch->rand());
    t.autn = ToBytes(ch->autn());
    t.res = r.res;
    t.nonce = Random::Real().Generate(kNonceSize);
    t.csr_der = csr;
    const SessionKeys keys =
        DeriveSessionKeys(r.ck, r.ik, t.rand, t.imsi, t.broker_identity);
    const Bytes encoded = EncodeTranscript(t);
    v1::EnrolRequest ereq;
    ereq.set_version(t.version);
    ereq.set_session_id(ch->session_id());
    ereq.set_imsi(t.imsi);
    ereq.set_broker_identity(t.broker_identity);
    ereq.set_res(ToString(t.res));
    ereq.set_nonce(ToString(t.nonce));
    ereq.set_csr(ToString(t.csr_der));
    ereq.set_mac(ToString(TranscriptMac(keys, encoded)));
    auto resp = broker.Enrol(ereq);
    if (!resp.ok()) {
      state.SkipWithError("Enrol failed");
      break;
    }
    benchmark::DoNotOptimize(resp);
  }
}
BENCHMARK(BM_BrokerBootstrapInProcess)
    ->Iterations(500)
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// ---- Device tokens, in process ---------------------------------------------

// TokenService::Issue as the gRPC handler calls it: request
// checks, the remembered client-certificate check, the store read of the
// certificate and subscriber status (real SqliteStore), policy, claims,
// ES256 signature, the queued audit event. Process CPU time: includes the
// store's audit writer thread.
// Made once: Google Benchmark calls the function once per run.
struct TokenSetup {
  std::unique_ptr<SqliteStore> store;
  std::unique_ptr<TokenKeyManager> keys;
  std::unique_ptr<TokenService> tokens;
  std::string pem;

  TokenSetup() {
    TempCa& ca = Ca();
    store = Must(SqliteStore::Open(ca.dir + "/tokens.db"), "SqliteStore::Open");
    auto import = Must(store->BeginImport(), "BeginImport");
    NewSubscriber sub;
    sub.imsi = kImsi;
    sub.sealed_keys = {1};
    sub.amf = {0x80, 0};
    absl::Status added = import->Add(sub);
    if (added.ok()) added = import->Commit().status();
    if (!added.ok()) Die("import: " + std::string(added.message()));
    EvpPkeyPtr key = GenerateP256Key();
    IssuedCertificate leaf =
        Must(ca.ca->IssueDevice(DeviceRequest(key.get())), "IssueDevice");
    CertificateRecord record;
    record.serial = leaf.info.serial_hex;
    record.imsi = kImsi;
    record.device_id = "urn:simprov:device:" + kImsi;
    record.not_before = leaf.info.not_before;
    record.not_after = leaf.info.not_after;
    record.der = leaf.der;
    record.issued_at = absl::Now();
    if (!store
             ->RecordIssuance(
                 record, {absl::Now(), kImsi, "bootstrap", kImsi, "ok", ""})
             .ok()) {
      Die("RecordIssuance");
    }
    keys = Must(TokenKeyManager::Open({}, Clock::Real()), "token keys");
    TokenOptions options;
    options.issuer = "https://broker.example.net";
    tokens = std::make_unique<TokenService>(options, *store, *ca.ca, *keys,
                                            Clock::Real(), Random::Real());
    pem = CertDerToPem(leaf.der);
  }
};

void BM_TokenServiceIssue(benchmark::State& state) {
  // Destroyed at exit (before OpenSSL's own clean-up, registered earlier):
  // the signer's nonce thread must stop before OpenSSL is torn down.
  static TokenSetup instance;
  TokenSetup* setup = &instance;
  v1::IssueTokenRequest req;
  req.add_audience("billing");
  for (auto _ : state) {
    auto token = setup->tokens->Issue(setup->pem, req);
    if (!token.ok()) {
      state.SkipWithError(std::string(token.status().message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(token);
  }
}
BENCHMARK(BM_TokenServiceIssue)
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace simprov

int main(int argc, char** argv) {
  simprov::SetLogLevel(simprov::LogLevel::kWarning);  // Enrol logs at info
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  delete simprov::g_ca;  // removes the temporary CA directory
  return 0;
}
