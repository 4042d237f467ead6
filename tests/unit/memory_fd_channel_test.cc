// The descriptor side channel and its tokens (server/memory/fd_channel.h, fd_tokens.h): a token
// binds descriptors to one session and one process; delivery is once, each descriptor is taken
// once, tokens expire; the channel refuses malformed messages, too many descriptors, foreign
// control data and silence, closing everything it received.
#include "server/memory/fd_channel.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

PeerIdentity Self() {
  PeerIdentity p;
  p.local = true;
  p.uid = geteuid();
  p.gid = getegid();
  p.pid = getpid();
  return p;
}

int OpenFds() {
  int n = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (readdir(dir) != nullptr) ++n;
  closedir(dir);
  return n;
}

std::vector<UniqueFd> Memfds(int n) {
  std::vector<UniqueFd> fds;
  for (int i = 0; i < n; ++i) fds.emplace_back(memfd_create("kvs-token-test", MFD_CLOEXEC));
  return fds;
}

TEST(FdTokensTest, DeliveredDescriptorsAreTakenOnceEachByTheirSession) {
  FdTokens tokens;
  const absl::Time now = absl::Now();
  absl::StatusOr<std::string> token = tokens.Issue(7, Self(), now);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->size(), kFdTokenBytes);
  EXPECT_TRUE(HasStatus(tokens.Take(7, *token, 0, now), absl::StatusCode::kFailedPrecondition,
                        {"no descriptors were sent"}));
  ASSERT_TRUE(tokens.Deliver(*token, Memfds(2), geteuid(), getpid(), now).ok());
  EXPECT_TRUE(HasStatus(tokens.Deliver(*token, Memfds(1), geteuid(), getpid(), now),
                        absl::StatusCode::kFailedPrecondition, {"sent with it already"}));
  EXPECT_TRUE(HasStatus(tokens.Take(8, *token, 0, now), absl::StatusCode::kNotFound, {}))
      << "another session's token is unknown to it";
  EXPECT_TRUE(HasStatus(tokens.Take(7, *token, 2, now), absl::StatusCode::kOutOfRange,
                        {"fd_index: 2 is outside [0, 1]"}));
  absl::StatusOr<UniqueFd> first = tokens.Take(7, *token, 0, now);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(static_cast<bool>(*first));
  EXPECT_TRUE(HasStatus(tokens.Take(7, *token, 0, now), absl::StatusCode::kFailedPrecondition,
                        {"used already"}));
  ASSERT_TRUE(tokens.Take(7, *token, 1, now).ok());
  EXPECT_EQ(tokens.pending(), 0) << "a parcel whose descriptors are all taken is gone";
}

TEST(FdTokensTest, OnlyTheProcessTheTokenWasIssuedToMayDeliver) {
  FdTokens tokens;
  const absl::Time now = absl::Now();
  const std::string token = *tokens.Issue(1, Self(), now);
  EXPECT_TRUE(HasStatus(tokens.Deliver(token, Memfds(1), geteuid(), getpid() + 1, now),
                        absl::StatusCode::kPermissionDenied, {"issued to another process"}));
  EXPECT_TRUE(HasStatus(tokens.Deliver(token, Memfds(1), geteuid() + 1, getpid(), now),
                        absl::StatusCode::kPermissionDenied, {"issued to another process"}));
  EXPECT_TRUE(HasStatus(tokens.Deliver(std::string(kFdTokenBytes, 'x'), Memfds(1), geteuid(),
                                       getpid(), now),
                        absl::StatusCode::kNotFound, {"unknown or expired"}));
  PeerIdentity tcp;
  tcp.address = "ipv4:10.0.0.1:5000";
  EXPECT_TRUE(HasStatus(tokens.Issue(1, tcp, now), absl::StatusCode::kFailedPrecondition,
                        {"unix socket"}));
}

TEST(FdTokensTest, TokensAreBoundedAndExpireClosingWhatTheyHold) {
  FdTokenLimits limits;
  limits.max_pending_per_session = 2;
  limits.max_pending = 3;
  limits.max_fds_per_token = 4;
  limits.lifetime = absl::Seconds(10);
  FdTokens tokens(limits);
  const absl::Time now = absl::Now();
  const std::string a = *tokens.Issue(1, Self(), now);
  ASSERT_TRUE(tokens.Issue(1, Self(), now).ok());
  EXPECT_TRUE(HasStatus(tokens.Issue(1, Self(), now), absl::StatusCode::kResourceExhausted,
                        {"2 of at most 2"}));
  ASSERT_TRUE(tokens.Issue(2, Self(), now).ok());
  EXPECT_TRUE(HasStatus(tokens.Issue(3, Self(), now), absl::StatusCode::kResourceExhausted,
                        {"3 of at most 3"}));
  EXPECT_TRUE(HasStatus(tokens.Deliver(a, Memfds(5), geteuid(), getpid(), now),
                        absl::StatusCode::kInvalidArgument, {"send 1 to 4"}));
  const int before = OpenFds();
  ASSERT_TRUE(tokens.Deliver(a, Memfds(3), geteuid(), getpid(), now).ok());
  EXPECT_EQ(OpenFds(), before + 3);
  tokens.Expire(now + absl::Seconds(11));
  EXPECT_EQ(OpenFds(), before) << "expired tokens close their descriptors";
  EXPECT_EQ(tokens.pending(), 0);
  EXPECT_TRUE(HasStatus(tokens.Take(1, a, 0, now + absl::Seconds(11)),
                        absl::StatusCode::kNotFound, {}));
  const std::string b = *tokens.Issue(4, Self(), now);
  ASSERT_TRUE(tokens.Deliver(b, Memfds(1), geteuid(), getpid(), now).ok());
  tokens.DropSession(4);
  EXPECT_EQ(OpenFds(), before);
}

// A client of the channel that can also misbehave.
class FdChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat("/tmp/kvs-fdch-", getpid(), "-", counter_++, ".sock");
    FdChannelLimits limits;
    limits.timeout = absl::Milliseconds(300);
    FdTokenLimits token_limits;
    token_limits.max_fds_per_token = 4;
    tokens_ = std::make_unique<FdTokens>(token_limits);
    absl::StatusOr<std::unique_ptr<FdChannel>> channel =
        FdChannel::Start(path_, 0600, -1, *tokens_, limits);
    ASSERT_TRUE(channel.ok()) << channel.status();
    channel_ = *std::move(channel);
  }

  int Connect() const {
    const int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size());
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << std::strerror(errno);
    return fd;
  }

  // Sends `data` with `fds` (SCM_RIGHTS) and returns the reply's code and message.
  std::pair<int, std::string> Send(const std::string& data, const std::vector<int>& fds) const {
    const int fd = Connect();
    std::vector<char> control(CMSG_SPACE(sizeof(int) * std::max<size_t>(fds.size(), 1)));
    iovec iov{const_cast<char*>(data.data()), data.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fds.empty()) {
      msg.msg_control = control.data();
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    EXPECT_EQ(sendmsg(fd, &msg, 0), static_cast<ssize_t>(data.size())) << std::strerror(errno);
    return Read(fd);
  }

  static std::pair<int, std::string> Read(int fd) {
    char reply[512];
    const ssize_t n = recv(fd, reply, sizeof(reply), 0);
    close(fd);
    if (n < 4) return {-1, ""};
    uint32_t code = 0;
    std::memcpy(&code, reply, 4);
    return {static_cast<int>(code), std::string(reply + 4, n - 4)};
  }

  static std::string Message(const std::string& token, uint32_t count) {
    std::string m(kFdChannelMessageBytes, '\0');
    std::memcpy(m.data(), kFdChannelMagic, sizeof(kFdChannelMagic));
    std::memcpy(m.data() + 8, token.data(), kFdTokenBytes);
    std::memcpy(m.data() + 24, &count, 4);
    return m;
  }

  static int counter_;
  std::string path_;
  std::unique_ptr<FdTokens> tokens_;
  std::unique_ptr<FdChannel> channel_;
};
int FdChannelTest::counter_ = 0;

TEST_F(FdChannelTest, DescriptorsArriveUnderTheirTokenEvenWhenTheSenderClosesThemAtOnce) {
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "published with the requested mode";
  const std::string token = *tokens_->Issue(3, Self(), absl::Now());
  const int memfd = memfd_create("kvs-sent", MFD_CLOEXEC);
  ASSERT_EQ(ftruncate(memfd, 4096), 0);
  ASSERT_EQ(pwrite(memfd, "hello", 5, 0), 5);
  const auto [code, message] = Send(Message(token, 1), {memfd});
  close(memfd);  // the client lets go right after sending
  ASSERT_EQ(code, 0) << message;
  absl::StatusOr<UniqueFd> received = tokens_->Take(3, token, 0, absl::Now());
  ASSERT_TRUE(received.ok()) << received.status();
  char got[6] = {};
  EXPECT_EQ(pread(received->get(), got, 5, 0), 5);
  EXPECT_STREQ(got, "hello");
}

TEST_F(FdChannelTest, MalformedMessagesAreRefusedAndTheirDescriptorsClosed) {
  const std::string token = *tokens_->Issue(3, Self(), absl::Now());
  const int before = OpenFds();
  const int memfd = memfd_create("kvs-sent", MFD_CLOEXEC);
  // Too many descriptors for one message.
  EXPECT_EQ(Send(Message(token, 5), {memfd, memfd, memfd, memfd, memfd}).first,
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  // A count that does not match.
  EXPECT_EQ(Send(Message(token, 2), {memfd}).first,
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  // Too short, too long, wrong magic.
  EXPECT_EQ(Send(Message(token, 1).substr(0, 31), {memfd}).first,
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Send(Message(token, 1) + "x", {memfd}).first,
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  std::string wrong = Message(token, 1);
  wrong[0] = 'X';
  EXPECT_EQ(Send(wrong, {memfd}).first, static_cast<int>(absl::StatusCode::kInvalidArgument));
  // An unknown token.
  EXPECT_EQ(Send(Message(std::string(kFdTokenBytes, 'z'), 1), {memfd}).first,
            static_cast<int>(absl::StatusCode::kNotFound));
  close(memfd);
  // Every descriptor the channel received was closed again.
  for (int i = 0; i < 50 && OpenFds() != before; ++i) usleep(10000);
  EXPECT_EQ(OpenFds(), before);
  EXPECT_GE(channel_->refused(), 6u);
  // The token is still good for a well-formed message.
  const int good = memfd_create("kvs-sent", MFD_CLOEXEC);
  EXPECT_EQ(Send(Message(token, 1), {good}).first, 0);
  close(good);
}

TEST_F(FdChannelTest, CredentialsOtherThanDescriptorsAreRefused) {
  const std::string token = *tokens_->Issue(3, Self(), absl::Now());
  const int fd = Connect();
  const int on = 1;
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);
  const std::string data = Message(token, 0);
  ucred cred{getpid(), geteuid(), getegid()};
  char control[CMSG_SPACE(sizeof(cred))] = {};
  iovec iov{const_cast<char*>(data.data()), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_CREDENTIALS;
  c->cmsg_len = CMSG_LEN(sizeof(cred));
  std::memcpy(CMSG_DATA(c), &cred, sizeof(cred));
  ASSERT_EQ(sendmsg(fd, &msg, 0), static_cast<ssize_t>(data.size())) << std::strerror(errno);
  const auto [code, message] = Read(fd);
  EXPECT_EQ(code, static_cast<int>(absl::StatusCode::kInvalidArgument)) << message;
}

TEST_F(FdChannelTest, ASilentConnectionIsClosedAfterTheTimeout) {
  const int fd = Connect();
  const absl::Time start = absl::Now();
  const auto [code, message] = Read(fd);
  EXPECT_EQ(code, static_cast<int>(absl::StatusCode::kDeadlineExceeded)) << message;
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

}  // namespace
}  // namespace kvshuttle
