#!/usr/bin/env bash
# Installs what calico-rs needs on a fresh Debian machine (run as root). Safe to run again.
set -euo pipefail

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ -x /usr/bin/time ] || need+=(time)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v containerd >/dev/null 2>&1 || need+=(containerd)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)
[ -x /usr/lib/cni/ptp ] || need+=(containernetworking-plugins)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
# BGP daemons for the interop tests, which start their own copies inside test namespaces.
[ -x /usr/sbin/bird ] || need+=(bird2)
[ -x /usr/lib/frr/bgpd ] || need+=(frr)
command -v gobgpd >/dev/null 2>&1 || need+=(gobgpd)
[ -x /usr/sbin/exabgp ] || command -v exabgp >/dev/null 2>&1 || need+=(exabgp)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  apt-get update -qq
  # The daemon packages start their services on install; nothing may run in the root namespace
  # (a stray bird or zebra would program its routes there), so service starts are refused
  # while installing unless the machine already has its own policy.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    # Removed again however the install ends.
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Whatever started them (an older install, a policy that allowed it): stop the packaged services
# so that they neither hold port 179 nor touch the root namespace's routes.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for unit in bird frr gobgpd exabgp; do
    if systemctl is-active --quiet "$unit" 2>/dev/null; then
      echo "setup: stopping and disabling the packaged $unit service (tests run their own)"
      systemctl disable --now --quiet "$unit" || { echo "setup: could not stop $unit" >&2; exit 1; }
    fi
  done
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found: install the Rust toolchain (1.95 or newer)" >&2; exit 1; }
