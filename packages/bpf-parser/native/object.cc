#include "object.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "common.h"

namespace dnsplane_bpf {
namespace {

struct GlobalVar {
  std::string section;
  uint32_t offset = 0;
  uint32_t size = 0;
  uint32_t section_size = 0;
};

// Looks the variable up in the object's BTF data sections (.rodata, .data, .bss, custom ones).
bool FindGlobal(const struct btf* btf, const std::string& name, GlobalVar* out) {
  if (btf == nullptr) return false;
  const uint32_t count = btf__type_cnt(btf);
  for (uint32_t id = 1; id < count; id++) {
    const struct btf_type* sec = btf__type_by_id(btf, id);
    if (sec == nullptr || !btf_is_datasec(sec)) continue;
    // Map definitions are BTF vars too, but not globals a program reads.
    if (std::string(btf__name_by_offset(btf, sec->name_off)) == ".maps") continue;
    const struct btf_var_secinfo* vars = btf_var_secinfos(sec);
    for (uint16_t i = 0; i < btf_vlen(sec); i++) {
      const struct btf_type* var = btf__type_by_id(btf, vars[i].type);
      if (var == nullptr || !btf_is_var(var)) continue;
      if (name != btf__name_by_offset(btf, var->name_off)) continue;
      out->section = btf__name_by_offset(btf, sec->name_off);
      out->offset = vars[i].offset;
      out->size = vars[i].size;
      out->section_size = sec->size;
      return true;
    }
  }
  return false;
}

// libbpf names internal maps "<object prefix><section>" or, for custom sections such as
// ".rodata.cfg", the section name itself, both truncated to 15 characters.
bool MapHoldsSection(struct bpf_map* map, const std::string& section) {
  if (!bpf_map__is_internal(map)) return false;
  const std::string name = bpf_map__name(map);
  if (name.size() >= section.size() &&
      name.compare(name.size() - section.size(), section.size(), section) == 0) {
    return true;
  }
  return !name.empty() && name[0] == '.' && section.compare(0, name.size(), name) == 0;
}

Napi::Object DescribeMap(Napi::Env env, struct bpf_map* map) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", bpf_map__name(map));
  out.Set("fd", bpf_map__fd(map));
  out.Set("type", static_cast<double>(bpf_map__type(map)));
  out.Set("keySize", bpf_map__key_size(map));
  out.Set("valueSize", bpf_map__value_size(map));
  out.Set("maxEntries", bpf_map__max_entries(map));
  out.Set("flags", bpf_map__map_flags(map));
  out.Set("internal", bpf_map__is_internal(map));
  const char* pin = bpf_map__pin_path(map);
  if (pin != nullptr) out.Set("pinPath", pin);
  out.Set("pinned", bpf_map__is_pinned(map));
  return out;
}

}  // namespace

Napi::Function ObjectHandle::Define(Napi::Env env) {
  return DefineClass(env, "ObjectHandle",
                     {
                         InstanceMethod<&ObjectHandle::SetGlobal>("setGlobal"),
                         InstanceMethod<&ObjectHandle::SetPinPath>("setPinPath"),
                         InstanceMethod<&ObjectHandle::SetAutoload>("setAutoload"),
                         InstanceMethod<&ObjectHandle::Load>("load"),
                         InstanceMethod<&ObjectHandle::LoadAsync>("loadAsync"),
                         InstanceMethod<&ObjectHandle::Programs>("programs"),
                         InstanceMethod<&ObjectHandle::Maps>("maps"),
                         InstanceMethod<&ObjectHandle::Close>("close"),
                     });
}

// new ObjectHandle(path, pinRoot): maps declared with LIBBPF_PIN_BY_NAME get
// <pinRoot>/<name> as pin path (libbpf's own default would be /sys/fs/bpf).
ObjectHandle::ObjectHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ObjectHandle>(info) {
  Napi::Env env = info.Env();
  const std::string path = StringArg(info, 0, "path");
  const std::string pin_root = StringArg(info, 1, "pin root");
  auto opts = ZeroedOpts<bpf_object_open_opts>();
  opts.pin_root_path = pin_root.c_str();
  LogCapture capture;
  errno = 0;
  obj_ = bpf_object__open_file(path.c_str(), &opts);
  if (obj_ == nullptr) {
    int err = errno != 0 ? errno : EINVAL;
    ThrowErrno(env, err, "open " + path, capture.Take());
  }
}

ObjectHandle::~ObjectHandle() {
  if (obj_ != nullptr) bpf_object__close(obj_);
  obj_ = nullptr;
}

bpf_object* ObjectHandle::Require(Napi::Env env, const char* op) {
  if (loading_) throw Napi::Error::New(env, std::string(op) + ": the BPF object is being loaded (loadAsync)");
  if (obj_ == nullptr) throw Napi::Error::New(env, std::string(op) + ": the BPF object is closed");
  return obj_;
}

// setGlobal(name, bytes): writes a global's initial value before load.
Napi::Value ObjectHandle::SetGlobal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Require(env, "setGlobal");
  const std::string name = StringArg(info, 0, "name");
  ByteView value = Bytes(info[1], "value");
  if (loaded_) {
    throw Napi::Error::New(env, "setGlobal " + name + ": the object is already loaded");
  }
  GlobalVar var;
  if (!FindGlobal(bpf_object__btf(obj), name, &var)) {
    ThrowErrno(env, ENOENT, "setGlobal " + name + ": no such global variable in the object's BTF");
  }
  if (value.size != var.size) {
    throw Napi::RangeError::New(env, "setGlobal " + name + ": value has " + std::to_string(value.size) +
                                         " bytes, the variable has " + std::to_string(var.size));
  }
  struct bpf_map* map = nullptr;
  bpf_object__for_each_map(map, obj) {
    if (!MapHoldsSection(map, var.section)) continue;
    size_t size = 0;
    const void* current = bpf_map__initial_value(map, &size);
    if (current == nullptr || size < static_cast<size_t>(var.offset) + var.size) continue;
    std::vector<uint8_t> image(static_cast<const uint8_t*>(current),
                               static_cast<const uint8_t*>(current) + size);
    std::memcpy(image.data() + var.offset, value.data, value.size);
    LogCapture capture;
    const int ret = bpf_map__set_initial_value(map, image.data(), image.size());
    if (ret != 0) ThrowErrno(env, PositiveErr(ret), "setGlobal " + name, capture.Take());
    return env.Undefined();
  }
  ThrowErrno(env, ENOENT, "setGlobal " + name + ": no map holds section " + var.section);
}

// setPinPath(mapName, path | null): the map reuses a pin at `path` on load, or is pinned there.
Napi::Value ObjectHandle::SetPinPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Require(env, "setPinPath");
  const std::string name = StringArg(info, 0, "map name");
  struct bpf_map* map = bpf_object__find_map_by_name(obj, name.c_str());
  if (map == nullptr) ThrowErrno(env, ENOENT, "setPinPath: no map named " + name);
  LogCapture capture;
  int ret = 0;
  if (info[1].IsNull() || info[1].IsUndefined()) {
    ret = bpf_map__set_pin_path(map, nullptr);
  } else {
    const std::string path = StringArg(info, 1, "pin path");
    ret = bpf_map__set_pin_path(map, path.c_str());
  }
  if (ret != 0) ThrowErrno(env, PositiveErr(ret), "setPinPath " + name, capture.Take());
  return env.Undefined();
}

// setAutoload(programName, autoload): a program left out is neither verified nor loaded
// (bpf_program__set_autoload); its fd stays -1 after load.
Napi::Value ObjectHandle::SetAutoload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Require(env, "setAutoload");
  const std::string name = StringArg(info, 0, "program name");
  if (!info[1].IsBoolean()) throw Napi::TypeError::New(env, "setAutoload: autoload must be a boolean");
  if (loaded_) throw Napi::Error::New(env, "setAutoload " + name + ": the object is already loaded");
  struct bpf_program* prog = bpf_object__find_program_by_name(obj, name.c_str());
  if (prog == nullptr) ThrowErrno(env, ENOENT, "setAutoload: no program named " + name);
  LogCapture capture;
  const int ret = bpf_program__set_autoload(prog, info[1].As<Napi::Boolean>().Value());
  if (ret != 0) ThrowErrno(env, PositiveErr(ret), "setAutoload " + name, capture.Take());
  return env.Undefined();
}

Napi::Value ObjectHandle::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Require(env, "load");
  if (loaded_) throw Napi::Error::New(env, "load: the object is already loaded");
  const std::string name = bpf_object__name(obj);
  LogCapture capture;
  int ret;
  {
    SignalsHeld held;  // the verifier would give up on any signal pending for this thread
    ret = bpf_object__load(obj);
  }
  if (ret != 0) {
    const int err = PositiveErr(ret);
    std::string log = capture.Take();
    // A failed load leaves the object unusable; free its fds now.
    bpf_object__close(obj_);
    obj_ = nullptr;
    ThrowErrno(env, err, "load " + name, log);
  }
  loaded_ = true;
  return env.Undefined();
}

// bpf_object__load on a libuv worker thread (the verifier can take seconds): the event loop
// goes on meanwhile. Settles like load(): resolved, or rejected with the errno error (the
// object then closed).
class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, ObjectHandle* handle, Napi::Object self, int nice)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), handle_(handle), nice_(nice) {
    self_ = Napi::Persistent(self);
    name_ = bpf_object__name(handle->obj_);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    // The load's thread runs at nice_ (when asked and allowed: lowering a nice value needs
    // CAP_SYS_NICE) and gets its own nice value back for the pool's later work.
    const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
    bool reniced = false;
    int before = 0;
    if (nice_ != kKeepNice) {
      errno = 0;
      before = getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
      reniced = errno == 0 && before != nice_ && setpriority(PRIO_PROCESS, static_cast<id_t>(tid), nice_) == 0;
    }
    LogCapture capture;
    {
      SignalsHeld held;  // as in Load: a signal for this thread would fail the verification
      ret_ = bpf_object__load(handle_->obj_);
    }
    if (ret_ != 0) {
      err_ = PositiveErr(ret_);
      log_ = capture.Take();
    }
    if (reniced) setpriority(PRIO_PROCESS, static_cast<id_t>(tid), before);
  }

  static constexpr int kKeepNice = 1000;

  void OnOK() override {
    Napi::Env env = Env();
    handle_->loading_ = false;
    if (ret_ != 0) {
      bpf_object__close(handle_->obj_);
      handle_->obj_ = nullptr;
      deferred_.Reject(ErrnoError(env, err_, "load " + name_, log_).Value());
      return;
    }
    handle_->loaded_ = true;
    deferred_.Resolve(env.Undefined());
  }

 private:
  Napi::Promise::Deferred deferred_;
  ObjectHandle* handle_;
  Napi::ObjectReference self_;  // keeps the handle alive while the worker runs
  std::string name_;
  int nice_;
  int ret_ = 0;
  int err_ = 0;
  std::string log_;
};

Napi::Value ObjectHandle::LoadAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Require(env, "loadAsync");
  if (loaded_) throw Napi::Error::New(env, "loadAsync: the object is already loaded");
  // loadAsync(nice?): the nice value (-20..19) the worker thread runs the load at.
  int nice = LoadWorker::kKeepNice;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "loadAsync: nice must be a number");
    const int32_t value = info[0].As<Napi::Number>().Int32Value();
    if (value < -20 || value > 19) throw Napi::RangeError::New(env, "loadAsync: nice must be -20..19");
    nice = value;
  }
  auto* worker = new LoadWorker(env, this, info.This().As<Napi::Object>(), nice);
  loading_ = true;
  worker->Queue();
  return worker->Promise();
}

Napi::Value ObjectHandle::Programs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Require(env, "programs");
  Napi::Array out = Napi::Array::New(env);
  uint32_t index = 0;
  struct bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, obj) {
    Napi::Object item = Napi::Object::New(env);
    item.Set("name", bpf_program__name(prog));
    item.Set("section", bpf_program__section_name(prog));
    item.Set("type", static_cast<double>(bpf_program__type(prog)));
    item.Set("fd", bpf_program__fd(prog));
    item.Set("autoload", bpf_program__autoload(prog));
    out.Set(index++, item);
  }
  return out;
}

Napi::Value ObjectHandle::Maps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Require(env, "maps");
  Napi::Array out = Napi::Array::New(env);
  uint32_t index = 0;
  struct bpf_map* map = nullptr;
  bpf_object__for_each_map(map, obj) { out.Set(index++, DescribeMap(env, map)); }
  return out;
}

Napi::Value ObjectHandle::Close(const Napi::CallbackInfo& info) {
  if (loading_) throw Napi::Error::New(info.Env(), "close: the BPF object is being loaded (loadAsync); close it once that settles");
  if (obj_ != nullptr) bpf_object__close(obj_);
  obj_ = nullptr;
  return info.Env().Undefined();
}

}  // namespace dnsplane_bpf
