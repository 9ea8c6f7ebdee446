#!/bin/sh
# mmdebstrap --customize-hook for the redisctl-sandbox base tree. $1 is the new root.
# Runs once per content hash of (package list + this file); the result is read-only at run time.
set -eu
root="$1"

# 1. The apt archive with redis-server, redis-tools and whatever they need that the base does
#    not already have: downloaded, not installed, and moved OUT of the base into $2 (a cache
#    directory next to it) with a Packages index. The front serves it over HTTP at 192.0.2.80,
#    the distribution mirror's stand-in on the emulated internet: a host reaches it only as an
#    EC2 instance reaches the internet (a public IP behind an internet gateway, or a NAT gateway).
archive="$2"
rm -f "$root"/var/cache/apt/archives/*.deb
chroot "$root" apt-get install --download-only -y -q redis-server redis-tools
# less, which the base has installed: the source of an OS update below.
chroot "$root" apt-get install --download-only --reinstall -y -q less
mkdir -p "$archive"
mv "$root"/var/cache/apt/archives/*.deb "$archive/"
# A newer build of redis-server and redis-tools, and of less: the same programs with the
# version "<version>+sandbox1", which apt takes for an update (what a security update looks
# like to a node), so that a Redis package update and an OS update can be rolled out in the
# sandbox. A fresh install of Redis gets its newer build.
(
  cd "$archive"
  for p in redis-server redis-tools less; do
    deb=$(ls "${p}"_*.deb | head -n 1)
    v=$(dpkg-deb -f "$deb" Version)
    nv="${v}+sandbox1"
    d=$(mktemp -d)
    dpkg-deb -R "$deb" "$d"
    sed -i -e "s/^Version: .*/Version: ${nv}/" -e "s/(= ${v})/(= ${nv})/g" "$d/DEBIAN/control"
    dpkg-deb -b "$d" "${p}_${nv#*:}_$(dpkg-deb -f "$deb" Architecture).deb" >/dev/null
    rm -rf "$d"
  done
)
(
  cd "$archive"
  : > Packages
  for deb in *.deb; do
    dpkg-deb -f "$deb" >> Packages
    printf 'Filename: ./%s\nSize: %s\nSHA256: %s\n\n' \
      "$deb" "$(stat -c %s "$deb")" "$(sha256sum "$deb" | cut -d' ' -f1)" >> Packages
  done
)
rm -f "$root/etc/apt/sources.list"
rm -rf "$root"/etc/apt/sources.list.d/*
echo 'deb [trusted=yes] http://192.0.2.80/debian ./' > "$root/etc/apt/sources.list.d/sandbox.list"
rm -rf "$root"/var/lib/apt/lists/*
mkdir -p "$root/var/lib/apt/lists/partial"

# 2. The login user, as on an Ubuntu cloud image: key-only, passwordless sudo.
chroot "$root" useradd --create-home --shell /bin/bash --groups sudo ubuntu
chroot "$root" usermod -p '*' ubuntu
printf 'ubuntu ALL=(ALL) NOPASSWD:ALL\n' > "$root/etc/sudoers.d/90-cloud-init-users"
chmod 0440 "$root/etc/sudoers.d/90-cloud-init-users"

# 3. sshd: starts at boot, keys only. Host keys are per instance (the front writes them before
#    the first boot), so the shared base must not carry any.
rm -f "$root"/etc/ssh/ssh_host_*
cat > "$root/etc/ssh/sshd_config.d/60-sandbox.conf" <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
CONF
chroot "$root" systemctl enable ssh.service

# 4. Nothing that would try the network or fail without it.
for unit in apt-daily.timer apt-daily-upgrade.timer; do
  chroot "$root" systemctl mask "$unit" || true
done
rm -f "$root/etc/hostname"
# No DNS in the sandbox (hosts resolve each other and themselves through /etc/hosts): an empty
# resolv.conf makes a lookup fail at once instead of waiting on the build machine's resolver.
rm -f "$root/etc/resolv.conf"
printf '# redisctl-sandbox: no DNS inside the sandbox\n' > "$root/etc/resolv.conf"
: > "$root/etc/machine-id"
