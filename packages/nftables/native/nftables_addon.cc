// A thin binding over libnftables: one nft context per NftContext object, output and
// errors buffered, JSON output on. Commands run synchronously on the calling thread
// (one libnftables call is ~50 us; the TypeScript side serialises calls).
#include <napi.h>
#include <nftables/libnftables.h>

#include <string>

namespace {

class NftContext : public Napi::ObjectWrap<NftContext> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "NftContext",
                                      {InstanceMethod("run", &NftContext::Run),
                                       InstanceMethod("close", &NftContext::Close)});
    exports.Set("NftContext", ctor);
    return exports;
  }

  explicit NftContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NftContext>(info) {
    ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
    if (ctx_ == nullptr) {
      Napi::Error::New(info.Env(), "nft_ctx_new failed").ThrowAsJavaScriptException();
      return;
    }
    nft_ctx_output_set_flags(ctx_, NFT_CTX_OUTPUT_JSON);
    if (nft_ctx_buffer_output(ctx_) != 0 || nft_ctx_buffer_error(ctx_) != 0) {
      nft_ctx_free(ctx_);
      ctx_ = nullptr;
      Napi::Error::New(info.Env(), "nft_ctx_buffer_output/error failed").ThrowAsJavaScriptException();
    }
  }

  ~NftContext() override { Free(); }

 private:
  void Free() {
    if (ctx_ != nullptr) {
      nft_ctx_free(ctx_);
      ctx_ = nullptr;
    }
  }

  // run(command: string, dryRun?: boolean, terse?: boolean) -> { code, output, error }
  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (ctx_ == nullptr) {
      Napi::Error::New(env, "nft context is closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (info.Length() < 1 || !info[0].IsString()) {
      Napi::TypeError::New(env, "run(command: string, dryRun?: boolean, terse?: boolean)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const std::string command = info[0].As<Napi::String>().Utf8Value();
    const bool dry_run = info.Length() > 1 && info[1].ToBoolean().Value();
    const bool terse = info.Length() > 2 && info[2].ToBoolean().Value();
    nft_ctx_set_dry_run(ctx_, dry_run);
    // terse: listings leave out set elements (much cheaper for tables with many elements)
    nft_ctx_output_set_flags(ctx_, NFT_CTX_OUTPUT_JSON | (terse ? NFT_CTX_OUTPUT_TERSE : 0u));
    const int code = nft_run_cmd_from_buffer(ctx_, command.c_str());
    nft_ctx_set_dry_run(ctx_, false);
    const char* output = nft_ctx_get_output_buffer(ctx_);
    const char* error = nft_ctx_get_error_buffer(ctx_);
    Napi::Object result = Napi::Object::New(env);
    result.Set("code", Napi::Number::New(env, code));
    result.Set("output", Napi::String::New(env, output != nullptr ? output : ""));
    result.Set("error", Napi::String::New(env, error != nullptr ? error : ""));
    return result;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Free();
    return info.Env().Undefined();
  }

  struct nft_ctx* ctx_ = nullptr;
};

Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return NftContext::Init(env, exports); }

}  // namespace

NODE_API_MODULE(nftables_addon, InitModule)
