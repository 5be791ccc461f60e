"""The index stage: a tree of C files -> per-file facts in a SQLite store.

Extraction runs in parallel over files (`jobs` processes). The store is keyed
by path and content digest: a warm re-run stats every file, re-reads only
those whose size or mtime changed, and re-parses only those whose content
changed. Files whose text cannot hold a read, a provider or a slot signature
(the rules' `relevant_regex`) are recorded as *deferred*: `plan` parses them on
demand when they mention a name the fixpoint changes."""

from . import pool
from .accessors import accessors_damaged, apply_accessors, derive_accessors, stored_accessors
from .sources import (
           changed_since,
           digest_of,
           find_tree_top,
           grep_files,
           inside_tree,
           iter_sources,
           outside_sources,
           readable_sources,
           words_found,
)
from .store import NO_DECLARATIONS, STORE_SCHEMA, FileRow, Store, StoreError
from .tree import MAX_FILE_BYTES, IndexStats, anchors, expand_types, index_tree, parse_deferred

__all__ = ["MAX_FILE_BYTES", "NO_DECLARATIONS", "STORE_SCHEMA", "FileRow", "IndexStats", "Store", "StoreError",
           "accessors_damaged", "anchors", "apply_accessors", "derive_accessors", "stored_accessors",
           "digest_of", "expand_types", "find_tree_top", "grep_files", "index_tree", "inside_tree",
           "changed_since", "iter_sources", "outside_sources", "parse_deferred", "pool", "readable_sources",
           "words_found"]
