// A local endpoint that answers like AWS IoT Core's control plane, after
// recomputing the SigV4 signature of each request (403 when it does not
// match). Optionally it enforces a quota like AWS does: a token bucket per
// API (RegisterCertificate, CreateThing, ...) refilled at `per_second` and
// holding up to `per_second` tokens; a request with no token left gets
// HTTP 429 with ThrottlingException (the x-amzn-ErrorType header and the
// body's __type), plus Retry-After when asked for.
#ifndef SIMPROV_TEST_TESTING_FAKE_AWS_IOT_H_
#define SIMPROV_TEST_TESTING_FAKE_AWS_IOT_H_

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace simprov::testing {

inline constexpr char kFakeAwsAccessKey[] = "AKIDSIMPROVTEST";
inline constexpr char kFakeAwsSecretKey[] = "c2ltcHJvdi10ZXN0LXNlY3JldC1rZXk";

class FakeAwsIot {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;
  struct Call {
    std::string method, path, body, principal;
    std::string new_status;  // ?newStatus=
  };
  // One request that passed the signature check.
  struct Arrival {
    std::string api;  // "RegisterCertificate", "CreateThing", ...
    SteadyTime at;
    bool throttled = false;
  };

  FakeAwsIot();
  ~FakeAwsIot();
  FakeAwsIot(const FakeAwsIot&) = delete;
  FakeAwsIot& operator=(const FakeAwsIot&) = delete;

  std::string url() const;
  // Throttle each API above `per_second` (0: never); `retry_after` is sent
  // as Retry-After with each 429 when not empty.
  void SetQuota(double per_second, const std::string& retry_after = "");

  std::vector<Call> calls();  // accepted calls, in order
  std::vector<Arrival> arrivals();
  int bad_signatures() const { return bad_signatures_; }
  int throttled() const { return throttled_; }
  // How many times each certificate (by id) was registered with HTTP 200.
  std::map<std::string, int> registrations();

  // The API a request is for.
  static std::string ApiOf(const std::string& method, const std::string& path);

 private:
  bool SignatureMatches(const httplib::Request& req);
  void Handle(const httplib::Request& req, httplib::Response& res);
  bool TakeToken(const std::string& api, SteadyTime now);  // under mu_

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Call> calls_;
  std::vector<Arrival> arrivals_;
  std::set<std::string> certs_, things_;
  std::map<std::string, int> registrations_;
  double quota_ = 0;
  std::string retry_after_;
  struct Bucket {
    double tokens = 0;
    SteadyTime at{};
  };
  std::map<std::string, Bucket> buckets_;
  std::atomic<int> bad_signatures_{0};
  std::atomic<int> throttled_{0};
};

}  // namespace simprov::testing

#endif  // SIMPROV_TEST_TESTING_FAKE_AWS_IOT_H_
