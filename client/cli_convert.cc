// convert: submits a SubmitBatchRequest written as protobuf JSON in a fresh session, waits for
// it and prints the results. Block set ids belong to the session that registered them, so the
// jobs of such a file name pools on both sides.
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli.h"
#include "core/status_macros.h"
#include "google/protobuf/util/json_util.h"

namespace kvshuttle::cli {
namespace {

absl::StatusOr<std::string> ReadInput(const std::string& path) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("--json: cannot open \"", path, "\""));
  std::ostringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

absl::Status CheckEndpoint(const v1::Endpoint& endpoint, absl::string_view field) {
  if (endpoint.target_case() == v1::Endpoint::kPool) return absl::OkStatus();
  if (endpoint.target_case() == v1::Endpoint::kBlockSetId) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".block_set_id: ", endpoint.block_set_id(),
        ": block set ids belong to the session that registered them and this command opens "
        "its own session; name a pool instead"));
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ": missing; set \"pool\""));
}

}  // namespace

absl::StatusOr<int> RunConvert(const CliOptions& options, absl::Span<const std::string> args) {
  ASSIGN_OR_RETURN(CommandArgs parsed, CommandArgs::Parse(args, {"json", "wait"}, {}));
  if (!parsed.positional().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument \"", parsed.positional().front(), "\""));
  }
  ASSIGN_OR_RETURN(const std::string path, parsed.Require("json"));
  ASSIGN_OR_RETURN(const uint32_t wait_seconds, parsed.GetUint32("wait", 60, 1, 86400));
  ASSIGN_OR_RETURN(const std::string text, ReadInput(path));

  v1::SubmitBatchRequest request;
  const auto json_status = google::protobuf::util::JsonStringToMessage(text, &request);
  if (!json_status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--json ", path, ": not a SubmitBatchRequest: ", json_status.ToString()));
  }
  if (request.jobs().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--json ", path, ": jobs is empty"));
  }
  for (int i = 0; i < request.jobs_size(); ++i) {
    RETURN_IF_ERROR(CheckEndpoint(request.jobs(i).src(), absl::StrCat("jobs[", i, "].src")));
    RETURN_IF_ERROR(CheckEndpoint(request.jobs(i).dst(), absl::StrCat("jobs[", i, "].dst")));
  }

  ASSIGN_OR_RETURN(auto client, ConnectFromOptions(options));
  ASSIGN_OR_RETURN(auto session, Session::Open(*client, "kvshuttle convert", /*attach=*/true));
  ASSIGN_OR_RETURN(const v1::SubmitBatchResponse submitted, session->SubmitBatch(request));
  const std::vector<uint64_t> ids(submitted.job_ids().begin(), submitted.job_ids().end());
  ASSIGN_OR_RETURN(const v1::WaitResponse waited,
                   session->Wait(ids, absl::Seconds(wait_seconds)));

  bool all_ok = waited.all_done();
  for (const v1::JobResult& r : waited.results()) all_ok = all_ok && r.state() == v1::JOB_DONE;
  if (options.json) {
    PrintJson(waited, std::cout);
    return all_ok ? 0 : 1;
  }
  Table table({"JOB", "STATE", "EXECUTOR", "BACKEND", "MiB", "GB/s", "QUEUE_MS", "RUN_MS",
               "MESSAGE"});
  for (const v1::JobResult& r : waited.results()) {
    const double gbps = r.run_seconds() > 0 ? r.bytes() / r.run_seconds() / 1e9 : 0;
    table.AddRow({absl::StrCat(r.job_id()), v1::JobState_Name(r.state()),
                  r.executor().empty() ? "-" : r.executor(), BackendText(r.backend()),
                  absl::StrFormat("%.2f", r.bytes() / 1048576.0),
                  r.run_seconds() > 0 ? absl::StrFormat("%.1f", gbps) : "-",
                  absl::StrFormat("%.3f", r.queue_seconds() * 1e3),
                  absl::StrFormat("%.3f", r.run_seconds() * 1e3), r.message()});
  }
  table.Print(std::cout);
  if (!waited.all_done()) {
    std::cout << "convert: not all jobs finished within " << wait_seconds << " s\n";
  }
  return all_ok ? 0 : 1;
}

}  // namespace kvshuttle::cli
