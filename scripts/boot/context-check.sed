# The series' page_mapping_wp() as kernel_boot_check.sh boots it (the script's
# context check; --no-context-check leaves the helper as it is):
# - it warns once (a WARNING, so a FAIL) when a caller's mapping is not the
#   page's own: the helper's contract for a page that is not write protected;
# - it prints "kboot-cover: FUNC+off/size" the first time each inlined copy
#   runs (a table per compilation unit): which readers the workload reached;
# - it and folio_mapping_wp() are always inlined, so that the address is the
#   reader's own (_THIS_IP_ in the function that read page->mapping).
/^static inline struct address_space \*$/{
N
s/^static inline \(struct address_space \*\n\(page_mapping_wp(const struct page \*page,\|folio_mapping_wp(const struct folio \*folio,\)\)/static __always_inline \1/
}
/page_mapping_wp(const struct page \*page,/,/^}$/ s|^\treturn READ_ONCE(page->mapping);$|\tstruct address_space *own = READ_ONCE(page->mapping);\n\n\t/* kernel_boot_check: a caller's mapping must be the page's own */\n\tWARN_ONCE(mapping \&\& own \&\& own != mapping \&\& !((unsigned long)own \& 3),\n\t\t  "page_mapping_wp: the caller's mapping is not the page's");\n\t/* kernel_boot_check: coverage, the first run of each inlined copy */\n\t{\n\t\tstatic unsigned long kboot_seen[64];\n\t\tunsigned long ip = _THIS_IP_;\n\t\tint i;\n\n\t\tfor (i = 0; i < 64 \&\& kboot_seen[i] \&\& kboot_seen[i] != ip; i++)\n\t\t\t;\n\t\tif (i < 64 \&\& !kboot_seen[i]) {\n\t\t\tkboot_seen[i] = ip;\n\t\t\tpr_info("kboot-cover: %pS\\n", (void *)ip);\n\t\t}\n\t}\n\treturn own;|
