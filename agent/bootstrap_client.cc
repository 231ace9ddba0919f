#include "agent/bootstrap_client.h"

#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/crypto.h>

#include <map>
#include <mutex>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/csr.h"
#include "common/digest.h"
#include "common/duration.h"
#include "common/grpc_status.h"
#include "common/kdf.h"
#include "common/leaf_check.h"
#include "common/renew_proof.h"
#include "common/transcript.h"
#include "simprov/v1/bootstrap.grpc.pb.h"

namespace simprov {

namespace {

absl::Status Rpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  absl::Status st = FromGrpcStatus(s);
  return absl::Status(st.code(), absl::StrCat(what, ": ", st.message()));
}

// Parses a CA certificate, remembering the last few. A process that
// provisions many devices (a gateway with many modems, the benchmark) sees
// the same issuing CA and root every time, and OpenSSL 3.0 spends ~110 us
// decoding each one's key. Objects are shared (reference-counted) and only
// read.
absl::StatusOr<X509Ptr> CaCertFromDer(const Bytes& der) {
  static std::mutex mu;
  static auto* cache = new std::map<std::string, X509Ptr>;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache->find(ToString(der));
    if (it != cache->end()) {
      X509_up_ref(it->second.get());
      return X509Ptr(it->second.get());
    }
  }
  auto cert = CertFromDer(der);
  if (!cert.ok()) return cert.status();
  std::lock_guard<std::mutex> lock(mu);
  if (cache->size() >= 8) cache->erase(cache->begin());
  X509_up_ref(cert->get());
  cache->emplace(ToString(der), X509Ptr(cert->get()));
  return cert;
}

}  // namespace

absl::StatusOr<BrokerEndpoint> ParseBroker(absl::string_view broker) {
  auto hp = ParseHostPort(broker);
  if (!hp.ok()) return hp.status();
  if (hp->port == 0) {
    return absl::InvalidArgumentError("--broker needs a non-zero port");
  }
  return BrokerEndpoint{std::string(broker), hp->host};
}

std::shared_ptr<grpc::Channel> MakeBrokerChannel(
    const BrokerEndpoint& broker, const std::string& pinned_ca_pem,
    grpc::ChannelArguments args) {
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 1 << 20);
  if (!pinned_ca_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pinned_ca_pem;
    return grpc::CreateCustomChannel(broker.target, grpc::SslCredentials(ssl),
                                     args);
  }
  // No anchor yet: TLS for confidentiality only. The broker proves itself
  // through the sealed answer (keys only K's holder can derive).
  grpc::experimental::TlsChannelCredentialsOptions tls;
  tls.set_verify_server_certs(false);
  tls.set_check_call_host(false);
  tls.set_certificate_verifier(
      std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  return grpc::CreateCustomChannel(
      broker.target, grpc::experimental::TlsCredentials(tls), args);
}

BootstrapClient::BootstrapClient(std::shared_ptr<grpc::Channel> channel,
                                 BrokerEndpoint broker, Clock& clock,
                                 Random& random, AgentOptions options)
    : channel_(std::move(channel)),
      broker_(std::move(broker)),
      clock_(clock),
      random_(random),
      options_(options) {}

absl::StatusOr<BootstrapClient::Exchanged> BootstrapClient::Exchange(
    SimCard& sim, Purpose purpose, const Bytes& csr) {
  auto imsi = sim.Imsi();
  if (!imsi.ok()) return imsi.status();
  auto stub = v1::Bootstrap::NewStub(channel_);
  auto deadline = [&] {
    return std::chrono::system_clock::now() +
           absl::ToChronoMilliseconds(options_.rpc_timeout);
  };

  v1::ChallengeRequest creq;
  creq.set_imsi(*imsi);
  v1::ChallengeResponse challenge;
  std::optional<SimAuthResult> auth;
  for (int attempt = 0; attempt < 2; ++attempt) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    challenge.Clear();
    if (absl::Status s =
            Rpc(stub->Challenge(&ctx, creq, &challenge), "challenge");
        !s.ok()) {
      return s;
    }
    if (challenge.rand().size() != 16 || challenge.autn().size() != 16) {
      return absl::UnauthenticatedError(
          "broker sent a malformed challenge (RAND/AUTN not 16 bytes)");
    }
    auto r =
        sim.Authenticate(ToBytes(challenge.rand()), ToBytes(challenge.autn()));
    if (!r.ok()) return r.status();
    if (r->kind == SimAuthResult::Kind::kSuccess) {
      auth.emplace(std::move(*r));
      break;
    }
    if (r->kind == SimAuthResult::Kind::kMacFailure) {
      return absl::UnauthenticatedError(
          "the SIM rejected the broker's challenge (AUTN MAC failure): this "
          "broker does not hold this SIM's key");
    }
    // Sync failure: resynchronise once with AUTS, then a fresh challenge.
    creq.set_resync_rand(challenge.rand());
    creq.set_auts(ToString(r->auts));
  }
  if (!auth) {
    return absl::UnauthenticatedError(
        "the SIM still finds the broker's sequence number stale after "
        "resynchronisation");
  }

  EnrolTranscript t;
  t.broker_identity = broker_.identity;
  t.session_id = ToBytes(challenge.session_id());
  t.imsi = *imsi;
  t.rand = ToBytes(challenge.rand());
  t.autn = ToBytes(challenge.autn());
  t.res = auth->res;
  t.nonce = random_.Generate(kNonceSize);
  if (purpose == Purpose::kEnrol) {
    t.csr_der = csr;
    DeviceIdentity ident = sim.Identity();
    t.imei = ident.imei;
    t.iccid = ident.iccid;
  }
  SessionKeys keys =
      DeriveSessionKeys(auth->ck, auth->ik, t.rand, t.imsi, t.broker_identity);
  const absl::string_view label =
      purpose == Purpose::kEnrol ? kEnrolLabel : kTimeLabel;
  const Bytes encoded = EncodeTranscript(t, label);
  const Bytes request_hash = Sha256(encoded);

  v1::EnrolRequest ereq;
  ereq.set_version(t.version);
  ereq.set_session_id(challenge.session_id());
  ereq.set_imsi(t.imsi);
  ereq.set_broker_identity(t.broker_identity);
  ereq.set_res(ToString(t.res));
  ereq.set_nonce(ToString(t.nonce));
  ereq.set_csr(ToString(t.csr_der));
  if (purpose == Purpose::kEnrol) {
    ereq.mutable_device_info()->set_imei(t.imei);
    ereq.mutable_device_info()->set_iccid(t.iccid);
  }
  ereq.set_mac(ToString(TranscriptMac(keys, encoded)));

  v1::EnrolResponse eresp;
  // The round trip is measured on the elapsed-time clock (CLOCK_BOOTTIME in
  // production): it bounds how old the server's time is on arrival.
  Clock& elapsed = options_.elapsed_clock ? *options_.elapsed_clock : clock_;
  const absl::Time sent = elapsed.Now();
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    grpc::Status st = purpose == Purpose::kEnrol
                          ? stub->Enrol(&ctx, ereq, &eresp)
                          : stub->Time(&ctx, ereq, &eresp);
    if (absl::Status s = Rpc(st, purpose == Purpose::kEnrol ? "enrol" : "time");
        !s.ok()) {
      return s;
    }
  }
  auto plain = OpenAnswer(keys, request_hash, ToBytes(eresp.sealed_answer()));
  if (!plain.ok()) return plain.status();
  Exchanged out;
  if (!out.answer.ParseFromArray(plain->data(),
                                 static_cast<int>(plain->size()))) {
    return absl::UnauthenticatedError("broker answer is malformed");
  }
  if (!ConstantTimeEqual(ToBytes(out.answer.request_hash()), request_hash)) {
    return absl::UnauthenticatedError("broker answer is for another request");
  }
  out.round_trip = elapsed.Now() - sent;
  if (out.round_trip > options_.max_round_trip) {
    return absl::DeadlineExceededError(absl::StrCat(
        "broker answer took ", absl::FormatDuration(out.round_trip), " (bound ",
        absl::FormatDuration(options_.max_round_trip),
        "): its time cannot be trusted"));
  }
  out.imsi = *imsi;
  return out;
}

absl::StatusOr<Credentials> BootstrapClient::Run(SimCard& sim, KeyStore* keys) {
  auto imsi = sim.Imsi();
  if (!imsi.ok()) return imsi.status();
  std::unique_ptr<KeyStore> file_store;
  if (keys == nullptr) {
    file_store = NewFileKeyStore();
    keys = file_store.get();
  }
  // The key is made here (in the store) and never leaves the device.
  auto key = keys->Generate();
  if (!key.ok()) return key.status();
  auto csr = (*key)->MakeCsr(*imsi);
  if (!csr.ok()) return csr.status();
  auto ex = Exchange(sim, Purpose::kEnrol, *csr);
  if (!ex.ok()) return ex.status();
  const v1::Answer& answer = ex->answer;
  std::vector<Bytes> chain, anchors;
  for (const std::string& der : answer.chain()) chain.push_back(ToBytes(der));
  for (const std::string& der : answer.trust_anchors()) {
    anchors.push_back(ToBytes(der));
  }
  auto out = VerifyIssued(**key, chain, anchors,
                          absl::FromUnixMillis(answer.server_time_unix_ms()));
  if (!out.ok()) return out.status();
  out->key_json = keys->DescribeJson();
  out->imsi = ex->imsi;
  out->device_id = answer.device_id();
  out->round_trip = ex->round_trip;
  out->registry_info_json = answer.registry_info_json();
  return out;
}

absl::StatusOr<AuthenticatedTime> BootstrapClient::Time(SimCard& sim) {
  auto ex = Exchange(sim, Purpose::kTime, Bytes());
  if (!ex.ok()) return ex.status();
  AuthenticatedTime t;
  t.round_trip = ex->round_trip;
  // The server's clock was read somewhere inside the round trip.
  t.time = absl::FromUnixMillis(ex->answer.server_time_unix_ms()) +
           ex->round_trip / 2;
  t.uncertainty = ex->round_trip / 2;
  return t;
}

namespace {
// VerifyIssued without the key: `key` may be a public key.
absl::StatusOr<Credentials> VerifyIssuedCert(
    EVP_PKEY* key, const std::vector<Bytes>& chain,
    const std::vector<Bytes>& anchors_der, absl::Time server_time) {
  if (chain.empty() || anchors_der.empty()) {
    return absl::UnauthenticatedError("broker answer has no chain or anchor");
  }
  std::vector<X509Ptr> intermediates, anchors;
  for (size_t i = 1; i < chain.size(); ++i) {
    auto c = CaCertFromDer(chain[i]);
    if (!c.ok()) return absl::UnauthenticatedError("chain does not parse");
    intermediates.push_back(std::move(*c));
  }
  for (const Bytes& der : anchors_der) {
    auto c = CaCertFromDer(der);
    if (!c.ok()) return absl::UnauthenticatedError("anchor does not parse");
    anchors.push_back(std::move(*c));
  }
  std::vector<X509*> inter_ptrs, anchor_ptrs;
  for (auto& c : intermediates) inter_ptrs.push_back(c.get());
  for (auto& c : anchors) anchor_ptrs.push_back(c.get());

  Credentials out;
  std::optional<CertInfo> fast;
  if (intermediates.size() == 1) {
    fast = VerifyP256LeafFast(chain[0], key, inter_ptrs[0], anchor_ptrs,
                              server_time);
  }
  if (fast.has_value()) {
    out.cert_pem = CertDerToPem(chain[0]);
    out.leaf = *std::move(fast);
  } else {
    auto leaf = CertFromDer(chain[0]);
    if (!leaf.ok()) return absl::UnauthenticatedError("leaf does not parse");
    if (!SamePublicKey(X509_get0_pubkey(leaf->get()), key)) {
      return absl::UnauthenticatedError(
          "certificate is not for the key this device generated");
    }
    if (absl::Status s = VerifyChain(leaf->get(), inter_ptrs, anchor_ptrs,
                                     server_time, "sslclient");
        !s.ok()) {
      return absl::UnauthenticatedError(
          absl::StrCat("certificate chain does not verify: ", s.message()));
    }
    out.cert_pem = CertToPem(leaf->get());
    out.leaf = DescribeCert(leaf->get());
  }
  out.chain_pem = out.cert_pem;
  for (auto& c : intermediates) out.chain_pem += CertToPem(c.get());
  for (auto& c : anchors) out.ca_pem += CertToPem(c.get());
  out.server_time = server_time;
  return out;
}
}  // namespace

absl::StatusOr<Credentials> VerifyIssued(EVP_PKEY* key,
                                         const std::vector<Bytes>& chain,
                                         const std::vector<Bytes>& anchors,
                                         absl::Time server_time) {
  auto out = VerifyIssuedCert(key, chain, anchors, server_time);
  if (!out.ok()) return out.status();
  auto key_pem = PrivateKeyToPkcs8Pem(key);
  if (!key_pem.ok()) return key_pem.status();
  out->key_pem = std::move(*key_pem);
  return out;
}

absl::StatusOr<Credentials> VerifyIssued(const DeviceKey& key,
                                         const std::vector<Bytes>& chain,
                                         const std::vector<Bytes>& anchors,
                                         absl::Time server_time) {
  auto out = VerifyIssuedCert(key.public_key(), chain, anchors, server_time);
  if (!out.ok()) return out.status();
  auto stored = key.Stored();
  if (!stored.ok()) return stored.status();
  out->key_pem = std::move(*stored);
  return out;
}

std::shared_ptr<grpc::Channel> MakeMutualTlsChannel(
    const BrokerEndpoint& broker, const std::string& ca_pem,
    const std::string& key_pem, const std::string& chain_pem) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 1 << 20);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_pem;
  ssl.pem_private_key = key_pem;
  ssl.pem_cert_chain = chain_pem;
  return grpc::CreateCustomChannel(broker.target, grpc::SslCredentials(ssl),
                                   args);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeDeviceChannel(
    const BrokerEndpoint& broker, const std::string& dir) {
  auto ca = ReadFileToString(dir + "/ca.pem", 1 << 20);
  auto key = ReadFileToString(dir + "/device.key", 1 << 20);
  auto chain = ReadFileToString(dir + "/chain.pem", 1 << 20);
  if (!ca.ok() || !key.ok() || !chain.ok()) {
    if (key.ok()) OPENSSL_cleanse(key->data(), key->size());
    return absl::FailedPreconditionError(
        absl::StrCat("no credentials in ", dir, ": bootstrap first"));
  }
  auto channel = MakeMutualTlsChannel(broker, *ca, *key, *chain);
  OPENSSL_cleanse(key->data(), key->size());
  return channel;
}

absl::StatusOr<Credentials> RenewCredentials(
    std::shared_ptr<grpc::Channel> channel, const std::string& imsi,
    Clock& clock, const AgentOptions& options) {
  auto stub = v1::Bootstrap::NewStub(channel);
  EvpPkeyPtr key = GenerateP256Key();  // always a new key
  auto csr = CreateCsr(key.get(), imsi);
  if (!csr.ok()) return csr.status();
  v1::RenewRequest req;
  req.set_csr(ToString(*csr));
  v1::RenewResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(options.rpc_timeout));
  const absl::Time sent = clock.Now();
  if (absl::Status s = Rpc(stub->Renew(&ctx, req, &resp), "renew"); !s.ok()) {
    return s;
  }
  std::vector<Bytes> chain, anchors;
  for (const std::string& der : resp.chain()) chain.push_back(ToBytes(der));
  for (const std::string& der : resp.trust_anchors()) {
    anchors.push_back(ToBytes(der));
  }
  auto out = VerifyIssued(key.get(), chain, anchors,
                          absl::FromUnixMillis(resp.server_time_unix_ms()));
  if (!out.ok()) return out.status();
  out->imsi = imsi;
  out->device_id = resp.device_id();
  out->round_trip = clock.Now() - sent;
  out->registry_info_json = resp.registry_info_json();
  return out;
}

absl::StatusOr<Credentials> RenewCredentialsInBand(
    std::shared_ptr<grpc::Channel> channel, const std::string& imsi,
    const InBandProof& proof, KeyStore& keys, Clock& clock,
    const AgentOptions& options) {
  auto stub = v1::Bootstrap::NewStub(channel);
  auto deadline = [&] {
    return std::chrono::system_clock::now() +
           absl::ToChronoMilliseconds(options.rpc_timeout);
  };
  auto key = keys.Generate();  // always a new key, in the same store
  if (!key.ok()) return key.status();
  auto csr = (*key)->MakeCsr(imsi);
  if (!csr.ok()) return csr.status();
  const absl::Time sent = clock.Now();
  v1::RenewNonceResponse nonce;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    if (absl::Status s =
            Rpc(stub->RenewNonce(&ctx, v1::RenewNonceRequest(), &nonce),
                "renewal nonce");
        !s.ok()) {
      return s;
    }
  }
  const Bytes message = RenewProofMessage(
      proof.broker_identity, ToBytes(nonce.nonce()), proof.leaf_der, *csr);
  auto signature = proof.current->Sign(message);
  if (!signature.ok()) return signature.status();
  v1::RenewRequest req;
  req.set_csr(ToString(*csr));
  req.set_certificate(ToString(proof.leaf_der));
  req.set_nonce(nonce.nonce());
  req.set_broker_identity(proof.broker_identity);
  req.set_signature(ToString(*signature));
  v1::RenewResponse resp;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    if (absl::Status s = Rpc(stub->Renew(&ctx, req, &resp), "renew"); !s.ok()) {
      return s;
    }
  }
  std::vector<Bytes> chain, anchors;
  for (const std::string& der : resp.chain()) chain.push_back(ToBytes(der));
  for (const std::string& der : resp.trust_anchors()) {
    anchors.push_back(ToBytes(der));
  }
  auto out = VerifyIssued(**key, chain, anchors,
                          absl::FromUnixMillis(resp.server_time_unix_ms()));
  if (!out.ok()) return out.status();
  out->key_json = keys.DescribeJson();
  out->imsi = imsi;
  out->device_id = resp.device_id();
  out->round_trip = clock.Now() - sent;
  out->registry_info_json = resp.registry_info_json();
  return out;
}

}  // namespace simprov
