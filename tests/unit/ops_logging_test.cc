// server/ops/logging: the exact text and JSON line formats, escaping (JSON lines parse with an
// independent parser: protobuf's JSON → google.protobuf.Struct), level names and filtering.
#include "server/ops/logging.h"

#include <gtest/gtest.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <string>

#include "absl/time/civil_time.h"

namespace kvshuttle {
namespace {

absl::Time At() {
  return absl::FromCivil(absl::CivilSecond(2025, 1, 2, 3, 4, 5), absl::UTCTimeZone()) +
         absl::Microseconds(123456);
}

// Parses one JSON line into a Struct; fails the test when it is not a JSON object.
google::protobuf::Struct ParseJson(const std::string& line) {
  google::protobuf::Struct out;
  const auto status = google::protobuf::util::JsonStringToMessage(line, &out);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << line;
  return out;
}

TEST(LoggingTest, TimestampsAreRfc3339UtcWithMicroseconds) {
  EXPECT_EQ(FormatLogTime(At()), "2025-01-02T03:04:05.123456Z");
  EXPECT_EQ(FormatLogTime(At() - absl::Microseconds(123456)), "2025-01-02T03:04:05.000000Z");
}

TEST(LoggingTest, TextLinesAreTimestampLevelMessageAndFields) {
  const LogField fields[] = {{"session", "ab12cd34"}, {"job", uint64_t{42}},
                             {"client", "worker 0"}, {"note", ""}, {"eq", "a=b"}};
  EXPECT_EQ(FormatLogLine(LogFormat::kText, LogLevel::kWarning, At(), "job failed", fields),
            "2025-01-02T03:04:05.123456Z WARNING kvshuttled: job failed session=ab12cd34 job=42 "
            "client=\"worker 0\" note=\"\" eq=\"a=b\"\n");
}

TEST(LoggingTest, TextLinesStayOneLine) {
  const LogField fields[] = {{"error", "line one\nline \"two\"\\\x01"}};
  EXPECT_EQ(FormatLogLine(LogFormat::kText, LogLevel::kError, At(), "bad\nmessage\x7f", fields),
            "2025-01-02T03:04:05.123456Z ERROR kvshuttled: bad\\nmessage\\x7f "
            "error=\"line one\\nline \\\"two\\\"\\\\\\x01\"\n");
}

TEST(LoggingTest, JsonLinesHaveTsLevelMsgAndTypedFields) {
  const LogField fields[] = {{"session", "ab12cd34"}, {"job", uint64_t{42}},
                             {"seconds", 0.25},       {"ok", true},
                             {"code", "NOT_FOUND"},   {"nan", std::nan("")}};
  const std::string line =
      FormatLogLine(LogFormat::kJson, LogLevel::kInfo, At(), "session opened", fields);
  EXPECT_EQ(line,
            "{\"ts\":\"2025-01-02T03:04:05.123456Z\",\"level\":\"info\",\"msg\":\"session "
            "opened\",\"session\":\"ab12cd34\",\"job\":42,\"seconds\":0.25,\"ok\":true,"
            "\"code\":\"NOT_FOUND\",\"nan\":\"nan\"}\n");
  const google::protobuf::Struct parsed = ParseJson(line);
  EXPECT_EQ(parsed.fields().at("ts").string_value(), "2025-01-02T03:04:05.123456Z");
  EXPECT_EQ(parsed.fields().at("level").string_value(), "info");
  EXPECT_EQ(parsed.fields().at("msg").string_value(), "session opened");
  EXPECT_EQ(parsed.fields().at("job").number_value(), 42);
  EXPECT_EQ(parsed.fields().at("seconds").number_value(), 0.25);
  EXPECT_TRUE(parsed.fields().at("ok").bool_value());
}

TEST(LoggingTest, JsonEscapesQuotesControlsAndInvalidUtf8) {
  const std::string nasty = std::string("q\"b\\s/\n\r\t\x01\x1f\x7f ") + "é€😀" + "\xff\xc3(\xed\xa0\x80";
  const LogField fields[] = {{"error", nasty}, {"k\"ey", "v"}};
  const std::string line = FormatLogLine(LogFormat::kJson, LogLevel::kError, At(), nasty, fields);
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line";
  EXPECT_NE(line.find("q\\\"b\\\\s/\\n\\r\\t\\u0001\\u001f\\u007f é€😀\\ufffd\\ufffd(\\ufffd"
                      "\\ufffd\\ufffd"),
            std::string::npos)
      << line;
  const google::protobuf::Struct parsed = ParseJson(line);
  const std::string replacement = "\xEF\xBF\xBD";  // U+FFFD
  EXPECT_EQ(parsed.fields().at("msg").string_value(),
            std::string("q\"b\\s/\n\r\t\x01\x1f\x7f é€😀") + replacement + replacement + "(" +
                replacement + replacement + replacement);
  EXPECT_EQ(parsed.fields().at("error").string_value(), parsed.fields().at("msg").string_value());
  EXPECT_EQ(parsed.fields().at("k\"ey").string_value(), "v");
}

TEST(LoggingTest, ParsesLevelsAndFormatsNamingTheChoices) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("warning"), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_EQ(ParseLogLevel("verbose").status().message(),
            "log_level: \"verbose\"; one of debug, info, warning, error");
  EXPECT_EQ(ParseLogFormat("xml").status().message(), "log_format: \"xml\"; one of text, json");
  EXPECT_EQ(ParseLogLevel("INFO").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LoggingTest, RateLimiterLetsAFewEventsThroughPerSecondAndCountsTheRest) {
  LogRateLimiter limiter(2);
  const absl::Time t0 = At();
  uint64_t suppressed = 99;
  EXPECT_TRUE(limiter.Allow(t0, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  EXPECT_TRUE(limiter.Allow(t0 + absl::Milliseconds(10), &suppressed));
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(limiter.Allow(t0 + absl::Milliseconds(500), &suppressed));
  EXPECT_TRUE(limiter.Allow(t0 + absl::Milliseconds(1000), &suppressed));
  EXPECT_EQ(suppressed, 5u) << "the refused ones are reported with the next one let through";
  EXPECT_TRUE(limiter.Allow(t0 + absl::Milliseconds(1001), &suppressed));
  EXPECT_EQ(suppressed, 0u);
}

TEST(LoggingTest, LevelFilter) {
  SetLogOptions(LogFormat::kText, LogLevel::kWarning);
  EXPECT_FALSE(LogEnabled(LogLevel::kDebug));
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kWarning));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  SetLogOptions(LogFormat::kText, LogLevel::kInfo);
  EXPECT_TRUE(LogEnabled(LogLevel::kInfo));
}

}  // namespace
}  // namespace kvshuttle
