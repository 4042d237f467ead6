// StreamGate (tests and benchmarks): holds a CUDA stream with a host function until Release(),
// so work queued behind it — and an event recorded after that work — does not complete before
// then. The gate's state outlives the object (the host function holds it), so destroying the
// gate early cannot free it under the function. Built only with CUDA (KVS_HAVE_CUDA).
#pragma once

#include <cuda_runtime_api.h>

#include <condition_variable>
#include <memory>
#include <mutex>

namespace kvshuttle {

class StreamGate {
 public:
  explicit StreamGate(cudaStream_t stream) : state_(std::make_shared<State>()) {
    auto* held = new std::shared_ptr<State>(state_);
    launched_ = cudaLaunchHostFunc(stream, &Hold, held) == cudaSuccess;
    if (!launched_) delete held;
  }
  ~StreamGate() { Release(); }
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;

  // False when the host function could not be queued (the stream is not held).
  bool ok() const { return launched_; }
  void Release() {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->open = true;
    }
    state_->cv.notify_all();
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
  };
  static void CUDART_CB Hold(void* arg) {
    std::unique_ptr<std::shared_ptr<State>> held(static_cast<std::shared_ptr<State>*>(arg));
    State& state = **held;
    std::unique_lock<std::mutex> lock(state.mu);
    state.cv.wait(lock, [&state] { return state.open; });
  }
  std::shared_ptr<State> state_;
  bool launched_ = false;
};

}  // namespace kvshuttle
