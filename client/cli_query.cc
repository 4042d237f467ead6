// Read-only commands: info, health, pools, sessions, stats.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli.h"
#include "core/status_macros.h"

namespace kvshuttle::cli {
namespace {

// Commands without flags of their own still reject stray arguments.
absl::Status NoArguments(absl::Span<const std::string> args) {
  ASSIGN_OR_RETURN(CommandArgs parsed, CommandArgs::Parse(args, {}, {}));
  if (!parsed.positional().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument \"", parsed.positional().front(), "\""));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> RunInfo(const CliOptions& options, absl::Span<const std::string> args) {
  RETURN_IF_ERROR(NoArguments(args));
  ASSIGN_OR_RETURN(auto client, ConnectFromOptions(options));
  ASSIGN_OR_RETURN(const v1::GetInfoResponse info, client->GetInfo());
  if (options.json) {
    PrintJson(info, std::cout);
    return 0;
  }
  const v1::Limits& limits = info.limits();
  std::cout << "version       " << info.version() << "\n"
            << "listen        " << info.listen_address() << "\n"
            << "draining      " << (info.draining() ? "yes" : "no") << "\n"
            << "cpu executor  " << (info.cpu_executor() ? "yes" : "no") << "\n"
            << "limits        sessions " << limits.max_sessions() << ", regions/session "
            << limits.max_regions_per_session() << ", block sets/session "
            << limits.max_block_sets_per_session() << ", jobs/batch "
            << limits.max_jobs_per_batch() << ", pairs/job " << limits.max_pairs_per_job()
            << ", queue " << limits.queue_capacity() << ", message "
            << BytesText(limits.max_message_bytes()) << ", lease " << limits.lease_seconds()
            << " s\n"
            << "per client    sessions " << limits.max_sessions_per_client()
            << ", connections " << limits.max_connections_per_uid() << " of "
            << limits.max_connections() << "\n"
            << "per session   queued tasks " << limits.session_queue_capacity()
            << ", blocked Waits " << limits.max_waits_per_session() << ", ids/Wait "
            << limits.max_wait_ids() << "\n"
            << "fd channel    " << (info.fd_socket().empty() ? "off" : info.fd_socket()) << "\n";
  if (!info.budgets().empty()) {
    // What requests may make the daemon allocate, and what they hold now (docs/security.md).
    std::cout << "\n";
    Table budgets({"BUDGET", "USED", "LIMIT", "USE", "PER SESSION"});
    for (const v1::BudgetUsage& b : info.budgets()) {
      const bool bytes = b.unit() == "bytes";
      auto amount = [bytes](int64_t v) {
        return bytes ? BytesText(static_cast<uint64_t>(v)) : absl::StrCat(v);
      };
      const double use = b.limit() > 0 ? 100.0 * static_cast<double>(b.used()) /
                                             static_cast<double>(b.limit())
                                       : 0.0;
      budgets.AddRow({b.name(), amount(b.used()), amount(b.limit()),
                      absl::StrFormat("%.1f%%", use),
                      b.session_limit() > 0 ? amount(b.session_limit()) : "-"});
    }
    budgets.Print(std::cout);
  }
  if (info.devices().empty()) {
    std::cout << "devices       none\n";
    return 0;
  }
  std::cout << "\n";
  Table table({"GPU", "UUID", "NAME", "MEMORY", "SMS", "QUEUED"});
  for (const v1::DeviceInfo& d : info.devices()) {
    table.AddRow({absl::StrCat(d.ordinal()), d.uuid(), d.name(),
                  BytesText(d.total_memory_bytes()), absl::StrCat(d.sm_count()),
                  absl::StrCat(d.queue_depth())});
  }
  table.Print(std::cout);
  return 0;
}

absl::StatusOr<int> RunHealth(const CliOptions& options, absl::Span<const std::string> args) {
  ASSIGN_OR_RETURN(CommandArgs parsed, CommandArgs::Parse(args, {"service"}, {}));
  if (!parsed.positional().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument \"", parsed.positional().front(), "\""));
  }
  ASSIGN_OR_RETURN(auto client, ConnectFromOptions(options));
  ASSIGN_OR_RETURN(const health_v1::HealthCheckResponse::ServingStatus status,
                   client->Health(parsed.Get("service")));
  if (options.json) {
    health_v1::HealthCheckResponse response;
    response.set_status(status);
    PrintJson(response, std::cout);
  } else {
    std::cout << health_v1::HealthCheckResponse::ServingStatus_Name(status) << "\n";
  }
  return status == health_v1::HealthCheckResponse::SERVING ? 0 : 2;
}

absl::StatusOr<int> RunPools(const CliOptions& options, absl::Span<const std::string> args) {
  RETURN_IF_ERROR(NoArguments(args));
  ASSIGN_OR_RETURN(auto client, ConnectFromOptions(options));
  ASSIGN_OR_RETURN(const v1::ListPoolsResponse pools, client->ListPools());
  if (options.json) {
    PrintJson(pools, std::cout);
    return 0;
  }
  Table table({"NAME", "LAYOUT", "SHAPE", "DTYPE", "MEMORY", "GPU", "BLOCKS", "IN_USE", "SIZE"});
  for (const v1::Pool& p : pools.pools()) {
    table.AddRow({p.name(), LayoutName(p.layout().kind()), ShapeText(p.layout().shape()),
                  DTypeText(p.layout().dtype()), MemoryText(p.memory()),
                  p.gpu_uuid().empty() ? "-" : p.gpu_uuid(), absl::StrCat(p.num_blocks()),
                  absl::StrCat(p.blocks_in_use()), BytesText(p.bytes())});
  }
  table.Print(std::cout);
  return 0;
}

absl::StatusOr<int> RunSessions(const CliOptions& options, absl::Span<const std::string> args) {
  RETURN_IF_ERROR(NoArguments(args));
  ASSIGN_OR_RETURN(auto client, ConnectFromOptions(options));
  ASSIGN_OR_RETURN(const v1::ListSessionsResponse sessions, client->ListSessions());
  if (options.json) {
    PrintJson(sessions, std::cout);
    return 0;
  }
  Table table({"CLIENT", "ATTACHED", "REGIONS", "BLOCK_SETS", "PENDING", "AGE"});
  for (const v1::SessionSummary& s : sessions.sessions()) {
    table.AddRow({s.client_name().empty() ? "-" : s.client_name(),
                  s.attached() ? "yes" : "no", absl::StrCat(s.regions()),
                  absl::StrCat(s.block_sets()), absl::StrCat(s.jobs_pending()),
                  absl::StrCat(s.age_seconds(), " s")});
  }
  table.Print(std::cout);
  return 0;
}

absl::StatusOr<int> RunStats(const CliOptions& options, absl::Span<const std::string> args) {
  RETURN_IF_ERROR(NoArguments(args));
  ASSIGN_OR_RETURN(auto client, ConnectFromOptions(options));
  ASSIGN_OR_RETURN(const v1::GetStatsResponse stats, client->GetStats());
  if (options.json) {
    PrintJson(stats, std::cout);
    return 0;
  }
  std::cout << "sessions        " << stats.sessions() << "\n"
            << "regions         " << stats.regions() << "\n"
            << "mapped          " << BytesText(stats.mapped_bytes()) << "\n"
            << "jobs done       " << stats.jobs_done() << "\n"
            << "jobs failed     " << stats.jobs_failed() << "\n"
            << "jobs cancelled  " << stats.jobs_cancelled() << "\n"
            << "bytes moved     " << BytesText(stats.bytes_moved()) << "\n";
  if (stats.executors().empty()) return 0;
  std::cout << "\n";
  Table table({"EXECUTOR", "QUEUED", "CAPACITY", "JOBS_DONE"});
  for (const v1::ExecutorStats& e : stats.executors()) {
    table.AddRow({e.name(), absl::StrCat(e.queue_depth()), absl::StrCat(e.queue_capacity()),
                  absl::StrCat(e.jobs_done())});
  }
  table.Print(std::cout);
  return 0;
}

}  // namespace kvshuttle::cli
