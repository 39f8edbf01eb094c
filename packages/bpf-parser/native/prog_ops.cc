// BPF_PROG_TEST_RUN on a program fd.
#include <bpf/bpf.h>

#include <cerrno>
#include <string>
#include <vector>

#include "common.h"
#include "ops.h"

namespace dnsplane_bpf {
namespace {

// progTestRun(fd, data, repeat, ctx | null, dataOutCapacity)
//   -> { retval, durationNs, data, ctx? }
Napi::Value ProgTestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  ByteView data = Bytes(info[1], "data");
  const uint32_t repeat = Uint32Arg(info, 2, "repeat");
  const bool has_ctx = !info[3].IsNull() && !info[3].IsUndefined();
  ByteView ctx{nullptr, 0};
  if (has_ctx) ctx = Bytes(info[3], "ctx");
  const uint32_t out_capacity = Uint32Arg(info, 4, "data out capacity");

  std::vector<uint8_t> data_out(out_capacity);
  std::vector<uint8_t> ctx_out(has_ctx ? ctx.size : 0);
  auto opts = ZeroedOpts<bpf_test_run_opts>();
  opts.data_in = data.data;
  opts.data_size_in = static_cast<__u32>(data.size);
  opts.data_out = data_out.data();
  opts.data_size_out = out_capacity;
  if (has_ctx) {
    opts.ctx_in = ctx.data;
    opts.ctx_size_in = static_cast<__u32>(ctx.size);
    opts.ctx_out = ctx_out.data();
    opts.ctx_size_out = static_cast<__u32>(ctx_out.size());
  }
  opts.repeat = static_cast<int>(repeat);
  LogCapture capture;
  if (bpf_prog_test_run_opts(fd, &opts) != 0) ThrowErrno(env, errno, "program test run", capture.Take());

  Napi::Object out = Napi::Object::New(env);
  out.Set("retval", opts.retval);
  out.Set("durationNs", opts.duration);
  const size_t out_size = std::min<size_t>(opts.data_size_out, data_out.size());
  out.Set("data", Napi::Buffer<uint8_t>::Copy(env, data_out.data(), out_size));
  if (has_ctx) {
    const size_t ctx_size = std::min<size_t>(opts.ctx_size_out, ctx_out.size());
    out.Set("ctx", Napi::Buffer<uint8_t>::Copy(env, ctx_out.data(), ctx_size));
  }
  return out;
}

}  // namespace

void RegisterProgOps(Napi::Env env, Napi::Object exports) {
  exports.Set("progTestRun", Napi::Function::New<ProgTestRun>(env, "progTestRun"));
}

}  // namespace dnsplane_bpf
