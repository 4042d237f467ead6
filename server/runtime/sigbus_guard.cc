// RunGuarded: a thread-local jump buffer armed around the copy; the SIGBUS handler jumps back
// to it when the fault happened on an armed thread and re-raises with the default action
// otherwise.
#include "server/runtime/sigbus_guard.h"

#include <csetjmp>
#include <csignal>
#include <cstring>
#include <mutex>

namespace kvshuttle {
namespace {

thread_local sigjmp_buf* armed = nullptr;
thread_local volatile uint64_t fault = 0;

void OnSigbus(int sig, siginfo_t* info, void*) {
  if (armed != nullptr) {
    fault = reinterpret_cast<uint64_t>(info->si_addr);
    siglongjmp(*armed, 1);
  }
  // Not ours: the default action (terminate with a core), as if there were no handler.
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

void InstallSigbusGuard() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action;
    std::memset(&action, 0, sizeof(action));
    action.sa_sigaction = &OnSigbus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, nullptr);
  });
}

bool RunGuarded(const std::function<void()>& work, uint64_t* fault_address) {
  InstallSigbusGuard();
  sigjmp_buf buffer;
  sigjmp_buf* const previous = armed;
  // savemask = 1: the signal mask is restored on the jump (SIGBUS is not blocked after it).
  if (sigsetjmp(buffer, 1) != 0) {
    armed = previous;
    if (fault_address != nullptr) *fault_address = fault;
    return false;
  }
  armed = &buffer;
  work();
  armed = previous;
  return true;
}

}  // namespace kvshuttle
