#!/bin/sh
# The boot check's workload, run by /init inside the VM (busybox sh). For each
# filesystem it exercises the paths the series changes (directories past one
# block, rename within and across directories and over a file, unlink, rmdir,
# short and page-based symlinks, hard links, truncate, sparse files, shared
# mmap + msync, fallocate on ext4), then takes a snapshot of names, types,
# sizes, link counts, symlink targets and checksums, and compares it with the
# snapshot after dropping the page cache and after unmount + fsck + remount.
# Prints "WORKLOAD OK" on success, else "WORKLOAD FAIL: <what>".

fail() { echo "WORKLOAD FAIL: $*"; exit 1; }
step() { echo "workload: $*"; }

LONG=$(printf 'l%.0s' $(seq 1 40))  # a 40-character name part
# a page-based symlink target (longer than any inline "fast" symlink)
TARGET=/a/$LONG/b/$LONG/c/$LONG/d/$LONG/e/$LONG/f

exercise() {  # $1: the mounted directory, $2: the filesystem type
    mkdir "$1/w" && cd "$1/w" || fail "$2: mkdir"
    mkdir big other || fail "$2: mkdir big other"
    i=0
    while [ $i -lt 240 ]; do  # 240 entries: several directory blocks and pages
        echo "entry $i of $2" > "big/${LONG}_$i" || fail "$2: create entry $i"
        i=$((i + 1))
    done
    mv "big/${LONG}_1" "big/renamed_1" || fail "$2: rename within a directory"
    mv "big/${LONG}_2" other/ || fail "$2: rename across directories"
    echo victim > other/victim
    mv "big/${LONG}_3" other/victim || fail "$2: rename over a file"
    i=10
    while [ $i -lt 240 ]; do
        rm "big/${LONG}_$i" || fail "$2: unlink entry $i"
        i=$((i + 3))
    done
    mkdir gone && rmdir gone || fail "$2: rmdir"
    ln -s short s_short || fail "$2: short symlink"
    ln -s "$TARGET" s_long || fail "$2: long symlink"
    [ "$(readlink s_long)" = "$TARGET" ] || fail "$2: long symlink reads back wrong"
    ln "big/${LONG}_11" hard1 && ln "big/${LONG}_11" other/hard2 || fail "$2: hard link"
    [ "$(stat -c %h hard1)" = 3 ] || fail "$2: link count of hard1"
    dd if=/dev/urandom of=t1 bs=1000 count=300 2>/dev/null || fail "$2: write t1"
    truncate -s 5000 t1 && truncate -s 200000 t1 && truncate -s 123457 t1 || fail "$2: truncate"
    dd if=/dev/urandom of=t2 bs=4096 count=8 2>/dev/null && truncate -s 10000 t2 || fail "$2: partial truncate"
    fsprobe sparse sparse || fail "$2: sparse file"
    fsprobe mmap mapped || fail "$2: shared mmap"
    if [ "$2" = ext4 ]; then
        fsprobe falloc falloc || fail "$2: fallocate"
    fi
    cd / && sync
}

snapshot() {  # $1: the directory; one line a name
    (cd "$1" && find . | sort | while read -r f; do
        if [ -L "$f" ]; then echo "$f L $(readlink "$f")"
        elif [ -d "$f" ]; then echo "$f D $(stat -c %h "$f")"
        else echo "$f F $(stat -c '%s %h' "$f") $(md5sum < "$f" | cut -d' ' -f1)"
        fi
    done)
}

same() {  # $1 $2: snapshot files, $3: when
    cmp -s "$1" "$2" || { diff "$1" "$2" | head -20; fail "$3"; }
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

fsck_image() {  # $1: type, $2: device
    case $1 in
        ext2|ext4) e2fsck -fn "$2" > /tmp/fsck.log 2>&1 ;;
        minix) fsck.minix -f "$2" > /tmp/fsck.log 2>&1 ;;
    esac || { cat /tmp/fsck.log; fail "$1: fsck found errors"; }
}

n=0
for fs in ext2 ext4 minix tmpfs; do
    mnt=/mnt/$fs
    mkdir -p "$mnt"
    if [ $fs = tmpfs ]; then
        mount -t tmpfs none "$mnt" || fail "mount tmpfs"
    else
        dev=/dev/loop$n
        n=$((n + 1))
        losetup "$dev" "/images/$fs.img" || fail "losetup $fs"
        mount -t $fs "$dev" "$mnt" || fail "mount $fs"
    fi
    step "$fs: exercise"
    exercise "$mnt" $fs
    snapshot "$mnt" > /tmp/$fs.1
    [ "$(wc -l < /tmp/$fs.1)" -gt 150 ] || fail "$fs: snapshot too small"
    step "$fs: after drop_caches"
    drop_caches
    snapshot "$mnt" > /tmp/$fs.2
    same /tmp/$fs.1 /tmp/$fs.2 "$fs: changed after drop_caches"
    if [ $fs != tmpfs ]; then
        step "$fs: after unmount, fsck, remount"
        umount "$mnt" || fail "umount $fs"
        fsck_image $fs "$dev"
        mount -t $fs "$dev" "$mnt" || fail "remount $fs"
        snapshot "$mnt" > /tmp/$fs.3
        same /tmp/$fs.1 /tmp/$fs.3 "$fs: changed after remount"
    fi
    umount "$mnt" || fail "final umount $fs"
done
echo "WORKLOAD OK"
