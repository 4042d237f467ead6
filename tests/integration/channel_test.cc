// The streaming channel (proto Channel, issue #14): submissions in, acknowledgements and
// completions out, on one stream per session. Driven through raw gRPC streams here so that every
// malformed or hostile message can be sent; the C++ client's attached sessions use it for every
// SubmitBatch (the other integration tests run over it).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>

#include <grpcpp/client_context.h>

#include "absl/strings/str_cat.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

using absl::StatusCode;
using ::testing::HasSubstr;
using Stream = grpc::ClientReaderWriter<v1::ChannelRequest, v1::ChannelEvent>;

class ChannelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon =
        DaemonProcess::Start(WithFlags({"--cpu_threads=2", "--log_level=debug"}));
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = daemon->release();
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }

  // An unattached session for registrations; the test attaches it through a raw channel.
  std::unique_ptr<Session> Open(absl::string_view name) {
    absl::StatusOr<std::unique_ptr<Session>> s =
        Session::Open(daemon_->client(), name, /*attach=*/false);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  // A raw channel stream, with `open` for `session_id` sent and its first event read into
  // `first` (when given).
  std::unique_ptr<Stream> Connect(grpc::ClientContext& context, const std::string& session_id,
                                  v1::ChannelEvent* first = nullptr) {
    std::unique_ptr<Stream> stream = daemon_->client().stub().Channel(&context);
    v1::ChannelRequest open;
    open.set_open(session_id);
    EXPECT_TRUE(stream->Write(open));
    if (first != nullptr) EXPECT_TRUE(stream->Read(first));
    return stream;
  }

  struct Pair {
    HostBlockSet src, dst;
  };
  Pair MakePair(Session& s, uint64_t seed) {
    const BlockShape shape{.nl = 2, .no = 2, .nt = 4, .nh = 2, .hd = 8};
    absl::StatusOr<HostBlockSet> src = MakeHostBlockSet(
        s, MakeLayout(LayoutKind::kNHDStack, shape), 4, Placement::kStrided, seed);
    absl::StatusOr<HostBlockSet> dst = MakeHostBlockSet(
        s, MakeLayout(LayoutKind::kUniversal, shape), 4, Placement::kStrided, seed + 1);
    EXPECT_TRUE(src.ok() && dst.ok());
    return Pair{*std::move(src), *std::move(dst)};
  }
  static v1::ChannelRequest Submit(uint64_t tag, std::vector<v1::Job> jobs, double timeout = 0) {
    v1::ChannelRequest r;
    r.mutable_submit()->set_tag(tag);
    r.mutable_submit()->set_timeout_seconds(timeout);
    for (v1::Job& j : jobs) *r.mutable_submit()->add_jobs() = std::move(j);
    return r;
  }
  // The daemon ends `stream` without an event, with `code`.
  static void ExpectRefused(Stream& stream, grpc::StatusCode code) {
    v1::ChannelEvent e;
    EXPECT_FALSE(stream.Read(&e)) << e.DebugString();
    const grpc::Status status = stream.Finish();
    EXPECT_EQ(status.error_code(), code) << status.error_message();
  }
  static bool Listed(const std::string& client_name) {
    absl::StatusOr<v1::ListSessionsResponse> all = daemon_->client().ListSessions();
    if (!all.ok()) return true;
    for (const auto& s : all->sessions()) {
      if (s.client_name() == client_name) return true;
    }
    return false;
  }

  static DaemonProcess* daemon_;
};

DaemonProcess* ChannelTest::daemon_ = nullptr;

// Submits are answered by tag, every job_done follows its submit's `accepted`, and the bytes are
// exactly the CPU reference's.
TEST_F(ChannelTest, SubmitsAreAcknowledgedBeforeTheirCompletionsAndConvertByteExact) {
  std::unique_ptr<Session> s = Open("it-channel-order");
  Pair p = MakePair(*s, 7);
  const TransferSpec spec = WholeBlocks(p.src.layout, p.dst.layout);
  const std::vector<BlockPair> pairs = {{0, 2, 0, 0}, {3, 1, 0, 0}};
  KVS_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> expected, ExpectedAfter(p.src, p.dst, spec, pairs));
  grpc::ClientContext context;
  v1::ChannelEvent first;
  std::unique_ptr<Stream> stream = Connect(context, s->id(), &first);
  ASSERT_EQ(first.attached(), s->id());
  constexpr int kSubmits = 50;
  for (int i = 0; i < kSubmits; ++i) {
    ASSERT_TRUE(stream->Write(
        Submit(1000 + i, {MakeJob(p.src.endpoint(), p.dst.endpoint(), spec, pairs)})));
  }
  std::set<uint64_t> accepted_jobs;
  std::set<uint64_t> tags;
  int done = 0;
  v1::ChannelEvent e;
  while (done < kSubmits && stream->Read(&e)) {
    if (e.has_accepted()) {
      EXPECT_TRUE(tags.insert(e.accepted().tag()).second) << "tag answered twice";
      ASSERT_EQ(e.accepted().job_ids_size(), 1);
      accepted_jobs.insert(e.accepted().job_ids(0));
    } else if (e.has_job_done()) {
      EXPECT_TRUE(accepted_jobs.count(e.job_done().job_id()))
          << "job_done of job " << e.job_done().job_id() << " before its accepted";
      EXPECT_EQ(e.job_done().state(), v1::JOB_DONE) << e.DebugString();
      ++done;
    } else {
      ADD_FAILURE() << "unexpected " << e.DebugString();
    }
  }
  EXPECT_EQ(done, kSubmits);
  EXPECT_EQ(tags.size(), static_cast<size_t>(kSubmits));
  EXPECT_EQ(*tags.begin(), 1000u);
  EXPECT_TRUE(BytesEqual(p.dst.data(), expected));
  context.TryCancel();
  (void)stream->Finish();
}

// A refused submit is answered `rejected` with the code SubmitBatch gives, nothing of it is
// queued, and the channel keeps serving; another session's block set is NOT_FOUND here too.
TEST_F(ChannelTest, ARejectedSubmitLeavesTheChannelUsable) {
  std::unique_ptr<Session> s = Open("it-channel-reject");
  std::unique_ptr<Session> other = Open("it-channel-victim");
  Pair mine = MakePair(*s, 21);
  Pair theirs = MakePair(*other, 23);
  const TransferSpec spec = WholeBlocks(mine.src.layout, mine.dst.layout);
  grpc::ClientContext context;
  v1::ChannelEvent first;
  std::unique_ptr<Stream> stream = Connect(context, s->id(), &first);
  ASSERT_TRUE(first.has_attached());
  struct Bad {
    v1::ChannelRequest request;
    StatusCode code;
    const char* text;
  };
  std::vector<Bad> bad = {
      {Submit(1, {MakeJob(mine.src.endpoint(), mine.dst.endpoint(), spec, {{9, 0, 0, 0}})}),
       StatusCode::kOutOfRange, "block"},
      {Submit(2, {MakeJob(mine.src.endpoint(), theirs.dst.endpoint(), spec, {{0, 0, 0, 0}})}),
       StatusCode::kNotFound, "block set"},
      {Submit(3, {MakeJob(mine.src.endpoint(), mine.dst.endpoint(), spec, {{0, 0, 0, 0}})},
              std::numeric_limits<double>::quiet_NaN()),
       StatusCode::kInvalidArgument, "timeout_seconds"},
      {Submit(4, {MakeJob(mine.src.endpoint(), mine.dst.endpoint(), spec, {{0, 0, 0, 0}})}, -1),
       StatusCode::kInvalidArgument, "timeout_seconds"},
  };
  for (const Bad& b : bad) {
    ASSERT_TRUE(stream->Write(b.request));
    v1::ChannelEvent e;
    ASSERT_TRUE(stream->Read(&e));
    ASSERT_TRUE(e.has_rejected()) << e.DebugString();
    EXPECT_EQ(e.rejected().tag(), b.request.submit().tag());
    EXPECT_EQ(e.rejected().code(), static_cast<int>(b.code)) << e.DebugString();
    EXPECT_THAT(e.rejected().message(), HasSubstr(b.text));
  }
  const std::vector<uint8_t> untouched = theirs.dst.Snapshot();
  ASSERT_TRUE(stream->Write(
      Submit(5, {MakeJob(mine.src.endpoint(), mine.dst.endpoint(), spec, {{0, 0, 0, 0}})})));
  v1::ChannelEvent accepted, done;
  ASSERT_TRUE(stream->Read(&accepted));
  ASSERT_TRUE(accepted.has_accepted()) << accepted.DebugString();
  EXPECT_EQ(accepted.accepted().tag(), 5u);
  ASSERT_TRUE(stream->Read(&done));
  EXPECT_EQ(done.job_done().state(), v1::JOB_DONE) << done.DebugString();
  EXPECT_EQ(theirs.dst.Snapshot(), untouched);
  context.TryCancel();
  (void)stream->Finish();
}

// The first message must be `open`, of a session the caller holds, not attached elsewhere.
TEST_F(ChannelTest, OpenIsCheckedLikeEverySessionCall) {
  {
    grpc::ClientContext context;
    std::unique_ptr<Stream> stream = daemon_->client().stub().Channel(&context);
    ASSERT_TRUE(stream->Write(Submit(1, {})));
    v1::ChannelEvent e;
    EXPECT_FALSE(stream->Read(&e));
    const grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("open"));
  }
  {
    grpc::ClientContext context;
    ExpectRefused(*Connect(context, "no-such-session"), grpc::StatusCode::NOT_FOUND);
  }
  std::unique_ptr<Session> s = Open("it-channel-twice");
  grpc::ClientContext first_context;
  v1::ChannelEvent first;
  std::unique_ptr<Stream> attached = Connect(first_context, s->id(), &first);
  ASSERT_TRUE(first.has_attached());
  {
    grpc::ClientContext context;
    ExpectRefused(*Connect(context, s->id()), grpc::StatusCode::FAILED_PRECONDITION);
  }
  first_context.TryCancel();
  (void)attached->Finish();
}

// A second `open` mid-stream is a protocol error: the stream ends INVALID_ARGUMENT and the
// session bound to it is closed.
TEST_F(ChannelTest, AProtocolErrorEndsTheStreamAndItsSession) {
  std::unique_ptr<Session> s = Open("it-channel-protocol");
  grpc::ClientContext context;
  v1::ChannelEvent first;
  std::unique_ptr<Stream> stream = Connect(context, s->id(), &first);
  ASSERT_TRUE(first.has_attached());
  v1::ChannelRequest again;
  again.set_open(s->id());
  ASSERT_TRUE(stream->Write(again));
  v1::ChannelEvent e;
  while (stream->Read(&e)) {
    if (e.has_rejected()) EXPECT_EQ(e.rejected().code(), static_cast<int>(StatusCode::kInvalidArgument));
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(WaitUntil([&] { return !Listed("it-channel-protocol"); }, absl::Seconds(3)));
  EXPECT_TRUE(HasStatus(s->KeepAlive(), StatusCode::kNotFound, {}));
}

// The client going away closes the session (as with Attach), and its queued jobs go with it.
TEST_F(ChannelTest, TheSessionEndsWithItsChannel) {
  std::unique_ptr<Session> s = Open("it-channel-gone");
  {
    grpc::ClientContext context;
    v1::ChannelEvent first;
    std::unique_ptr<Stream> stream = Connect(context, s->id(), &first);
    ASSERT_TRUE(first.has_attached());
    EXPECT_TRUE(Listed("it-channel-gone"));
    context.TryCancel();
    (void)stream->Finish();
  }
  EXPECT_TRUE(WaitUntil([&] { return !Listed("it-channel-gone"); }, absl::Seconds(3)));
}

// An attached Session of the C++ client submits over its channel: byte-exact results, refusals
// with SubmitBatch's codes, and no unary SubmitBatch reaches the daemon (its debug log names
// every unary call; no test of this suite makes one).
TEST_F(ChannelTest, TheClientLibrarySubmitsOverTheChannel) {
  absl::StatusOr<std::unique_ptr<Session>> s =
      Session::Open(daemon_->client(), "it-channel-client", /*attach=*/true);
  ASSERT_TRUE(s.ok()) << s.status();
  Pair p = MakePair(**s, 31);
  const TransferSpec spec = WholeBlocks(p.src.layout, p.dst.layout);
  KVS_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> expected,
                           ExpectedAfter(p.src, p.dst, spec, IdentityPairs(4)));
  absl::StatusOr<v1::GetStatsResponse> before = daemon_->client().GetStats();
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse done,
      RunBatch(**s, {MakeJob(p.src.endpoint(), p.dst.endpoint(), spec, IdentityPairs(4))}));
  EXPECT_EQ(done.results(0).state(), v1::JOB_DONE);
  EXPECT_TRUE(BytesEqual(p.dst.data(), expected));
  // A refused batch comes back with SubmitBatch's code.
  v1::SubmitBatchRequest bad;
  *bad.add_jobs() = MakeJob(p.src.endpoint(), p.dst.endpoint(), spec, {{7, 0, 0, 0}});
  EXPECT_TRUE(HasStatus((*s)->SubmitBatch(bad), StatusCode::kOutOfRange, {}));
  ASSERT_TRUE(before.ok());
  const std::string log = daemon_->Stderr();
  EXPECT_THAT(log, HasSubstr("method=Wait")) << "the debug log does not name RPCs";
  EXPECT_THAT(log, ::testing::Not(HasSubstr("method=SubmitBatch")));
}

}  // namespace
}  // namespace kvshuttle::it
