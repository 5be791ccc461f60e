# Snapshots of a directory tree, one line a name, shared by the boot check's
# workload (in the VM) and kernel_boot_check.sh (on the host, under busybox,
# for the expected contents of a read-only image). Sourced, not run.

snapshot() {  # $1: the directory; names, types, sizes, link counts, checksums
    (cd "$1" && find . | LC_ALL=C sort | while read -r f; do
        if [ -L "$f" ]; then echo "$f L $(readlink "$f")"
        elif [ -d "$f" ]; then echo "$f D $(stat -c %h "$f")"
        else echo "$f F $(stat -c '%s %h' "$f") $(md5sum < "$f" | cut -d' ' -f1)"
        fi
    done)
}

content() {  # $1: the directory; what every filesystem keeps alike (no link counts)
    (cd "$1" && find . | LC_ALL=C sort | while read -r f; do
        if [ -L "$f" ]; then echo "$f L $(readlink "$f")"
        elif [ -d "$f" ]; then echo "$f D"
        else echo "$f F $(stat -c '%s' "$f") $(md5sum < "$f" | cut -d' ' -f1)"
        fi
    done)
}
