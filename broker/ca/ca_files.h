// The CA's files in the broker's data directory, and rollover on disk.
//
// Layout (DIR is the data directory):
//   DIR/ca.pem          root CA certificate (the trust anchor), mode 0644
//   DIR/ca/             mode 0700
//   DIR/ca/root.key     root private key, PKCS#8 PEM, mode 0600 (the
//                       development CA only: an operator's root key
//                       never comes here)
//   DIR/ca/issuing.key  issuing private key, PKCS#8 PEM, mode 0600 (what
//                       the CaSignerFactory makes the signer from)
//   DIR/ca/issuing.pem  issuing CA certificate, mode 0644
//   DIR/ca/chain.pem    the certificates a leaf needs up to the root:
//                       issuing.pem, then an operator's intermediates
//   DIR/ca/next/        a staged CA (rollover): issuing.{key,pem},
//                       chain.pem, root.pem, activate-at
//   DIR/ca/retired.pem  certificates of earlier generations (renewals of
//                       their devices still verify)
// Every file is written to a fresh temporary name (O_CREAT|O_EXCL with its
// final mode), fsync'ed and renamed into place. Load() never reads
// root.key: a running broker does not need the root private key.
//
// The CertificateAuthority members that write and read these files
// (CreateDevelopment, InstallOperatorCa, StageOperatorCa, Load and
// MaybeActivateStaged, declared in ca.h) are defined in ca_files.cc, with
// the helpers below.
#ifndef SIMPROV_BROKER_CA_CA_FILES_H_
#define SIMPROV_BROKER_CA_CA_FILES_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/ca/ca_signer.h"
#include "common/openssl_ptr.h"

namespace simprov {

// One generation's files, read: root, issuing CA, the intermediates of
// chain.pem (neither the issuing CA nor the root) and the signer of its
// issuing.key.
struct GenerationFiles {
  X509Ptr root;
  X509Ptr issuing;
  std::vector<X509Ptr> intermediates;
  std::unique_ptr<CaSigner> signer;
};

// Reads the generation whose root is at `root_path` and whose other files
// are in `dir` (DIR/ca or DIR/ca/next), in this order: root, issuing.pem,
// chain.pem (optional), then the signer from `signers` for
// `dir`/issuing.key. FailedPrecondition naming the file for a file that
// does not parse; NotFound for a missing one.
absl::StatusOr<GenerationFiles> ReadGeneration(const std::string& root_path,
                                               const std::string& dir,
                                               const CaSignerFactory& signers);

// Activation of a staged CA (DIR/ca/next/) rewrites five files. It first
// writes the journal DIR/ca/next/activating (the retired.pem it will
// write), then the files, then removes next/. Finishes an activation a
// crash interrupted: every write is redone from next/ and the journal, so
// a half-written switch never stops the broker from starting. OK and
// nothing done without a journal.
absl::Status FinishActivation(const std::string& dir);

}  // namespace simprov

#endif  // SIMPROV_BROKER_CA_CA_FILES_H_
