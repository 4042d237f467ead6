// Pool administration: pool create, pool destroy. Pools are daemon-owned and outlive the
// short session these commands open.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "client/cli.h"
#include "core/status_macros.h"

namespace kvshuttle::cli {
namespace {

// The single positional NAME of a pool command.
absl::StatusOr<std::string> PoolName(const CommandArgs& parsed) {
  if (parsed.positional().size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected exactly one pool NAME, got ", parsed.positional().size(), " arguments"));
  }
  return parsed.positional().front();
}

}  // namespace

absl::StatusOr<int> RunPoolCreate(const CliOptions& options, absl::Span<const std::string> args) {
  ASSIGN_OR_RETURN(CommandArgs parsed,
                   CommandArgs::Parse(args, {"layout", "shape", "dtype", "blocks", "memory", "gpu"},
                                      {}));
  ASSIGN_OR_RETURN(const std::string name, PoolName(parsed));
  ASSIGN_OR_RETURN(const std::string layout_kind, parsed.Require("layout"));
  ASSIGN_OR_RETURN(const std::string shape_text, parsed.Require("shape"));
  ASSIGN_OR_RETURN(const v1::BlockShape shape, ParseShape(shape_text));
  ASSIGN_OR_RETURN(const v1::Layout layout,
                   MakeLayout(layout_kind, shape, parsed.Get("dtype", "bf16")));
  if (!parsed.Has("blocks")) return absl::InvalidArgumentError("--blocks is required");
  ASSIGN_OR_RETURN(const uint32_t blocks, parsed.GetUint32("blocks", 0, 1, UINT32_MAX));
  ASSIGN_OR_RETURN(const v1::MemoryKind memory, ParseMemoryKind(parsed.Get("memory", "device")));
  const std::string gpu = parsed.Get("gpu");
  if (!gpu.empty() && memory != v1::MEMORY_DEVICE) {
    return absl::InvalidArgumentError("--gpu applies to --memory device only");
  }

  ASSIGN_OR_RETURN(auto client, ConnectFromOptions(options));
  ASSIGN_OR_RETURN(auto session, Session::Open(*client, "kvshuttle pool create", false));
  ASSIGN_OR_RETURN(const v1::CreatePoolResponse created,
                   session->CreatePool(name, layout, blocks, memory, gpu));
  if (options.json) {
    PrintJson(created, std::cout);
    return 0;
  }
  const v1::Pool& p = created.pool();
  std::cout << "created pool " << p.name() << ": " << LayoutName(p.layout().kind()) << " "
            << ShapeText(p.layout().shape()) << " " << DTypeText(p.layout().dtype()) << ", "
            << p.num_blocks() << " blocks, " << BytesText(p.bytes()) << " of "
            << MemoryText(p.memory()) << " memory"
            << (p.gpu_uuid().empty() ? "" : absl::StrCat(" on ", p.gpu_uuid())) << "\n";
  return 0;
}

absl::StatusOr<int> RunPoolDestroy(const CliOptions& options,
                                   absl::Span<const std::string> args) {
  ASSIGN_OR_RETURN(CommandArgs parsed, CommandArgs::Parse(args, {}, {}));
  ASSIGN_OR_RETURN(const std::string name, PoolName(parsed));
  ASSIGN_OR_RETURN(auto client, ConnectFromOptions(options));
  ASSIGN_OR_RETURN(auto session, Session::Open(*client, "kvshuttle pool destroy", false));
  ASSIGN_OR_RETURN(const v1::DestroyPoolResponse destroyed, session->DestroyPool(name));
  if (options.json) {
    PrintJson(destroyed, std::cout);
  } else {
    std::cout << "destroyed pool " << name << "\n";
  }
  return 0;
}

}  // namespace kvshuttle::cli
