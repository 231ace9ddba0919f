// The agent's side of a bootstrap: AKA through the SIM, a fresh key pair,
// a CSR, and a verified answer. Writes nothing: the caller decides where
// the credentials go (credential_dir.h), so the benchmark runs the very
// same code.
//
// The answer is trusted only after (1) its tag verifies under keys derived
// from this SIM's CK/IK and bound to this request, (2) the leaf's public key
// is the key generated here, and (3) the chain verifies to the returned
// trust anchor at the server's time, for clientAuth.
#ifndef SIMPROV_AGENT_BOOTSTRAP_CLIENT_H_
#define SIMPROV_AGENT_BOOTSTRAP_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/keys/device_key.h"
#include "agent/sim/sim.h"
#include "common/clock.h"
#include "common/x509.h"
#include "simprov/v1/bootstrap.grpc.pb.h"

namespace simprov {

struct BrokerEndpoint {
  std::string target;    // HOST:PORT as given to --broker
  std::string identity;  // HOST, bound into the key derivation
};
absl::StatusOr<BrokerEndpoint> ParseBroker(absl::string_view broker);

// A TLS channel to the broker. With `pinned_ca_pem` the broker's
// certificate must chain to it, carry serverAuth and match the host;
// without it the channel is encrypted but unauthenticated, and the sealed
// answer is what authenticates the broker.
// `args` lets callers add channel arguments (the benchmark makes each
// channel a separate connection with them).
std::shared_ptr<grpc::Channel> MakeBrokerChannel(
    const BrokerEndpoint& broker, const std::string& pinned_ca_pem,
    grpc::ChannelArguments args = grpc::ChannelArguments());

struct Credentials {
  std::string key_pem;    // DIR/device.key: PKCS#8, or the store's reference
  std::string key_json;   // bootstrap.json's "key" (KeyStore::DescribeJson)
  std::string cert_pem;   // leaf
  std::string chain_pem;  // leaf + issuing CA(s)
  std::string ca_pem;     // trust anchors
  std::string imsi;
  std::string device_id;
  CertInfo leaf;
  absl::Time server_time;
  absl::Duration round_trip;  // the Enrol round trip: bounds server_time
  std::string registry_info_json;
};

struct AgentOptions {
  absl::Duration rpc_timeout = absl::Seconds(10);
  // Answers slower than this (from sending Enrol to verifying the answer)
  // are refused: the time in them is too uncertain.
  absl::Duration max_round_trip = absl::Seconds(30);
  // Measures round trips; null: the wall clock given to the client. The
  // agent passes a CLOCK_BOOTTIME clock, which no clock step can move.
  Clock* elapsed_clock = nullptr;
};

// Time learnt from the broker through a fresh AKA exchange.
struct AuthenticatedTime {
  absl::Time time;             // server time + half the round trip
  absl::Duration uncertainty;  // +/- half the round trip
  absl::Duration round_trip;
};

class BootstrapClient {
 public:
  BootstrapClient(std::shared_ptr<grpc::Channel> channel, BrokerEndpoint broker,
                  Clock& clock, Random& random,
                  AgentOptions options = AgentOptions());

  // One full bootstrap. Unauthenticated/PermissionDenied: refused (by the
  // SIM or the broker); Unavailable/DeadlineExceeded: retryable. The key is
  // generated in `keys` (null: a file key, as the benchmark uses).
  absl::StatusOr<Credentials> Run(SimCard& sim, KeyStore* keys = nullptr);
  // A fresh AKA exchange that returns only the broker's time (no
  // certificate), authenticated like an Enrol answer.
  absl::StatusOr<AuthenticatedTime> Time(SimCard& sim);

 private:
  enum class Purpose { kEnrol, kTime };
  struct Exchanged {
    v1::Answer answer;
    absl::Duration round_trip;
    std::string imsi;
  };
  absl::StatusOr<Exchanged> Exchange(SimCard& sim, Purpose purpose,
                                     const Bytes& csr);

  std::shared_ptr<grpc::Channel> channel_;
  const BrokerEndpoint broker_;
  Clock& clock_;
  Random& random_;
  const AgentOptions options_;
};

// Checks what a broker issued: the leaf is for `key`, and the chain verifies
// to the anchors at `server_time` for clientAuth. Fills the certificate
// fields of Credentials.
absl::StatusOr<Credentials> VerifyIssued(EVP_PKEY* key,
                                         const std::vector<Bytes>& chain,
                                         const std::vector<Bytes>& anchors,
                                         absl::Time server_time);
// The same for a key in a store: key_pem is what the store keeps.
absl::StatusOr<Credentials> VerifyIssued(const DeviceKey& key,
                                         const std::vector<Bytes>& chain,
                                         const std::vector<Bytes>& anchors,
                                         absl::Time server_time);

// A mutual-TLS channel: the broker must verify against `ca_pem`; the device
// presents its current key and chain.
std::shared_ptr<grpc::Channel> MakeMutualTlsChannel(
    const BrokerEndpoint& broker, const std::string& ca_pem,
    const std::string& key_pem, const std::string& chain_pem);

// The same channel from the credentials in `dir` (ca.pem, device.key,
// chain.pem); FailedPrecondition "no credentials in DIR: bootstrap first".
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeDeviceChannel(
    const BrokerEndpoint& broker, const std::string& dir);

// Renews over a mutual-TLS channel with a NEW key pair; no SIM involved.
// Unauthenticated/PermissionDenied: refused (expired, revoked, suspended).
absl::StatusOr<Credentials> RenewCredentials(
    std::shared_ptr<grpc::Channel> channel, const std::string& imsi,
    Clock& clock, const AgentOptions& options);

// The current key and certificate of a device whose key cannot sign inside
// TLS: renewal proves possession in band (common/renew_proof.h).
struct InBandProof {
  DeviceKey* current = nullptr;
  Bytes leaf_der;
  std::string broker_identity;
};

// Renews over `channel` (server-authenticated TLS, no client certificate)
// with a new key generated in `keys`, the old key signing the broker's nonce
// and the transcript.
absl::StatusOr<Credentials> RenewCredentialsInBand(
    std::shared_ptr<grpc::Channel> channel, const std::string& imsi,
    const InBandProof& proof, KeyStore& keys, Clock& clock,
    const AgentOptions& options);

}  // namespace simprov

#endif  // SIMPROV_AGENT_BOOTSTRAP_CLIENT_H_
