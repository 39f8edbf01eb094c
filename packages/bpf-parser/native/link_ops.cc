// BPF links: a program attached to a cgroup (v2) by link, and a link's program swapped in place.
// A link pinned in bpffs keeps its attachment after the process exits; unlinking the pin (with
// no fd left open) detaches it.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common.h"
#include "ops.h"

namespace dnsplane_bpf {
namespace {

// cgroupLinkCreate(progFd, cgroupDir, attachType) -> link fd (owned by the caller)
Napi::Value CgroupLinkCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int prog_fd = Int32Arg(info, 0, "progFd");
  const std::string dir = StringArg(info, 1, "cgroupDir");
  const int attach_type = Int32Arg(info, 2, "attachType");
  const int cgroup_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgroup_fd < 0) ThrowErrno(env, errno, "open cgroup " + dir);
  LogCapture capture;
  const int fd = bpf_link_create(prog_fd, cgroup_fd, static_cast<enum bpf_attach_type>(attach_type), nullptr);
  const int saved = errno;
  close(cgroup_fd);
  if (fd < 0) ThrowErrno(env, saved, "attach to cgroup " + dir, capture.Take());
  return Napi::Number::New(env, fd);
}

// linkUpdate(linkFd, progFd): the link runs progFd from now on (atomically, no gap)
Napi::Value LinkUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int link_fd = Int32Arg(info, 0, "linkFd");
  const int prog_fd = Int32Arg(info, 1, "progFd");
  LogCapture capture;
  if (bpf_link_update(link_fd, prog_fd, nullptr) != 0) ThrowErrno(env, errno, "update link", capture.Take());
  return env.Undefined();
}

// linkInfo(fd) -> { id, progId, type, attachType }
Napi::Value LinkInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  const auto link_info = ObjectInfo<struct bpf_link_info>(env, fd, "link info");
  Napi::Object out = Napi::Object::New(env);
  out.Set("id", Napi::Number::New(env, link_info.id));
  out.Set("progId", Napi::Number::New(env, link_info.prog_id));
  out.Set("type", Napi::Number::New(env, link_info.type));
  out.Set("attachType", Napi::Number::New(env, link_info.type == BPF_LINK_TYPE_CGROUP ? link_info.cgroup.attach_type : -1));
  return out;
}

}  // namespace

void RegisterLinkOps(Napi::Env env, Napi::Object exports) {
  exports.Set("cgroupLinkCreate", Napi::Function::New<CgroupLinkCreate>(env, "cgroupLinkCreate"));
  exports.Set("linkUpdate", Napi::Function::New<LinkUpdate>(env, "linkUpdate"));
  exports.Set("linkInfo", Napi::Function::New<LinkInfo>(env, "linkInfo"));
}

}  // namespace dnsplane_bpf
