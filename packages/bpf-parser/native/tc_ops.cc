// tc clsact attach/detach of a BPF classifier, by interface name, in the calling process's
// network namespace.
#include <bpf/libbpf.h>
#include <net/if.h>

#include <cerrno>
#include <string>

#include "common.h"
#include "ops.h"

namespace dnsplane_bpf {
namespace {

struct TcTarget {
  bpf_tc_hook hook;
  std::string label;
};

TcTarget ResolveHook(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string ifname = StringArg(info, 0, "ifname");
  const std::string direction = StringArg(info, 1, "direction");
  TcTarget target{ZeroedOpts<bpf_tc_hook>(), ifname + " " + direction};
  if (direction == "ingress") {
    target.hook.attach_point = BPF_TC_INGRESS;
  } else if (direction == "egress") {
    target.hook.attach_point = BPF_TC_EGRESS;
  } else {
    throw Napi::TypeError::New(env, "direction must be 'ingress' or 'egress'");
  }
  const unsigned index = if_nametoindex(ifname.c_str());
  if (index == 0) ThrowErrno(env, errno == 0 ? ENODEV : errno, "tc: interface " + ifname);
  target.hook.ifindex = static_cast<int>(index);
  return target;
}

// tcAttach(ifname, direction, progFd, priority, handle, replace) -> { priority, handle, progId }
Napi::Value TcAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TcTarget target = ResolveHook(info);
  const int prog_fd = Int32Arg(info, 2, "program fd");
  auto opts = ZeroedOpts<bpf_tc_opts>();
  opts.prog_fd = prog_fd;
  opts.priority = Uint32Arg(info, 3, "priority");
  opts.handle = Uint32Arg(info, 4, "handle");
  if (info[5].ToBoolean().Value()) opts.flags = BPF_TC_F_REPLACE;
  LogCapture capture;
  int ret = bpf_tc_hook_create(&target.hook);
  if (ret != 0 && ret != -EEXIST) {
    ThrowErrno(env, PositiveErr(ret), "tc: create clsact on " + target.label, capture.Take());
  }
  ret = bpf_tc_attach(&target.hook, &opts);
  if (ret != 0) ThrowErrno(env, PositiveErr(ret), "tc: attach on " + target.label, capture.Take());
  Napi::Object out = Napi::Object::New(env);
  out.Set("priority", opts.priority);
  out.Set("handle", opts.handle);
  out.Set("progId", opts.prog_id);
  return out;
}

// tcDetach(ifname, direction, priority, handle)
Napi::Value TcDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TcTarget target = ResolveHook(info);
  auto opts = ZeroedOpts<bpf_tc_opts>();
  opts.priority = Uint32Arg(info, 2, "priority");
  opts.handle = Uint32Arg(info, 3, "handle");
  LogCapture capture;
  int ret = bpf_tc_detach(&target.hook, &opts);
  if (ret != 0) ThrowErrno(env, PositiveErr(ret), "tc: detach on " + target.label, capture.Take());
  return env.Undefined();
}

// tcQuery(ifname, direction, priority, handle) -> progId | undefined
Napi::Value TcQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TcTarget target = ResolveHook(info);
  auto opts = ZeroedOpts<bpf_tc_opts>();
  opts.priority = Uint32Arg(info, 2, "priority");
  opts.handle = Uint32Arg(info, 3, "handle");
  LogCapture capture;
  int ret = bpf_tc_query(&target.hook, &opts);
  if (ret == -ENOENT || ret == -EINVAL) return env.Undefined();  // no clsact, or no such filter
  if (ret != 0) ThrowErrno(env, PositiveErr(ret), "tc: query on " + target.label, capture.Take());
  return Napi::Number::New(env, opts.prog_id);
}

}  // namespace

void RegisterTcOps(Napi::Env env, Napi::Object exports) {
  exports.Set("tcAttach", Napi::Function::New<TcAttach>(env, "tcAttach"));
  exports.Set("tcDetach", Napi::Function::New<TcDetach>(env, "tcDetach"));
  exports.Set("tcQuery", Napi::Function::New<TcQuery>(env, "tcQuery"));
}

}  // namespace dnsplane_bpf
