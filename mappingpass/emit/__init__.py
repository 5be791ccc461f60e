"""The emit stage: the plan as edits (`edits`, computed once and shared by
the diff, `--apply`, the series and review), re-wrapped (`wrap`), as a
Coccinelle semantic patch (`smpl`), and as a patch series with its
maintainers (`series`, `maintainers`)."""

from .edits import (
    Declaration,
    Edit,
    EmitError,
    HelperPlacement,
    apply_atomically,
    apply_edits,
    apply_wrapped,
    declarations_needed,
    edits_for,
    file_diff,
    for_spatch,
    helper_definition_edit,
    new_texts,
    place_helper,
    read_sources,
    unified_diff,
)

__all__ = ["Declaration", "Edit", "EmitError", "HelperPlacement", "apply_atomically", "apply_edits",
           "apply_wrapped", "declarations_needed", "edits_for", "file_diff", "for_spatch",
           "helper_definition_edit", "new_texts", "place_helper", "read_sources", "unified_diff"]
