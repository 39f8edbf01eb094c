// Holds the calling thread's asynchronous signals back while it lives (the mask comes back
// after; a signal that arrived meanwhile is delivered then, or to another thread at once).
// Header-only: the libbpf addon and the libnftables addon (packages/nftables/native) both use
// it, around kernel calls that a signal for their thread would spoil:
// - the verifier gives up with EAGAIN whenever a signal is pending for the loading thread, and
//   libbpf retries a load only five times: a profiler's SIGPROF or a child's SIGCHLD every few
//   milliseconds would fail a load that takes hundreds;
// - libnftables waits for the kernel's acknowledgements with select(), which returns EINTR on
//   a signal and is not retried: nft then reports a transaction the kernel already committed
//   as failed.
// Faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP) stay unblocked: blocking a synchronous one
// would not hold it back.
#pragma once

#include <pthread.h>
#include <signal.h>

namespace dnsplane {

class SignalsHeld {
 public:
  SignalsHeld() {
    sigset_t all;
    sigfillset(&all);
    for (const int fault : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP}) sigdelset(&all, fault);
    held_ = pthread_sigmask(SIG_BLOCK, &all, &previous_) == 0;
  }
  ~SignalsHeld() {
    if (held_) pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  SignalsHeld(const SignalsHeld&) = delete;
  SignalsHeld& operator=(const SignalsHeld&) = delete;

 private:
  sigset_t previous_;
  bool held_;
};

}  // namespace dnsplane
