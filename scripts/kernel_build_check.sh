#!/usr/bin/env bash
# Build the kernel objects a mappingpass series touches with the kernel's own
# build, before and after the series, and report new errors and warnings.
#
#   scripts/kernel_build_check.sh --analyze "fs/ext2 fs/minix mm"   # plan + series, then check
#   scripts/kernel_build_check.sh --series DIR                      # a series written by emit --series
#   scripts/kernel_build_check.sh --diff FILE                       # one diff written by emit --diff
#
# Options:
#   --tree DIR     the build tree (default $MAPPINGPASS_CACHE/kbuild/linux-$KVER, itself
#                  default ~/.cache/mappingpass/kbuild/linux-$KVER); made once from
#                  /usr/src/linux-source-$KVER.tar.xz and committed to a local git repo,
#                  reset to that commit (tracked files) at every run. Never inside the repo.
#   --kernel V     the Debian kernel release: 6.1 (default) or 6.12 (linux-source-V)
#   --out DIR      where logs, the series and the report go (default: a fresh temp dir)
#   --dirs         also build every object of the touched .c files' directories
#                  (catches callers and implementations outside the touched files)
#   --also OBJ     one more object to build (repeatable), e.g. --also fs/ext4/inode.o
#   --enable SYM   one more config symbol to set =y (repeatable)
#   --header-users N  also build up to N untouched objects that include each touched
#                  header (<linux/x.h> anywhere, "x.h" in the header's directory),
#                  before and after: a header change breaks its users, not itself
#                  Untouched objects that name a function, typedef or slot member the
#                  series redeclares are always built (scripts/name_users.py).
#   --config NAME  the configuration: defconfig (default: x86_64_defconfig plus the
#                  symbols the touched objects need) or allmodconfig (every option
#                  y or m, CONFIG_WERROR=y: what a kernel developer builds before
#                  sending; objects it does not build are listed, not passed)
#   --each         with a series: build after every patch (bisectability), not only the last
#   --at N[,M...]  with a series: build after these patches (a cheaper --each)
#   -j N           make's jobs (default: nproc)
#   --no-deps      do not apt-get install the build dependencies
#
# Exit 0 when the patched build has no error or warning the unpatched build did
# not have, 1 when it has, 2 on usage or setup errors. The report is printed and
# kept in OUT/report.txt; make's output in OUT/logs/{base,patched,after-N}/make.log.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/kernel_tree.sh
. "$REPO/scripts/kernel_tree.sh"
OUT=""
MODE=""
SRC=""
DIRS=0
EACH=0
AT=","
DEPS=1
JOBS=$(nproc)
ALSO=()
ENABLE=()
CONFIG=defconfig
HEADER_USERS=0
while [ $# -gt 0 ]; do
    case $1 in
        --analyze) MODE=analyze; SRC=$2; shift 2 ;;
        --series) MODE=series; SRC=$(cd "$2" && pwd); shift 2 ;;
        --diff) MODE=diff; SRC=$(realpath "$2"); shift 2 ;;
        --tree) TREE=$2; shift 2 ;;
        --kernel) kt_kernel "$2"; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --dirs) DIRS=1; shift ;;
        --each) EACH=1; shift ;;
        --at) AT=",$2,"; shift 2 ;;
        --also) ALSO+=("$2"); shift 2 ;;
        --enable) ENABLE+=("$2"); shift 2 ;;
        --config) CONFIG=$2; shift 2 ;;
        --header-users) HEADER_USERS=$2; shift 2 ;;
        -j) JOBS=$2; shift 2 ;;
        -j*) JOBS=${1#-j}; shift ;;
        --no-deps) DEPS=0; shift ;;
        -h|--help) usage ;;
        *) die "unknown argument $1 (--help)" ;;
    esac
done
[ -n "$MODE" ] || usage
case $CONFIG in defconfig|allmodconfig) ;; *) die "--config must be defconfig or allmodconfig" ;; esac
kt_tree
case $TREE in "$REPO"|"$REPO"/*) die "--tree must not be inside the repository (no kernel code in it)";; esac
OUT=${OUT:-$(mktemp -d /tmp/kbuild-check.XXXXXX)}
mkdir -p "$OUT/logs/base" "$OUT/logs/patched"
OUT=$(cd "$OUT" && pwd)
T0=$(now)
declare -A TIMES

# 1. the kernel build's Debian dependencies --------------------------------
t=$(now)
if [ $DEPS = 1 ]; then
    kt_install "$OUT" build-essential flex bison bc libelf-dev libssl-dev dwarves python3 cpio kmod \
        rsync git xz-utils
fi
TIMES[deps]=$(( $(now) - t ))

# 2. the build tree: extracted once, a git commit to reset to ---------------
t=$(now)
G() { git -C "$TREE" -c user.name=kbuild -c user.email=kbuild@localhost "$@"; }
kt_pristine "$TREE"
G am --abort >/dev/null 2>&1 || true
G checkout -q -f pristine 2>/dev/null || G checkout -q -f --detach pristine
G reset -q --hard pristine
TIMES[tree]=$(( $(now) - t ))

# 3. the series (or diff) ----------------------------------------------------
t=$(now)
PATCHES=()
if [ $MODE = analyze ]; then
    db=$OUT/db
    paths=()
    for p in $SRC; do paths+=("$TREE/$p"); done
    say "mappingpass analyze ${SRC}"
    (cd "$REPO" && python3 -m mappingpass analyze "${paths[@]}" --db "$db" -q) >"$OUT/analyze.txt"
    (cd "$REPO" && python3 -m mappingpass plan --db "$db" --format json -q) >"$OUT/plan.json" || true
    say "writing the series"
    (cd "$REPO" && GIT_AUTHOR_NAME=${GIT_AUTHOR_NAME:-kernel_build_check} \
        GIT_AUTHOR_EMAIL=${GIT_AUTHOR_EMAIL:-kbuild@localhost} \
        python3 -m mappingpass emit --db "$db" --series "$OUT/series" -q)
    (cd "$REPO" && python3 -m mappingpass emit --db "$db" --diff "$OUT/emit.diff" -q)
    SRC=$OUT/series
    MODE=series
fi
if [ $MODE = series ]; then
    for p in "$SRC"/[0-9][0-9][0-9][0-9]-*.patch; do
        case $p in */0000-cover-letter.patch) ;; *) PATCHES+=("$p") ;; esac
    done
    [ ${#PATCHES[@]} -gt 0 ] || die "$SRC: no patches"
    FILES=$(cat "${PATCHES[@]}" | sed -n 's|^+++ b/||p' | sort -u)
else
    FILES=$(sed -n 's|^+++ b/||p' "$SRC" | sort -u)
fi
TIMES[series]=$(( $(now) - t ))
[ -n "$FILES" ] || die "the series changes no file"

# objects to build: every touched .c, plus --also, plus (--dirs) their directories
OBJS=()
for f in $FILES; do
    case $f in *.c) OBJS+=("${f%.c}.o") ;; esac
done
OBJS+=("${ALSO[@]}")
if [ $DIRS = 1 ]; then
    for d in $(printf '%s\n' $FILES | grep '\.c$' | xargs -n1 dirname | sort -u); do
        for c in "$TREE/$d"/*.c; do OBJS+=("${c#"$TREE"/}"); done
    done
    OBJS=("${OBJS[@]/%.c/.o}")
fi
if [ "$HEADER_USERS" -gt 0 ]; then
    # untouched users of every touched header, the first N in path order
    mapfile -t -O "${#OBJS[@]}" OBJS < <(python3 "$REPO/scripts/header_users.py" "$TREE" "$HEADER_USERS" $FILES)
fi
# untouched files that name a function, typedef or slot member the series
# redeclares: they call or bind it with the old signature (always built)
if [ $MODE = series ]; then
    mapfile -t NAME_USERS < <(python3 "$REPO/scripts/name_users.py" "$TREE" "${PATCHES[@]}")
else
    mapfile -t NAME_USERS < <(python3 "$REPO/scripts/name_users.py" "$TREE" "$SRC")
fi
OBJS+=("${NAME_USERS[@]}")
mapfile -t OBJS < <(printf '%s\n' "${OBJS[@]}" | sort -u)

# config symbols that build them: obj-$(CONFIG_X) += dir/ in the parent
# Makefile, X-$(CONFIG_Y) += file.o in the directory's own
syms_for() {
    local f=$1 d b parent
    d=$(dirname "$f"); b=$(basename "$f" .c)
    if [ -f "$TREE/$d/Makefile" ]; then
        grep -E "(^|[[:space:]/])$b\.o([[:space:]]|\\\\|$)" "$TREE/$d/Makefile" | grep -o 'CONFIG_[A-Za-z0-9_]*' || true
    fi
    while [ "$d" != . ] && [ "$d" != / ]; do
        parent=$(dirname "$d")
        [ -f "$TREE/$parent/Makefile" ] && { grep -E "[[:space:]]$(basename "$d")/" "$TREE/$parent/Makefile" \
            | grep -o 'CONFIG_[A-Za-z0-9_]*' || true; }
        d=$parent
    done
}
SYMS=("${ENABLE[@]}")
for o in "${OBJS[@]}"; do
    mapfile -t -O "${#SYMS[@]}" SYMS < <(syms_for "${o%.o}.c")
done
mapfile -t SYMS < <(printf '%s\n' "${SYMS[@]}" | grep . | sort -u)

# 4. configure ---------------------------------------------------------------
t=$(now)
NOTSET=()
if [ $CONFIG = allmodconfig ]; then
    say "make allmodconfig"
    make -C "$TREE" -s allmodconfig >"$OUT/config.log" 2>&1
    for s in "${SYMS[@]}"; do
        grep -q "^$s=[ym]" "$TREE/.config" || NOTSET+=("$s")
    done
else
    say "make x86_64_defconfig + ${SYMS[*]:-nothing}"
    make -C "$TREE" -s x86_64_defconfig >"$OUT/config.log" 2>&1
    for s in "${SYMS[@]}"; do "$TREE/scripts/config" --file "$TREE/.config" --enable "${s#CONFIG_}"; done
    make -C "$TREE" -s olddefconfig >>"$OUT/config.log" 2>&1
    for s in "${SYMS[@]}"; do
        grep -q "^$s=y" "$TREE/.config" || NOTSET+=("$s")
    done
fi
TIMES[config]=$(( $(now) - t ))

# 5. build: one `make -k` for all the objects (Kbuild's single targets), each
# object removed first so that it is really compiled and its warnings printed
build_all() {  # $1: log dir
    local dir=$1 o have=()
    for o in "${OBJS[@]}"; do
        [ -f "$TREE/${o%.o}.c" ] && have+=("$o")
        rm -f "$TREE/$o"
    done
    make -C "$TREE" -k -j"$JOBS" "${have[@]}" >"$dir/make.log" 2>&1 || true
    : >"$dir/failed.txt"
    for o in "${have[@]}"; do
        [ -f "$TREE/$o" ] || echo "$o" >>"$dir/failed.txt"
    done
}
t=$(now)
say "prepare (scripts, generated headers): make -j$JOBS prepare"
make -C "$TREE" -j"$JOBS" prepare >"$OUT/prepare.log" 2>&1 || die "make prepare failed: see $OUT/prepare.log"
TIMES[prepare]=$(( $(now) - t ))

t=$(now)
say "unpatched build of ${#OBJS[@]} objects"
build_all "$OUT/logs/base"
TIMES[base]=$(( $(now) - t ))

t=$(now)
STEPS=()
if [ $MODE = series ]; then
    G checkout -q -B mappingpass-check pristine
    n=0
    for p in "${PATCHES[@]}"; do
        n=$((n + 1))
        G am -q "$p" >"$OUT/am.log" 2>&1 || { cat "$OUT/am.log" >&2; die "git am $(basename "$p") failed"; }
        if { [ $EACH = 1 ] || [[ $AT == *",$n,"* ]]; } && [ $n -lt ${#PATCHES[@]} ]; then
            mkdir -p "$OUT/logs/after-$n"
            say "build after patch $n/${#PATCHES[@]}"
            build_all "$OUT/logs/after-$n"
            STEPS+=("after-$n")
        fi
    done
else
    G apply "$SRC" || die "git apply $SRC failed"
fi
TIMES[apply]=$(( $(now) - t ))
t=$(now)
say "patched build of ${#OBJS[@]} objects"
build_all "$OUT/logs/patched"
STEPS+=("patched")
TIMES[patched]=$(( $(now) - t ))
G checkout -q -f pristine 2>/dev/null || true

# 6. compare -----------------------------------------------------------------
status=0
python3 - "$OUT" "${#OBJS[@]}" "${STEPS[@]}" <<'EOF' >"$OUT/compare.txt" || status=$?
import re
import sys
from collections import Counter
from pathlib import Path

out, nobj, steps = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
diag = re.compile(r"^(?:\./)?(\S+?):(\d+):(\d+): (warning|error): (.*)$")

def read(step):
    logs = out / "logs" / step
    c = Counter()
    for line in (logs / "make.log").read_text(errors="replace").splitlines():
        m = diag.match(line)
        if m:  # without line numbers: the series moves lines
            c[(m.group(1), m.group(4), m.group(5))] += 1
    failed = set((logs / "failed.txt").read_text().split())
    return c, failed

base, base_failed = read("base")
bad = 0
print(f"objects built: {nobj}; unpatched: {len(base_failed)} failed, {sum(base.values())} diagnostics")
for o in sorted(base_failed):  # not built by this configuration, or broken before the series
    print(f"  not built before the series either: {o}")
for step in steps:
    got, failed = read(step)
    new = got - base
    newly_failed = failed - base_failed
    n = sum(new.values())
    print(f"{step}: {len(failed)} failed ({len(newly_failed)} new), {n} new diagnostics")
    for o in sorted(newly_failed):
        print(f"  FAILED {o}")
    for (f, kind, msg), k in sorted(new.items()):
        print(f"  {kind}: {f}: {msg}" + (f" (x{k})" if k > 1 else ""))
    bad += n + len(newly_failed)
sys.exit(1 if bad else 0)
EOF

{
    echo "kernel build check: linux-$KVER, x86_64 $CONFIG"
    echo "tree     $TREE"
    echo "patches  $( [ ${#PATCHES[@]} -gt 0 ] && echo "${#PATCHES[@]} from $SRC" || echo "$SRC")"
    echo "files    $(echo "$FILES" | wc -l) touched: $(echo $FILES)"
    echo "objects  ${#OBJS[@]}: ${OBJS[*]}"
    echo "untouched users of a redeclared name: ${#NAME_USERS[@]}${NAME_USERS[*]:+: ${NAME_USERS[*]}}"
    echo "enabled  ${SYMS[*]:-(none needed)}"
    [ ${#NOTSET[@]} -eq 0 ] || echo "NOT SET  ${NOTSET[*]} (dependencies not met; those objects may not build)"
    echo "gcc      $(gcc --version | head -1)"
    cat "$OUT/compare.txt"
    echo "times (s): deps ${TIMES[deps]}, tree ${TIMES[tree]}, series ${TIMES[series]}," \
         "config ${TIMES[config]}, prepare ${TIMES[prepare]}, unpatched ${TIMES[base]}," \
         "apply (and --each builds) ${TIMES[apply]}, patched ${TIMES[patched]}, total $(( $(now) - T0 ))"
    echo "logs     $OUT"
} | tee "$OUT/report.txt"
exit $status
