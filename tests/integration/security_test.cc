// Security (issue #7, item 6; docs/security.md): the unix socket's mode and group, TLS and mTLS
// on the TCP port (certificates made here with openssl), plaintext TCP kept on loopback, IPC
// handle bytes kept out of the logs, and the quotas not covered by flood_test.cc with their
// codes, messages and defaults.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/status_macros.h"
#include "proto/proto_convert.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/it_util.h"

namespace kvshuttle::it {
namespace {

using absl::StatusCode;

// Prints the daemon's output when the test failed.
class SecurityTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && daemon_ != nullptr) {
      std::printf("--- kvshuttled output ---\n%s\n", daemon_->Stderr().c_str());
    }
  }
  void StartDaemon(DaemonConfig config) {
    absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon = DaemonProcess::Start(std::move(config));
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
  }
  // The host:port of the daemon's TCP listener, from its "serving on unix:... and HOST:PORT"
  // line. That line comes right after health turns SERVING (what Start waits for), so the log
  // is polled for up to 10 s (a loaded host can be slow).
  std::string TcpAddress() const {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (true) {
      const std::string out = daemon_->Stderr();
      const size_t serving = out.find("serving on unix:");
      const size_t line_end = serving == std::string::npos ? serving : out.find('\n', serving);
      if (line_end != std::string::npos) {
        const size_t and_pos = out.find(" and ", serving);
        if (and_pos == std::string::npos || and_pos > line_end) return "";
        const size_t end = out.find_first_of(" \"\n", and_pos + 5);
        return out.substr(and_pos + 5, end - and_pos - 5);
      }
      if (absl::Now() > deadline) return "";
      absl::SleepFor(absl::Milliseconds(10));
    }
  }

  std::unique_ptr<DaemonProcess> daemon_;
};

// ---------------------------------------------------------------------------------------------
// The unix socket

// A group this process may give a file: "daemon" when running as root, else its own.
std::optional<std::pair<std::string, gid_t>> SomeOtherGroup() {
  if (::geteuid() == 0) {
    for (const char* name : {"daemon", "nogroup", "users"}) {
      if (const group* g = ::getgrnam(name); g != nullptr && g->gr_gid != ::getegid()) {
        return std::make_pair(std::string(name), g->gr_gid);
      }
    }
    return std::nullopt;
  }
  const group* own = ::getgrgid(::getegid());
  if (own == nullptr) return std::nullopt;
  return std::make_pair(std::string(own->gr_name), own->gr_gid);
}

struct stat StatOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

TEST_F(SecurityTest, SocketModeAndGroupAreApplied) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({}));
  struct stat st = StatOf(daemon_->socket_path());
  EXPECT_EQ(st.st_mode & 07777, 0660u) << "default mode";
  EXPECT_EQ(st.st_gid, ::getegid()) << "default group: the daemon's";

  const std::optional<std::pair<std::string, gid_t>> group = SomeOtherGroup();
  if (!group.has_value()) GTEST_SKIP() << "no group to give the socket";
  ASSERT_NO_FATAL_FAILURE(
      StartDaemon(WithFlags({"--socket_mode=0640", "--socket_group=" + group->first})));
  st = StatOf(daemon_->socket_path());
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_gid, group->second) << "by name";
  EXPECT_TRUE(absl::StrContains(daemon_->Stderr(), absl::StrCat("socket_group=", group->second)));
  KVS_ASSERT_OK(daemon_->client().GetInfo());

  ASSERT_NO_FATAL_FAILURE(StartDaemon(
      WithFlags({"--socket_mode=0600", absl::StrCat("--socket_group=", group->second)})));
  st = StatOf(daemon_->socket_path());
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_gid, group->second) << "by number";
}

// Who may connect, as the kernel enforces it: a uid in the socket's group may, one outside it
// may not (run as root, dropping to uid 65534 with setpriv).
TEST_F(SecurityTest, OnlyTheSocketGroupMayConnect) {
  if (::geteuid() != 0 || ::access("/usr/bin/setpriv", X_OK) != 0) {
    GTEST_SKIP() << "needs root and /usr/bin/setpriv";
  }
  const std::optional<std::pair<std::string, gid_t>> group = SomeOtherGroup();
  if (!group.has_value()) GTEST_SKIP() << "no group to give the socket";
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags({"--socket_group=" + group->first})));
  const auto health_as_nobody = [&](const std::string& groups_flag) {
    return RunCommand({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", groups_flag,
                       KVS_CLI_PATH, "--socket", daemon_->socket_path(), "--timeout", "2",
                       "health"},
                      absl::Seconds(20));
  };
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult member,
                           health_as_nobody(absl::StrCat("--groups=", group->second)));
  EXPECT_TRUE(member.exited_ok()) << member.output;
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult outsider, health_as_nobody("--clear-groups"));
  EXPECT_FALSE(outsider.exited_ok()) << outsider.output;
  EXPECT_TRUE(absl::StrContains(outsider.output, "UNAVAILABLE")) << outsider.output;
}

TEST_F(SecurityTest, UnknownSocketGroupStopsStartup) {
  const std::string path = UniqueTmpPath(".sock");
  KVS_ASSERT_OK_AND_ASSIGN(
      CommandResult result,
      RunCommand({KVS_DAEMON_PATH, "--listen=unix:" + path, "--gpus=false",
                  "--config=", "--metrics_address=", "--socket_group=kvs-no-such-group"},
                 absl::Seconds(10)));
  EXPECT_EQ(WEXITSTATUS(result.wait_status), 2) << result.output;
  EXPECT_TRUE(absl::StrContains(result.output,
                                "--socket_group=\"kvs-no-such-group\": neither a "
                                "group name nor a numeric gid"))
      << result.output;
  struct stat st {};
  EXPECT_NE(::lstat(path.c_str(), &st), 0) << "a socket was created anyway";
}

// ---------------------------------------------------------------------------------------------
// TCP: loopback only in plaintext, TLS, mTLS

absl::StatusOr<CommandResult> RunDaemonOnce(const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {KVS_DAEMON_PATH, "--listen=unix:" + UniqueTmpPath(".sock"),
                                   "--gpus=false", "--config=", "--metrics_address="};
  argv.insert(argv.end(), flags.begin(), flags.end());
  return RunCommand(argv, absl::Seconds(10));
}

TEST_F(SecurityTest, PlaintextTcpOffLoopbackIsRefusedUnlessAllowed) {
  for (const std::string& tcp :
       {std::string("0.0.0.0:0"), std::string(":0"), std::string("[::]:0")}) {
    KVS_ASSERT_OK_AND_ASSIGN(CommandResult refused, RunDaemonOnce({"--tcp=" + tcp}));
    EXPECT_EQ(WEXITSTATUS(refused.wait_status), 2) << refused.output;
    EXPECT_TRUE(absl::StrContains(refused.output, absl::StrCat("--tcp=\"", tcp,
                                                               "\": not a loopback address, and "
                                                               "there is no TLS")))
        << refused.output;
  }
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult malformed, RunDaemonOnce({"--tcp=9460"}));
  EXPECT_EQ(WEXITSTATUS(malformed.wait_status), 2) << malformed.output;
  EXPECT_TRUE(absl::StrContains(malformed.output, "--tcp=\"9460\": not host:port"))
      << malformed.output;

  // Loopback is fine in plaintext; elsewhere only when asked for explicitly.
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags({"--tcp=127.0.0.1:0"})));
  const std::string loopback = TcpAddress();
  ASSERT_TRUE(absl::StartsWith(loopback, "127.0.0.1:")) << daemon_->Stderr();
  EXPECT_TRUE(absl::StrContains(daemon_->Stderr(), "tcp_security=plaintext"));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> tcp,
                           Client::Connect(loopback, absl::Seconds(5)));
  KVS_ASSERT_OK(tcp->GetInfo());
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags({"--tcp=0.0.0.0:0", "--allow_insecure_tcp"})));
  const std::string everywhere = TcpAddress();
  ASSERT_TRUE(absl::StartsWith(everywhere, "0.0.0.0:")) << daemon_->Stderr();
  KVS_ASSERT_OK_AND_ASSIGN(
      tcp, Client::Connect(absl::StrCat("127.0.0.1", everywhere.substr(everywhere.find(':'))),
                           absl::Seconds(5)));
  KVS_ASSERT_OK(tcp->GetInfo());
}

TEST_F(SecurityTest, TlsFlagsMustComeTogetherAndWithTcp) {
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{"--tcp=127.0.0.1:0", "--tls_cert=/x.pem"}, "--tls_cert=\"/x.pem\": needs --tls_key"},
           {{"--tcp=127.0.0.1:0", "--tls_key=/x.key"}, "--tls_key=\"/x.key\": needs --tls_cert"},
           {{"--tcp=127.0.0.1:0", "--tls_client_ca=/ca.pem"},
            "--tls_client_ca=\"/ca.pem\": needs --tls_cert and --tls_key"},
           {{"--tls_cert=/x.pem", "--tls_key=/x.key"}, "--tls_cert=\"/x.pem\": TLS is for --tcp"},
       }) {
    KVS_ASSERT_OK_AND_ASSIGN(CommandResult result, RunDaemonOnce(c.flags));
    EXPECT_EQ(WEXITSTATUS(result.wait_status), 2) << result.output;
    EXPECT_TRUE(absl::StrContains(result.output, c.message)) << result.output;
  }
  // Files that cannot be read, or hold no PEM, stop startup (status 1) naming flag and file.
  const std::string not_pem = UniqueTmpPath(".pem");
  std::ofstream(not_pem) << "not a certificate\n";
  KVS_ASSERT_OK_AND_ASSIGN(
      CommandResult result,
      RunDaemonOnce({"--tcp=127.0.0.1:0", "--tls_cert=" + not_pem, "--tls_key=/nonexistent.key"}));
  EXPECT_EQ(WEXITSTATUS(result.wait_status), 1) << result.output;
  EXPECT_TRUE(
      absl::StrContains(result.output, absl::StrCat("--tls_cert=", not_pem, ": no PEM block")))
      << result.output;
  std::filesystem::remove(not_pem);
}

// Test certificates, made once per run with openssl: two CAs, a server certificate for
// 127.0.0.1/localhost and client certificates signed by each CA.
class Certificates {
 public:
  static absl::StatusOr<std::unique_ptr<Certificates>> Make() {
    std::unique_ptr<Certificates> c(new Certificates(UniqueTmpPath(".certs")));
    std::filesystem::create_directories(c->dir_);
    std::string openssl;
    for (const char* candidate : {"/usr/bin/openssl", "/usr/local/bin/openssl", "/bin/openssl"}) {
      if (::access(candidate, X_OK) == 0) openssl = candidate;
    }
    if (openssl.empty()) return absl::UnavailableError("openssl is not installed");
    const std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt",
                                         "ec_paramgen_curve:prime256v1", "-nodes"};
    for (const char* ca : {"ca", "other-ca"}) {
      std::vector<std::string> argv = {openssl,
                                       "req",
                                       "-x509",
                                       "-days",
                                       "2",
                                       "-subj",
                                       absl::StrCat("/CN=kvshuttle test ", ca),
                                       "-addext",
                                       "basicConstraints=critical,CA:TRUE",
                                       "-addext",
                                       "keyUsage=critical,keyCertSign,cRLSign",
                                       "-keyout",
                                       c->Path(ca, "key"),
                                       "-out",
                                       c->Path(ca, "pem")};
      argv.insert(argv.begin() + 2, ec.begin(), ec.end());
      RETURN_IF_ERROR(Run(argv));
    }
    struct Leaf {
      const char* name;
      const char* ca;
      const char* extensions;
    };
    int serial = 100;
    for (const Leaf& leaf : {Leaf{"server", "ca",
                                  "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                  "basicConstraints=CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature,keyEncipherment\n"
                                  "extendedKeyUsage=serverAuth\n"},
                             Leaf{"client", "ca",
                                  "basicConstraints=CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature\n"
                                  "extendedKeyUsage=clientAuth\n"},
                             Leaf{"other-client", "other-ca",
                                  "basicConstraints=CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature\n"
                                  "extendedKeyUsage=clientAuth\n"}}) {
      std::ofstream(c->Path(leaf.name, "ext")) << leaf.extensions;
      std::vector<std::string> request = {openssl,   "req",
                                          "-subj",   absl::StrCat("/CN=kvshuttle test ", leaf.name),
                                          "-keyout", c->Path(leaf.name, "key"),
                                          "-out",    c->Path(leaf.name, "csr")};
      request.insert(request.begin() + 2, ec.begin(), ec.end());
      RETURN_IF_ERROR(Run(request));
      RETURN_IF_ERROR(Run({openssl, "x509", "-req", "-days", "2", "-in", c->Path(leaf.name, "csr"),
                           "-CA", c->Path(leaf.ca, "pem"), "-CAkey", c->Path(leaf.ca, "key"),
                           "-set_serial", absl::StrCat(serial++), "-extfile",
                           c->Path(leaf.name, "ext"), "-out", c->Path(leaf.name, "pem")}));
    }
    return c;
  }
  ~Certificates() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string Path(absl::string_view name, absl::string_view ext) const {
    return absl::StrCat(dir_, "/", name, ".", ext);
  }
  std::string Read(absl::string_view name, absl::string_view ext) const {
    std::ifstream in(Path(name, ext));
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // TLS options trusting `ca`, optionally presenting `client`'s certificate.
  TlsOptions Tls(absl::string_view ca, absl::string_view client = "") const {
    TlsOptions tls;
    tls.root_certs = Read(ca, "pem");
    if (!client.empty()) {
      tls.cert_chain = Read(client, "pem");
      tls.private_key = Read(client, "key");
    }
    return tls;
  }

 private:
  explicit Certificates(std::string dir) : dir_(std::move(dir)) {}
  static absl::Status Run(const std::vector<std::string>& argv) {
    absl::StatusOr<CommandResult> result = RunCommand(argv, absl::Seconds(30));
    if (!result.ok()) return result.status();
    if (!result->exited_ok()) {
      return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), ": ",
                                              DescribeWaitStatus(result->wait_status), "\n",
                                              result->output));
    }
    return absl::OkStatus();
  }
  std::string dir_;
};

class TlsTest : public SecurityTest {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<Certificates>> made = Certificates::Make();
    if (made.ok()) {
      certs_ = made->release();
    } else {
      skip_reason_ = new std::string(made.status().ToString());
    }
  }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }
  void SetUp() override {
    if (certs_ == nullptr) GTEST_SKIP() << "no test certificates: " << *skip_reason_;
  }
  std::vector<std::string> TlsFlags(bool mutual) const {
    std::vector<std::string> flags = {"--tcp=127.0.0.1:0",
                                      "--tls_cert=" + certs_->Path("server", "pem"),
                                      "--tls_key=" + certs_->Path("server", "key"),
                                      // Over TCP the daemon knows no uid: the conversions here
                                      // lend shm objects of a trusted group (this process's).
                                      absl::StrCat("--shm_trust_group=", getegid())};
    if (mutual) flags.push_back("--tls_client_ca=" + certs_->Path("ca", "pem"));
    return flags;
  }
  // The connection is refused: Connect fails, or (TLS 1.3 lets a client finish its handshake
  // before the server checks the client's certificate) the first call fails UNAVAILABLE.
  ::testing::AssertionResult Refused(const std::optional<TlsOptions>& tls) const {
    const std::string target = TcpAddress();
    absl::StatusOr<std::unique_ptr<Client>> client =
        tls.has_value() ? Client::Connect(target, absl::Seconds(3), *tls)
                        : Client::Connect(target, absl::Seconds(3));
    if (!client.ok()) {
      if (client.status().code() == StatusCode::kUnavailable) return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << "Connect: " << client.status();
    }
    (*client)->set_call_timeout(absl::Seconds(3));
    absl::StatusOr<v1::GetInfoResponse> info = (*client)->GetInfo();
    if (info.ok()) return ::testing::AssertionFailure() << "connected and GetInfo answered";
    if (info.status().code() != StatusCode::kUnavailable) {
      return ::testing::AssertionFailure() << "GetInfo: " << info.status();
    }
    return ::testing::AssertionSuccess();
  }

  static Certificates* certs_;
  static std::string* skip_reason_;
};

Certificates* TlsTest::certs_ = nullptr;
std::string* TlsTest::skip_reason_ = nullptr;

// A conversion over the connection: a session, host memory, one job, checked byte for byte.
void ConvertOver(Client& client) {
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(client, "it-tls", /*attach=*/true));
  const LayoutDesc nhd = MakeLayout(LayoutKind::kNHDStack, {2, 2, 8, 2, 8});
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {2, 2, 8, 2, 8});
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet src,
                           MakeHostBlockSet(*session, nhd, 2, Placement::kStrided, 1));
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet dst,
                           MakeHostBlockSet(*session, uni, 2, Placement::kExplicit, 2));
  const TransferSpec spec = WholeBlocks(nhd, uni);
  KVS_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> expected,
                           ExpectedAfter(src, dst, spec, IdentityPairs(2)));
  KVS_ASSERT_OK_AND_ASSIGN(
      v1::WaitResponse done,
      RunBatch(*session, {MakeJob(src.endpoint(), dst.endpoint(), spec, IdentityPairs(2))}));
  ASSERT_EQ(done.results(0).state(), v1::JOB_DONE) << done.DebugString();
  EXPECT_TRUE(BytesEqual(dst.data(), expected));
}

TEST_F(TlsTest, TlsPortServesTrustingClientsAndRefusesPlaintextAndStrangers) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags(TlsFlags(/*mutual=*/false))));
  ASSERT_FALSE(TcpAddress().empty()) << daemon_->Stderr();
  EXPECT_TRUE(absl::StrContains(daemon_->Stderr(), "tcp_security=tls"));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client,
                           Client::Connect(TcpAddress(), absl::Seconds(5), certs_->Tls("ca")));
  ASSERT_NO_FATAL_FAILURE(ConvertOver(*client));
  // A client certificate is not needed (nor refused) without --tls_client_ca.
  KVS_ASSERT_OK_AND_ASSIGN(
      client, Client::Connect(TcpAddress(), absl::Seconds(5), certs_->Tls("ca", "client")));
  KVS_ASSERT_OK(client->GetInfo());

  EXPECT_TRUE(Refused(std::nullopt)) << "plaintext client on the TLS port";
  EXPECT_TRUE(Refused(certs_->Tls("other-ca"))) << "client trusting another CA";
  TlsOptions wrong_name = certs_->Tls("ca");
  wrong_name.server_name = "not-the-daemon.example";
  EXPECT_TRUE(Refused(wrong_name)) << "certificate checked for another name";
  // The unix socket is unaffected (DaemonProcess talks over it).
  KVS_ASSERT_OK(daemon_->client().GetInfo());
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateSignedByTheClientCa) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags(TlsFlags(/*mutual=*/true))));
  ASSERT_FALSE(TcpAddress().empty()) << daemon_->Stderr();
  EXPECT_TRUE(absl::StrContains(daemon_->Stderr(), "tcp_security=mtls"));
  KVS_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Client> client,
      Client::Connect(TcpAddress(), absl::Seconds(5), certs_->Tls("ca", "client")));
  ASSERT_NO_FATAL_FAILURE(ConvertOver(*client));

  EXPECT_TRUE(Refused(certs_->Tls("ca"))) << "no client certificate";
  EXPECT_TRUE(Refused(certs_->Tls("ca", "other-client"))) << "client certificate of another CA";
  EXPECT_TRUE(Refused(std::nullopt)) << "plaintext client";
  KVS_ASSERT_OK_AND_ASSIGN(auto health, daemon_->client().Health());
  EXPECT_EQ(health, health_v1::HealthCheckResponse::SERVING);
}

TEST_F(TlsTest, CliSpeaksTlsAndMutualTls) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(WithFlags(TlsFlags(/*mutual=*/true))));
  const std::string target = TcpAddress();
  KVS_ASSERT_OK_AND_ASSIGN(
      CommandResult ok,
      RunCommand(
          {KVS_CLI_PATH, "--target", target, "--tls_ca", certs_->Path("ca", "pem"), "--tls_cert",
           certs_->Path("client", "pem"), "--tls_key", certs_->Path("client", "key"), "health"},
          absl::Seconds(20)));
  EXPECT_TRUE(ok.exited_ok()) << ok.output;
  EXPECT_TRUE(absl::StrContains(ok.output, "SERVING")) << ok.output;
  KVS_ASSERT_OK_AND_ASSIGN(CommandResult refused,
                           RunCommand({KVS_CLI_PATH, "--target", target, "--timeout", "2",
                                       "--tls_ca", certs_->Path("ca", "pem"), "health"},
                                      absl::Seconds(20)));
  EXPECT_FALSE(refused.exited_ok()) << refused.output;
}

// ---------------------------------------------------------------------------------------------
// Logs

// Every form in which `bytes` could show up in a log line.
std::vector<std::string> Encodings(const std::string& bytes) {
  const std::string hex = absl::BytesToHexString(bytes);
  return {bytes,
          hex,
          absl::AsciiStrToUpper(hex),
          absl::Base64Escape(bytes),
          absl::WebSafeBase64Escape(bytes),
          absl::CHexEscape(bytes)};
}

// IPC handles are capabilities: whoever has the bytes can map the exporter's memory. Errors
// about them, at debug level in both formats, must never carry them.
TEST_F(SecurityTest, IpcHandleBytesNeverReachTheLogs) {
  // A printable handle (any escaping keeps the marker visible) and a binary one.
  const std::string printable = "kvs-secret-ipc-handle:0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
  ASSERT_EQ(printable.size(), 64u);
  std::string binary(64, '\0');
  FillRandom(binary.data(), binary.size(), 0x5ec7e7);
  for (const char* format : {"text", "json"}) {
    SCOPED_TRACE(format);
    ASSERT_NO_FATAL_FAILURE(
        StartDaemon(WithFlags({absl::StrCat("--log_format=", format), "--log_level=debug"})));
    KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                             Session::Open(daemon_->client(), "it-logs", /*attach=*/true));
    for (const std::string& handle : {printable, binary}) {
      const std::string uuid = "GPU-00000000-0000-0000-0000-000000000000";
      EXPECT_TRUE(HasStatus(session->RegisterCudaIpcRegion(handle, uuid, 0, 4096),
                            StatusCode::kFailedPrecondition, {}));
      EXPECT_TRUE(HasStatus(session->RegisterCudaIpcRegion(handle.substr(0, 63), uuid, 0, 4096),
                            StatusCode::kInvalidArgument, {"63 bytes"}));
      EXPECT_TRUE(HasStatus(session->RegisterCudaIpcRegion(handle + "!", uuid, 0, 4096),
                            StatusCode::kInvalidArgument, {"65 bytes"}));
      EXPECT_TRUE(HasStatus(session->RegisterCudaIpcRegion(handle, uuid, 0, 0),
                            StatusCode::kInvalidArgument, {}));
      EXPECT_TRUE(HasStatus(session->RegisterCudaIpcRegion(handle, uuid, ~uint64_t{0}, 2),
                            StatusCode::kOutOfRange, {}));
      // As a completion event handle of a job (refused: the job would run on the CPU).
      const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {1, 1, 4, 1, 8});
      KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet set,
                               MakeHostBlockSet(*session, uni, 1, Placement::kStrided, 1));
      v1::SubmitBatchRequest batch;
      v1::Job* job = batch.add_jobs();
      *job = MakeJob(set.endpoint(), set.endpoint(), WholeBlocks(uni, uni), IdentityPairs(1));
      job->mutable_completion_event()->set_handle(handle);
      EXPECT_TRUE(HasStatus(session->SubmitBatch(batch), StatusCode::kFailedPrecondition, {}));
      job->mutable_completion_event()->set_handle(handle.substr(1));
      EXPECT_TRUE(HasStatus(session->SubmitBatch(batch), StatusCode::kInvalidArgument, {}));
    }
    session.reset();
    // Every RPC's debug line is written before its answer is sent: the log is complete.
    const std::string log = daemon_->Stderr();
    // The refusals were logged (debug "rpc" lines with their codes): the check below means
    // something.
    EXPECT_TRUE(absl::StrContains(log, "FAILED_PRECONDITION")) << log;
    EXPECT_TRUE(absl::StrContains(log, "63 bytes")) << log;
    EXPECT_FALSE(absl::StrContains(log, "kvs-secret")) << log;
    for (const std::string& handle : {printable, binary}) {
      for (size_t length : {size_t{64}, size_t{16}, size_t{8}}) {
        for (const std::string& form : Encodings(handle.substr(0, length))) {
          if (form.size() < 8) continue;
          EXPECT_FALSE(absl::StrContains(log, form))
              << "handle bytes (" << length << " bytes, as \"" << absl::CHexEscape(form)
              << "\") in the log:\n"
              << log;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Limits (sessions, regions per session, jobs per batch, pairs per job, message size and the
// queue are in flood_test.cc)

TEST_F(SecurityTest, BlockSetAndPoolQuotasAreResourceExhausted) {
  ASSERT_NO_FATAL_FAILURE(
      StartDaemon(WithFlags({"--max_block_sets_per_session=3", "--max_pools=2"})));
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session,
                           Session::Open(daemon_->client(), "it-quotas", /*attach=*/true));
  const LayoutDesc uni = MakeLayout(LayoutKind::kUniversal, {1, 2, 4, 2, 8});
  KVS_ASSERT_OK_AND_ASSIGN(HostBlockSet set,
                           MakeHostBlockSet(*session, uni, 2, Placement::kStrided, 1));
  v1::StridedPlacement placement;
  v1::SlotBase* slot = placement.add_slots();
  slot->set_region_id(set.region_id);
  placement.set_block_stride(0);
  KVS_ASSERT_OK(session->RegisterBlockSet(LayoutToProto(uni), 1, placement));
  KVS_ASSERT_OK(session->RegisterBlockSet(LayoutToProto(uni), 1, placement));
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(HasStatus(session->RegisterBlockSet(LayoutToProto(uni), 1, placement),
                          StatusCode::kResourceExhausted,
                          {"block_sets: the session holds 3 of at most 3 block sets"}));
  }
  // The quota is per session.
  KVS_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> other,
                           Session::Open(daemon_->client(), "it-quotas-2", /*attach=*/false));
  KVS_ASSERT_OK(MakeHostBlockSet(*other, uni, 1, Placement::kStrided, 2).status());

  KVS_ASSERT_OK(session->CreatePool("it-q1", LayoutToProto(uni), 2, v1::MEMORY_HOST));
  KVS_ASSERT_OK(other->CreatePool("it-q2", LayoutToProto(uni), 2, v1::MEMORY_HOST));
  EXPECT_TRUE(HasStatus(session->CreatePool("it-q3", LayoutToProto(uni), 2, v1::MEMORY_HOST),
                        StatusCode::kResourceExhausted, {"pools: 2 of at most 2 exist"}));
  KVS_ASSERT_OK(session->DestroyPool("it-q1"));
  KVS_ASSERT_OK(session->CreatePool("it-q3", LayoutToProto(uni), 2, v1::MEMORY_HOST));
  KVS_ASSERT_OK_AND_ASSIGN(auto health, daemon_->client().Health());
  EXPECT_EQ(health, health_v1::HealthCheckResponse::SERVING);
}

// The defaults bound every quota and keep the daemon off the network.
TEST_F(SecurityTest, DefaultsAreTheDocumentedSafeOnes) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon({}));
  KVS_ASSERT_OK_AND_ASSIGN(v1::GetInfoResponse info, daemon_->client().GetInfo());
  const v1::Limits& l = info.limits();
  EXPECT_EQ(l.max_sessions(), 256u);
  EXPECT_EQ(l.max_regions_per_session(), 1024u);
  EXPECT_EQ(l.max_block_sets_per_session(), 1024u);
  EXPECT_EQ(l.max_jobs_per_batch(), 4096u);
  EXPECT_EQ(l.max_pairs_per_job(), 65536u);
  EXPECT_EQ(l.queue_capacity(), 8192u);
  EXPECT_EQ(l.max_message_bytes(), uint64_t{64} << 20);
  EXPECT_EQ(l.lease_seconds(), 30u);
  EXPECT_EQ(info.listen_address(), daemon_->target()) << "one unix socket";
  EXPECT_TRUE(absl::StrContains(daemon_->Stderr(), "tcp_security=off")) << daemon_->Stderr();
  EXPECT_TRUE(absl::StrContains(daemon_->Stderr(), "socket_mode=0660")) << daemon_->Stderr();
}

}  // namespace
}  // namespace kvshuttle::it
