// A BPF object file: opened as a spec (globals and pin paths adjustable), then loaded.
#pragma once

#include <napi.h>

struct bpf_object;

namespace dnsplane_bpf {

class ObjectHandle : public Napi::ObjectWrap<ObjectHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ObjectHandle(const Napi::CallbackInfo& info);
  ~ObjectHandle() override;

 private:
  bpf_object* Require(Napi::Env env, const char* op);
  Napi::Value SetGlobal(const Napi::CallbackInfo& info);
  Napi::Value SetPinPath(const Napi::CallbackInfo& info);
  Napi::Value SetAutoload(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value LoadAsync(const Napi::CallbackInfo& info);
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  bpf_object* obj_ = nullptr;
  bool loaded_ = false;
  // A loadAsync in flight: the object belongs to the worker thread until it settles.
  bool loading_ = false;
  friend class LoadWorker;
};

}  // namespace dnsplane_bpf
