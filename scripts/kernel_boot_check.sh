#!/usr/bin/env bash
# Boot a small kernel with a series applied under QEMU and run a filesystem
# workload on each filesystem asked for (ext2, ext4, minix and tmpfs unless
# --fs or --matrix says otherwise): the strongest check that a series
# changes no behaviour (the helper returns the page's own field for every page
# that is not write protected, so a correct series behaves exactly like the
# unpatched kernel on the paths the workload exercises).
#
#   scripts/kernel_boot_check.sh --series DIR   # a series written by emit --series
#   scripts/kernel_boot_check.sh --diff FILE    # one diff written by emit --diff
#   scripts/kernel_boot_check.sh --none         # the unpatched kernel only
#
#   --tree DIR     the kernel's git tree with tag `pristine` (default
#                  $MAPPINGPASS_CACHE/kbuild/linux-$KVER, made by kernel_build_check.sh,
#                  or extracted here from Debian's linux-source-$KVER the first time)
#   --kernel V     the Debian kernel release: 6.1 (default) or 6.12 (linux-source-V)
#   --out DIR      where logs and the report go (default: a fresh temp dir)
#   --fs LIST      the filesystems to run, comma-separated names of
#                  scripts/boot/filesystems (default ext2,ext4,minix,tmpfs)
#   --matrix       all of them: every filesystem of that table (about 20;
#                  read-only ones get the read side of a host-made image)
#   --timeout S    seconds a boot may take before it is "no verdict"
#                  (default 120 + 45 per filesystem)
#   --no-context-check  boot the series' helper as it is; by default its
#                  page_mapping_wp() warns once (a WARNING, so a FAIL) when a
#                  caller passes a mapping that is not the page's own: the
#                  helper's contract for a page that is not write protected,
#                  so every context the workload reaches is checked, not only
#                  those that would crash
#   --plan FILE    the plan (mappingpass plan --format json) of the series: the
#                  report then says which functions with rewritten reads the
#                  workload ran, of those built into this kernel, per directory
#                  (the context check records the first run of each inlined
#                  helper: "kboot-cover: FUNC+off" in the serial log)
#   -j N           parallel make jobs (default: nproc)
#   --no-deps      do not apt-get install QEMU, busybox and the build dependencies
#
# The unpatched kernel is built once and cached under $MAPPINGPASS_CACHE/boot
# (keyed by the config and the tree); the patched one is built incrementally
# in a build directory of its own, so a second series rebuilds only what it
# changes. Both kernels boot the same initramfs (busybox, the workload, fsck)
# with the same host-made images as virtio disks (fresh copies for each boot)
# and run the same workload; after the patched boot, the host runs each
# filesystem's checker on its image.
#
# Verdict, from the serial log: FAIL on an oops, BUG, WARNING, lockdep report,
# hung task, fs error or a failed workload step (the lines are printed); PASS
# only when the workload finished ("workload: done") with none of those;
# anything else (a timeout, no line) is NO VERDICT, never a pass. Each
# filesystem gets a verdict of its own (its workload steps, the kernel's
# complaints while it ran, the host's fsck of its image); a filesystem the
# unpatched kernel fails too is reported and not compared. Exit status: 0 PASS,
# 1 FAIL, 3 NO VERDICT (or the unpatched kernel does not pass), 2 usage or setup errors.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE=$REPO/scripts/boot
# shellcheck source=scripts/kernel_tree.sh
. "$REPO/scripts/kernel_tree.sh"
OUT=""
MODE=""
SRC=""
DEPS=1
JOBS=$(nproc)
TIMEOUT=""
CONTEXT_CHECK=1
PLAN=""
FS_LIST=ext2,ext4,minix,tmpfs
while [ $# -gt 0 ]; do
    case $1 in
        --series) MODE=series; SRC=$(cd "$2" && pwd) || die "$2: no such directory"; shift 2 ;;
        --diff) MODE=diff; SRC=$(realpath -e "$2") || die "$2: no such file"; shift 2 ;;
        --none) MODE=none; shift ;;
        --tree) TREE=$2; shift 2 ;;
        --kernel) kt_kernel "$2"; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --fs) FS_LIST=$2; shift 2 ;;
        --matrix) FS_LIST=all; shift ;;
        -j) JOBS=$2; shift 2 ;;
        -j*) JOBS=${1#-j}; shift ;;
        --no-deps) DEPS=0; shift ;;
        --no-context-check) CONTEXT_CHECK=0; shift ;;
        --plan) PLAN=$(realpath -e "$2") || die "$2: no such file"; shift 2 ;;
        -h|--help) usage ;;
        *) die "unknown argument $1 (--help)" ;;
    esac
done
[ -n "$MODE" ] || usage
# the filesystems: NAME TYPE MODE SIZE FEATURES PACKAGE MKFS FSCK, a line each
FS_TABLE=$(sed -e '/^#/d' -e '/^[[:space:]]*$/d' -e 's/[[:space:]]*|[[:space:]]*/|/g' "$HERE/filesystems")
if [ "$FS_LIST" = all ]; then
    FS_LIST=$(cut -d'|' -f1 <<<"$FS_TABLE" | paste -sd,)
fi
declare -A FS
for name in ${FS_LIST//,/ }; do
    FS[$name]=$(grep "^$name|" <<<"$FS_TABLE") \
        || die "--fs: no filesystem '$name' in scripts/boot/filesystems ($(cut -d'|' -f1 <<<"$FS_TABLE" | paste -sd' '))"
done
FS_NAMES=(${FS_LIST//,/ })
TIMEOUT=${TIMEOUT:-$((120 + 45 * ${#FS_NAMES[@]}))}
fs_field() { cut -d'|' -f"$2" <<<"${FS[$1]}"; }  # $1: name, $2: field number
case $TIMEOUT in ''|*[!0-9]*) die "--timeout must be a number of seconds" ;; esac
case $JOBS in ''|*[!0-9]*|0) die "-j must be a positive number" ;; esac
kt_tree
case $TREE in "$REPO"|"$REPO"/*) die "--tree must not be inside the repository (no kernel code in it)";; esac
OUT=${OUT:-$(mktemp -d /tmp/kboot-check.XXXXXX)}
mkdir -p "$OUT" || die "$OUT: cannot create"
OUT=$(cd "$OUT" && pwd)
T0=$(now)
declare -A TIMES

# 1. dependencies ------------------------------------------------------------
t=$(now)
if [ $DEPS = 1 ]; then
    kt_install "$OUT" build-essential flex bison bc libelf-dev libssl-dev python3 cpio git xz-utils \
        qemu-system-x86 busybox-static e2fsprogs util-linux libc6-dev \
        $(for name in "${FS_NAMES[@]}"; do fs_field "$name" 6; done | grep -vx -- - | sort -u)
fi
for tool in qemu-system-x86_64 busybox e2fsck fsck.minix cpio gcc git \
        $(for name in "${FS_NAMES[@]}"; do fs_field "$name" 7 | cut -d' ' -f1; done | grep -vx -- -); do
    command -v "$tool" >/dev/null || die "$tool not found (drop --no-deps to install it)"
done
TIMES[deps]=$(( $(now) - t ))

# 2. the kernel tree: a git repository with tag `pristine`; builds use a
# worktree of it, so kernel_build_check.sh may use the tree meanwhile --------
t=$(now)
G() { git -C "$TREE" -c user.name=kboot -c user.email=kboot@localhost "$@"; }
kt_pristine "$TREE"
BOOT=$CACHE/boot
[ "$KVER" = 6.1 ] || BOOT=$CACHE/boot-$KVER  # (6.1's cache keeps its name)
SRCDIR=$BOOT/linux
mkdir -p "$BOOT"
if [ ! -e "$SRCDIR/.git" ]; then
    G worktree prune
    G worktree add -q --detach "$SRCDIR" pristine
fi
W() { git -C "$SRCDIR" -c user.name=kboot -c user.email=kboot@localhost "$@"; }
PRISTINE=$(G rev-parse pristine^{commit})

# the commit to build: the series (or diff) applied to pristine in a scratch
# index, so that checking it out rewrites only the files that differ from what
# the worktree holds now (the build directories stay incremental)
target_commit() {
    local index=$OUT/apply.index
    rm -f "$index"
    GIT_INDEX_FILE=$index G read-tree "$PRISTINE"
    if [ $MODE = series ]; then
        local p found=0
        for p in "$SRC"/*.patch; do
            case $(basename "$p") in 0000-*) continue ;; esac  # the cover letter
            found=1
            GIT_INDEX_FILE=$index G apply --cached "$p" 2>>"$OUT/apply.log" \
                || die "$(basename "$p") does not apply: see $OUT/apply.log"
        done
        [ $found = 1 ] || die "$SRC: no patches (*.patch)"
    elif [ $MODE = diff ]; then
        GIT_INDEX_FILE=$index G apply --cached "$SRC" 2>>"$OUT/apply.log" \
            || die "$SRC does not apply: see $OUT/apply.log"
    fi
    [ $CONTEXT_CHECK = 1 ] && check_contexts "$index"
    local tree
    tree=$(GIT_INDEX_FILE=$index G write-tree)
    rm -f "$index"
    G commit-tree "$tree" -p "$PRISTINE" -m "kernel_boot_check: $(basename "$SRC")"
}
# the helper's body, made to check its contract (--no-context-check: not)
check_contexts() {  # $1: the scratch index holding the patched tree
    local path blob found=0
    for path in $(GIT_INDEX_FILE=$1 G grep --cached -l 'page_mapping_wp(const struct page \*page,' -- include); do
        blob=$(GIT_INDEX_FILE=$1 G show ":$path" | sed -f "$HERE/context-check.sed" | G hash-object -w --stdin)
        GIT_INDEX_FILE=$1 G update-index --cacheinfo "100644,$blob,$path"
        # (not grep -q: it stops reading, git show dies of SIGPIPE on a large header,
        # and pipefail makes the pipeline fail although the line is there)
        if GIT_INDEX_FILE=$1 G show ":$path" | grep -c 'kernel_boot_check: a caller' >/dev/null; then
            found=1
            echo "$path" >>"$OUT/contexts"  # (target_commit runs in a subshell: the report reads it)
        fi
    done
    [ $found = 1 ] || say "context check: no page_mapping_wp() definition in the patched tree; booting it as it is"
}
rm -f "$OUT/contexts"
TIMES[tree]=$(( $(now) - t ))

# 3. the kernels ---------------------------------------------------------------
KEY=$( (cat "$HERE/boot.config"; echo "$PRISTINE"; gcc --version | head -1) | sha1sum | cut -c1-16)

configure() {  # $1: build dir
    make -C "$SRCDIR" O="$1" tinyconfig >"$1/config.log" 2>&1
    "$SRCDIR/scripts/kconfig/merge_config.sh" -m -O "$1" "$1/.config" "$HERE/boot.config" >>"$1/config.log" 2>&1
    make -C "$SRCDIR" O="$1" olddefconfig >>"$1/config.log" 2>&1
    local sym missing=()
    for sym in $(sed -n 's/^\(CONFIG_[A-Z0-9_]*\)=y$/\1/p' "$HERE/boot.config"); do
        grep -qx "$sym=y" "$1/.config" || missing+=("$sym")
    done
    [ ${#missing[@]} = 0 ] || die "config: not set after olddefconfig: ${missing[*]} (see $1/config.log)"
}

build() {  # $1: build dir, $2: log
    make -C "$SRCDIR" O="$1" -j"$JOBS" bzImage >"$2" 2>&1 \
        || { tail -30 "$2" >&2; return 1; }
}

t=$(now)
BASE=$BOOT/base
if [ "$(cat "$BASE/.mp-key" 2>/dev/null)" != "$KEY" ] || [ ! -f "$BASE/arch/x86/boot/bzImage" ]; then
    say "building the unpatched kernel (once; cached in $BASE)"
    W checkout -q -f --detach "$PRISTINE"
    W clean -q -fdx
    rm -rf "$BASE" "$BOOT/patched" && mkdir -p "$BASE"
    configure "$BASE"
    build "$BASE" "$OUT/build-base.log" || die "the unpatched kernel does not build: see $OUT/build-base.log"
    echo "$KEY" > "$BASE/.mp-key"
else
    say "unpatched kernel: cached ($BASE)"
fi
TIMES[base]=$(( $(now) - t ))

t=$(now)
BUILT=0
if [ $MODE != none ]; then
    COMMIT=$(target_commit)
    W checkout -q -f --detach "$COMMIT"
    PATCHED=$BOOT/patched
    if [ "$(cat "$PATCHED/.mp-key" 2>/dev/null)" != "$KEY" ]; then
        say "seeding the patched build directory from the unpatched one"
        rm -rf "$PATCHED" && cp -a "$BASE" "$PATCHED"
    fi
    say "building the patched kernel ($(G diff --stat "$PRISTINE" "$COMMIT" | tail -1 | sed 's/^ *//'))"
    if build "$PATCHED" "$OUT/build-patched.log"; then
        BUILT=1
    fi
fi
TIMES[patched]=$(( $(now) - t ))

# 4. the initramfs (busybox, the workload, fsck with its libraries) and the
# images: rw ones made empty, ro ones filled from a directory whose expected
# contents the workload compares with -------------------------------------------
t=$(now)
ROOT=$OUT/initramfs
IMAGES=$OUT/images
rm -rf "$ROOT" "$IMAGES" && mkdir -p "$ROOT"/{bin,sbin,proc,sys,dev,tmp,mnt,images} "$IMAGES"
cp "$(command -v busybox)" "$ROOT/bin/busybox"
cp "$HERE/init" "$ROOT/init" && cp "$HERE/workload.sh" "$HERE/snapshot.sh" "$ROOT/"
chmod +x "$ROOT/init" "$ROOT/workload.sh"
gcc -static -O2 -Wall -Werror -o "$ROOT/bin/fsprobe" "$HERE/fsprobe.c"
for tool in e2fsck fsck.minix; do
    path=$(command -v $tool)
    cp "$path" "$ROOT/sbin/"
    for lib in $(ldd "$path" | grep -o '/[^ ]*'); do
        mkdir -p "$ROOT$(dirname "$lib")" && cp -L "$lib" "$ROOT$lib"
    done
done
# what a read-only image holds: a directory past one block, long names, a
# 300 kB file, a sparse one, short and page-based symlinks (deterministic)
RODIR=$OUT/ro-content
rm -rf "$RODIR" && mkdir -p "$RODIR/big" "$RODIR/other"
for i in $(seq 0 239); do echo "entry $i" > "$RODIR/big/$(printf 'l%.0s' $(seq 1 40))_$i"; done
seq 1 60000 > "$RODIR/other/lines"  # about 330 kB
head -c 20000 "$RODIR/other/lines" > "$RODIR/small"
truncate -s 2000000 "$RODIR/small"
ln -s small "$RODIR/s_short"
ln -s "/a/$(printf 'l%.0s' $(seq 1 200))/f" "$RODIR/s_long"
DISKS=()
letter=a
for name in "${FS_NAMES[@]}"; do
    IFS='|' read -r _ type mode size features _ mkfs _ <<<"${FS[$name]}"
    dev=none
    if [ "$type" != tmpfs ]; then
        img=$IMAGES/$name.img
        cmd=${mkfs//IMG/$img}
        if [ "$mode" = ro ]; then
            (cd "$RODIR" && busybox sh -c ". '$HERE/snapshot.sh'; content ." ) > "$ROOT/images/$name.expect"
            cmd=${cmd//DIR/$RODIR}
        else
            truncate -s "$size" "$img"
        fi
        $cmd >"$OUT/mkfs-$name.log" 2>&1 || die "$name: '$cmd' failed: see $OUT/mkfs-$name.log"
        dev=vd$letter
        DISKS+=("$name")
        letter=$(echo "$letter" | tr 'a-y' 'b-z')
    fi
    echo "$name $type $dev $mode ${features:--}" >> "$ROOT/images/matrix"
done
(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$OUT/initramfs.cpio"
TIMES[initramfs]=$(( $(now) - t ))

# 5. boot and judge -------------------------------------------------------------
BAD='Oops|BUG:|WARNING:|Kernel panic|Call Trace|general protection fault|kernel BUG|Unable to handle|EXT[24]-fs error|I/O error|INFO: task .* blocked|possible circular locking|bad unlock balance|Busy inodes|WORKLOAD FAIL'
# each filesystem's own words for an inconsistency it found
BAD="$BAD|BTRFS (error|critical)|F2FS-fs \\(.*\\) : .*(error|inconsistent)|NILFS error|JFS: .*(corrupt|error)|REISERFS (error|panic)|gfs2: .*withdraw|FAT-fs \\(.*\\): error|exFAT-fs \\(.*\\): error|ntfs3: .*(error|corrupt)|UDF-fs: error|SQUASHFS error|erofs: .*(corrupt|error)|isofs: .*error|romfs: .*error|cramfs: .*error|MINIX-fs: .*error"


boot() {  # $1: bzImage, $2: log; prints the exit status of QEMU (124: timed out)
    local rc=0 name drives=()
    for name in "${DISKS[@]}"; do  # fresh copies: each boot starts from the images mkfs made
        cp --sparse=always "$IMAGES/$name.img" "$IMAGES/$name.run.img"
        if [ "$(fs_field "$name" 3)" = ro ]; then
            drives+=(-drive "file=$IMAGES/$name.run.img,if=virtio,format=raw,readonly=on")
        else
            drives+=(-drive "file=$IMAGES/$name.run.img,if=virtio,format=raw")
        fi
    done
    timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -m 1024M -smp 1 -no-reboot \
        -display none -monitor none -serial "file:$2" \
        -kernel "$1" -initrd "$OUT/initramfs.cpio" "${drives[@]}" \
        -append "console=ttyS0 panic=-1 oops=panic loglevel=7" </dev/null >/dev/null 2>&1 || rc=$?
    tr -d '\r' < "$2" > "$2.txt"
    echo $rc
}

# per filesystem, from a serial log: its workload verdict, or FAIL when the
# kernel complained while its steps ran, or NO VERDICT when it never finished;
# "-" for a complaint while no filesystem's steps ran (booting, shutting down)
fs_verdicts() {  # $1: the log (.txt); prints "NAME VERDICT" lines
    BADRE=$BAD awk -v names="${FS_NAMES[*]}" '
        BEGIN { n = split(names, order, " "); bad = ENVIRON["BADRE"] }
        /^workload: / { split($2, w, ":"); cur = index(" " names " ", " " w[1] " ") ? w[1] : "" }
        /^fs-verdict: / { v[$2] = ($3 == "PASS") ? "PASS" : "FAIL"; cur = ""; next }
        /^WORKLOAD (OK|FAIL)/ { next }
        $0 ~ bad { if (cur != "") k[cur] = 1; else outside = 1 }
        END { for (i = 1; i <= n; i++) { f = order[i]
              out = (f in v) ? v[f] : "NO VERDICT"; if (f in k) out = "FAIL"; print f, out }
              if (outside) print "-", "FAIL" }' "$1"
}

# a boot's verdict: FAIL on a complaint outside every filesystem's steps or on
# a filesystem not in $3 (those the unpatched kernel fails too: not compared);
# PASS when the workload finished and every other filesystem passed
judge() {  # $1: the log (.txt), $2: QEMU's exit status, $3: filesystems not compared
    local name verdict fail=0 open=0
    while read -r name verdict; do
        case " $3 " in *" $name "*) continue ;; esac
        case $verdict in FAIL) fail=1 ;; PASS) ;; *) open=1 ;; esac
    done < <(fs_verdicts "$1")
    if [ $fail = 1 ]; then
        echo FAIL
    elif [ $open = 0 ] && [ "$2" = 0 ] && grep -qx "workload: done" "$1"; then
        echo PASS
    else
        echo "NO VERDICT"
    fi
}

# the host's checker on each rw image the patched kernel used
host_fsck() {  # prints "NAME ok|FAIL|-" lines; logs in $OUT/fsck-NAME.log
    local name cmd
    for name in "${DISKS[@]}"; do
        cmd=$(fs_field "$name" 8)
        if [ "$cmd" = - ] || [ "$(fs_field "$name" 3)" = ro ]; then
            echo "$name -"
        elif ${cmd//IMG/$IMAGES/$name.run.img} </dev/null >"$OUT/fsck-$name.log" 2>&1; then
            echo "$name ok"
        else
            echo "$name FAIL"
        fi
    done
}

# the filesystems a boot's log fails (or never finished): for the unpatched
# kernel, those its own driver fails on Debian's image -- reported, not compared
failing_filesystems() {  # $1: the log (.txt)
    fs_verdicts "$1" | awk '$1 != "-" && $2 != "PASS" {print $1}' | paste -sd' '
}

t=$(now)
# the unpatched kernel's verdict is cached with it, per workload
WKEY=$( (echo "$KEY" "$FS_LIST"; cat "$HERE/init" "$HERE/workload.sh" "$HERE/snapshot.sh" "$HERE/fsprobe.c" \
    "$HERE/filesystems"; echo "$BAD") | sha1sum | cut -c1-16)
if [ "$(cat "$BASE/.mp-verdict-key" 2>/dev/null)" = "$WKEY" ] && [ -f "$BASE/serial.log.txt" ]; then
    say "unpatched kernel: verdict cached"
    cp "$BASE/serial.log.txt" "$OUT/serial-base.log.txt"
    V_BASE=$(cat "$BASE/.mp-verdict")
    BASE_FAILS=$(failing_filesystems "$OUT/serial-base.log.txt")
else
    say "booting the unpatched kernel"
    RC=$(boot "$BASE/arch/x86/boot/bzImage" "$OUT/serial-base.log")
    # (the kernel passes if any other filesystem does)
    BASE_FAILS=$(failing_filesystems "$OUT/serial-base.log.txt")
    V_BASE=$(judge "$OUT/serial-base.log.txt" "$RC" "$BASE_FAILS")
    [ "$(wc -w <<<"$BASE_FAILS")" -lt ${#FS_NAMES[@]} ] || V_BASE="FAIL (no filesystem passes)"
    if [ "$V_BASE" = PASS ]; then
        cp "$OUT/serial-base.log.txt" "$BASE/serial.log.txt"
        echo "$V_BASE" > "$BASE/.mp-verdict" && echo "$WKEY" > "$BASE/.mp-verdict-key"
    fi
fi
TIMES[boot-base]=$(( $(now) - t ))
V_PATCHED="-"
t=$(now)
if [ $MODE != none ]; then
    if [ $BUILT = 1 ]; then
        say "booting the patched kernel"
        RC=$(boot "$PATCHED/arch/x86/boot/bzImage" "$OUT/serial-patched.log")
        V_PATCHED=$(judge "$OUT/serial-patched.log.txt" "$RC" "$BASE_FAILS")
    else
        V_PATCHED="FAIL (does not build)"
    fi
fi
TIMES[boot-patched]=$(( $(now) - t ))

# 6. report ---------------------------------------------------------------------
{
    echo "kernel boot check: linux-$KVER, tinyconfig + scripts/boot/boot.config, QEMU TCG, ${#FS_NAMES[@]} filesystems"
    echo "tree       $SRCDIR ($([ $MODE = none ] && echo pristine || echo "$SRC"))"
    if [ $CONTEXT_CHECK = 0 ]; then
        echo "contexts   not checked (--no-context-check)"
    elif [ $MODE = none ]; then
        echo "contexts   not checked (no series: nothing passes a mapping)"
    elif [ -s "$OUT/contexts" ]; then
        echo "contexts   checked: page_mapping_wp() in $(sort -u "$OUT/contexts" | tr '\n' ' ')warns when a caller's mapping is not the page's"
    else
        echo "contexts   NOT checked: the patched tree has no page_mapping_wp() definition to put the check in"
    fi
    echo "unpatched  $V_BASE"
    echo "patched    $V_PATCHED"
    [ -z "$BASE_FAILS" ] || echo "not compared: $BASE_FAILS (the unpatched kernel fails them too)"
    echo "filesystems (unpatched / patched / host fsck of the patched boot's image):"
    declare -A VB VP VF
    [ -f "$OUT/serial-base.log.txt" ] && while read -r n v; do VB[$n]=$v; done < <(fs_verdicts "$OUT/serial-base.log.txt")
    [ -f "$OUT/serial-patched.log.txt" ] && while read -r n v; do VP[$n]=$v; done < <(fs_verdicts "$OUT/serial-patched.log.txt")
    [ -f "$OUT/serial-patched.log.txt" ] && while read -r n v; do VF[$n]=$v; done < <(host_fsck)
    for name in "${FS_NAMES[@]}"; do
        printf '  %-9s %-10s / %-10s / %s\n' "$name" "${VB[$name]:-NO VERDICT}" "${VP[$name]:--}" "${VF[$name]:--}"
    done
    for which in base patched; do
        [ -f "$OUT/serial-$which.log.txt" ] || continue
        if grep -Eq "$BAD" "$OUT/serial-$which.log.txt"; then
            echo "--- $which: the lines that failed it"
            grep -E "$BAD|the caller's mapping is not the page's|^RIP: " "$OUT/serial-$which.log.txt" | head -20
            echo "--- $which: the first call trace"
            awk '/Call Trace:/ {on = 1; next} on && /<\/TASK>|^---\[ end/ {exit} on && !/<TASK>/ {print; if (++n == 12) exit}' \
                "$OUT/serial-$which.log.txt"
        fi
        echo "--- $which: the workload's last steps"
        grep -E '^workload:' "$OUT/serial-$which.log.txt" | tail -3
    done
    if [ -n "$PLAN" ] && [ $CONTEXT_CHECK = 1 ] && [ -s "$OUT/contexts" ] && [ -f "$OUT/serial-patched.log.txt" ]; then
        python3 "$HERE/coverage.py" --plan "$PLAN" --log "$OUT/serial-patched.log.txt" \
            --system-map "$PATCHED/System.map" || echo "coverage   could not be computed (see above)"
    elif [ -n "$PLAN" ]; then
        echo "coverage   not measured (the context check did not run on a booted patched kernel)"
    fi
    echo "times (s): deps ${TIMES[deps]}, tree ${TIMES[tree]}, unpatched build ${TIMES[base]}," \
         "patched build ${TIMES[patched]}, initramfs ${TIMES[initramfs]}," \
         "boot unpatched ${TIMES[boot-base]}, boot patched ${TIMES[boot-patched]}, total $(( $(now) - T0 ))"
    echo "logs       $OUT"
} | tee "$OUT/report.txt"

[ "$V_BASE" = PASS ] || exit 3
case $V_PATCHED in PASS|-) exit 0 ;; FAIL*) exit 1 ;; *) exit 3 ;; esac
