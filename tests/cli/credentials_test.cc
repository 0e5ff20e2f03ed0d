#include "cli/credentials.h"

#include <cstdlib>
#include <fstream>

#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace tome::cli {
namespace {

TEST(ParseKeyFileTest, BareKeyOrNamedField) {
  EXPECT_EQ(*ParseKeyFile("secret123\n", "api_key"), "secret123");
  EXPECT_EQ(*ParseKeyFile("# comment\n\n  abc+/def==  \n", "api_key"), "abc+/def==");
  const std::string bootstrap =
      "# Written by tomed on its first start. Keep it secret.\n"
      "TOME_ADMIN_KEY=adminsecret\nTOME_API_KEY=tenantsecret\n";
  EXPECT_EQ(*ParseKeyFile(bootstrap, "api_key"), "tenantsecret");
  EXPECT_EQ(*ParseKeyFile(bootstrap, "admin_key"), "adminsecret");
  EXPECT_EQ(*ParseKeyFile("api_key: \"quoted\"\n", "api_key"), "quoted");
  EXPECT_EQ(*ParseKeyFile("abcd==\n", "api_key"), "abcd==");  // base64 padding, not a field
  EXPECT_FALSE(ParseKeyFile("TOME_ADMIN_KEY=x\n", "api_key").ok());
  EXPECT_FALSE(ParseKeyFile("# only a comment\n", "api_key").ok());
}

TEST(ResolveKeyTest, FlagThenEnvironmentThenFile) {
  testing::TempDir dir;
  const std::string file = dir.Sub("key");
  std::ofstream(file) << "from-file\n";
  unsetenv("TOME_TEST_KEY");
  EXPECT_EQ(*ResolveKey("from-flag", "TOME_TEST_KEY", file, "api_key"), "from-flag");
  EXPECT_EQ(*ResolveKey("", "TOME_TEST_KEY", file, "api_key"), "from-file");
  setenv("TOME_TEST_KEY", "from-env", 1);
  EXPECT_EQ(*ResolveKey("", "TOME_TEST_KEY", file, "api_key"), "from-env");
  EXPECT_EQ(*ResolveKey("from-flag", "TOME_TEST_KEY", file, "api_key"), "from-flag");
  unsetenv("TOME_TEST_KEY");
  EXPECT_EQ(*ResolveKey("", "TOME_TEST_KEY", "", "api_key"), "");
  EXPECT_FALSE(ResolveKey("", "TOME_TEST_KEY", dir.Sub("missing"), "api_key").ok());
}

}  // namespace
}  // namespace tome::cli
