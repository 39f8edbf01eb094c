// Operations on plain BPF file descriptors: pin, open a pin, describe, close.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <string>
#include <vector>

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
  const auto map_info = ObjectInfo<struct bpf_map_info>(env, fd, "map info");
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

// progInfo(fd) -> { name, type, id, verifiedInstructions }
Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  const auto prog_info = ObjectInfo<struct bpf_prog_info>(env, fd, "program info");
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", prog_info.name);
  out.Set("type", prog_info.type);
  out.Set("id", prog_info.id);
  out.Set("verifiedInstructions", prog_info.verified_insns);
  return out;
}

// progMaps(fd) -> [{ id, name }]: the maps a loaded program uses (bpf_prog_info.map_ids),
// each named from its own map info. A map freed meanwhile is left out.
Napi::Value ProgMaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  auto prog_info = ObjectInfo<struct bpf_prog_info>(env, fd, "program info");
  std::vector<__u32> ids(prog_info.nr_map_ids);
  if (!ids.empty()) {
    const __u32 count = prog_info.nr_map_ids;
    std::memset(&prog_info, 0, sizeof(prog_info));
    prog_info.nr_map_ids = count;
    prog_info.map_ids = reinterpret_cast<__u64>(ids.data());
    __u32 len = sizeof(prog_info);
    if (bpf_obj_get_info_by_fd(fd, &prog_info, &len) != 0) ThrowErrno(env, errno, "program map ids");
    ids.resize(std::min<__u32>(count, prog_info.nr_map_ids));
  }
  Napi::Array out = Napi::Array::New(env);
  uint32_t index = 0;
  for (const __u32 id : ids) {
    const int map_fd = bpf_map_get_fd_by_id(id);
    if (map_fd < 0) {
      if (errno == ENOENT) continue;
      ThrowErrno(env, errno, "open map id " + std::to_string(id));
    }
    struct bpf_map_info map_info;
    std::memset(&map_info, 0, sizeof(map_info));
    __u32 map_len = sizeof(map_info);
    const int ret = bpf_obj_get_info_by_fd(map_fd, &map_info, &map_len);
    const int err = errno;
    close(map_fd);
    if (ret != 0) ThrowErrno(env, err, "map info of id " + std::to_string(id));
    Napi::Object item = Napi::Object::New(env);
    item.Set("id", id);
    item.Set("name", map_info.name);
    out.Set(index++, item);
  }
  return out;
}

}  // namespace

void RegisterFdOps(Napi::Env env, Napi::Object exports) {
  exports.Set("objPin", Napi::Function::New<ObjPin>(env, "objPin"));
  exports.Set("objGet", Napi::Function::New<ObjGet>(env, "objGet"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("mapInfo", Napi::Function::New<MapInfo>(env, "mapInfo"));
  exports.Set("progInfo", Napi::Function::New<ProgInfo>(env, "progInfo"));
  exports.Set("progMaps", Napi::Function::New<ProgMaps>(env, "progMaps"));
}

}  // namespace dnsplane_bpf
