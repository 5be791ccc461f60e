"""emit's re-wrap of the lines an edit made longer (emit/wrap.py)."""

from __future__ import annotations

from mappingpass.emit.wrap import HARD, width, wrap_line


def test_a_comma_of_the_outermost_call_is_where_it_breaks():
    line = "\terr = block_write_begin(mapping, pos, len, pagep, ext2_get_block_of_the_mapping_wp);"
    out = wrap_line(line, 80)
    assert out == ["\terr = block_write_begin(mapping, pos, len, pagep,",
                   "\t\t\t\text2_get_block_of_the_mapping_wp);"]


def test_nested_calls_with_one_argument_break_after_a_parenthesis():
    # linux-6.12 fs/nfs/fscache.h: the only comma is deep inside; the line was 103 columns
    line = "\tfscache_note_page_release(netfs_i_cookie(netfs_inode(folio_mapping_wp(folio, mapping)->host)));"
    assert width(line) > HARD
    out = wrap_line(line, 85)
    assert out == ["\tfscache_note_page_release(",
                   "\t\tnetfs_i_cookie(netfs_inode(folio_mapping_wp(folio, mapping)->host)));"]
    assert max(map(width, out)) <= HARD


def test_a_line_within_100_columns_keeps_its_comma_layout():
    # (a break after a parenthesis is only for what would stay over 100 columns)
    line = ("\t\t\t\t\t\t      page_mapping_wp(page, mapping)->host);")
    assert wrap_line(line, 80) == [line]
    cont = "\t\t\t\t\t\t\t\t      fscache_note_page_release(netfs_i_cookie(netfs_inode(folio_mapping_wp(folio,"
    out = wrap_line(cont + " mapping)->host)));", 85)
    assert all(not ln.lstrip("\t").startswith(" \t") and " \t" not in ln for ln in out)
