// The Python module promptseg._C and the one library of the promptseg ops.
//
// Importing promptseg._C loads this shared library. Its static initialisers register, under
// torch.ops.promptseg, the schema of every op (the TORCH_LIBRARY block below, the only one) and
// each op's CUDA kernel (a TORCH_LIBRARY_IMPL block beside the kernel's host code:
// encoder_ops.cpp, decoder_attention.cu, mask_postprocess.cu). The module itself exposes one
// attribute, KERNEL_LIMITS: the shapes each kernel takes (kernel_limits.h), which
// promptseg/ops/dispatch.py hands to the ops, so that the limits are stated once, here.
#include <Python.h>
#include <torch/library.h>

#include <array>
#include <cstddef>

#include "kernel_limits.h"

namespace {

// A new reference to a tuple of Python ints, or nullptr with a Python error set.
template <std::size_t N>
PyObject* int_tuple(const std::array<int, N>& values) {
  PyObject* tuple = PyTuple_New(static_cast<Py_ssize_t>(N));
  if (tuple == nullptr) return nullptr;
  for (std::size_t i = 0; i < N; ++i) {
    PyObject* item = PyLong_FromLong(values[i]);
    if (item == nullptr) {
      Py_DECREF(tuple);
      return nullptr;
    }
    PyTuple_SET_ITEM(tuple, static_cast<Py_ssize_t>(i), item);  // steals item
  }
  return tuple;
}

// A new reference to {op name: {limit name: value}}, or nullptr with a Python error set:
//   vit_attention: head_dims (tuple of int), max_grid_side_sum (int)
//   token_attention, gathered_token_attention: head_dims
//   mask_postprocess: max_low_res_width
PyObject* kernel_limits() {
  namespace L = promptseg::limits;
  return Py_BuildValue(
      "{s:{s:N,s:i},s:{s:N},s:{s:N},s:{s:i}}",
      "vit_attention", "head_dims", int_tuple(L::kVitHeadDims), "max_grid_side_sum", L::kVitMaxGridSideSum,
      "token_attention", "head_dims", int_tuple(L::kTokenHeadDims),
      "gathered_token_attention", "head_dims", int_tuple(L::kTokenHeadDims),
      "mask_postprocess", "max_low_res_width", L::kMaskMaxLowResWidth);
}

}  // namespace

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  PyObject* limits = kernel_limits();
  if (limits == nullptr || PyModule_AddObject(module, "KERNEL_LIMITS", limits) < 0) {  // steals limits on success
    Py_XDECREF(limits);
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}

// promptseg/ops/dispatch.py lists these op names (OP_NAMES); promptseg/ops/<op module>.py holds each
// op's reference and fake (meta) implementation, which promptseg/ops/fakes.py registers.
TORCH_LIBRARY(promptseg, m) {
  // torch requires the fakes of C++ ops to be registered from the Python module named here.
  m.set_python_module("promptseg.ops.fakes");
  // ViT image encoder (promptseg/ops/encoder_attention.py; kernel: encoder_ops.cpp + encoder_attention.cu)
  m.def(
      "vit_attention(Tensor qkv, int num_heads, Tensor? rel_pos_h, Tensor? rel_pos_w, int window_size, "
      "Tensor? qkv_bias) -> Tensor");
  // Mask decoder attention (promptseg/ops/decoder_attention.py; kernel: decoder_attention.cu)
  m.def("token_attention(Tensor q, Tensor k, Tensor v, int num_heads, Tensor? key_padding_mask=None) -> Tensor");
  m.def(
      "gathered_token_attention(Tensor q, Tensor k, Tensor v, int num_heads, Tensor? key_padding_mask=None, "
      "Tensor? q_index=None, Tensor? kv_index=None) -> Tensor");
  // Mask post-processing (promptseg/ops/mask_postprocess.py; kernel: mask_postprocess.cu)
  m.def(
      "mask_postprocess(Tensor low_res, int[] input_size, int[] original_size, int image_size, float threshold, "
      "bool return_logits, bool with_stats) -> (Tensor masks, Tensor boxes, Tensor areas)");
}
