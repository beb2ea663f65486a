#include <gtest/gtest.h>

#include "tests/test_support.hpp"

TEST(Cli, VersionPrintsCommit) {
  std::string out;
  EXPECT_EQ(dslab::test::run_dslab("--version", &out), 0);
  EXPECT_NE(out.find("dslab "), std::string::npos) << out;
}
