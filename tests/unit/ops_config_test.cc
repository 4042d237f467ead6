// server/ops/config: the config file syntax, precedence (command line > environment > file >
// default), errors naming FILE:LINE / the variable / the value, and --print_config output.
// The flags are this test's own, named like the daemon's.
#include "server/ops/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "tests/unit/status_test_util.h"

ABSL_FLAG(std::string, listen, "unix:/run/kvshuttle/kvshuttle.sock", "listen");
ABSL_FLAG(int, cpu_threads, 2, "threads");
ABSL_FLAG(bool, gpus, true, "gpus");
ABSL_FLAG(std::string, tcp, "", "tcp");
ABSL_FLAG(std::string, log_format, "text", "log format");
ABSL_FLAG(std::string, config, "/nonexistent/kvshuttled.conf", "config file");
ABSL_FLAG(bool, print_config, false, "print");

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;
using absl::StatusCode;

std::vector<absl::CommandLineFlag*> TestFlags() {
  std::vector<absl::CommandLineFlag*> flags;
  for (const char* name :
       {"listen", "cpu_threads", "gpus", "tcp", "log_format", "config", "print_config"}) {
    flags.push_back(absl::FindCommandLineFlag(name));
  }
  return flags;
}

// A config file under /tmp, removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& text)
      : path_(absl::StrCat("/tmp/kvs-config-test-", ::getpid(), "-", counter_++, ".conf")) {
    std::ofstream(path_) << text;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

class ConfigTest : public ::testing::Test {
 protected:
  // Applies the layers with `args` as the command line (flags on it are set as absl would).
  absl::StatusOr<std::vector<EffectiveFlag>> Apply(const std::vector<std::string>& args,
                                                   const std::vector<std::string>& env) {
    ConfigInputs inputs;
    inputs.flags = TestFlags();
    std::vector<std::string> argv = {"kvshuttled"};
    argv.insert(argv.end(), args.begin(), args.end());
    inputs.on_command_line = FlagsOnCommandLine(argv, inputs.flags);
    for (const std::string& arg : args) {  // what absl::ParseCommandLine did
      const size_t eq = arg.find('=');
      std::string error;
      EXPECT_TRUE(absl::FindCommandLineFlag(arg.substr(2, eq - 2))
                      ->ParseFrom(arg.substr(eq + 1), &error))
          << error;
    }
    inputs.environment = env;
    inputs.environment.push_back("PATH=/usr/bin");  // unrelated variables are ignored
    return ApplyConfigLayers(inputs);
  }
  static const EffectiveFlag& Find(const std::vector<EffectiveFlag>& flags, const char* name) {
    for (const EffectiveFlag& f : flags) {
      if (f.name == name) return f;
    }
    static EffectiveFlag none;
    ADD_FAILURE() << "no flag " << name;
    return none;
  }

  absl::FlagSaver saver_;  // every test starts from the defaults
};

TEST_F(ConfigTest, ParsesKeyValueLinesCommentsBlankLinesAndQuotes) {
  absl::StatusOr<std::vector<ConfigLine>> lines = ParseConfigText(
      "# kvshuttled\n"
      "\n"
      "listen = unix:/run/x.sock\n"
      "  cpu_threads=4   # trailing comment\n"
      "tcp =\n"
      "log_format = \"json # not a comment\"  # a comment\n"
      "socket_mode = 0#660\n",
      "f.conf");
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(lines->size(), 5u);
  EXPECT_EQ((*lines)[0].key, "listen");
  EXPECT_EQ((*lines)[0].value, "unix:/run/x.sock");
  EXPECT_EQ((*lines)[0].line, 3);
  EXPECT_EQ((*lines)[1].value, "4");
  EXPECT_EQ((*lines)[2].value, "");
  EXPECT_EQ((*lines)[3].value, "json # not a comment");
  EXPECT_EQ((*lines)[4].value, "0#660");  // '#' without a space before it is part of the value
}

TEST_F(ConfigTest, MalformedLinesNameFileAndLine) {
  EXPECT_EQ(ParseConfigText("listen = a\njust words\n", "f.conf").status().message(),
            "f.conf:2: \"just words\" is not a `key = value` line");
  EXPECT_EQ(ParseConfigText("--listen = a\n", "f.conf").status().message(),
            "f.conf:1: \"--listen\" is not a key (keys are flag names: letters, digits, _)");
  EXPECT_EQ(ParseConfigText("\n\ntcp = \"open\n", "f.conf").status().message(),
            "f.conf:3: tcp: unterminated quote in \"open");
  EXPECT_EQ(ParseConfigText("tcp = \"a\" b\n", "f.conf").status().message(),
            "f.conf:1: tcp: text after the closing quote: b");
  EXPECT_EQ(ParseConfigText("tcp = a\n# x\ntcp = b\n", "f.conf").status().message(),
            "f.conf:3: tcp: already set on line 1");
}

TEST_F(ConfigTest, CommandLineBeatsEnvironmentBeatsFileBeatsDefault) {
  TempFile file("listen = unix:/file.sock\ncpu_threads = 3\ngpus = false\ntcp = file:1\n");
  absl::StatusOr<std::vector<EffectiveFlag>> config =
      Apply({"--config=" + file.path(), "--listen=unix:/flag.sock"},
            {"KVSHUTTLED_LISTEN=unix:/env.sock", "KVSHUTTLED_CPU_THREADS=5"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_listen), "unix:/flag.sock");
  EXPECT_EQ(absl::GetFlag(FLAGS_cpu_threads), 5);
  EXPECT_FALSE(absl::GetFlag(FLAGS_gpus));
  EXPECT_EQ(absl::GetFlag(FLAGS_tcp), "file:1");
  EXPECT_EQ(absl::GetFlag(FLAGS_log_format), "text");

  EXPECT_EQ(Find(*config, "listen").source, ConfigSource::kCommandLine);
  EXPECT_EQ(Find(*config, "listen").origin, "command line");
  EXPECT_EQ(Find(*config, "cpu_threads").source, ConfigSource::kEnvironment);
  EXPECT_EQ(Find(*config, "cpu_threads").origin, "env KVSHUTTLED_CPU_THREADS");
  EXPECT_EQ(Find(*config, "gpus").source, ConfigSource::kFile);
  EXPECT_EQ(Find(*config, "gpus").origin, file.path() + ":3");
  EXPECT_EQ(Find(*config, "gpus").value, "false");
  EXPECT_EQ(Find(*config, "log_format").origin, "default");
  EXPECT_EQ(Find(*config, "log_format").value, "text");
}

TEST_F(ConfigTest, TheConfigFileCanComeFromTheEnvironment) {
  TempFile file("cpu_threads = 7\n");
  absl::StatusOr<std::vector<EffectiveFlag>> config =
      Apply({}, {"KVSHUTTLED_CONFIG=" + file.path()});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_cpu_threads), 7);
  EXPECT_EQ(Find(*config, "config").origin, "env KVSHUTTLED_CONFIG");
}

TEST_F(ConfigTest, AMissingDefaultFileIsFineAMissingExplicitOneIsNot) {
  absl::StatusOr<std::vector<EffectiveFlag>> config = Apply({}, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(Find(*config, "config").origin, "default (no such file: none read)");

  config = Apply({"--config=/nonexistent/x.conf"}, {});
  EXPECT_TRUE(HasStatus(config.status(), StatusCode::kNotFound,
                        {"config file /nonexistent/x.conf", "(given by --config)"}));

  config = Apply({}, {"KVSHUTTLED_CONFIG=/nonexistent/y.conf"});
  EXPECT_TRUE(HasStatus(config.status(), StatusCode::kNotFound,
                        {"/nonexistent/y.conf", "(given by KVSHUTTLED_CONFIG)"}));

  config = Apply({"--config="}, {});  // empty: no file at all
  ASSERT_TRUE(config.ok()) << config.status();
}

TEST_F(ConfigTest, UnknownKeysAndVariablesAreErrorsNamingThem) {
  TempFile file("listen = unix:/x.sock\n\ncpu_thread = 4\n");
  absl::StatusOr<std::vector<EffectiveFlag>> config = Apply({"--config=" + file.path()}, {});
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(config.status().message(),
            file.path() + ":3: unknown key \"cpu_thread\" (keys are kvshuttled flag names; see "
                          "--help)");

  config = Apply({}, {"KVSHUTTLED_LISTN=unix:/x"});
  EXPECT_EQ(config.status().message(),
            "environment variable KVSHUTTLED_LISTN names no flag (KVSHUTTLED_<FLAG NAME>; see "
            "--help)");
  // The variable must be the flag name in upper case exactly.
  config = Apply({}, {"KVSHUTTLED_listen=unix:/x"});
  EXPECT_TRUE(HasStatus(config.status(), StatusCode::kInvalidArgument,
                        {"KVSHUTTLED_listen names no flag"}));
}

TEST_F(ConfigTest, BadValuesNameWhereTheyCameFrom) {
  TempFile file("# threads\ncpu_threads = many\n");
  absl::StatusOr<std::vector<EffectiveFlag>> config = Apply({"--config=" + file.path()}, {});
  EXPECT_TRUE(HasStatus(config.status(), StatusCode::kInvalidArgument,
                        {file.path() + ":2: cpu_threads = \"many\": "}));

  config = Apply({}, {"KVSHUTTLED_GPUS=maybe"});
  EXPECT_TRUE(HasStatus(config.status(), StatusCode::kInvalidArgument,
                        {"environment variable KVSHUTTLED_GPUS=\"maybe\": "}));
}

TEST_F(ConfigTest, ConfigAndPrintConfigCannotComeFromTheFile) {
  TempFile file("config = /etc/other.conf\n");
  EXPECT_TRUE(HasStatus(Apply({"--config=" + file.path()}, {}).status(),
                        StatusCode::kInvalidArgument,
                        {":1: config cannot be set in the config file"}));
  EXPECT_TRUE(HasStatus(Apply({}, {"KVSHUTTLED_PRINT_CONFIG=true"}).status(),
                        StatusCode::kInvalidArgument,
                        {"--print_config is only taken on the command line"}));
}

TEST_F(ConfigTest, FindsFlagsOnTheCommandLineInEveryForm) {
  const std::vector<absl::CommandLineFlag*> flags = TestFlags();
  EXPECT_EQ(FlagsOnCommandLine({"kvshuttled", "--listen=x", "-cpu_threads", "4", "--nogpus",
                                "--tcp", "--log_format", "--", "--config=y"},
                               flags),
            (std::set<std::string>{"listen", "cpu_threads", "gpus", "tcp"}));
  EXPECT_EQ(FlagsOnCommandLine({"kvshuttled", "--gpus", "--print_config"}, flags),
            (std::set<std::string>{"gpus", "print_config"}));
}

TEST_F(ConfigTest, PrintConfigListsEveryFlagWithItsOriginAndReadsBack) {
  absl::StatusOr<std::vector<EffectiveFlag>> config =
      Apply({"--tcp=127.0.0.1:5000"}, {"KVSHUTTLED_LOG_FORMAT=json"});
  ASSERT_TRUE(config.ok()) << config.status();
  const std::string text = FormatEffectiveConfig(*config);
  for (const char* line : {"\ncpu_threads = 2  # default\n",
                           "\ntcp = 127.0.0.1:5000  # command line\n",
                           "\nlog_format = json  # env KVSHUTTLED_LOG_FORMAT\n",
                           "\nconfig = /nonexistent/kvshuttled.conf  # default (no such file"}) {
    EXPECT_TRUE(absl::StrContains(text, line)) << text;
  }
  // The output is itself a config file (values quoted where needed).
  std::vector<EffectiveFlag> odd = {{"tcp", "", ConfigSource::kDefault, "default"},
                                    {"listen", "a # b", ConfigSource::kFile, "f:1"}};
  absl::StatusOr<std::vector<ConfigLine>> back =
      ParseConfigText(FormatEffectiveConfig(odd), "printed");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)[0].value, "");
  EXPECT_EQ((*back)[1].value, "a # b");
}

TEST(EnvVarNameTest, IsThePrefixAndTheUpperCaseFlagName) {
  EXPECT_EQ(EnvVarName("metrics_address"), "KVSHUTTLED_METRICS_ADDRESS");
}

}  // namespace
}  // namespace kvshuttle
