"""Precise mode (`analyze --precise`): the same facts, made by libclang over a
configured tree.

- `kbuild`: an out-of-tree configured build (`make O=DIR <config> prepare`)
  and each file's compiler flags, taken from make and made fit for clang;
- `clangfacts`: one translation unit -> `ClangFacts` (imports libclang; only
  this mode imports it);
- `merge`: tree-sitter facts + clang facts -> the `FileFacts` the graph reads,
  and the cross-check of the two front-ends;
- `driver`: the parallel, cached run over the index's parsed files.
"""
