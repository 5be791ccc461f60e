# Shared by kernel_build_check.sh and kernel_boot_check.sh (sourced, not run):
# the Debian packages a kernel build needs, and the pristine linux-$KVER tree
# (6.1 unless --kernel says otherwise), extracted once from Debian's
# linux-source-$KVER and kept as a git repository with tag `pristine`; and the
# scripts' usage, die, say and now.

# where the kernel trees and builds are kept (--tree overrides TREE)
CACHE=${MAPPINGPASS_CACHE:-$HOME/.cache/mappingpass}
KVER=6.1
TREE=""

# kt_kernel VERSION: the Debian kernel release to build (6.1, 6.12, ...)
kt_kernel() {
    case $1 in [0-9]*.[0-9]*) KVER=$1 ;; *) die "--kernel must be a version such as 6.1 or 6.12, not '$1'" ;; esac
}

# kt_tree: TREE as given by --tree, or the cache's tree of $KVER
kt_tree() { TREE=${TREE:-$CACHE/kbuild/linux-$KVER}; }

# usage: the script's leading comment, then exit 2
usage() { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 2; }
die() { echo "$(basename "$0" .sh): $*" >&2; exit 2; }
now() { date +%s; }
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# kt_install OUT PACKAGE...: apt-get install those not installed (log in OUT/apt.log)
kt_install() {
    local out=$1 p need=()
    shift
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    [ -f "/usr/src/linux-source-$KVER.tar.xz" ] || need+=("linux-source-$KVER")
    [ ${#need[@]} -gt 0 ] || return 0
    say "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >"$out/apt.log" 2>&1 \
        || die "apt-get failed: see $out/apt.log"
}

# kt_pristine TREE: make TREE the git repository of linux-$KVER with tag
# `pristine`, extracting the tarball the first time
kt_pristine() {
    local tree=$1 tarball=/usr/src/linux-source-$KVER.tar.xz
    local -a g=(git -C "$tree" -c user.name=kbuild -c user.email=kbuild@localhost)
    "${g[@]}" rev-parse -q --verify refs/tags/pristine >/dev/null 2>&1 && return 0
    [ -f "$tarball" ] || die "$tarball missing: apt-get install linux-source-$KVER"
    say "extracting $tarball into $tree (once)"
    rm -rf "$tree.partial" && mkdir -p "$tree.partial"
    tar xJf "$tarball" -C "$tree.partial"
    rm -rf "$tree" && mv "$tree.partial/linux-source-$KVER" "$tree" && rmdir "$tree.partial"
    say "committing the pristine tree (once)"
    "${g[@]}" init -q
    "${g[@]}" add -A -f .  # -f: Debian's top-level .gitignore ignores everything (/*)
    "${g[@]}" commit -q -m "linux-$KVER from $(basename "$tarball")"
    "${g[@]}" tag pristine
}
