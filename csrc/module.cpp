// The Python module promptseg._C. Importing it loads this shared library, whose static
// initialisers (TORCH_LIBRARY_FRAGMENT / TORCH_LIBRARY_IMPL blocks in the other files of
// csrc/) register the ops under torch.ops.promptseg. The module itself exposes nothing.
#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
