#!/bin/sh
# The boot check's workload, run by /init inside the VM (busybox sh), once for
# each filesystem listed in /images/matrix, a line each:
#
#   NAME TYPE DEVICE MODE FEATURES
#
# (DEVICE: vda... a virtio disk the host made, or "none" for tmpfs; MODE: rw
# or ro; FEATURES: a comma list of long, sym, hard, falloc, fsck -- what the
# filesystem can do: msdos has 8.3 names and no links, fat and exfat no links).
#
# rw: exercises the paths the series changes (directories past one block,
# rename within and across directories and over a file, unlink, rmdir, short
# and page-based symlinks, hard links, truncate, sparse files, shared mmap +
# msync, fallocate), then compares a snapshot of names, types, sizes, link
# counts, symlink targets and checksums with the one after dropping the page
# cache and after unmount (+ fsck where the VM has one) + remount.
# ro: the read side (getdents, read, readahead, a read-only mmap of every
# file, readlink) compared with what the host put in the image
# (/images/NAME.expect), again after dropping the page cache.
#
# Prints "fs-verdict: NAME PASS" or "fs-verdict: NAME FAIL: <what>" for each,
# then "WORKLOAD OK" when every one passed, else "WORKLOAD FAIL: <names>".

. /snapshot.sh

fail() { echo "fs-verdict: $NAME FAIL: $*"; exit 1; }
step() { echo "workload: $*"; }
has() { case ",$FEATURES," in *",$1,"*) return 0 ;; esac; return 1; }

LONG=$(printf 'l%.0s' $(seq 1 40))  # a 40-character name part
# a page-based symlink target (longer than any inline "fast" symlink)
TARGET=/a/$LONG/b/$LONG/c/$LONG/d/$LONG/e/$LONG/f

exercise() {  # $1: the mounted directory
    mkdir "$1/w" && cd "$1/w" || fail "mkdir"
    mkdir big other || fail "mkdir big other"
    if has long; then p="${LONG}_"; else p=E; fi  # (msdos: 8.3 names)
    i=0
    while [ $i -lt 240 ]; do  # 240 entries: several directory blocks and pages
        echo "entry $i of $NAME" > "big/$p$i" || fail "create entry $i"
        i=$((i + 1))
    done
    mv "big/${p}1" "big/R1" || fail "rename within a directory"
    mv "big/${p}2" other/ || fail "rename across directories"
    echo victim > other/victim
    mv "big/${p}3" other/victim || fail "rename over a file"
    i=10
    while [ $i -lt 240 ]; do
        rm "big/$p$i" || fail "unlink entry $i"
        i=$((i + 3))
    done
    mkdir gone && rmdir gone || fail "rmdir"
    if has sym; then
        ln -s short s_short || fail "short symlink"
        ln -s "$TARGET" s_long || fail "long symlink"
        [ "$(readlink s_long)" = "$TARGET" ] || fail "long symlink reads back wrong"
    fi
    if has hard; then
        ln "big/${p}11" hard1 && ln "big/${p}11" other/hard2 || fail "hard link"
        [ "$(stat -c %h hard1)" = 3 ] || fail "link count of hard1"
    fi
    dd if=/dev/urandom of=t1 bs=1000 count=300 2>/dev/null || fail "write t1"
    truncate -s 5000 t1 && truncate -s 200000 t1 && truncate -s 123457 t1 || fail "truncate"
    dd if=/dev/urandom of=t2 bs=4096 count=8 2>/dev/null && truncate -s 10000 t2 || fail "partial truncate"
    fsprobe sparse sparse || fail "sparse file"
    fsprobe mmap mapped || fail "shared mmap"
    if has falloc; then
        fsprobe falloc falloc || fail "fallocate"
    fi
    cd / && sync
}

same() {  # $1 $2: snapshot files, $3: when
    cmp -s "$1" "$2" || { diff "$1" "$2" | head -20; fail "$3"; }
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

fsck_image() {  # $1: device
    case $TYPE in
        ext2|ext3|ext4) e2fsck -fn "$1" > /tmp/fsck.log 2>&1 ;;
        minix) fsck.minix -f "$1" > /tmp/fsck.log 2>&1 ;;
        *) return 0 ;;  # (the host checks the others after the boot)
    esac || { cat /tmp/fsck.log; fail "fsck found errors"; }
}

mount_it() {  # $1: the mount point
    if [ "$DEVICE" = none ]; then
        mount -t "$TYPE" none "$1"
    elif [ "$MODE" = ro ]; then
        mount -t "$TYPE" -o ro "/dev/$DEVICE" "$1"
    else
        mount -t "$TYPE" "/dev/$DEVICE" "$1"
    fi
}

read_side() {  # $1: the mounted directory: every file through read(2) and a mapping
    content "$1" > "/tmp/$NAME.1"
    same "/images/$NAME.expect" "/tmp/$NAME.1" "contents differ from the image the host made"
    find "$1" -type f | while read -r f; do
        fsprobe mmapread "$f" || { echo "mmapread $f"; return 1; }
    done || fail "read-only mmap"
    step "$NAME: after drop_caches"
    drop_caches
    content "$1" > "/tmp/$NAME.2"
    same "/tmp/$NAME.1" "/tmp/$NAME.2" "changed after drop_caches"
}

one() {  # the filesystem of $NAME $TYPE $DEVICE $MODE $FEATURES
    mnt=/mnt/$NAME
    mkdir -p "$mnt"
    step "$NAME: mount"  # (what the kernel says while mounting is this filesystem's)
    mount_it "$mnt" || fail "mount"
    if [ "$MODE" = ro ]; then
        step "$NAME: read side"
        read_side "$mnt"
        umount "$mnt" || fail "umount"
        return 0
    fi
    step "$NAME: exercise"
    exercise "$mnt"
    snapshot "$mnt" > "/tmp/$NAME.1"
    [ "$(wc -l < "/tmp/$NAME.1")" -gt 150 ] || fail "snapshot too small"
    step "$NAME: after drop_caches"
    drop_caches
    snapshot "$mnt" > "/tmp/$NAME.2"
    same "/tmp/$NAME.1" "/tmp/$NAME.2" "changed after drop_caches"
    if [ "$DEVICE" != none ]; then
        step "$NAME: after unmount, fsck, remount"
        umount "$mnt" || fail "umount"
        fsck_image "/dev/$DEVICE"
        mount_it "$mnt" || fail "remount"
        snapshot "$mnt" > "/tmp/$NAME.3"
        same "/tmp/$NAME.1" "/tmp/$NAME.3" "changed after remount"
    fi
    umount "$mnt" || fail "final umount"
}

failed=""
while read -r NAME TYPE DEVICE MODE FEATURES; do
    case $NAME in ''|'#'*) continue ;; esac
    if (one) </dev/null; then
        echo "fs-verdict: $NAME PASS"
    else
        failed="$failed $NAME"
    fi
done < /images/matrix
if [ -z "$failed" ]; then
    echo "WORKLOAD OK"
else
    echo "WORKLOAD FAIL:$failed"
fi
