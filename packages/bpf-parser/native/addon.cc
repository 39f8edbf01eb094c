// Entry point of the dnsplane libbpf addon (see ../src/libbpf.ts for the typed API).
#include <napi.h>

#include "common.h"
#include "object.h"
#include "ops.h"
#include "ringbuf.h"

namespace dnsplane_bpf {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrint();
  exports.Set("ObjectHandle", ObjectHandle::Define(env));
  exports.Set("RingBufferHandle", RingBufferHandle::Define(env));
  RegisterFdOps(env, exports);
  RegisterMapOps(env, exports);
  RegisterProgOps(env, exports);
  RegisterTcOps(env, exports);
  RegisterSystemOps(env, exports);
  RegisterLinkOps(env, exports);
  return exports;
}

}  // namespace dnsplane_bpf

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  return dnsplane_bpf::Init(env, exports);
}

NODE_API_MODULE(dnsplane_bpf, InitAddon)
