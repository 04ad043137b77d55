#!/usr/bin/env bash
# A real multi-node Slurm cluster on one machine: a controller host `ctl` (munged, MariaDB,
# slurmdbd, slurmctld; also the submit host) and N compute hosts `node1..N` (one slurmd
# each), every host in its own network, UTS and mount namespace with its own hostname and
# address, joined by a bridge in a "switch" namespace of its own, on a private subnet that
# exists only inside those namespaces. See ../docs/MULTINODE.md.
#
#   scripts/slurm-nodes.sh start [--nodes N] [--link-rate RATE]   start (idempotent)
#   scripts/slurm-nodes.sh stop              end every process in its namespaces, delete them
#   scripts/slurm-nodes.sh status            exit 0 only when every node is up
#   scripts/slurm-nodes.sh run-on HOST CMD…  run CMD on host ctl or nodeI (SLURM_CONF set),
#                                            in the caller's working directory
#   scripts/slurm-nodes.sh link NODE up|down connect or cut a node's network link
#   scripts/slurm-nodes.sh env               print `export SLURM_CONF=... PATH=...
#                                            HPC_PROFILE=local-nodes`: with it, sbatch, sacct…
#                                            of this shell go to ctl, hpc submit uses its profile
#   scripts/slurm-nodes.sh purge             stop, then delete the state folder
# `scripts/slurm-cluster.sh start --nodes N` (and its other commands with --nodes) calls
# this script.
#
# Nothing in the root namespace's network changes: the veth pairs are created inside the
# switch and host namespaces, and no address, route or firewall rule is added outside them.
# Slurm clients must run on a host of the cluster (`run-on ctl sbatch …`): the controller's
# address is reachable only there.
#
# Settings (environment): HPC_MNODE_DIR (state folder, default /tmp/hpc-mnode),
# HPC_MNODE_PREFIX (namespace name prefix, default hpcmn-), HPC_MNODE_NET (first three
# octets of the private /24, default 10.211.11), HPC_MNODE_CPUS (CPUs each node advertises,
# default 2), HPC_MNODE_SLURMD_TIMEOUT / HPC_MNODE_MESSAGE_TIMEOUT (seconds, default 5 and
# 2: a dead node is NODE_FAIL within ~10 s), HPC_SLURM_NO_INSTALL=1 (never run apt-get).
#
# Exit codes: 0 ok; 1 a daemon failed to start (its log is printed); 2 bad usage; 3 this
# machine cannot run the cluster (not root, no namespaces, packages missing).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${HPC_MNODE_DIR:-/tmp/hpc-mnode}
PREFIX=${HPC_MNODE_PREFIX:-hpcmn-}
NET=${HPC_MNODE_NET:-10.211.11}
CPUS=${HPC_MNODE_CPUS:-2}
SLURMD_TIMEOUT=${HPC_MNODE_SLURMD_TIMEOUT:-5}
MESSAGE_TIMEOUT=${HPC_MNODE_MESSAGE_TIMEOUT:-2}
CLUSTER=hpcnodes
CTL_IP=$NET.1

cannot() { echo "slurm-nodes: cannot run here: $*" >&2; exit 3; }
usage() { echo "slurm-nodes: $*" >&2; exit 2; }
say() { echo "slurm-nodes: $*" >&2; }

[[ $DIR = /* && $DIR =~ ^[A-Za-z0-9_./-]+$ ]] \
  || cannot "HPC_MNODE_DIR must be an absolute path of letters, digits and ._/-"
[[ $PREFIX =~ ^[a-z][a-z0-9-]{0,7}$ ]] || cannot "HPC_MNODE_PREFIX: 1-8 of a-z 0-9 -"
[[ $NET =~ ^(10|192\.168|172\.(1[6-9]|2[0-9]|3[01]))(\.[0-9]{1,3}){1,2}$ ]] \
  && [[ $(tr -cd . <<<"$NET") = .. ]] || cannot "HPC_MNODE_NET: three octets of a private /24"
for v in CPUS SLURMD_TIMEOUT MESSAGE_TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || cannot "HPC_MNODE_$v must be a positive number"
done

CONF=$DIR/etc/slurm.conf
MUNGE_SOCKET=$DIR/munge/munge.socket
DB_SOCKET=$DIR/mysql/mysqld.sock
export SLURM_CONF=$CONF

NAME=slurm-nodes
# shellcheck source=scripts/slurm-lib.sh
source "$HERE/slurm-lib.sh"

ns() { echo "$PREFIX$1"; }
holder_pidfile() { echo "$DIR/run/host-$1.pid"; }

# The hosts of the running (or configured) cluster: ctl node1 … nodeN.
configured_nodes() { cat "$DIR/etc/nodes" 2>/dev/null || echo 0; }
hosts() { local i; echo ctl; for ((i = 1; i <= $(configured_nodes); i++)); do echo "node$i"; done; }

# The pid of the process holding HOST's namespaces, if it is alive.
holder_pid() {
  local file=$1 pid
  file=$(holder_pidfile "$1")
  [[ -s $file ]] || return 1
  pid=$(<"$file")
  alive "$pid" && [[ -e /run/netns/$(ns "$1") ]] || return 1
  echo "$pid"
}

on() {  # on HOST CMD…: run CMD in HOST's namespaces, in the caller's directory
  local host=$1 pid; shift
  pid=$(holder_pid "$host") || { echo "slurm-nodes: host $host is not running" >&2; return 1; }
  nsenter -t "$pid" -n -u -m --wd="$PWD" -- "$@"
}

check_machine() {
  [[ $(id -u) = 0 ]] || cannot "namespaces and slurmd need root"
  local p
  for p in ip nsenter unshare tc; do
    command -v "$p" >/dev/null || cannot "$p is missing (apt-get install iproute2 util-linux)"
  done
  [[ -d /sys/fs/cgroup ]] || cannot "slurmd needs a cgroup file system on /sys/fs/cgroup"
  # Packages: the single-node script knows the list and installs what is missing.
  bash "$HERE/slurm-cluster.sh" install
}

write_config() {
  local nodes=$1 i mem
  mkdir -p "$DIR"/{etc,run,log,munge,mysql,db,state}
  chmod 755 "$DIR" "$DIR/munge"
  new_munge_key
  echo "$nodes" >"$DIR/etc/nodes"
  {
    echo "127.0.0.1 localhost"
    echo "$CTL_IP ctl"
    for ((i = 1; i <= nodes; i++)); do echo "$NET.$((10 + i)) node$i"; done
  } >"$DIR/etc/hosts"
  for ((i = 1; i <= nodes; i++)); do mkdir -p "$DIR/spool/slurmd-node$i" "$DIR/tmp-node$i"; done
  mem=$(awk -v n="$nodes" '/MemTotal/ {print int($2 / 1024 / 2 / n)}' /proc/meminfo)
  cat >"$CONF.new" <<EOF
# Written by scripts/slurm-nodes.sh; rewritten on every start.
ClusterName=$CLUSTER
SlurmctldHost=ctl($CTL_IP)
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmdLogFile=$DIR/log/slurmd-%n.log
AccountingStorageHost=$CTL_IP
$(slurm_conf_common)
# All "nodes" share one /tmp: srun's PMIx directories must not collide.
TmpFS=$DIR/tmp-%n
# The venv's MPICH (PyPI) speaks PMI-2.
MpiDefault=pmi2
# Short on purpose: a node that stops answering is NODE_FAIL within seconds (fault tests).
SlurmdTimeout=$SLURMD_TIMEOUT
MessageTimeout=$MESSAGE_TIMEOUT
# Job ids far from those of the single-node cluster on the same machine: MPICH names its
# shared-memory files after the job and step ids, and a file left by a killed job of the
# other cluster with the same ids makes MPI_Init fail ("Out of memory").
FirstJobId=700000
# Like many sites: only jobs that ask (--requeue: checkpointing ones) are requeued after a
# node failure or a preemption; the others end NODE_FAIL or PREEMPTED for good.
JobRequeue=0
# Refuse at submission what can never run here (more nodes than exist), as sites do.
EnforcePartLimits=ALL
# A job in partition urgent requeues (preempts) the batch jobs holding the nodes it needs.
# The preempted job's steps get SIGTERM, then SIGKILL KillWait (5) seconds later: ranks of
# hpc run --checkpoint save their state in between, and the requeued job resumes.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
EOF
  for ((i = 1; i <= nodes; i++)); do
    echo "NodeName=node$i NodeAddr=$NET.$((10 + i)) CPUs=$CPUS RealMemory=$mem State=UNKNOWN"
  done >>"$CONF.new"
  cat >>"$CONF.new" <<EOF
PartitionName=batch Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
  mv "$CONF.new" "$CONF"
  write_slurmdbd_conf DbdHost=ctl "DbdAddr=$CTL_IP"
}

# One long-lived process per host owns its namespaces. Inside its private mount namespace
# /sys is remounted for the new network namespace with the cgroup tree kept (slurmd 22.05
# refuses to start without /sys/fs/cgroup), and the cluster's hosts file covers /etc/hosts.
start_holder() {
  local host=$1 pid i ready=$DIR/run/host-$1.ready
  rm -f "$ready"
  mkdir -p "$DIR/run/aux-$host"
  setsid unshare --net --uts --mount --propagation private -- bash -c '
    set -e
    hostname "$1"
    mount --rbind /sys/fs/cgroup "$2"
    umount -l /sys
    mount -t sysfs sysfs /sys
    mount --move "$2" /sys/fs/cgroup
    mount --bind "$3" /etc/hosts
    ip link set lo up
    # IPv4 only on the private network: no link-local IPv6 addresses (and their duplicate
    # address detection after a link comes back) for MPI to choose among.
    sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    touch "$4"
    exec -a "slurm-nodes-host-$1" sleep infinity' \
    holder "$host" "$DIR/run/aux-$host" "$DIR/etc/hosts" "$ready" \
    </dev/null >"$DIR/log/host-$host.log" 2>&1 &
  pid=$!
  for ((i = 0; i < 50; i++)); do [[ -e $ready ]] && break; alive "$pid" || break; sleep 0.1; done
  [[ -e $ready ]] || failed "host $host" "$DIR/log/host-$host.log"
  echo "$pid" >"$(holder_pidfile "$host")"
  ip netns attach "$(ns "$host")" "$pid"
}

start_network() {
  local sw i host
  sw=$(ns switch)
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  for host in $(hosts); do
    # Created inside the switch namespace with its peer born in the host's: the root
    # namespace never sees either end.
    ip -n "$sw" link add "v-$host" type veth peer name eth0 netns "$(ns "$host")"
    ip -n "$sw" link set "v-$host" master br0 up
    if [[ $host = ctl ]]; then i=1; else i=$((10 + ${host#node})); fi
    ip -n "$(ns "$host")" addr add "$NET.$i/24" dev eth0
    ip -n "$(ns "$host")" link set eth0 up
  done
}

# Slurm's client commands in $DIR/bin, for use from the machine itself (PATH first, see
# `env`): run outside the cluster they go to the controller host (the controller's
# address exists only inside the cluster's namespaces: a client outside would send its
# packets to the machine's default route); on a host of the cluster (a job script on a
# node) they are the real commands.
write_client_wrappers() {
  local cmd real
  mkdir -p "$DIR/bin"
  for cmd in sbatch srun salloc squeue scancel scontrol sinfo sacct sacctmgr sstat sprio; do
    real=$(PATH=${PATH//$DIR\/bin:/} command -v "$cmd") || continue
    cat >"$DIR/bin/$cmd.new" <<EOF
#!/bin/bash
# Written by scripts/slurm-nodes.sh: $cmd on the controller host of $DIR's cluster.
# On a host of the cluster (its holder shares this network namespace): the real command.
holder=$DIR/run/host-\$(hostname).pid
if [[ -s \$holder && \$(readlink /proc/self/ns/net) == \
      "\$(readlink "/proc/\$(<"\$holder")/ns/net" 2>/dev/null)" ]]; then
  exec $real "\$@"
fi
export SLURM_CONF=$CONF
exec bash $HERE/slurm-nodes.sh run-on ctl $real "\$@"
EOF
    chmod 755 "$DIR/bin/$cmd.new"
    mv "$DIR/bin/$cmd.new" "$DIR/bin/$cmd"
  done
}

shape_links() {  # shape_links RATE: limit every node's outgoing traffic to RATE (tbf)
  local host
  for host in $(hosts); do
    [[ $host = ctl ]] && continue
    tc -n "$(ns "$host")" qdisc replace dev eth0 root tbf rate "$1" burst 128kb latency 50ms
  done
}

dbd_ready() { on ctl sacctmgr -n -P show cluster format=cluster; }
ctld_ready() { on ctl scontrol ping | grep -q UP; }
nodes_ready() {
  local states
  states=$(on ctl sinfo -h -N -p batch -o %T) || return 1
  [[ $(grep -cE '^(idle|mixed|allocated)$' <<<"$states") -eq $(configured_nodes) ]]
}

start_daemons() {
  start_munged_with on ctl
  start_mariadbd_with on ctl
  on ctl env MYSQL_UNIX_PORT="$DB_SOCKET" SLURM_CONF="$CONF" slurmdbd
  wait_for 30 dbd_ready || failed slurmdbd "$DIR/log/slurmdbd.log"
  if ! on ctl sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
    on ctl sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
  on ctl slurmctld
  wait_for 30 ctld_ready || failed slurmctld "$DIR/log/slurmctld.log"
  local host
  for host in $(hosts); do
    [[ $host = ctl ]] || on "$host" slurmd
  done
  if ! wait_for 30 nodes_ready; then
    # Nodes left DOWN by an earlier unclean stop come back by hand.
    on ctl scontrol update nodename="node[1-$(configured_nodes)]" state=resume \
      >/dev/null 2>&1 || true
    wait_for 15 nodes_ready || failed slurmd "$DIR/log/slurmd-node1.log"
  fi
}

healthy() {
  local host
  for host in switch $(hosts); do holder_pid "$host" >/dev/null || return 1; done
  nodes_ready
}

cmd_start() {
  local nodes=2 rate=""
  while (($#)); do
    case $1 in
      --nodes) nodes=${2:-}; shift 2 || usage "--nodes needs a number" ;;
      --nodes=*) nodes=${1#*=}; shift ;;
      --link-rate) rate=${2:-}; shift 2 || usage "--link-rate needs a rate such as 1gbit" ;;
      --link-rate=*) rate=${1#*=}; shift ;;
      *) usage "start: unknown option '$1' (valid: --nodes N, --link-rate RATE)" ;;
    esac
  done
  [[ $nodes =~ ^[1-9][0-9]?$ ]] && ((nodes <= 64)) || usage "--nodes must be 1 to 64, got '$nodes'"
  [[ -z $rate || $rate =~ ^[0-9]+(\.[0-9]+)?[kmg]?bit$ ]] \
    || usage "--link-rate: a tc rate such as 500mbit or 1gbit, got '$rate'"
  check_machine
  if [[ -e $DIR/etc/nodes && $(configured_nodes) = "$nodes" ]] && healthy; then
    [[ -z $rate ]] || shape_links "$rate"
    say "already running: $nodes nodes${rate:+, links at $rate}"
    return 0
  fi
  cmd_stop >/dev/null 2>&1  # whatever is left of an earlier cluster (other size, crash)
  local t0=$SECONDS host
  write_config "$nodes"
  write_client_wrappers
  for host in switch $(hosts); do start_holder "$host"; done
  start_network
  [[ -z $rate ]] || shape_links "$rate"
  start_daemons
  say "started ctl + $nodes nodes (${CPUS} CPUs each) on $NET.0/24 in $((SECONDS - t0)) s;" \
      "partitions batch (default) and urgent${rate:+; links at $rate}"
  say "clients run on the controller: $0 run-on ctl sinfo"
}

cmd_stop() {
  [[ -d $DIR ]] || { say "nothing to stop ($DIR does not exist)"; return 0; }
  # Its jobs first, so that no job step outlives the daemons that manage it.
  if ctld_ready 2>/dev/null; then
    on ctl squeue -h -o %i | xargs -r bash "$0" run-on ctl scancel >/dev/null 2>&1 || true
  fi
  local name names=() pids=() i
  for name in $(ip netns list | awk '{print $1}'); do
    [[ $name = "$PREFIX"* ]] && names+=("$name")
  done
  # Only the processes inside its own namespaces: daemons, job steps, holders.
  for name in "${names[@]}"; do pids+=($(ip netns pids "$name")); done
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      local left=()
      for pid in "${pids[@]}"; do alive "$pid" && left+=("$pid"); done
      ((${#left[@]})) || break
      sleep 0.1
    done
    for pid in "${pids[@]}"; do alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
  fi
  # Holders whose namespace name was already gone (a crash half-way through start).
  for pidfile in "$DIR"/run/host-*.pid; do
    [[ -s $pidfile ]] || continue
    pid=$(<"$pidfile")
    if alive "$pid" && [[ $(cat "/proc/$pid/comm") = sleep ]] \
        && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q '^slurm-nodes-host-'; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  for name in "${names[@]}"; do ip netns delete "$name"; done
  rm -f "$DIR"/run/*.pid
  say "stopped ${#pids[@]} processes, deleted ${#names[@]} namespaces"
}

cmd_status() {
  local host pid ok=0
  for host in switch $(hosts); do
    if pid=$(holder_pid "$host"); then
      echo "$host: namespace $(ns "$host") (holder pid $pid, $(ip netns pids "$(ns "$host")" | wc -l) processes)"
    else
      echo "$host: missing"; ok=1
    fi
  done
  echo "SLURM_CONF=$CONF"
  ((ok == 0)) && on ctl sinfo && nodes_ready
}

cmd_run_on() {
  (($# >= 2)) || usage "run-on HOST CMD…"
  local host=$1
  [[ $host = ctl || $host =~ ^node[1-9][0-9]*$ ]] || usage "run-on: HOST is ctl or nodeI, got '$host'"
  shift
  on "$host" "$@"
}

cmd_link() {
  (($# == 2)) && [[ $1 =~ ^(ctl|node[1-9][0-9]*)$ && $2 =~ ^(up|down)$ ]] \
    || usage "link HOST up|down"
  holder_pid "$1" >/dev/null || usage "host $1 is not running"
  ip -n "$(ns switch)" link set "v-$1" "$2"
}

command=${1:-}
shift || true
case $command in
  start) cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  run-on) cmd_run_on "$@" ;;
  link) cmd_link "$@" ;;
  env) echo "export SLURM_CONF=$CONF PATH=$DIR/bin:\$PATH HPC_PROFILE=local-nodes" ;;
  purge) cmd_stop; rm -rf "$DIR"; say "removed $DIR" ;;
  *) usage "usage: $0 start [--nodes N] [--link-rate RATE]|stop|status|run-on HOST CMD…|link HOST up|down|env|purge" ;;
esac
