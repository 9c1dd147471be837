// The Python module promptseg._C and the one library of the promptseg ops.
//
// Importing promptseg._C loads this shared library. Its static initialisers register, under
// torch.ops.promptseg, the schema of every op (the TORCH_LIBRARY block below, the only one) and
// each op's CUDA kernel (a TORCH_LIBRARY_IMPL block beside the kernel's host code:
// encoder_ops.cpp, decoder_attention.cu, mask_postprocess.cu). The module itself exposes nothing.
#include <Python.h>
#include <torch/library.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
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
