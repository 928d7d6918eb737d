#!/usr/bin/env bash
# Runs a command from an image's root file system the way a container runtime with a read-only root would, without
# one (no `podman run` in these sandboxes): in a private mount namespace, the root bind-mounted read-only, /proc, a
# /dev with only null, zero, random and urandom, the keys folder read-only at /etc/privatoon, and the command started
# by chroot as the image's UID:GID, with no new privileges and no capabilities. Root only; the caller's environment
# passes through.
#
#   unshare --mount --propagation private -- deploy/image/run-rootfs.sh ROOTFS KEYS_DIR UID:GID COMMAND...
set -euo pipefail
root=$1 keys=$2 user=$3
shift 3
mount --bind "$root" "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc" 2>/dev/null || mount --rbind /proc "$root/proc"
mount -t tmpfs -o size=64k,mode=755,nosuid,noexec tmpfs "$root/dev"
for device in null zero random urandom; do
  touch "$root/dev/$device"
  mount --bind "/dev/$device" "$root/dev/$device"
done
mount --bind "$keys" "$root/etc/privatoon"
mount -o remount,bind,ro "$root/etc/privatoon"
mount -o remount,bind,ro,nosuid,nodev "$root"
# chroot needs CAP_SYS_CHROOT and the switch to the user CAP_SETUID/SETGID; once it is not root, nothing is left.
chroot=$(PATH="/usr/sbin:/sbin:$PATH" command -v chroot)
exec setpriv --no-new-privs --bounding-set=-all,+sys_chroot,+setuid,+setgid -- \
  "$chroot" --userspec="$user" --groups="${user#*:}" "$root" "$@"
