// ONNX Runtime binding of the fused per-pixel kernel: custom op edgeconv.TVConv (versions 1-2).
// Thin on purpose: attribute and shape checks, then ORT's intra-op pool runs the channels
// (KernelContext_ParallelFor), so a session's intra_op_num_threads means what it means for
// the rest of the graph. The math lives in tvconv_*.cpp.
//
// Inputs:  X (N, C, H, W) float32
//          W (C, h, k*k, round_up(w, 8)) (layout "c_h_kk_w8") or (C, k*k, h, w) ("c_kk_hw",
//            stride 1), float32 | float16 | int8 (packed at export)
//          scales (C, k*k) float32, optional, required for int8 weights
//          B (C) or (C, h, round_up(w, 8)) / (C, h, w) float32, optional
// Output:  Y (N, C, h, w) float32
// Attributes: kernel_size (3|5), stride (1|2), activation ("none"|"relu"|"relu6"),
//             layout (EDGECONV_LAYOUT or EDGECONV_FLAT_LAYOUT).
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "tvconv_kernel.h"
#include "version.h"

namespace {

const OrtApi* g_api = nullptr;

OrtStatusPtr make_status(const std::string& msg) {
  return g_api->CreateStatus(ORT_INVALID_ARGUMENT, ("edgeconv.TVConv: " + msg).c_str());
}

// Channels are split into at most kMaxTasks contiguous groups (enough to balance a few
// threads; fewer scratch set-ups than one task per channel). Every channel is computed the
// same way whatever the split, so results do not depend on the number of threads.
constexpr int64_t kMaxTasks = 64;

struct Job {
  edgeconv::TVConvArgs args;
  edgeconv::ChannelFn fn;
  int64_t group;
};

void run_group(void* user, size_t task) {
  const Job* job = static_cast<const Job*>(user);
  thread_local std::vector<float> scratch;
  const size_t need = edgeconv::scratch_floats(job->args) + 16;
  if (scratch.size() < need) scratch.resize(need);
  const int64_t c0 = static_cast<int64_t>(task) * job->group;
  int64_t c1 = c0 + job->group;
  if (c1 > job->args.C) c1 = job->args.C;
  job->fn(job->args, c0, c1, scratch.data());
}

struct TVConvKernel {
  int k = 3, s = 1, act = edgeconv::kActNone, isa = edgeconv::kScalar;
  int layout = edgeconv::kLayoutRows;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    try {
      Ort::KernelContext ctx(context);
      const size_t n_inputs = ctx.GetInputCount();
      Ort::ConstValue x = ctx.GetInput(0);
      Ort::ConstValue w = ctx.GetInput(1);
      if (!x || !w) return make_status("inputs X and W are required");
      const auto xinfo = x.GetTensorTypeAndShapeInfo();
      const auto winfo = w.GetTensorTypeAndShapeInfo();
      const std::vector<int64_t> xs = xinfo.GetShape(), ws = winfo.GetShape();
      if (xinfo.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || xs.size() != 4)
        return make_status("X must be a 4-D float32 NCHW tensor");
      edgeconv::TVConvArgs a;
      a.k = k; a.s = s; a.act = act; a.layout = layout;
      a.N = xs[0]; a.C = xs[1]; a.H = xs[2]; a.W = xs[3];
      if (a.C <= 0 || a.H <= 0 || a.W <= 0 || a.N < 0) return make_status("empty input");
      edgeconv::set_output_geometry(a);
      const bool flat = layout == edgeconv::kLayoutFlat;
      const int64_t kk = int64_t{k} * k;
      const std::vector<int64_t> want = flat ? std::vector<int64_t>{a.C, kk, a.h, a.w_out}
                                             : std::vector<int64_t>{a.C, a.h, kk, a.wpad};
      if (ws != want)
        return make_status(std::string("W shape does not match ") +
                           (flat ? "(C, k*k, h, w)" : "(C, h, k*k, round_up(w, 8))") +
                           " for this input: the model was exported for another input size or "
                           "layout");
      const int64_t pixel_bias = a.C * a.h * (flat ? a.w_out : a.wpad);
      switch (winfo.GetElementType()) {
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: a.wtype = edgeconv::kF32; break;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: a.wtype = edgeconv::kF16; break;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: a.wtype = edgeconv::kI8; break;
        default: return make_status("W must be float32, float16 or int8");
      }
      a.w = w.GetTensorRawData();
      if (n_inputs > 2) {
        Ort::ConstValue sc = ctx.GetInput(2);
        if (sc) {
          const auto info = sc.GetTensorTypeAndShapeInfo();
          if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ||
              info.GetElementCount() != static_cast<size_t>(a.C * k * k))
            return make_status("scales must be float32 with C*k*k values");
          a.scales = sc.GetTensorData<float>();
        }
      }
      if (n_inputs > 3) {
        Ort::ConstValue b = ctx.GetInput(3);
        if (b) {
          const auto info = b.GetTensorTypeAndShapeInfo();
          const size_t count = info.GetElementCount();
          if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
            return make_status("B must be float32");
          if (count == static_cast<size_t>(a.C)) a.bias_mode = edgeconv::kBiasChannel;
          else if (count == static_cast<size_t>(pixel_bias)) a.bias_mode = edgeconv::kBiasPixel;
          else return make_status(flat ? "B must hold C or C*h*w values"
                                       : "B must hold C or C*h*round_up(w, 8) values");
          a.bias = b.GetTensorData<float>();
        }
      }
      Ort::UnownedValue y = ctx.GetOutput(0, {a.N, a.C, a.h, a.w_out});
      if (a.N == 0) return nullptr;  // an empty batch: an empty output
      a.x = x.GetTensorData<float>();
      a.y = y.GetTensorMutableData<float>();
      if (const char* msg = edgeconv::check_args(a)) return make_status(msg);
      const int64_t group = (a.C + kMaxTasks - 1) / kMaxTasks;
      Job job{a, edgeconv::channel_fn(isa), group};
      ctx.ParallelFor(run_group, static_cast<size_t>((a.C + group - 1) / group), 0, &job);
      return nullptr;
    } catch (const Ort::Exception& e) {
      return make_status(e.what());
    } catch (const std::exception& e) {
      return make_status(e.what());
    }
  }
};

struct TVConvOp : Ort::CustomOpBase<TVConvOp, TVConvKernel, true> {
  // The op version is the packed layout's version; the kernel declares the range it reads.
  // ONNX Runtime (checked through 1.32) builds ONE schema per custom-op name, whose since-version
  // is the start version, and matches kernels against that, so it does not stop this kernel
  // claiming nodes of another `edgeconv` opset: edgeconv.kernels.register_for_model compares the
  // file's version with edgeconv_kernels_op_version_min/max (capi.cpp) before registering.
  TVConvOp() {
    start_ver_ = EDGECONV_OP_VERSION_MIN;
    end_ver_ = EDGECONV_OP_VERSION;
  }
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    try {
      Ort::ConstKernelInfo ki(info);
      auto* kern = new TVConvKernel();
      const int64_t k64 = ki.GetAttribute<int64_t>("kernel_size"), s64 = ki.GetAttribute<int64_t>("stride");
      kern->k = (k64 == 3 || k64 == 5) ? static_cast<int>(k64) : 0;  // range checked before the cast:
      kern->s = (s64 == 1 || s64 == 2) ? static_cast<int>(s64) : 0;  // 2^32 + 3 must not wrap to 3
      const std::string act = ki.GetAttribute<std::string>("activation");
      const std::string layout = ki.GetAttribute<std::string>("layout");
      std::string err;
      if (kern->k != 3 && kern->k != 5) err = "kernel_size must be 3 or 5";
      else if (kern->s != 1 && kern->s != 2) err = "stride must be 1 or 2";
      else if (layout == EDGECONV_FLAT_LAYOUT && kern->s != 1)
        err = "weight layout '" EDGECONV_FLAT_LAYOUT "' is for stride 1 only";
      else if (layout != EDGECONV_LAYOUT && layout != EDGECONV_FLAT_LAYOUT)
        err = "weight layout '" + layout + "' is not '" EDGECONV_LAYOUT "' or '" EDGECONV_FLAT_LAYOUT
              "' (library " EDGECONV_KERNELS_VERSION ")";
      kern->layout = layout == EDGECONV_FLAT_LAYOUT ? edgeconv::kLayoutFlat : edgeconv::kLayoutRows;
      if (act == "none") kern->act = edgeconv::kActNone;
      else if (act == "relu") kern->act = edgeconv::kActRelu;
      else if (act == "relu6") kern->act = edgeconv::kActRelu6;
      else if (err.empty()) err = "activation must be none, relu or relu6, got '" + act + "'";
      const char* want = std::getenv("EDGECONV_KERNEL_ISA");
      kern->isa = edgeconv::select_isa(want);
      if (kern->isa < 0 && err.empty())
        err = std::string("EDGECONV_KERNEL_ISA=") + want + " is not available here (available: " +
              edgeconv::available_isas() + ")";
      if (!err.empty()) {
        delete kern;
        return api.CreateStatus(ORT_INVALID_ARGUMENT, ("edgeconv.TVConv: " + err).c_str());
      }
      *kernel = kern;
      return nullptr;
    } catch (const std::exception& e) {
      return api.CreateStatus(ORT_INVALID_ARGUMENT, (std::string("edgeconv.TVConv: ") + e.what()).c_str());
    }
  }
  const char* GetName() const { return EDGECONV_OP_NAME; }
  size_t GetInputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index < 2 ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

TVConvOp g_op;

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {  // an ONNX Runtime older than the headers we were built against
    for (uint32_t v = ORT_API_VERSION - 1; v > 0; --v)
      if (const OrtApi* old = api_base->GetApi(v))
        return old->CreateStatus(ORT_FAIL, "edgeconv kernels need ONNX Runtime >= 1.21 "
                                           "(built against ORT_API_VERSION 21 headers)");
    return nullptr;
  }
  g_api = api;
  Ort::InitApi(api);
  OrtCustomOpDomain* domain = nullptr;
  if (OrtStatus* st = api->CreateCustomOpDomain(EDGECONV_OP_DOMAIN, &domain)) return st;
  if (OrtStatus* st = api->CustomOpDomain_Add(domain, &g_op)) return st;
  // the domain must outlive every session that uses it: kept until the process exits
  static std::mutex mu;
  static std::vector<OrtCustomOpDomain*> domains;
  {
    std::lock_guard<std::mutex> lock(mu);
    domains.push_back(domain);
  }
  return api->AddCustomOpDomain(options, domain);
}
