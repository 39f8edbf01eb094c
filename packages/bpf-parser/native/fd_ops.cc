// Operations on plain BPF file descriptors: pin, open a pin, describe, close.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common.h"
#include "ops.h"

namespace dnsplane_bpf {
namespace {

// objPin(fd, path)
Napi::Value ObjPin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  const std::string path = StringArg(info, 1, "path");
  LogCapture capture;
  if (bpf_obj_pin(fd, path.c_str()) != 0) ThrowErrno(env, errno, "pin " + path, capture.Take());
  return env.Undefined();
}

// objGet(path) -> fd (owned by the caller)
Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = StringArg(info, 0, "path");
  LogCapture capture;
  const int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(env, errno, "open pin " + path, capture.Take());
  return Napi::Number::New(env, fd);
}

// closeFd(fd)
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  const int fd = Int32Arg(info, 0, "fd");
  if (fd >= 0) close(fd);
  return info.Env().Undefined();
}

// mapInfo(fd) -> { name, type, keySize, valueSize, maxEntries, flags, id }
Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  struct bpf_map_info map_info;
  std::memset(&map_info, 0, sizeof(map_info));
  __u32 len = sizeof(map_info);
  if (bpf_obj_get_info_by_fd(fd, &map_info, &len) != 0) ThrowErrno(env, errno, "map info");
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", map_info.name);
  out.Set("type", map_info.type);
  out.Set("keySize", map_info.key_size);
  out.Set("valueSize", map_info.value_size);
  out.Set("maxEntries", map_info.max_entries);
  out.Set("flags", map_info.map_flags);
  out.Set("id", map_info.id);
  return out;
}

// progInfo(fd) -> { name, type, id }
Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  struct bpf_prog_info prog_info;
  std::memset(&prog_info, 0, sizeof(prog_info));
  __u32 len = sizeof(prog_info);
  if (bpf_obj_get_info_by_fd(fd, &prog_info, &len) != 0) ThrowErrno(env, errno, "program info");
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", prog_info.name);
  out.Set("type", prog_info.type);
  out.Set("id", prog_info.id);
  return out;
}

}  // namespace

void RegisterFdOps(Napi::Env env, Napi::Object exports) {
  exports.Set("objPin", Napi::Function::New<ObjPin>(env, "objPin"));
  exports.Set("objGet", Napi::Function::New<ObjGet>(env, "objGet"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("mapInfo", Napi::Function::New<MapInfo>(env, "mapInfo"));
  exports.Set("progInfo", Napi::Function::New<ProgInfo>(env, "progInfo"));
}

}  // namespace dnsplane_bpf
