// Facts about the machine the BPF programs see: possible CPUs, the monotonic clock.
#include <bpf/libbpf.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>

#include <cerrno>

#include "common.h"
#include "ops.h"

namespace dnsplane_bpf {
namespace {

Napi::Value PossibleCpus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int n = libbpf_num_possible_cpus();
  if (n <= 0) ThrowErrno(env, n < 0 ? -n : EINVAL, "possible cpus");
  return Napi::Number::New(env, n);
}

// CLOCK_MONOTONIC in nanoseconds: the clock bpf_ktime_get_ns() reads.
Napi::Value KtimeNs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) ThrowErrno(env, errno, "clock_gettime");
  const uint64_t ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
  return Napi::BigInt::New(env, ns);
}

// if_nametoindex in the calling process's network namespace: interfaceIndex(name) -> number.
Napi::Value InterfaceIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string name = StringArg(info, 0, "ifname");
  const unsigned index = if_nametoindex(name.c_str());
  if (index == 0) ThrowErrno(env, errno == 0 ? ENODEV : errno, "interface " + name);
  return Napi::Number::New(env, index);
}

// The cookie of the calling thread's network namespace (what bpf_get_netns_cookie returns for
// its sockets): netnsCookie() -> bigint, read through a throwaway socket (SO_NETNS_COOKIE).
Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, errno, "socket");
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  const int rc = getsockopt(fd, SOL_SOCKET, 71 /* SO_NETNS_COOKIE */, &cookie, &len);
  const int saved = errno;
  close(fd);
  if (rc != 0) ThrowErrno(env, saved, "SO_NETNS_COOKIE");
  return Napi::BigInt::New(env, cookie);
}

}  // namespace

void RegisterSystemOps(Napi::Env env, Napi::Object exports) {
  exports.Set("possibleCpus", Napi::Function::New<PossibleCpus>(env, "possibleCpus"));
  exports.Set("ktimeNs", Napi::Function::New<KtimeNs>(env, "ktimeNs"));
  exports.Set("interfaceIndex", Napi::Function::New<InterfaceIndex>(env, "interfaceIndex"));
  exports.Set("netnsCookie", Napi::Function::New<NetnsCookie>(env, "netnsCookie"));
}

}  // namespace dnsplane_bpf
