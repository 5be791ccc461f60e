"""mappingpass: pass struct address_space down to every reader of page->mapping."""

__version__ = "0.1.0"
