// Schemas and CUDA implementations of the mask decoder's ops under torch.ops.promptseg.
// Their PyTorch references, fake (meta) implementations and dispatch live in
// promptseg/ops/decoder_attention.py and promptseg/ops/mask_postprocess.py.
#include <torch/library.h>

#include "decoder_ops.cuh"

TORCH_LIBRARY_FRAGMENT(promptseg, m) {
  m.def("token_attention(Tensor q, Tensor k, Tensor v, int num_heads, Tensor? key_padding_mask=None) -> Tensor");
  m.def(
      "gathered_token_attention(Tensor q, Tensor k, Tensor v, int num_heads, Tensor? key_padding_mask=None, "
      "Tensor? q_index=None, Tensor? kv_index=None) -> Tensor");
  m.def(
      "mask_postprocess(Tensor low_res, int[] input_size, int[] original_size, int image_size, float threshold, "
      "bool return_logits, bool with_stats) -> (Tensor masks, Tensor boxes, Tensor areas)");
}

TORCH_LIBRARY_IMPL(promptseg, CUDA, m) {
  m.impl("token_attention", &promptseg::token_attention_cuda);
  m.impl("gathered_token_attention", &promptseg::gathered_token_attention_cuda);
  m.impl("mask_postprocess", &promptseg::mask_postprocess_cuda);
}
