// Registration of the addon's free functions, grouped by subject.
#pragma once

#include <napi.h>

namespace dnsplane_bpf {

void RegisterFdOps(Napi::Env env, Napi::Object exports);
void RegisterMapOps(Napi::Env env, Napi::Object exports);
void RegisterProgOps(Napi::Env env, Napi::Object exports);
void RegisterTcOps(Napi::Env env, Napi::Object exports);
void RegisterSystemOps(Napi::Env env, Napi::Object exports);
void RegisterLinkOps(Napi::Env env, Napi::Object exports);

}  // namespace dnsplane_bpf
