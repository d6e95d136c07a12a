#!/usr/bin/env bash
# Seed article 002 ("Kubernetes CNI Calico: BGP mode / Route Reflector mode") on a calico-lab cluster:
# three hosts named as in the article, each running calico-node with its BGP speaker. The article's
# commands run in order inside the hosts (`calico-lab exec <host> -- <command>`), each printed with
# its output. Where this machine lacks what the article uses (IPIP, kubectl, bird, iputils' ping,
# netstat), the script says what stands in for it.
#
#   bash scripts/seed-002-bgp.sh        (as root; builds the binaries if they are missing)
#
# The lab is removed at the end, also when a step fails or the script is interrupted.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CALICO_BIN:-$ROOT/target/debug}
LAB=${SEED_LAB:-seed002}
MASTER=k8s-master
NAMES=k8s-master,k8s-node1,k8s-node2
NODES=(k8s-master k8s-node1 k8s-node2)

if [[ $(id -u) -ne 0 ]]; then
    echo "run as root: calico-lab builds network namespaces" >&2
    exit 1
fi
for binary in calico-lab calico-node calico calicoctl; do
    if [[ ! -x $BIN/$binary ]]; then
        echo "==> building the workspace's binaries (missing $BIN/$binary)"
        (cd "$ROOT" && nice -n 19 cargo build --workspace --bins)
        break
    fi
done
export PATH=$BIN:$PATH

WORK=$(mktemp -d /tmp/seed-002.XXXXXX)
PING_PID=
cleanup() {
    local status=$?
    [[ -n $PING_PID ]] && kill "$PING_PID" 2>/dev/null
    calico-lab down --name "$LAB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    if [[ $status -ne 0 ]]; then
        echo "seed-002: FAILED (exit $status); the lab was removed" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Files the article writes (ippool.yaml, rr-node.yaml, ...) land here: `calico-lab exec` keeps the
# working directory.
cd "$WORK"

note() { printf '\n# %s\n' "$*"; }
# `on HOST 'command'`: print the article's prompt and the command, then run it inside HOST.
on() {
    local host=$1 command=$2
    printf '\n[root@%s ~]# %s\n' "$host" "$command"
    calico-lab exec --name "$LAB" "$host" -- sh -c "$command"
}
# `show FILE`: what the article's `vim`/`cat` shows.
show() { printf '\n[root@%s ~]# cat %s\n' "$MASTER" "$1"; cat "$1"; }

# iputils' ping if installed, else busybox's.
if command -v ping >/dev/null; then PING=ping; else PING="busybox ping"; fi

calico-lab down --name "$LAB" >/dev/null 2>&1 || true
note "A 3-host Calico cluster named as in the article. This kernel has no IPIP, so the pool starts on VXLAN (vxlanMode: Always) with BGP running (--backend bird), as a Calico cluster with BIRD does; the article's pool starts on IPIP."
echo "\$ calico-lab up --name $LAB --node-names $NAMES --encap vxlan --backend bird --pods-per-node 1"
calico-lab up --name "$LAB" --node-names "$NAMES" --encap vxlan --backend bird --pods-per-node 1 2>&1 | sed -n '/^lab /,/^time:/p'

# The article pings a pod on k8s-node2 from k8s-master.
TARGET=$(calico-lab status --name "$LAB" | awk '$1 == "k8s-node2-pod1" { print $3 }')
[[ -n $TARGET ]] || { echo "no address for k8s-node2-pod1" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
note "Part 1: from the encapsulated pool to BGP mode"
on $MASTER 'calicoctl get ippool -o wide'
on $MASTER 'calicoctl get ippool -o yaml > ippool.yaml'
note "The article changes ipipMode: Always to Never (vim ippool.yaml); here the pool's encapsulation is VXLAN, so vxlanMode: Always becomes Never (sed stands in for vim)."
on $MASTER 'grep -n Mode ippool.yaml'
sed -i 's/vxlanMode: Always/vxlanMode: Never/' ippool.yaml
on $MASTER 'grep -n Mode ippool.yaml'

note "A ping from k8s-master to k8s-node2-pod1 ($TARGET) runs across the change ($PING, 0.1 s apart)"
calico-lab exec --name "$LAB" $MASTER -- $PING -c 40 -i 0.1 -W 1 "$TARGET" >"$WORK/ping.txt" 2>&1 &
PING_PID=$!
sleep 1
on $MASTER 'calicoctl apply -f ippool.yaml'
wait "$PING_PID" || true
PING_PID=
grep -E 'transmitted|min/avg' "$WORK/ping.txt"
received=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' "$WORK/ping.txt")
if [[ ${received:-0} -lt 36 ]]; then
    echo "the ping did not continue across the change:" >&2
    cat "$WORK/ping.txt" >&2
    exit 1
fi
on $MASTER 'calicoctl get ippool -o wide'

note "The article's ip addr shows tunl0 no longer used; here calico-node removed the VXLAN device, since no pool asks for VXLAN."
on $MASTER 'ip addr show vxlan.calico || true'
on $MASTER 'ip route'

# ---------------------------------------------------------------------------------------------
note "Part 2: the node-to-node mesh"
for host in "${NODES[@]}"; do
    on "$host" 'calicoctl node status'
done
note "The article greps for bird; here calico-node runs the BGP speaker in-process, so ss names calico-node."
for host in "${NODES[@]}"; do
    on "$host" 'ss -antp | grep 179'
done
note "kubectl get pod -n kube-system: there is no Kubernetes here; calico-lab status lists each host's calico-node."
echo "\$ calico-lab status --name $LAB"
calico-lab status --name "$LAB" | sed -n '/^HOST/,/^$/p'
if command -v netstat >/dev/null; then
    on $MASTER 'netstat -tpln | grep 179'
else
    note "netstat is not installed; ss -tlnp stands in for netstat -tpln."
    on $MASTER 'ss -tlnp | grep 179'
fi

# ---------------------------------------------------------------------------------------------
note "Part 3: route reflector mode. 1. Turn the node-to-node mesh off."
on $MASTER 'calicoctl get bgpconfig'
on $MASTER 'calicoctl get node -o wide'
cat >bgpconfig.yaml <<'EOF'
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: false 
  asNumber: 64512
EOF
show bgpconfig.yaml
on $MASTER 'calicoctl apply -f bgpconfig.yaml'
on $MASTER 'calicoctl get bgpconfig'

note "Pods on other hosts can no longer be reached (3 pings, 1 s each)"
sleep 1
if on $MASTER "$PING -c 3 -W 1 $TARGET"; then
    echo "the ping should fail with the mesh off" >&2
    exit 1
fi
on $MASTER 'calicoctl node status'
on $MASTER 'ip route'

note "2. Make k8s-node2 a route reflector. kubectl label node stands in as calicoctl label nodes (no Kubernetes here)."
on $MASTER 'calicoctl label nodes k8s-node2 route-reflector=true'
on $MASTER 'calicoctl get node k8s-node2 -o yaml > rr-node.yaml'
note "vim rr-node.yaml: routeReflectorClusterID: 244.0.0.1 added under spec.bgp (sed stands in for vim)"
sed -i 's|^\( *\)ipv4Address: .*$|&\n\1routeReflectorClusterID: 244.0.0.1|' rr-node.yaml
show rr-node.yaml
on $MASTER 'calicoctl apply -f rr-node.yaml'

note "3. Peer every node with the route reflectors (label selector)"
cat >bgppeer.yaml <<'EOF'
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
spec:
  nodeSelector: all()
  peerSelector: route-reflector == 'true'
EOF
on $MASTER 'calicoctl apply -f bgppeer.yaml'
show bgppeer.yaml
on $MASTER 'calicoctl get bgppeer'

note "Waiting until the route reflector has its sessions with both clients up"
# Usually within a second or two; 30 s is the limit before the walk is called failed.
up=0
for _ in $(seq 1 60); do
    up=$(calico-lab exec --name "$LAB" k8s-node2 -- calicoctl node status | grep -c Established || true)
    [[ $up -ge 2 ]] && break
    sleep 0.5
done
if [[ $up -lt 2 ]]; then
    echo "the route reflector has $up of 2 sessions up after 30 s:" >&2
    calico-lab exec --name "$LAB" k8s-node2 -- calicoctl node status >&2 || true
    exit 1
fi
note "The network works again"
on $MASTER "$PING -c 3 -W 1 $TARGET"
on $MASTER 'ss -antp | grep ESTAB | grep 179'
on k8s-node2 'ss -antp | grep ESTAB | grep 179'
on $MASTER 'calicoctl node status'
on $MASTER 'ip route'

printf '\nseed-002: every step ran; the lab is removed now.\n'
