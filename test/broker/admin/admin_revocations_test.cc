// AdminRevocations in the store: what it answers, and the one-time import
// of the file older versions kept (DIR/admin-ca/revoked).
#include <gtest/gtest.h>

#include "broker/admin/admin_auth.h"
#include "broker/store/sqlite/sqlite_store.h"
#include "common/atomic_file.h"
#include "test/broker/store/store_test_util.h"

namespace simprov {
namespace {

class AdminRevocationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = SqliteStore::Open(dir_.path() + "/store.db", clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  std::string Legacy() const { return dir_.path() + "/revoked"; }

  TempDir dir_;
  FakeClock clock_{kT0};
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(AdminRevocationsTest, RevokesInTheStoreNormalizingTheSerial) {
  auto r = AdminRevocations::Open(*store_, clock_, Legacy());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(*(*r)->IsRevoked("0a1b"));
  EXPECT_TRUE(*(*r)->Revoke("0A:1B"));
  EXPECT_FALSE(*(*r)->Revoke("0a1b"));  // already
  EXPECT_TRUE(*(*r)->IsRevoked("0a1b"));
  EXPECT_TRUE(*(*r)->IsRevoked("0A:1B"));
  EXPECT_FALSE(*(*r)->IsRevoked("not hex"));
  EXPECT_EQ((*r)->Revoke("not hex").status().code(),
            absl::StatusCode::kInvalidArgument);
  // Another broker's view of the same store sees it at once.
  auto other = AdminRevocations::Open(*store_, clock_, Legacy());
  EXPECT_TRUE(*(*other)->IsRevoked("0a1b"));
  EXPECT_FALSE(PathExists(Legacy()));  // no file written
}

TEST_F(AdminRevocationsTest, ImportsTheLegacyFileOnce) {
  ASSERT_TRUE(WriteFileAtomic(Legacy(), "0a\n\n  0B \n", 0600).ok());
  auto r = AdminRevocations::Open(*store_, clock_, Legacy());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(*(*r)->IsRevoked("0a"));
  EXPECT_TRUE(*(*r)->IsRevoked("0b"));
  EXPECT_EQ(*store_->ListAdminRevocations(),
            (std::vector<std::string>{"0a", "0b"}));
  EXPECT_FALSE(PathExists(Legacy()));
  EXPECT_TRUE(PathExists(Legacy() + ".imported"));
  // Not read again.
  auto again = AdminRevocations::Open(*store_, clock_, Legacy());
  ASSERT_TRUE(again.ok()) << again.status();
}

TEST_F(AdminRevocationsTest, ABadLineImportsNothingAndKeepsTheFile) {
  ASSERT_TRUE(WriteFileAtomic(Legacy(), "0a\nxyz\n", 0600).ok());
  auto r = AdminRevocations::Open(*store_, clock_, Legacy());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(Legacy() + " line 2"),
            absl::string_view::npos)
      << r.status();
  EXPECT_TRUE(store_->ListAdminRevocations()->empty());
  EXPECT_TRUE(PathExists(Legacy()));
}

}  // namespace
}  // namespace simprov
