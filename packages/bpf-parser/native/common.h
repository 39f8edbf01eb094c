// Shared helpers of the libbpf addon: kernel-error reporting, libbpf log capture, byte views.
#pragma once

#include <bpf/bpf.h>
#include <napi.h>

#include "signals_held.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace dnsplane_bpf {

// libbpf "opts" structs must be zeroed and carry their own size (C's LIBBPF_OPTS macro).
template <typename T>
T ZeroedOpts() {
  T opts;
  std::memset(&opts, 0, sizeof(opts));
  opts.sz = sizeof(opts);
  return opts;
}

// Collects everything libbpf prints (warnings, verifier logs) while one addon call runs,
// so a failure can carry it to JavaScript. Per thread (see loadAsync).
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  std::string Take();

 private:
  bool previous_;
};

void InstallLibbpfPrint();

// Holds the thread's asynchronous signals back around a load (signals_held.h).
using dnsplane::SignalsHeld;

// Throws a JavaScript Error with `errno` (positive), `op` (what failed) and `log` (libbpf's
// captured output, e.g. the verifier log). The TypeScript side maps it to typed errors.
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& op,
                             const std::string& log = std::string());
// The same error, returned (e.g. to reject a promise).
Napi::Error ErrnoError(Napi::Env env, int err, const std::string& op, const std::string& log = std::string());

// libbpf returns negative error codes (and sets errno); normalise to a positive errno.
inline int PositiveErr(int ret) {
  if (ret < 0) return -ret;
  return errno != 0 ? errno : EINVAL;
}

// A zeroed info struct (bpf_map_info, bpf_prog_info, bpf_link_info) of the object behind fd,
// filled by the kernel; throws naming `op`.
template <typename Info>
Info ObjectInfo(Napi::Env env, int fd, const char* op) {
  Info out;
  std::memset(&out, 0, sizeof(out));
  __u32 len = sizeof(out);
  if (bpf_obj_get_info_by_fd(fd, &out, &len) != 0) ThrowErrno(env, errno, op);
  return out;
}

struct ByteView {
  uint8_t* data;
  size_t size;
};

// Accepts a Buffer / Uint8Array argument; throws a TypeError naming `what` otherwise.
ByteView Bytes(const Napi::Value& value, const char* what);
int32_t Int32Arg(const Napi::CallbackInfo& info, size_t index, const char* what);
uint32_t Uint32Arg(const Napi::CallbackInfo& info, size_t index, const char* what);
std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* what);

}  // namespace dnsplane_bpf
