// Copies that survive memory vanishing under them. A client can truncate a named shm object it
// lent; the next access to the missing pages raises SIGBUS, which would kill the daemon. The
// CPU executor runs every copy through RunGuarded: a SIGBUS inside it ends that copy (the job
// fails with a clear error) and the daemon goes on. A SIGBUS anywhere else keeps its default
// action.
#pragma once

#include <cstdint>
#include <functional>

namespace kvshuttle {

// Installs the process-wide SIGBUS handler (idempotent, thread-safe). Called by RunGuarded.
void InstallSigbusGuard();

// Runs `work` on this thread; returns true when it completed, false when it hit SIGBUS (then
// `fault_address` holds the faulting address, and whatever `work` was doing was abandoned at
// that instruction: it must hold no locks and own no memory that only its own code frees).
bool RunGuarded(const std::function<void()>& work, uint64_t* fault_address);

}  // namespace kvshuttle
